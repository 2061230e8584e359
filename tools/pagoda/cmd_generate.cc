// `pagoda generate [MODEL] (--prompt TEXT | --prompt-ids 1,2,3 | --input FILE.jsonl)...`: offline
// generation through the engine (continuous batching over the paged KV cache).
//
// Sampling defaults are vLLM's (and the OpenAI API's): temperature 1, top-p 1, top-k off; pass
// --temperature 0 for greedy decoding (the argmax, lowest id on ties), which is deterministic.
// All prompts go to the engine at once and run as one continuously batched workload; a batch run
// reports its throughput on stderr. One text prompt without --json streams its text as it is
// generated.
//
// --input FILE: one JSON object per line: {"prompt": "text"} or {"prompt_token_ids": [1, 2]} or
// {"messages": [{"role": "user", "content": "..."}]}, optionally with sampling fields of its own
// (max_tokens, temperature, top_p, top_k, min_p, seed, n, stop, ignore_eos, min_tokens).

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "command.h"
#include "core/error.h"
#include "engine/llm_engine.h"
#include "model_prompts.h"
#include "pagoda/llm.h"

namespace pagoda::cli {
namespace {

constexpr uint64_t kMaxInputBytes = uint64_t{1} << 30;

struct GenerateArgs {
  std::string model;
  PromptInput prompts;
  std::string input_file;
  SamplingParams params;
  int64_t max_tokens = 128;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::optional<int64_t> logprobs;
  EngineArgs engine;
  int64_t prefill_chunk = 0;
  bool no_prefix_caching = false;
  bool no_chunked_prefill = false;
  bool json = false;
};

struct Job {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

// Sampling fields a line of --input may set for itself.
void apply_line_params(const nlohmann::json& j, SamplingParams& p, size_t line) {
  auto number = [&](const char* key, auto& field) {
    if (!j.contains(key)) return;
    const nlohmann::json& v = j[key];
    if (!v.is_number()) fail(ErrorCode::kInvalidArgument, "--input line {}: '{}' must be a number", line, key);
    field = v.get<std::decay_t<decltype(field)>>();
  };
  if (j.contains("max_tokens")) {
    if (!j["max_tokens"].is_number_integer()) {
      fail(ErrorCode::kInvalidArgument, "--input line {}: 'max_tokens' must be an integer", line);
    }
    p.max_tokens = j["max_tokens"].get<int64_t>();
  }
  number("temperature", p.temperature);
  number("top_p", p.top_p);
  number("top_k", p.top_k);
  number("min_p", p.min_p);
  number("n", p.n);
  number("min_tokens", p.min_tokens);
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned())
      fail(ErrorCode::kInvalidArgument, "--input line {}: 'seed' must be >= 0", line);
    p.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("ignore_eos")) {
    if (!j["ignore_eos"].is_boolean())
      fail(ErrorCode::kInvalidArgument, "--input line {}: 'ignore_eos' must be true or false", line);
    p.ignore_eos = j["ignore_eos"].get<bool>();
  }
  if (j.contains("stop")) {
    const nlohmann::json& s = j["stop"];
    p.stop.clear();
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) fail(ErrorCode::kInvalidArgument, "--input line {}: 'stop' must hold strings", line);
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      fail(ErrorCode::kInvalidArgument, "--input line {}: 'stop' must be a string or a list of strings", line);
    }
  }
}

std::vector<Job> read_input(const std::string& path, const SamplingParams& defaults, engine::LLMEngine& e) {
  const std::string text = read_text_file(path, kMaxInputBytes);
  std::vector<Job> jobs;
  size_t line_no = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      fail(ErrorCode::kInvalidArgument, "{}: line {} is not a JSON object", path, line_no);
    }
    Job job;
    job.params = defaults;
    try {
      apply_line_params(j, job.params, line_no);
      if (j.contains("prompt")) {
        if (!j["prompt"].is_string()) fail(ErrorCode::kInvalidArgument, "'prompt' must be a string");
        job.prompt = e.encode(j["prompt"].get<std::string>());
      } else if (j.contains("prompt_token_ids")) {
        const nlohmann::json& ids = j["prompt_token_ids"];
        if (!ids.is_array()) fail(ErrorCode::kInvalidArgument, "'prompt_token_ids' must be a list of integers");
        for (const auto& id : ids) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
            fail(ErrorCode::kInvalidArgument, "'prompt_token_ids' must hold token ids");
          }
          job.prompt.push_back(id.get<int32_t>());
        }
      } else if (j.contains("messages")) {
        job.prompt = e.encode(e.apply_chat_template(nlohmann::ordered_json::parse(j["messages"].dump())), false);
      } else {
        fail(ErrorCode::kInvalidArgument, "needs 'prompt', 'prompt_token_ids' or 'messages'");
      }
    } catch (const Error& err) {
      fail(err.code(), "{}: line {}: {}", path, line_no, err.what());
    }
    jobs.push_back(std::move(job));
    if (jobs.size() > kMaxPrompts * 64)
      fail(ErrorCode::kInvalidArgument, "{}: more than {} prompts", path, kMaxPrompts * 64);
  }
  if (jobs.empty()) fail(ErrorCode::kInvalidArgument, "{}: no prompts", path);
  return jobs;
}

