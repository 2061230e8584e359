// The offline API (include/pagoda/llm.h) over LLMEngine.

#include "pagoda/llm.h"

#include <fmt/format.h>

#include "core/error.h"
#include "engine/llm_engine.h"

namespace pagoda {

class LLM::Impl {
 public:
  explicit Impl(const EngineArgs& args) : engine(args) {}
  engine::LLMEngine engine;
  uint64_t next_batch = 0;
};

LLM::LLM(const EngineArgs& args) : impl_(std::make_unique<Impl>(args)) {}
LLM::~LLM() = default;

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts, const SamplingParams& params) {
  return generate(prompts, std::vector<SamplingParams>(prompts.size(), params));
}

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts,
                                         const std::vector<SamplingParams>& params) {
  if (params.size() != prompts.size()) {
    fail(ErrorCode::kInvalidArgument, "{} prompts but {} sets of sampling params", prompts.size(), params.size());
  }
  engine::LLMEngine& e = impl_->engine;
  // Everything is checked before anything runs.
  std::vector<engine::EngineRequest> requests;
  const uint64_t batch = impl_->next_batch++;
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::EngineRequest r;
    r.request_id = fmt::format("{}-{}", batch, i);
    if (prompts[i].text) {
      r.prompt = prompts[i].text;
      r.prompt_token_ids = e.encode(*prompts[i].text);
    } else {
      r.prompt_token_ids = prompts[i].token_ids;
    }
    r.params = params[i];
    try {
      e.check_request(r);
    } catch (const Error& err) {
      fail(err.code(), "prompt {}: {}", i + 1, err.what());
    }
    requests.push_back(std::move(r));
  }
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < requests.size(); ++i) {
    index[requests[i].request_id] = i;
    e.add_request(std::move(requests[i]));
  }
  std::vector<RequestOutput> results(prompts.size());
  while (e.has_unfinished()) {
    for (RequestOutput& out : e.step()) {
      if (out.finished) {
        const size_t i = index.at(out.request_id);
        results[i] = std::move(out);
      }
    }
  }
  return results;
}

std::vector<RequestOutput> LLM::chat(const std::vector<std::vector<Message>>& conversations,
                                     const SamplingParams& params) {
  std::vector<Prompt> prompts;
  for (const auto& conv : conversations) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    for (const Message& m : conv)
      messages.push_back({{"role", m.role}, {"content", m.content}});
    prompts.emplace_back(impl_->engine.encode(impl_->engine.apply_chat_template(messages), false));
  }
  return generate(prompts, params);
}

}  // namespace pagoda
