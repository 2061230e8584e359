#pragma once

// The engine: requests in, outputs out, one step at a time. Each step the scheduler picks the
// work (continuous batching over a paged KV cache with prefix caching, chunked prefill and
// preemption), the model runner computes it in one forward pass, the sampler draws a token for
// every sequence whose last token was computed, and the output processor detokenizes, checks
// stop conditions and builds each request's output.
//
// Not thread-safe: one thread drives it (LLM, or AsyncEngine's loop).

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/async_engine.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "pagoda/llm.h"
#include "pagoda/outputs.h"

namespace pagoda {
class ModelFiles;
}
namespace pagoda::tokenizer {
class Tokenizer;
}
namespace pagoda::jinja {
class Template;
}
namespace pagoda::worker {
class ModelRunner;
}

namespace pagoda::engine {

// The KV cache element type that --kv-cache-dtype names: auto (f32 on the CPU, f16 on devices),
// f32, f16 or bf16. Anything else is an Error that lists them.
[[nodiscard]] DType kv_cache_dtype_for(const std::string& name, Device device);

// The KV cache the engine set up, as reported at start.
struct CacheInfo {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_tokens = 0;  // num_blocks * block_size
  int64_t bytes = 0;
  std::string dtype;
};

class LLMEngine {
 public:
  explicit LLMEngine(const EngineArgs& args);
  ~LLMEngine();
  LLMEngine(const LLMEngine&) = delete;
  LLMEngine& operator=(const LLMEngine&) = delete;

  // Validates and queues a request (see AsyncEngine::add_request for the errors).
  void add_request(EngineRequest request);
  // The checks of add_request that need no engine state beyond the model (thread-safe).
  void check_request(const EngineRequest& request) const;
  // Finishes the request with reason abort; its output comes from the next step(). Unknown ids
  // are ignored.
  void abort(const std::string& request_id);

  // Runs one step; returns an output for every request that produced something (a new token, a
  // finish, an abort).
  [[nodiscard]] std::vector<RequestOutput> step();
  [[nodiscard]] bool has_unfinished() const { return !requests_.empty(); }
  [[nodiscard]] int64_t num_requests() const { return static_cast<int64_t>(requests_.size()); }

  [[nodiscard]] EngineStats stats() const;
  [[nodiscard]] const CacheInfo& cache_info() const { return cache_info_; }
  [[nodiscard]] const tokenizer::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  [[nodiscard]] const model::ModelConfig& model_config() const;
  [[nodiscard]] int64_t max_model_len() const { return max_model_len_; }
  [[nodiscard]] int64_t vocab_size() const { return vocab_size_; }
  [[nodiscard]] const std::string& model_path() const { return args_.model; }
  [[nodiscard]] const ModelFiles& files() const { return *files_; }
  [[nodiscard]] std::string apply_chat_template(const nlohmann::ordered_json& messages,
                                                bool add_generation_prompt = true) const;
  // Token ids of a text prompt (with the tokenizer's special tokens, as transformers adds them).
  [[nodiscard]] std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;

  // For tests: the scheduler (block manager counters, invariants).
  [[nodiscard]] const Scheduler& scheduler() const { return *scheduler_; }

 private:
  struct Sample;
  struct Request;
  void build_outputs(std::vector<RequestOutput>& outs);
  void process_token(Request& r, Sample& s, int32_t token, const SampleResult& result, double now);
  void finish_sample(Request& r, Sample& s, FinishReason reason);
  [[nodiscard]] RequestOutput make_output(Request& r);
  [[nodiscard]] double now() const;

  EngineArgs args_;
  std::unique_ptr<ModelFiles> files_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<jinja::Template> chat_template_;
  std::unique_ptr<worker::ModelRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  Sampler sampler_;
  Generator seed_generator_;
  std::vector<int32_t> eos_ids_;
  int64_t max_model_len_ = 0;
  int64_t vocab_size_ = 0;
  CacheInfo cache_info_;

  std::unordered_map<std::string, std::unique_ptr<Request>> requests_;
  std::unordered_map<SeqId, std::pair<Request*, size_t>> seq_owner_;  // seq -> request, sample
  std::vector<std::string> to_abort_;
  SeqId next_seq_ = 1;
  EngineStats stats_;
  std::chrono::steady_clock::time_point epoch_;
};

}  // namespace pagoda::engine
