#pragma once

// Continuous batching: each step, the scheduler picks which sequences compute how many tokens,
// under max_num_seqs running sequences and max_num_batched_tokens tokens per step. Pure logic
// over the block manager; the engine runs what it returns.
//
// A sequence holds its tokens (prompt, then generated) and how many of them are computed (their
// keys and values in the cache). Each step computes the next tokens of some sequences: a
// decode (one token), a whole prompt, or a chunk of one (chunked prefill). When a step computes
// a sequence's last known token, its logits are sampled and the engine appends the new token.
//
// Policy (first come, first served, as vLLM's): running sequences first, in the order they were
// admitted; then waiting ones, oldest first, while seats, tokens and blocks last. When a running
// sequence needs a block and none is free, the most recently admitted running sequence is
// preempted: its blocks are released and it goes back to the front of the waiting queue, to be
// computed again from its first token (preemption by recompute). No waiting sequence is admitted
// in a step that preempted.

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"

namespace pagoda::engine {

struct SchedulerConfig {
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  // Tokens a sequence may hold (prompt and generated).
  int64_t max_model_len = 0;
  // Off: a prompt is computed whole in one step (the token budget then stretches to
  // max_model_len so that any prompt fits a step).
  bool enable_chunked_prefill = true;
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  bool enable_prefix_caching = true;
  // See model::Model::recompute_boundary (longrope): a sequence that grows past it is computed
  // again whole, in one step; prefix caching is off for such models.
  int64_t recompute_boundary = 0;
};

enum class SeqStatus { kWaiting, kRunning };

struct Sequence {
  SeqId id = 0;
  std::vector<int32_t> tokens;  // prompt, then generated
  int64_t prompt_len = 0;
  int64_t num_computed = 0;  // tokens[0 : num_computed] are in the cache
  int64_t max_len = 0;       // the most tokens it will ever hold
  SeqStatus status = SeqStatus::kWaiting;
  bool use_prefix_cache = true;
  // Running seats it takes: n for a request's first sequence until its samples fork, else 1.
  int64_t seats = 1;
  int64_t num_cached_prompt_tokens = 0;  // found in the prefix cache when first admitted
  int64_t num_preemptions = 0;
  bool admitted_once = false;
};

struct ScheduledSeq {
  SeqId seq = 0;
  int64_t start = 0;  // first token computed: tokens[start : start + num_tokens]
  int64_t num_tokens = 0;
  bool sample = false;  // the step computes the sequence's last token: sample from its logits
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;
  // Block copies (copy-on-write) to do before the step runs.
  std::vector<BlockCopy> copies;
  std::vector<SeqId> preempted;
  int64_t num_batched_tokens = 0;
  [[nodiscard]] bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config);

  // Queues a new sequence that will hold at most prompt.size() + max_new_tokens tokens (capped
  // at max_model_len). `seats`: the samples (n) it will fork into, which are admitted together.
  // Throws Error(kInvalidArgument) for an empty prompt, a prompt longer than max_model_len, one
  // that could never fit the cache even alone, or more seats than max_num_seqs.
  void add(SeqId id, std::vector<int32_t> prompt, int64_t max_new_tokens, bool use_prefix_cache = true,
           int64_t seats = 1);

  // `child` becomes a running copy of `parent` sharing all its blocks (n > 1 samples), taking one
  // of the parent's seats; it runs after every sequence running now.
  void fork(SeqId parent, SeqId child);

  // A token sampled for `seq`.
  void append_token(SeqId seq, int32_t token);

  // Removes the sequence (finished or aborted) and frees its blocks; unknown ids are ignored.
  void remove(SeqId seq);

  // The next step. Advances num_computed of every scheduled sequence.
  [[nodiscard]] SchedulerOutput schedule();
  // After the step ran: registers the newly computed full blocks in the prefix cache.
  void step_done(const SchedulerOutput& out);

  [[nodiscard]] const Sequence& sequence(SeqId seq) const;
  [[nodiscard]] bool contains(SeqId seq) const { return seqs_.count(seq) != 0; }
  [[nodiscard]] std::span<const int32_t> block_table(SeqId seq) const { return blocks_.block_table(seq); }
  [[nodiscard]] int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  [[nodiscard]] int64_t num_running_seats() const { return running_seats_; }
  [[nodiscard]] int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  [[nodiscard]] bool has_unfinished() const { return !seqs_.empty(); }
  [[nodiscard]] int64_t num_preemptions() const { return num_preemptions_; }
  [[nodiscard]] const BlockManager& block_manager() const { return blocks_; }
  [[nodiscard]] const SchedulerConfig& config() const { return config_; }
  // The blocks a sequence of `num_tokens` tokens needs.
  [[nodiscard]] int64_t blocks_for(int64_t num_tokens) const;

 private:
  void preempt(SeqId seq, SchedulerOutput& out);
  // Tokens to compute for a running or admitted sequence within `budget`; 0: none this step.
  [[nodiscard]] int64_t tokens_to_compute(Sequence& s, int64_t budget, bool first_in_step) const;

  SchedulerConfig config_;
  BlockManager blocks_;
  std::unordered_map<SeqId, Sequence> seqs_;
  std::vector<SeqId> running_;  // admission order
  std::deque<SeqId> waiting_;   // arrival order; preempted ones at the front
  int64_t running_seats_ = 0;
  int64_t num_preemptions_ = 0;
};

}  // namespace pagoda::engine
