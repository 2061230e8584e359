#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace pagoda::engine {

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config),
      blocks_(config.num_blocks, config.block_size, config.enable_prefix_caching && config.recompute_boundary == 0) {
  if (config_.max_num_seqs < 1)
    fail(ErrorCode::kInvalidArgument, "max_num_seqs must be at least 1, got {}", config_.max_num_seqs);
  if (config_.max_num_batched_tokens < 1) {
    fail(ErrorCode::kInvalidArgument, "max_num_batched_tokens must be at least 1, got {}",
         config_.max_num_batched_tokens);
  }
  if (config_.max_model_len < 1)
    fail(ErrorCode::kInvalidArgument, "max_model_len must be at least 1, got {}", config_.max_model_len);
  // Prefix-cached blocks computed before a longrope switch would be wrong after it.
  if (config_.recompute_boundary > 0) config_.enable_prefix_caching = false;
}

int64_t Scheduler::blocks_for(int64_t num_tokens) const {
  return (num_tokens + config_.block_size - 1) / config_.block_size;
}

void Scheduler::add(SeqId id, std::vector<int32_t> prompt, int64_t max_new_tokens, bool use_prefix_cache,
                    int64_t seats) {
  if (seqs_.count(id) != 0) fail(ErrorCode::kInvalidArgument, "sequence {} was already added", id);
  if (seats < 1 || seats > config_.max_num_seqs) {
    fail(ErrorCode::kInvalidArgument, "{} parallel samples do not fit max_num_seqs {}", seats, config_.max_num_seqs);
  }
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len == 0) fail(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (prompt_len > config_.max_model_len) {
    fail(ErrorCode::kInvalidArgument, "the prompt has {} tokens, more than the maximum context length of {} tokens",
         prompt_len, config_.max_model_len);
  }
  if (max_new_tokens < 1)
    fail(ErrorCode::kInvalidArgument, "max_new_tokens must be at least 1, got {}", max_new_tokens);
  const int64_t max_len = std::min(config_.max_model_len, prompt_len + std::min(max_new_tokens, config_.max_model_len));
  // The last token sampled is never computed, so the cache holds at most max_len - 1 tokens.
  const int64_t need = blocks_for(std::max<int64_t>(max_len - 1, prompt_len));
  if (need > config_.num_blocks) {
    fail(ErrorCode::kInvalidArgument,
         "a sequence of {} tokens needs {} KV cache blocks of {} tokens, but the cache has only {}; give the cache "
         "more memory (--kv-cache-memory) or lower the maximum length",
         max_len, need, config_.block_size, config_.num_blocks);
  }
  Sequence s;
  s.id = id;
  s.tokens = std::move(prompt);
  s.prompt_len = prompt_len;
  s.max_len = max_len;
  s.use_prefix_cache = use_prefix_cache && config_.enable_prefix_caching;
  s.seats = seats;
  seqs_.emplace(id, std::move(s));
  waiting_.push_back(id);
}

void Scheduler::fork(SeqId parent, SeqId child) {
  const Sequence& p = sequence(parent);
  if (p.status != SeqStatus::kRunning) fail(ErrorCode::kInternal, "fork of sequence {}, which is not running", parent);
  if (seqs_.count(child) != 0) fail(ErrorCode::kInternal, "fork into sequence {}, which exists", child);
  if (p.seats < 2) fail(ErrorCode::kInternal, "fork of sequence {}, which has no seat left to give", parent);
  Sequence c = p;
  c.id = child;
  c.seats = 1;
  seqs_.at(parent).seats -= 1;
  blocks_.fork(parent, child);
  seqs_.emplace(child, std::move(c));
  running_.push_back(child);
}

void Scheduler::append_token(SeqId seq, int32_t token) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail(ErrorCode::kInternal, "token for unknown sequence {}", seq);
  it->second.tokens.push_back(token);
}

void Scheduler::remove(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  blocks_.free(seq);
  if (it->second.status == SeqStatus::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
    running_seats_ -= it->second.seats;
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
  }
  seqs_.erase(it);
}

const Sequence& Scheduler::sequence(SeqId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail(ErrorCode::kInternal, "unknown sequence {}", seq);
  return it->second;
}

