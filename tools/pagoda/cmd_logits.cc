// `pagoda logits [MODEL] (--prompt TEXT | --prompt-ids 1,2,3)...`: the next-token logits after
// the last token of each prompt, as JSON. All prompts run as one batch (one forward pass, or one
// per --prefill-chunk tokens); tests compare the result with Hugging Face transformers.

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "command.h"
#include "core/error.h"
#include "model/loader/model_files.h"
#include "model/model.h"
#include "model_prompts.h"
#include "worker/model_runner.h"
#include "worker/static_batch.h"

namespace pagoda::cli {
namespace {

struct LogitsArgs {
  std::string model;
  PromptInput prompts;
  int64_t top = 0;
  int64_t prefill_chunk = 0;
  int64_t block_size = 16;
  std::string device = "cpu";
  std::string out;
};

std::string result_json(const std::vector<int32_t>& prompt, const std::vector<float>& logits, int64_t top) {
  std::string s = fmt::format("{{\"prompt_tokens\":{}", prompt.size());
  if (top > 0) {
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const auto k = static_cast<size_t>(std::min<int64_t>(top, static_cast<int64_t>(logits.size())));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](int32_t a, int32_t b) {
                        const float la = logits[static_cast<size_t>(a)];
                        const float lb = logits[static_cast<size_t>(b)];
                        return la > lb || (la == lb && a < b);
                      });
    order.resize(k);
    std::vector<float> values;
    for (int32_t id : order)
      values.push_back(logits[static_cast<size_t>(id)]);
    s += fmt::format(",\"top_ids\":[{}],\"top_logits\":{}", fmt::join(order, ","), json_floats(values));
  } else {
    s += ",\"logits\":" + json_floats(logits);
  }
  return s + "}";
}

int run_logits(const LogitsArgs& a) {
  if (a.top < 0) fail(ErrorCode::kInvalidArgument, "--top must not be negative, got {}", a.top);
  const Device device = parse_device(a.device);
  const ModelFiles files = ModelFiles::open(a.model.empty() ? default_model_path() : a.model);
  const std::unique_ptr<tokenizer::Tokenizer> tok = load_tokenizer(files);
  const std::vector<std::vector<int32_t>> prompts = prompt_token_ids(a.prompts, files, tok.get());

  const int64_t context = model::context_length(files.config());
  int64_t longest = 0;
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto n = static_cast<int64_t>(prompts[i].size());
    if (n > context) {
      fail(ErrorCode::kInvalidArgument, "prompt {} has {} tokens, more than the model's context of {} tokens", i + 1, n,
           context);
    }
    longest = std::max(longest, n);
    lengths.push_back(n);
  }
  worker::RunnerOptions ro;
  ro.device = device;
  ro.block_size = a.block_size;
  ro.max_model_len = longest;
  ro.num_blocks = worker::blocks_needed(lengths, a.block_size);
  worker::ModelRunner runner(files, ro);
  worker::StaticBatch batch(runner, {}, a.prefill_chunk);
  const std::vector<std::vector<float>> logits = batch.prompt_logits(prompts);

  std::string text = "{\"results\":[";
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (i > 0) text += ',';
    text += result_json(prompts[i], logits[i], a.top);
  }
  text += "]}\n";
  if (a.out.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  } else {
    std::ofstream f(a.out, std::ios::binary);
    if (!f) fail(ErrorCode::kIo, "{}: cannot open for writing", a.out);
    f << text;
    if (!f) fail(ErrorCode::kIo, "{}: write failed", a.out);
  }
  return 0;
}

const CommandRegistration kRegisterLogits("logits", [](CLI::App& app) {
  auto a = std::make_shared<LogitsArgs>();
  CLI::App* sub =
      app.add_subcommand("logits", "Print the next-token logits after each prompt (JSON; all prompts in one batch)");
  sub->add_option("model", a->model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct)");
  sub->add_option("--prompt", a->prompts.texts, "Prompt text (repeatable)")->allow_extra_args(false);
  sub->add_option("--prompt-ids", a->prompts.id_lists, "Prompt as comma-separated token ids (repeatable)")
      ->allow_extra_args(false);
  add_chat_options(sub, a->prompts);
  sub->add_option("--top", a->top, "Print only the K largest logits with their ids (0: all)")->capture_default_str();
  sub->add_option("--prefill-chunk", a->prefill_chunk, "Feed prompts in chunks of this many tokens (0: whole)")
      ->capture_default_str();
  sub->add_option("--block-size", a->block_size, "Tokens per KV cache block")->capture_default_str();
  sub->add_option("--device", a->device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--out", a->out, "Write the JSON to this file instead of standard output");
  return [a] { return run_logits(*a); };
});

}  // namespace
}  // namespace pagoda::cli
