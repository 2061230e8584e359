// `pagoda bench throughput [MODEL] --num-prompts N --input-len I --output-len O` (or --dataset
// FILE.jsonl): offline throughput through the whole engine (scheduler, sampler, detokenizer), as
// vLLM's benchmark_throughput measures it. Every request goes in at once; the engine batches them
// continuously. Prompts are random token ids (vLLM's random dataset) unless --dataset gives
// {"prompt": ...} / {"prompt_token_ids": [...]} lines. Reports requests/s and input, output and
// total tokens/s; progress on stderr; a table, or JSON with --json.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "command.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "engine/llm_engine.h"
#include "pagoda/llm.h"

namespace pagoda::cli::bench {
namespace {

struct ThroughputArgs {
  std::string model;
  int64_t num_prompts = 32;
  int64_t input_len = 128;
  int64_t output_len = 128;
  std::string dataset;
  EngineArgs engine;
  bool no_prefix_caching = false;
  bool json = false;
  uint64_t seed = 0;
};

std::vector<std::vector<int32_t>> dataset_prompts(const ThroughputArgs& a, engine::LLMEngine& e) {
  std::vector<std::vector<int32_t>> prompts;
  if (a.dataset.empty()) {
    std::mt19937_64 rng(a.seed);
    for (int64_t i = 0; i < a.num_prompts; ++i) {
      std::vector<int32_t> ids(static_cast<size_t>(a.input_len));
      for (int32_t& t : ids)
        t = static_cast<int32_t>(rng() % static_cast<uint64_t>(e.vocab_size()));
      prompts.push_back(std::move(ids));
    }
    return prompts;
  }
  const std::string text = read_text_file(a.dataset, uint64_t{1} << 30);
  size_t begin = 0;
  size_t line = 0;
  while (begin < text.size() && static_cast<int64_t>(prompts.size()) < a.num_prompts) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view row(text.data() + begin, end - begin);
    begin = end + 1;
    ++line;
    if (row.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(row, nullptr, false);
    if (j.is_object() && j.contains("prompt") && j["prompt"].is_string()) {
      prompts.push_back(e.encode(j["prompt"].get<std::string>()));
    } else if (j.is_object() && j.contains("prompt_token_ids") && j["prompt_token_ids"].is_array()) {
      std::vector<int32_t> ids;
      for (const auto& v : j["prompt_token_ids"]) {
        if (!v.is_number_integer()) fail(ErrorCode::kInvalidArgument, "{}: line {}: bad token id", a.dataset, line);
        ids.push_back(v.get<int32_t>());
      }
      prompts.push_back(std::move(ids));
    } else {
      fail(ErrorCode::kInvalidArgument, "{}: line {} needs \"prompt\" or \"prompt_token_ids\"", a.dataset, line);
    }
  }
  if (prompts.empty()) fail(ErrorCode::kInvalidArgument, "{}: no prompts", a.dataset);
  return prompts;
}

int run_throughput(ThroughputArgs& a) {
  if (a.num_prompts < 1) fail(ErrorCode::kInvalidArgument, "--num-prompts must be at least 1");
  if (a.input_len < 1 || a.output_len < 1)
    fail(ErrorCode::kInvalidArgument, "--input-len and --output-len must be >= 1");
  a.engine.model = a.model.empty() ? default_model_path() : a.model;
  a.engine.enable_prefix_caching = !a.no_prefix_caching;
  a.engine.seed = a.seed;
  const double load_start = now_seconds();
  engine::LLMEngine e(a.engine);
  const double load_s = now_seconds() - load_start;
  const std::vector<std::vector<int32_t>> prompts = dataset_prompts(a, e);
  const engine::CacheInfo& c = e.cache_info();
  fmt::print(stderr, "pagoda bench throughput: {} requests; KV cache {} blocks of {} tokens ({} tokens, {})\n",
             prompts.size(), c.num_blocks, c.block_size, c.num_tokens, c.dtype);
  SamplingParams params;
  params.temperature = 1.0;
  params.ignore_eos = true;
  params.max_tokens = a.output_len;
  params.detokenize = true;
  int64_t input_tokens = 0;
  const double start = now_seconds();
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::EngineRequest r;
    r.request_id = std::to_string(i);
    r.prompt_token_ids = prompts[i];
    r.params = params;
    r.delta = true;
    input_tokens += static_cast<int64_t>(prompts[i].size());
    e.add_request(std::move(r));
  }
  int64_t output_tokens = 0;
  int64_t finished = 0;
  double last_report = start;
  while (e.has_unfinished()) {
    for (const RequestOutput& out : e.step()) {
      for (const CompletionOutput& co : out.outputs)
        output_tokens += static_cast<int64_t>(co.token_ids.size());
      if (out.finished) ++finished;
    }
    const double t = now_seconds();
    if (t - last_report > 2.0) {
      last_report = t;
      fmt::print(stderr, "  {}/{} requests, {} tokens generated, {:.1f} tokens/s\n", finished, prompts.size(),
                 output_tokens, static_cast<double>(output_tokens) / (t - start));
    }
  }
  const double seconds = now_seconds() - start;
  const engine::EngineStats s = e.stats();
  nlohmann::ordered_json j;
  j["model"] = a.engine.model;
  j["num_requests"] = prompts.size();
  j["input_tokens"] = input_tokens;
  j["output_tokens"] = output_tokens;
  j["elapsed_s"] = seconds;
  j["requests_per_s"] = static_cast<double>(prompts.size()) / seconds;
  j["input_tokens_per_s"] = static_cast<double>(input_tokens) / seconds;
  j["output_tokens_per_s"] = static_cast<double>(output_tokens) / seconds;
  j["total_tokens_per_s"] = static_cast<double>(input_tokens + output_tokens) / seconds;
  j["kv_cache_dtype"] = c.dtype;
  j["steps"] = s.num_steps;
  j["preemptions"] = s.num_preemptions;
  j["load_s"] = load_s;
  j["peak_rss_bytes"] = peak_rss_bytes();
  if (a.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("| requests | input tok | output tok | time (s) | req/s | input tok/s | output tok/s | total tok/s |\n");
  fmt::print("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  fmt::print("| {} | {} | {} | {:.2f} | {:.2f} | {:.1f} | {:.1f} | {:.1f} |\n", prompts.size(), input_tokens,
             output_tokens, seconds, j["requests_per_s"].get<double>(), j["input_tokens_per_s"].get<double>(),
             j["output_tokens_per_s"].get<double>(), j["total_tokens_per_s"].get<double>());
  return 0;
}

const BenchRegistration kRegisterThroughput("throughput", [](CLI::App& bench) -> std::function<int()> {
  auto a = std::make_shared<ThroughputArgs>();
  CLI::App* sub = bench.add_subcommand("throughput", "Offline throughput of many requests through the engine");
  sub->add_option("model", a->model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct)");
  sub->add_option("--num-prompts", a->num_prompts, "Requests")->capture_default_str();
  sub->add_option("--input-len", a->input_len, "Prompt tokens per request (random ids)")->capture_default_str();
  sub->add_option("--output-len", a->output_len, "Generated tokens per request")->capture_default_str();
  sub->add_option("--dataset", a->dataset, "JSONL of {\"prompt\"} or {\"prompt_token_ids\"} lines instead");
  sub->add_option("--seed", a->seed, "Seed for the random prompts and sampling")->capture_default_str();
  sub->add_option("--device", a->engine.device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--max-num-seqs", a->engine.max_num_seqs, "Most sequences in one step")->capture_default_str();
  sub->add_option("--max-num-batched-tokens", a->engine.max_num_batched_tokens, "Most tokens in one step")
      ->capture_default_str();
  sub->add_option("--max-model-len", a->engine.max_model_len, "Longest sequence (0: the model's context)");
  sub->add_option("--kv-cache-memory", a->engine.kv_cache_memory, "Bytes for the KV cache (0: automatic)");
  sub->add_option("--block-size", a->engine.block_size, "Tokens per KV cache block")->capture_default_str();
  sub->add_option("--kv-cache-dtype", a->engine.kv_cache_dtype,
                  "KV cache type: auto (f32 on the CPU, f16 on devices), f32, f16, bf16")
      ->capture_default_str();
  sub->add_flag("--no-enable-prefix-caching", a->no_prefix_caching, "Do not reuse KV blocks of common prefixes");
  sub->add_option("--cpu-matmul", a->engine.cpu_matmul,
                  "CPU matmul over GGUF and bf16 weights: float or int8 (faster: 8-bit activations for GGUF blocks, "
                  "bf16 activations for bf16 weights on AMX-BF16 / AVX512-BF16 CPUs)")
      ->capture_default_str();
  sub->add_flag("--json", a->json, "Print one JSON object");
  return [a] { return run_throughput(*a); };
});

}  // namespace
}  // namespace pagoda::cli::bench