int64_t Scheduler::tokens_to_compute(Sequence& s, int64_t budget, bool first_in_step) const {
  const auto held = static_cast<int64_t>(s.tokens.size());
  const int64_t boundary = config_.recompute_boundary;
  if (boundary > 0 && held > boundary && s.num_computed <= boundary) {
    // Past the boundary every token's rotation changes: compute the whole sequence in one step
    // (alone in a step if it is longer than the budget, so that it always makes progress).
    if (held > budget && !first_in_step) return 0;
    return held;
  }
  const int64_t remaining = held - s.num_computed;
  if (remaining <= 0) return 0;
  if (remaining > budget) return config_.enable_chunked_prefill ? budget : 0;
  return remaining;
}

void Scheduler::preempt(SeqId seq, SchedulerOutput& out) {
  Sequence& s = seqs_.at(seq);
  blocks_.free(seq);
  s.num_computed = 0;
  s.status = SeqStatus::kWaiting;
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  running_seats_ -= s.seats;
  waiting_.push_front(seq);
  ++s.num_preemptions;
  ++num_preemptions_;
  out.preempted.push_back(seq);
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int64_t budget = config_.enable_chunked_prefill ? config_.max_num_batched_tokens
                                                  : std::max(config_.max_num_batched_tokens, config_.max_model_len);
  auto place = [&](Sequence& s, int64_t n) -> bool {
    // A whole recompute (longrope boundary) starts from an empty table.
    const bool restart = n == static_cast<int64_t>(s.tokens.size()) && s.num_computed > 0;
    const int64_t start = restart ? 0 : s.num_computed;
    if (restart) blocks_.free(s.id);
    if (!blocks_.allocate(s.id, start + n, out.copies)) {
      if (restart) s.num_computed = 0;
      return false;
    }
    const bool sample = start + n == static_cast<int64_t>(s.tokens.size());
    out.seqs.push_back({s.id, start, n, sample});
    out.num_batched_tokens += n;
    s.num_computed = start + n;
    return true;
  };

  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    const SeqId id = running_[i];
    Sequence& s = seqs_.at(id);
    const int64_t n = tokens_to_compute(s, budget, out.seqs.empty());
    if (n == 0) {
      ++i;
      continue;
    }
    bool placed = place(s, n);
    while (!placed) {
      // Out of blocks: the most recently admitted sequence makes room (possibly this one).
      const SeqId victim = running_.back();
      preempt(victim, out);
      preempted = true;
      if (victim == id) break;
      placed = place(s, n);
    }
    if (!placed) continue;  // this sequence was preempted; running_[i] is the next one
    budget -= n;
    ++i;
  }

  while (!preempted && !waiting_.empty() && budget > 0 && running_seats_ < config_.max_num_seqs) {
    const SeqId id = waiting_.front();
    Sequence& s = seqs_.at(id);
    if (running_seats_ + s.seats > config_.max_num_seqs) break;
    if (s.num_computed == 0 && s.use_prefix_cache && blocks_.block_table(id).empty()) {
      s.num_computed = blocks_.attach_cached_prefix(id, s.tokens);
      if (!s.admitted_once) s.num_cached_prompt_tokens = s.num_computed;
    }
    const int64_t n = tokens_to_compute(s, budget, out.seqs.empty());
    if (n == 0 || !place(s, n)) {
      blocks_.free(id);
      s.num_computed = 0;
      break;
    }
    budget -= n;
    waiting_.pop_front();
    s.status = SeqStatus::kRunning;
    s.admitted_once = true;
    running_.push_back(id);
    running_seats_ += s.seats;
  }
  return out;
}

void Scheduler::step_done(const SchedulerOutput& out) {
  for (const ScheduledSeq& ss : out.seqs) {
    auto it = seqs_.find(ss.seq);
    if (it == seqs_.end() || it->second.status != SeqStatus::kRunning) continue;
    blocks_.commit(ss.seq, it->second.tokens, std::min<int64_t>(it->second.num_computed, ss.start + ss.num_tokens));
  }
}

}  // namespace pagoda::engine