nlohmann::ordered_json sample_json(const CompletionOutput& c) {
  nlohmann::ordered_json j;
  j["completion_tokens"] = c.token_ids.size();
  j["token_ids"] = c.token_ids;
  j["text"] = c.text;
  j["finish_reason"] = finish_reason_name(c.finish_reason);
  if (!c.logprobs.empty()) {
    nlohmann::ordered_json lps = nlohmann::ordered_json::array();
    for (const PositionLogprobs& p : c.logprobs) {
      nlohmann::ordered_json top = nlohmann::ordered_json::array();
      for (const Logprob& l : p.top)
        top.push_back({{"token_id", l.token_id}, {"logprob", l.logprob}});
      lps.push_back(
          {{"token_id", p.chosen.token_id}, {"logprob", p.chosen.logprob}, {"rank", p.chosen.rank}, {"top", top}});
    }
    j["logprobs"] = lps;
  }
  return j;
}

int run_generate(GenerateArgs& a) {
  a.engine.model = a.model.empty() ? default_model_path() : a.model;
  a.engine.seed = a.seed ? *a.seed : std::random_device{}();
  a.engine.enable_prefix_caching = !a.no_prefix_caching;
  a.engine.enable_chunked_prefill = !a.no_chunked_prefill;
  a.engine.chat_template = a.prompts.chat_template_file;
  if (a.prefill_chunk > 0) a.engine.max_num_batched_tokens = a.prefill_chunk;
  SamplingParams& p = a.params;
  p.max_tokens = a.max_tokens;
  p.stop = a.stop;
  p.logprobs = a.logprobs;

  const auto load_start = std::chrono::steady_clock::now();
  engine::LLMEngine e(a.engine);
  std::vector<Job> jobs;
  if (!a.input_file.empty()) {
    if (!a.prompts.texts.empty() || !a.prompts.id_lists.empty()) {
      fail(ErrorCode::kInvalidArgument, "give prompts either with --input or with --prompt/--prompt-ids, not both");
    }
    jobs = read_input(a.input_file, p, e);
  } else {
    for (auto& ids : prompt_token_ids(a.prompts, e.files(), e.tokenizer()))
      jobs.push_back({std::move(ids), p});
  }
  // Everything is checked before anything runs.
  std::vector<engine::EngineRequest> requests;
  for (size_t i = 0; i < jobs.size(); ++i) {
    engine::EngineRequest r;
    r.request_id = std::to_string(i);
    r.prompt_token_ids = std::move(jobs[i].prompt);
    r.params = jobs[i].params;
    r.delta = true;
    // Generation stops at the end of the context: --max-tokens is shortened to what fits.
    const auto room = e.max_model_len() - static_cast<int64_t>(r.prompt_token_ids.size());
    if (r.params.max_tokens && room >= 1 && *r.params.max_tokens > room) r.params.max_tokens = room;
    try {
      e.check_request(r);
    } catch (const Error& err) {
      fail(err.code(), "prompt {}: {}", i + 1, err.what());
    }
    requests.push_back(std::move(r));
  }
  const size_t total = requests.size();
  const bool stream = !a.json && total == 1 && e.tokenizer() != nullptr && requests[0].params.n == 1;
  const bool report = total > 1 || !a.input_file.empty();
  {
    const engine::CacheInfo& c = e.cache_info();
    fmt::print(stderr, "pagoda: {} requests; KV cache {} blocks of {} tokens ({} tokens, {:.1f} MiB {})\n", total,
               c.num_blocks, c.block_size, c.num_tokens, static_cast<double>(c.bytes) / (1 << 20), c.dtype);
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t prompt_tokens = 0;
  for (engine::EngineRequest& r : requests) {
    prompt_tokens += static_cast<int64_t>(r.prompt_token_ids.size());
    e.add_request(std::move(r));
  }
  std::vector<RequestOutput> results(total);
  std::vector<std::string> texts(total);
  std::vector<std::vector<std::vector<int32_t>>> ids(total);
  std::vector<std::vector<std::vector<PositionLogprobs>>> lps(total);
  size_t finished = 0;
  auto last_report = start;
  double first_token_s = 0;
  while (e.has_unfinished()) {
    for (RequestOutput& out : e.step()) {
      const size_t i = std::stoul(out.request_id);
      auto& seq_ids = ids[i];
      auto& seq_lps = lps[i];
      seq_ids.resize(out.outputs.size());
      seq_lps.resize(out.outputs.size());
      for (size_t k = 0; k < out.outputs.size(); ++k) {
        CompletionOutput& c = out.outputs[k];
        seq_ids[k].insert(seq_ids[k].end(), c.token_ids.begin(), c.token_ids.end());
        seq_lps[k].insert(seq_lps[k].end(), c.logprobs.begin(), c.logprobs.end());
        if (stream) {
          std::fwrite(c.text.data(), 1, c.text.size(), stdout);
          std::fflush(stdout);
        }
      }
      if (first_token_s == 0 && !out.outputs.empty() && !out.outputs[0].token_ids.empty()) {
        first_token_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
      }
      if (results[i].outputs.size() < out.outputs.size()) results[i].outputs.resize(out.outputs.size());
      for (size_t k = 0; k < out.outputs.size(); ++k) {
        CompletionOutput& dst = results[i].outputs[k];
        dst.index = static_cast<int64_t>(k);
        dst.text += out.outputs[k].text;
        dst.finish_reason = out.outputs[k].finish_reason;
      }
      if (out.finished) {
        ++finished;
        for (size_t k = 0; k < results[i].outputs.size(); ++k) {
          results[i].outputs[k].token_ids = std::move(seq_ids[k]);
          results[i].outputs[k].logprobs = std::move(seq_lps[k]);
        }
        results[i].prompt_token_ids = std::move(out.prompt_token_ids);
        results[i].finished = true;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (report && now - last_report > std::chrono::seconds(2)) {
      last_report = now;
      fmt::print(stderr, "pagoda: {}/{} requests done, {} tokens generated\n", finished, total,
                 e.stats().generation_tokens);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stream) fmt::print("\n");

  int64_t generated = 0;
  for (size_t i = 0; i < total; ++i) {
    const RequestOutput& r = results[i];
    for (const CompletionOutput& c : r.outputs)
      generated += static_cast<int64_t>(c.token_ids.size());
    if (stream) continue;
    if (a.json) {
      nlohmann::ordered_json j;
      j["prompt_tokens"] = r.prompt_token_ids.size();
      const nlohmann::ordered_json first = sample_json(r.outputs.at(0));
      for (const auto& [k, v] : first.items())
        j[k] = v;
      if (r.outputs.size() > 1) {
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        for (const CompletionOutput& c : r.outputs)
          all.push_back(sample_json(c));
        j["outputs"] = all;
      }
      fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    } else {
      for (const CompletionOutput& c : r.outputs) {
        if (total > 1 || r.outputs.size() > 1) {
          fmt::print("--- prompt {}{} ({}) ---\n", i + 1,
                     r.outputs.size() > 1 ? fmt::format(" sample {}", c.index + 1) : "",
                     finish_reason_name(c.finish_reason));
        }
        if (e.tokenizer() != nullptr) {
          fmt::print("{}\n", c.text);
        } else {
          fmt::print("{}\n", fmt::join(c.token_ids, ","));
        }
      }
    }
  }
  if (report) {
    const engine::EngineStats s = e.stats();
    fmt::print(stderr,
               "pagoda: {} requests in {:.2f} s: {} prompt tokens, {} generated tokens; {:.1f} generated tokens/s, "
               "{:.1f} tokens/s in all; first token after {:.2f} s; {} steps, {} preemptions, prefix cache hits {}/{} "
               "tokens\n",
               total, seconds, prompt_tokens, generated, static_cast<double>(generated) / seconds,
               static_cast<double>(generated + prompt_tokens) / seconds, first_token_s, s.num_steps, s.num_preemptions,
               s.prefix_cache_hits, s.prefix_cache_queries);
  }
  return 0;
}

const CommandRegistration kRegisterGenerate("generate", [](CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text for one prompt or a batch (continuous batching)");
  sub->add_option("model", a->model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct)");
  sub->add_option("--prompt", a->prompts.texts, "Prompt text (repeatable)")->allow_extra_args(false);
  sub->add_option("--prompt-ids", a->prompts.id_lists, "Prompt as comma-separated token ids (repeatable)")
      ->allow_extra_args(false);
  sub->add_option(
      "--input", a->input_file,
      "JSONL file of prompts: {\"prompt\": ...} | {\"prompt_token_ids\": [...]} | {\"messages\": [...]} per "
      "line, with optional sampling fields");
  add_chat_options(sub, a->prompts);
  SamplingParams& p = a->params;
  sub->add_option("--max-tokens", a->max_tokens, "Most tokens to generate per prompt")->capture_default_str();
  sub->add_option("--temperature", p.temperature, "Sampling temperature; 0: greedy")->capture_default_str();
  sub->add_option("--top-p", p.top_p, "Nucleus sampling mass in (0, 1]")->capture_default_str();
  sub->add_option("--top-k", p.top_k, "Keep the k most likely tokens; 0: all")->capture_default_str();
  sub->add_option("--min-p", p.min_p, "Drop tokens below min_p times the top probability")->capture_default_str();
  sub->add_option("--presence-penalty", p.presence_penalty, "In [-2, 2]")->capture_default_str();
  sub->add_option("--frequency-penalty", p.frequency_penalty, "In [-2, 2]")->capture_default_str();
  sub->add_option("--repetition-penalty", p.repetition_penalty, "> 0; 1: off")->capture_default_str();
  sub->add_option("--n", p.n, "Samples per prompt")->capture_default_str();
  sub->add_option("--min-tokens", p.min_tokens, "No stop before this many tokens")->capture_default_str();
  sub->add_option("--stop", a->stop, "Stop string (repeatable)")->allow_extra_args(false);
  sub->add_option("--logprobs", a->logprobs, "Log-probabilities of each token and the N most likely (--json)");
  sub->add_option("--seed", a->seed, "Random seed (default: random)");
  sub->add_flag("--ignore-eos", p.ignore_eos, "Do not stop at end-of-sequence tokens");
  sub->add_flag("--json", a->json,
                "Print one JSON object per prompt: token_ids, text, finish_reason, prompt_tokens, completion_tokens");
  EngineArgs& e = a->engine;
  sub->add_option("--device", e.device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--max-model-len", e.max_model_len, "Longest sequence (0: the model's context)")
      ->capture_default_str();
  sub->add_option("--max-num-seqs", e.max_num_seqs, "Most sequences in one step")->capture_default_str();
  sub->add_option("--max-num-batched-tokens", e.max_num_batched_tokens, "Most tokens in one step")
      ->capture_default_str();
  sub->add_option("--prefill-chunk", a->prefill_chunk, "Same as --max-num-batched-tokens (0: its default)")
      ->capture_default_str();
  sub->add_flag("--no-enable-chunked-prefill", a->no_chunked_prefill, "Compute each prompt in one step");
  sub->add_flag("--no-enable-prefix-caching", a->no_prefix_caching, "Do not reuse the KV blocks of common prefixes");
  sub->add_option("--block-size", e.block_size, "Tokens per KV cache block")->capture_default_str();
  sub->add_option("--kv-cache-memory", e.kv_cache_memory, "Bytes for the KV cache (0: automatic)")
      ->capture_default_str();
  sub->add_option("--kv-cache-dtype", e.kv_cache_dtype, "auto, f32, f16 or bf16")->capture_default_str();
  sub->add_option("--cpu-matmul", e.cpu_matmul,
                  "CPU matmul over GGUF and bf16 weights: float or int8 (faster: 8-bit activations for GGUF blocks, "
                  "bf16 activations for bf16 weights on AMX-BF16 / AVX512-BF16 CPUs)")
      ->capture_default_str();
  return [a] { return run_generate(*a); };
});

}  // namespace
}  // namespace pagoda::cli
