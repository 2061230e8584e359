#include "engine/async_engine.h"

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "engine/llm_engine.h"

namespace pagoda::engine {

class AsyncEngine::Impl {
 public:
  Impl(const EngineArgs& args, int64_t max_waiting) : engine_(args), max_waiting_(max_waiting) {
    stats_ = engine_.stats();
    thread_ = std::thread([this] { loop(); });
  }

  ~Impl() { stop(); }

  void add(EngineRequest request, OutputCallback cb) {
    engine_.check_request(request);
    std::lock_guard lock(mu_);
    if (!accepting_) fail(ErrorCode::kOutOfMemory, "the server is shutting down");
    if (static_cast<int64_t>(pending_.size()) + stats_.num_waiting >= max_waiting_) {
      fail(ErrorCode::kOutOfMemory, "too many requests are waiting ({}); try again later", max_waiting_);
    }
    pending_.push_back({std::move(request), std::move(cb)});
    cv_.notify_all();
  }

  void abort(const std::string& id) {
    std::lock_guard lock(mu_);
    aborts_.push_back(id);
    cv_.notify_all();
  }

  void shutdown(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::max(0.0, timeout_s));
    std::unique_lock lock(mu_);
    accepting_ = false;
    idle_cv_.wait_until(lock, deadline, [&] { return pending_.empty() && live_ == 0; });
    abort_all_ = true;
    cv_.notify_all();
    idle_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return pending_.empty() && live_ == 0; });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      accepting_ = false;
      abort_all_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  // The engine's last stats, with requests handed over but not yet taken by the loop counted as
  // waiting. A request's final output is delivered after the stats that count it finished are
  // published, so a reader that takes the stats and then the outputs sees them agree.
  EngineStats stats() const {
    std::lock_guard lock(mu_);
    EngineStats s = stats_;
    s.num_waiting += static_cast<int64_t>(pending_.size());
    return s;
  }

  LLMEngine engine_;

 private:
  struct Pending {
    EngineRequest request;
    OutputCallback cb;
  };

  void publish_stats() {
    const EngineStats s = engine_.stats();
    std::lock_guard lock(mu_);
    stats_ = s;
  }

  void deliver(std::vector<RequestOutput>& outs) {
    for (RequestOutput& out : outs) {
      auto it = callbacks_.find(out.request_id);
      if (it == callbacks_.end()) continue;
      const bool finished = out.finished;
      it->second(std::move(out));
      if (finished) callbacks_.erase(it);
    }
  }

  // A request the engine could not take: its caller still gets a final output.
  static void refuse(const std::string& id, int64_t n, const OutputCallback& cb) {
    RequestOutput out;
    out.request_id = id;
    out.finished = true;
    for (int64_t i = 0; i < n; ++i) {
      CompletionOutput c;
      c.index = i;
      c.finish_reason = FinishReason::kAbort;
      out.outputs.push_back(c);
    }
    cb(std::move(out));
  }

  void loop() {
    for (;;) {
      std::deque<Pending> pending;
      std::vector<std::string> aborts;
      bool abort_all = false;
      bool stopped = false;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopped_ || abort_all_ || !pending_.empty() || !aborts_.empty() || live_ > 0; });
        pending.swap(pending_);
        aborts.swap(aborts_);
        abort_all = abort_all_;
        stopped = stopped_;
      }
      for (Pending& p : pending) {
        const std::string id = p.request.request_id;
        const int64_t n = p.request.params.n;
        if (abort_all) {
          refuse(id, n, p.cb);
          continue;
        }
        try {
          engine_.add_request(std::move(p.request));
          callbacks_.emplace(id, std::move(p.cb));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "pagoda: request %s refused: %s\n", id.c_str(), e.what());
          refuse(id, n, p.cb);
        }
      }
      for (const std::string& id : aborts)
        engine_.abort(id);
      if (abort_all) {
        for (const auto& [id, cb] : callbacks_)
          engine_.abort(id);
      }
      if (engine_.has_unfinished()) {
        try {
          std::vector<RequestOutput> outs = engine_.step();
          publish_stats();
          deliver(outs);
        } catch (const std::exception& e) {
          // A failed step must not take the server down: every live request ends (abort) and
          // the engine carries on with new ones.
          std::fprintf(stderr, "pagoda: engine step failed: %s; aborting %zu requests\n", e.what(), callbacks_.size());
          for (const auto& [id, cb] : callbacks_)
            engine_.abort(id);
          try {
            std::vector<RequestOutput> outs = engine_.step();
            deliver(outs);
          } catch (const std::exception& e2) {
            std::fprintf(stderr, "pagoda: engine could not recover: %s\n", e2.what());
          }
        }
      }
      {
        std::lock_guard lock(mu_);
        stats_ = engine_.stats();
        live_ = static_cast<int64_t>(callbacks_.size());
        if (live_ == 0 && pending_.empty()) idle_cv_.notify_all();
        if (stopped && live_ == 0 && pending_.empty()) return;
      }
    }
  }

  int64_t max_waiting_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Pending> pending_;
  std::vector<std::string> aborts_;
  bool accepting_ = true;
  bool abort_all_ = false;
  bool stopped_ = false;
  int64_t live_ = 0;
  EngineStats stats_;
  std::unordered_map<std::string, OutputCallback> callbacks_;  // engine thread only
  std::thread thread_;
};

AsyncEngine::AsyncEngine(const EngineArgs& args, int64_t max_waiting_requests)
    : impl_(std::make_unique<Impl>(args, max_waiting_requests)) {}
AsyncEngine::~AsyncEngine() = default;

void AsyncEngine::add_request(EngineRequest request, OutputCallback on_output) {
  impl_->add(std::move(request), std::move(on_output));
}
void AsyncEngine::abort(const std::string& request_id) {
  impl_->abort(request_id);
}
void AsyncEngine::shutdown(double timeout_s) {
  impl_->shutdown(timeout_s);
}
EngineStats AsyncEngine::stats() const {
  return impl_->stats();
}
const tokenizer::Tokenizer& AsyncEngine::tokenizer() const {
  const tokenizer::Tokenizer* tok = impl_->engine_.tokenizer();
  if (tok == nullptr) fail(ErrorCode::kInvalidArgument, "the model has no tokenizer");
  return *tok;
}
const model::ModelConfig& AsyncEngine::model_config() const {
  return impl_->engine_.model_config();
}
int64_t AsyncEngine::max_model_len() const {
  return impl_->engine_.max_model_len();
}
int64_t AsyncEngine::vocab_size() const {
  return impl_->engine_.vocab_size();
}
std::string AsyncEngine::cache_summary() const {
  const CacheInfo& c = impl_->engine_.cache_info();
  return fmt::format("KV cache: {} blocks of {} tokens ({} tokens), {:.1f} MiB {}", c.num_blocks, c.block_size,
                     c.num_tokens, static_cast<double>(c.bytes) / (1 << 20), c.dtype);
}
std::string AsyncEngine::apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  return impl_->engine_.apply_chat_template(messages, add_generation_prompt);
}

}  // namespace pagoda::engine
