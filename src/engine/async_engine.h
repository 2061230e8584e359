#pragma once

// The engine behind the server: an LLMEngine driven by a loop on its own thread. Callers on
// other threads add and abort requests and get outputs through callbacks; the loop never waits
// on them (a callback must hand its output over and return, e.g. queue it and wake an event
// loop).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pagoda/llm.h"
#include "pagoda/outputs.h"
#include "pagoda/sampling_params.h"

namespace pagoda::tokenizer {
class Tokenizer;
}
namespace pagoda::model {
struct ModelConfig;
}

namespace pagoda::engine {

struct EngineRequest {
  std::string request_id;  // unique among live requests
  std::vector<int32_t> prompt_token_ids;
  std::optional<std::string> prompt;  // the text, when the prompt came as text (kept in outputs)
  SamplingParams params;
  // true: each output carries only what is new since the previous one (text, token_ids,
  // logprobs of each CompletionOutput); false: everything so far.
  bool delta = false;
};

// Counters and gauges for /metrics, read at any time.
struct EngineStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t num_blocks = 0;
  int64_t num_free_blocks = 0;
  double kv_cache_usage = 0.0;  // fraction of blocks held by sequences
  int64_t prefix_cache_queries = 0;
  int64_t prefix_cache_hits = 0;
  int64_t num_preemptions = 0;
  int64_t prompt_tokens = 0;      // computed prompt tokens, total
  int64_t generation_tokens = 0;  // generated tokens, total
  int64_t num_steps = 0;
};

class AsyncEngine {
 public:
  // Called on the engine thread with each new output of a request; the last one has finished
  // set. Must not block or throw.
  using OutputCallback = std::function<void(RequestOutput)>;

  // Loads the model and starts the loop. Throws pagoda::Error.
  explicit AsyncEngine(const EngineArgs& args, int64_t max_waiting_requests = 4096);
  ~AsyncEngine();  // aborts what is left and joins the loop
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Checks the request (params, prompt length against max_model_len, token ids against the
  // vocabulary) and queues it. Throws Error(kInvalidArgument) with a message for the client,
  // Error(kOutOfMemory) when the waiting queue is full or the engine is shutting down.
  void add_request(EngineRequest request, OutputCallback on_output);
  // The request stops within one step; its callback gets a final output with finish reason
  // abort; its KV blocks are freed. Unknown or finished ids are ignored.
  void abort(const std::string& request_id);

  // Stops taking requests, waits up to timeout_s for running ones to finish, aborts the rest.
  void shutdown(double timeout_s);

  [[nodiscard]] EngineStats stats() const;
  [[nodiscard]] const tokenizer::Tokenizer& tokenizer() const;
  [[nodiscard]] const model::ModelConfig& model_config() const;
  [[nodiscard]] int64_t max_model_len() const;
  [[nodiscard]] int64_t vocab_size() const;
  // "KV cache: N blocks of B tokens (T tokens), X MiB f32", for the ready message.
  [[nodiscard]] std::string cache_summary() const;
  // The chat template (the model's, or EngineArgs::chat_template) rendered for `messages` (an
  // array of {role, content: string}) with the generation prompt; throws Error(kInvalidArgument)
  // for a bad conversation, or when the model has no template.
  [[nodiscard]] std::string apply_chat_template(const nlohmann::ordered_json& messages,
                                                bool add_generation_prompt = true) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::engine
