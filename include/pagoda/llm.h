#pragma once

// The offline entry point: load a model once, then run batches of prompts through the engine
// (continuous batching, paged KV cache, prefix caching) and get the outputs back in order.
//
//   pagoda::LLM llm({.model = "SmolLM2-135M-Instruct.Q4_1.gguf"});
//   pagoda::SamplingParams params;
//   params.temperature = 0;
//   for (const pagoda::RequestOutput& out : llm.generate({"The capital of France is"}, params))
//     std::cout << out.outputs[0].text << "\n";

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pagoda/outputs.h"
#include "pagoda/sampling_params.h"

namespace pagoda {

struct EngineArgs {
  std::string model;           // a .gguf file or a Hugging Face folder
  std::string device = "cpu";  // cpu, xpu[:N], cuda[:N]
  int64_t max_model_len = 0;   // 0: the model's context length
  int64_t block_size = 16;     // tokens per KV cache block
  // Bytes for the KV cache; 0: 4 GiB on the CPU (capped to what max_num_seqs sequences of
  // max_model_len tokens need), on devices gpu_memory_utilization of the free memory.
  int64_t kv_cache_memory = 0;
  double gpu_memory_utilization = 0.9;
  std::string kv_cache_dtype = "auto";  // auto (f32 on the CPU, f16 on devices), f32, f16, bf16
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  bool enable_chunked_prefill = true;
  bool enable_prefix_caching = true;
  uint64_t seed = 0;
  // CPU matmul over GGUF block weights: "float" (dequantize tiles, float dots; matches the
  // reference within 1e-5) or "int8" (activations quantized to 8 bits on the fly, integer dots;
  // faster, about 1/254 relative error per element, as llama.cpp does).
  std::string cpu_matmul = "float";
  std::string chat_template;  // a file that replaces the model's chat template
};

// A prompt as text or as token ids.
struct Prompt {
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;
  Prompt(std::string t) : text(std::move(t)) {}                    // NOLINT: implicit by design
  Prompt(const char* t) : text(std::string(t)) {}                  // NOLINT
  Prompt(std::vector<int32_t> ids) : token_ids(std::move(ids)) {}  // NOLINT
};

class LLM {
 public:
  explicit LLM(const EngineArgs& args);
  ~LLM();
  LLM(const LLM&) = delete;
  LLM& operator=(const LLM&) = delete;

  // Runs every prompt to completion with one set of params, or one set per prompt; outputs in
  // the order of the prompts. Throws pagoda::Error for a bad prompt or params before running any.
  [[nodiscard]] std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const SamplingParams& params);
  [[nodiscard]] std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts,
                                                    const std::vector<SamplingParams>& params);

  // Renders each conversation with the model's chat template (adding the generation prompt) and
  // generates. A message is {"role", "content"}.
  struct Message {
    std::string role;
    std::string content;
  };
  [[nodiscard]] std::vector<RequestOutput> chat(const std::vector<std::vector<Message>>& conversations,
                                                const SamplingParams& params);

  class Impl;
  [[nodiscard]] Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda
