// `pagoda generate [MODEL] (--prompt TEXT | --prompt-ids 1,2,3)...`: text generation on one device.
//
// Sampling defaults are vLLM's (and the OpenAI API's): temperature 1, top-p 1, top-k off; pass
// --temperature 0 for greedy decoding (the argmax, lowest id on ties), which is deterministic.
// Several --prompt / --prompt-ids run together as one batch (each step one forward pass over all
// unfinished sequences). Generation stops at an end-of-sequence token of the model
// (finish_reason "stop") unless --ignore-eos, or after --max-tokens tokens or at the end of the
// context ("length").

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "command.h"
#include "core/error.h"
#include "engine/host_sampler.h"
#include "model/loader/model_files.h"
#include "model/model.h"
#include "model_prompts.h"
#include "tokenizer/stream_decoder.h"
#include "worker/model_runner.h"
#include "worker/static_batch.h"

namespace pagoda::cli {
namespace {

struct GenerateArgs {
  std::string model;
  PromptInput prompts;
  int64_t max_tokens = 128;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  std::optional<uint64_t> seed;
  std::string device = "cpu";
  bool json = false;
  bool ignore_eos = false;
  int64_t prefill_chunk = 0;
  int64_t block_size = 16;
};

int run_generate(const GenerateArgs& a) {
  engine::SamplingOptions sampling{a.temperature, a.top_p, a.top_k};
  engine::validate(sampling);
  if (a.max_tokens < 1 || a.max_tokens > model::kMaxPositions) {
    fail(ErrorCode::kInvalidArgument, "--max-tokens must be in [1, {}], got {}", model::kMaxPositions, a.max_tokens);
  }
  const Device device = parse_device(a.device);
  const ModelFiles files = ModelFiles::open(a.model.empty() ? default_model_path() : a.model);
  const std::unique_ptr<tokenizer::Tokenizer> tok = load_tokenizer(files);
  const std::vector<std::vector<int32_t>> prompts = prompt_token_ids(a.prompts, files, tok.get());

  const int64_t context = model::context_length(files.config());
  int64_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto n = static_cast<int64_t>(prompts[i].size());
    if (n > context) {
      fail(ErrorCode::kInvalidArgument, "prompt {} has {} tokens, more than the model's context of {} tokens", i + 1, n,
           context);
    }
    longest = std::max(longest, std::min(n + a.max_tokens, context));
  }
  worker::RunnerOptions ro;
  ro.device = device;
  ro.block_size = a.block_size;
  ro.max_model_len = longest;
  std::vector<int64_t> capacities;
  for (const auto& p : prompts)
    capacities.push_back(std::min(static_cast<int64_t>(p.size()) + a.max_tokens - 1, longest));
  ro.num_blocks = worker::blocks_needed(capacities, a.block_size);
  worker::ModelRunner runner(files, ro);

  std::vector<int32_t> eos;
  for (int64_t id : files.config().eos_token_ids)
    eos.push_back(static_cast<int32_t>(id));
  const uint64_t seed = a.seed ? *a.seed : std::random_device{}();
  std::vector<worker::GenerateRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i)
    requests.push_back({prompts[i], a.max_tokens, sampling, seed + i, a.ignore_eos});

  // One prompt in text mode streams its text as it is generated.
  const bool stream = !a.json && prompts.size() == 1 && tok != nullptr;
  std::optional<tokenizer::StreamDecoder> decoder;
  if (stream) decoder.emplace(*tok, true);
  worker::StaticBatch batch(runner, eos, a.prefill_chunk);
  const std::vector<worker::GenerateResult> results = batch.generate(requests, [&](size_t, int32_t id) {
    if (!decoder) return;
    const std::string piece = decoder->push(static_cast<uint32_t>(id));
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  if (decoder) {
    const std::string rest = decoder->finish();
    fmt::print("{}\n", rest);
    return 0;
  }

  for (size_t i = 0; i < results.size(); ++i) {
    const worker::GenerateResult& r = results[i];
    std::optional<std::string> text;
    if (tok != nullptr) {
      std::vector<uint32_t> ids(r.token_ids.begin(), r.token_ids.end());
      text = tok->decode(ids, true);
    }
    if (a.json) {
      nlohmann::ordered_json j;
      j["prompt_tokens"] = prompts[i].size();
      j["completion_tokens"] = r.token_ids.size();
      j["token_ids"] = r.token_ids;
      j["text"] = text ? nlohmann::ordered_json(*text) : nlohmann::ordered_json();
      j["finish_reason"] = r.finish_reason;
      fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    } else {
      if (results.size() > 1) fmt::print("--- prompt {} ({}) ---\n", i + 1, r.finish_reason);
      if (text) {
        fmt::print("{}\n", *text);
      } else {
        fmt::print("{}\n", fmt::join(r.token_ids, ","));
      }
    }
  }
  return 0;
}

const CommandRegistration kRegisterGenerate("generate", [](CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (several prompts run as one batch)");
  sub->add_option("model", a->model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct)");
  sub->add_option("--prompt", a->prompts.texts, "Prompt text (repeatable)")->allow_extra_args(false);
  sub->add_option("--prompt-ids", a->prompts.id_lists, "Prompt as comma-separated token ids (repeatable)")
      ->allow_extra_args(false);
  add_chat_options(sub, a->prompts);
  sub->add_option("--max-tokens", a->max_tokens, "Most tokens to generate per prompt")->capture_default_str();
  sub->add_option("--temperature", a->temperature, "Sampling temperature; 0: greedy")->capture_default_str();
  sub->add_option("--top-p", a->top_p, "Nucleus sampling mass in (0, 1]")->capture_default_str();
  sub->add_option("--top-k", a->top_k, "Keep the k most likely tokens; 0: all")->capture_default_str();
  sub->add_option("--seed", a->seed, "Random seed (default: random)");
  sub->add_option("--device", a->device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_flag("--json", a->json,
                "Print one JSON object per prompt: token_ids, text, finish_reason, prompt_tokens, completion_tokens");
  sub->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at end-of-sequence tokens");
  sub->add_option("--prefill-chunk", a->prefill_chunk, "Feed prompts in chunks of this many tokens (0: whole)")
      ->capture_default_str();
  sub->add_option("--block-size", a->block_size, "Tokens per KV cache block")->capture_default_str();
  return [a] { return run_generate(*a); };
});

}  // namespace
}  // namespace pagoda::cli
