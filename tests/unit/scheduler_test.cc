// The scheduler as a pure function of its inputs: budgets, chunked prefill, admission order,
// preemption by recompute, prefix reuse, forks with copy-on-write, and a randomized workload that
// checks the block manager's books after every step and that nothing leaks.

#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "core/error.h"

namespace pagoda::engine {
namespace {

SchedulerConfig config(int64_t blocks, int64_t block_size = 4, int64_t batched = 64, int64_t seqs = 8) {
  SchedulerConfig c;
  c.num_blocks = blocks;
  c.block_size = block_size;
  c.max_num_batched_tokens = batched;
  c.max_num_seqs = seqs;
  c.max_model_len = 256;
  return c;
}

std::vector<int32_t> tokens(int64_t n, int32_t first = 1) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = first + static_cast<int32_t>(i);
  return t;
}

// What the engine does after a step: sampled sequences get a token.
void finish_step(Scheduler& s, const SchedulerOutput& out, int32_t token = 7) {
  s.step_done(out);
  for (const ScheduledSeq& ss : out.seqs)
    if (ss.sample) s.append_token(ss.seq, token);
}

const ScheduledSeq* find(const SchedulerOutput& out, SeqId id) {
  for (const ScheduledSeq& ss : out.seqs)
    if (ss.seq == id) return &ss;
  return nullptr;
}

TEST(Scheduler, ChunksALongPromptUnderTheTokenBudget) {
  Scheduler s(config(64, 4, 32));
  s.add(1, tokens(100), 4);
  std::vector<int64_t> chunks;
  for (int i = 0; i < 4; ++i) {
    const SchedulerOutput out = s.schedule();
    ASSERT_EQ(out.seqs.size(), 1u);
    EXPECT_EQ(out.seqs[0].start, static_cast<int64_t>(chunks.size()) * 32);
    chunks.push_back(out.seqs[0].num_tokens);
    EXPECT_EQ(out.seqs[0].sample, i == 3);
    EXPECT_LE(out.num_batched_tokens, 32);
    finish_step(s, out);
  }
  EXPECT_EQ(chunks, (std::vector<int64_t>{32, 32, 32, 4}));
  // Then one token per step.
  const SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);
  EXPECT_EQ(out.seqs[0].start, 100);
  EXPECT_EQ(out.seqs[0].num_tokens, 1);
  EXPECT_TRUE(out.seqs[0].sample);
}

TEST(Scheduler, DecodesGoFirstAndPrefillChunksFillTheRest) {
  Scheduler s(config(64, 4, 16));
  s.add(1, tokens(5), 10);
  finish_step(s, s.schedule());  // 1 computes its prompt
  s.add(2, tokens(40, 100), 4);
  const SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 2u);
  EXPECT_EQ(out.seqs[0].seq, 1);
  EXPECT_EQ(out.seqs[0].num_tokens, 1);
  EXPECT_EQ(out.seqs[1].seq, 2);
  EXPECT_EQ(out.seqs[1].num_tokens, 15);
  EXPECT_FALSE(out.seqs[1].sample);
  EXPECT_EQ(out.num_batched_tokens, 16);
}

TEST(Scheduler, WithoutChunkingAPromptIsNeverSplit) {
  SchedulerConfig c = config(64, 4, 16);
  c.enable_chunked_prefill = false;
  c.max_model_len = 64;
  Scheduler s(c);
  s.add(1, tokens(40), 4);  // longer than the 16-token budget: the budget stretches to max_model_len
  s.add(2, tokens(30, 50), 4);
  SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);  // 40 + 30 > 64
  EXPECT_EQ(out.seqs[0].num_tokens, 40);
  finish_step(s, out);
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 2u);
  EXPECT_EQ(find(out, 2)->num_tokens, 30);
}

TEST(Scheduler, RespectsMaxNumSeqsFirstComeFirstServed) {
  Scheduler s(config(256, 4, 1000, 3));
  for (SeqId i = 1; i <= 6; ++i)
    s.add(i, tokens(3, static_cast<int32_t>(i * 10)), 5);
  const SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 3u);
  EXPECT_EQ(out.seqs[0].seq, 1);
  EXPECT_EQ(out.seqs[1].seq, 2);
  EXPECT_EQ(out.seqs[2].seq, 3);
  EXPECT_EQ(s.num_running(), 3);
  EXPECT_EQ(s.num_waiting(), 3);
  finish_step(s, out);
  s.remove(2);
  const SchedulerOutput next = s.schedule();
  EXPECT_NE(find(next, 4), nullptr);
  EXPECT_EQ(find(next, 5), nullptr);
}

TEST(Scheduler, PreemptsTheNewestSequenceAndRecomputesIt) {
  // 6 blocks of 4 tokens; three sequences of 7 prompt tokens take 2 blocks each.
  SchedulerConfig c = config(6, 4, 64);
  c.enable_prefix_caching = false;
  Scheduler s(c);
  s.add(1, tokens(7, 10), 12);
  s.add(2, tokens(7, 30), 12);
  s.add(3, tokens(7, 50), 12);
  SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 3u);
  finish_step(s, out);  // each holds 8 tokens now: 7 computed
  out = s.schedule();   // each computes token 8: still 2 blocks each
  ASSERT_EQ(out.seqs.size(), 3u);
  EXPECT_TRUE(out.preempted.empty());
  finish_step(s, out);
  // Token 9 needs a third block for each: 1 takes the newest sequence's (3 is preempted), 2
  // takes the other block 3 released.
  out = s.schedule();
  EXPECT_EQ(out.preempted, (std::vector<SeqId>{3}));
  ASSERT_EQ(out.seqs.size(), 2u);
  EXPECT_EQ(out.seqs[0].seq, 1);
  EXPECT_EQ(out.seqs[1].seq, 2);
  EXPECT_EQ(s.num_preemptions(), 1);
  EXPECT_EQ(s.sequence(3).num_computed, 0);
  EXPECT_EQ(s.sequence(3).status, SeqStatus::kWaiting);
  finish_step(s, out);
  // Token 10 fits the third blocks; token 13 needs fourth blocks: 2 is preempted and 1 goes on.
  for (int i = 0; i < 3; ++i) {
    out = s.schedule();
    EXPECT_TRUE(out.preempted.empty());
    EXPECT_EQ(find(out, 3), nullptr);  // no room to come back yet
    finish_step(s, out);
  }
  out = s.schedule();
  EXPECT_EQ(out.preempted, (std::vector<SeqId>{2}));
  finish_step(s, out);
  // When 1 finishes, the preempted sequences come back in their order (2 was preempted last,
  // so it is first), each computing again every token it holds.
  s.remove(1);
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);  // 2 takes 4 blocks; 3 would need 3 more
  EXPECT_EQ(out.seqs[0].seq, 2);
  EXPECT_EQ(out.seqs[0].start, 0);
  EXPECT_EQ(out.seqs[0].num_tokens, 13);  // 7 prompt + 6 generated
  EXPECT_TRUE(out.seqs[0].sample);
  finish_step(s, out);
  s.remove(2);
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);
  EXPECT_EQ(out.seqs[0].seq, 3);
  EXPECT_EQ(out.seqs[0].start, 0);
  EXPECT_EQ(out.seqs[0].num_tokens, 9);
}

TEST(Scheduler, AdmitsNothingInAStepThatPreempted) {
  SchedulerConfig c = config(4, 4, 64);
  c.enable_prefix_caching = false;
  Scheduler s(c);
  s.add(1, tokens(8, 10), 9);
  s.add(2, tokens(7, 30), 10);
  finish_step(s, s.schedule());  // 1: 2 blocks (8 tokens + 1 to come), 2: 2 blocks
  s.add(3, tokens(2, 60), 2);
  const SchedulerOutput out = s.schedule();  // 1 needs a third block: 2 is preempted
  EXPECT_EQ(out.preempted, (std::vector<SeqId>{2}));
  EXPECT_EQ(find(out, 3), nullptr);
}

TEST(Scheduler, RefusesWhatCanNeverFit) {
  Scheduler s(config(4, 4, 64));
  EXPECT_THROW(s.add(1, {}, 4), Error);
  EXPECT_THROW(s.add(2, tokens(300), 4), Error);  // past max_model_len
  try {
    s.add(3, tokens(10), 20);  // 30 tokens > 16 slots
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-memory"), std::string::npos) << e.what();
  }
  s.add(4, tokens(10), 6);  // 15 tokens of cache: fits
  EXPECT_THROW(s.add(4, tokens(2), 1), Error);
}

TEST(Scheduler, SecondRequestComputesOnlyTheTokensAfterASharedPrefix) {
  Scheduler s(config(64, 4, 256));
  std::vector<int32_t> a = tokens(50);
  s.add(1, a, 1);
  SchedulerOutput out = s.schedule();
  EXPECT_EQ(out.seqs[0].num_tokens, 50);
  finish_step(s, out);
  s.remove(1);  // finished; its full blocks stay cached
  std::vector<int32_t> b(a.begin(), a.begin() + 45);
  for (int32_t t : {900, 901, 902, 903, 904, 905})
    b.push_back(t);
  s.add(2, b, 1);
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);
  // 11 full blocks (44 tokens) of the shared 45 are reused.
  EXPECT_EQ(out.seqs[0].start, 44);
  EXPECT_EQ(out.seqs[0].num_tokens, 51 - 44);
  EXPECT_EQ(s.sequence(2).num_cached_prompt_tokens, 44);
  EXPECT_EQ(s.block_manager().prefix_cache_stats().hits, 44);
}

TEST(Scheduler, ForkedSamplesCopyTheSharedPartialBlock) {
  Scheduler s(config(32, 4, 64));
  s.add(1, tokens(6), 5, true, 3);
  SchedulerOutput out = s.schedule();
  s.step_done(out);
  s.fork(1, 2);
  s.fork(1, 3);
  s.append_token(1, 100);
  s.append_token(2, 200);
  s.append_token(3, 300);
  const std::vector<int32_t> parent(s.block_table(1).begin(), s.block_table(1).end());
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 3u);
  // Position 6 lies in the second block, shared by all three: two of them get copies.
  EXPECT_EQ(out.copies.size(), 2u);
  for (const BlockCopy& c : out.copies)
    EXPECT_EQ(c.src, parent[1]);
  std::set<int32_t> second;
  for (SeqId id : {1, 2, 3}) {
    EXPECT_EQ(s.block_table(id)[0], parent[0]);  // the full block stays shared
    second.insert(s.block_table(id)[1]);
  }
  EXPECT_EQ(second.size(), 3u);
  finish_step(s, out);
  EXPECT_TRUE(s.schedule().copies.empty());
}

TEST(Scheduler, LongropeBoundaryRecomputesTheWholeSequenceOnce) {
  SchedulerConfig c = config(64, 4, 8);
  c.recompute_boundary = 10;
  Scheduler s(c);
  s.add(1, tokens(9), 10);
  SchedulerOutput out = s.schedule();  // 8 of 9 (budget 8)
  finish_step(s, out);
  out = s.schedule();  // the 9th
  EXPECT_EQ(out.seqs[0].start, 8);
  finish_step(s, out);  // holds 10 tokens, 9 computed
  out = s.schedule();   // computes the 10th: still within the boundary
  EXPECT_EQ(out.seqs[0].start, 9);
  finish_step(s, out);  // holds 11 > 10: everything again, in one step past the budget
  out = s.schedule();
  ASSERT_EQ(out.seqs.size(), 1u);
  EXPECT_EQ(out.seqs[0].start, 0);
  EXPECT_EQ(out.seqs[0].num_tokens, 11);
  finish_step(s, out);
  out = s.schedule();
  EXPECT_EQ(out.seqs[0].start, 11);
  EXPECT_EQ(out.seqs[0].num_tokens, 1);
}

// A random workload against a small cache, checking after every step: budgets, that every
// scheduled sequence's table covers what it computes, that tokens go where its table says
// (a shadow cache records which token each slot holds and every computed token is read back),
// the block manager's books; and at the end that every block is free again.
TEST(Scheduler, RandomWorkloadKeepsTheBooksAndLeaksNothing) {
  int64_t preemptions = 0;
  int64_t hits = 0;
  int64_t copies = 0;
  for (uint64_t seed : {1u, 2u, 3u}) {
    std::mt19937_64 rng(seed);
    SchedulerConfig c = config(24, 4, 24, 6);
    c.max_model_len = 64;
    c.enable_prefix_caching = seed != 3;
    Scheduler s(c);
    std::map<SeqId, int64_t> budget_left;  // tokens each sequence may still generate
    std::vector<int32_t> shadow(static_cast<size_t>(c.num_blocks * c.block_size), -1);
    SeqId next = 1;
    int64_t ops = 0;
    auto pick = [&](auto& container) {
      auto it = container.begin();
      std::advance(it, static_cast<long>(rng() % container.size()));
      return it;
    };
    while (ops < 4000) {
      const uint64_t r = rng() % 10;
      if (r < 3 && budget_left.size() < 12) {
        // Prompts from a tiny vocabulary, so that prefixes repeat.
        std::vector<int32_t> prompt(1 + rng() % 30);
        for (int32_t& t : prompt)
          t = static_cast<int32_t>(rng() % 3);
        const int64_t max_new = 1 + static_cast<int64_t>(rng() % 20);
        s.add(next, prompt, max_new, true, 1 + static_cast<int64_t>(rng() % 3));
        budget_left[next] = max_new;
        ++next;
      } else if (r < 4 && !budget_left.empty()) {
        auto it = pick(budget_left);
        s.remove(it->first);  // abort
        budget_left.erase(it);
      } else {
        const SchedulerOutput out = s.schedule();
        ASSERT_LE(out.num_batched_tokens, c.max_num_batched_tokens);
        ASSERT_LE(s.num_running(), c.max_num_seqs);
        ASSERT_LE(s.num_running_seats(), c.max_num_seqs);
        copies += static_cast<int64_t>(out.copies.size());
        for (const BlockCopy& cp : out.copies) {
          for (int64_t k = 0; k < c.block_size; ++k)
            shadow[static_cast<size_t>(cp.dst * c.block_size + k)] =
                shadow[static_cast<size_t>(cp.src * c.block_size + k)];
        }
        for (const ScheduledSeq& ss : out.seqs) {
          const Sequence& q = s.sequence(ss.seq);
          const auto table = s.block_table(ss.seq);
          ASSERT_GE(static_cast<int64_t>(table.size()) * c.block_size, ss.start + ss.num_tokens);
          for (int64_t p = ss.start; p < ss.start + ss.num_tokens; ++p) {
            shadow[static_cast<size_t>(table[static_cast<size_t>(p / c.block_size)] * c.block_size +
                                       p % c.block_size)] = q.tokens[static_cast<size_t>(p)];
          }
        }
        // Every computed token of every scheduled sequence reads back from its table.
        for (const ScheduledSeq& ss : out.seqs) {
          const Sequence& q = s.sequence(ss.seq);
          const auto table = s.block_table(ss.seq);
          for (int64_t p = 0; p < ss.start + ss.num_tokens; ++p) {
            ASSERT_EQ(shadow[static_cast<size_t>(table[static_cast<size_t>(p / c.block_size)] * c.block_size +
                                                 p % c.block_size)],
                      q.tokens[static_cast<size_t>(p)])
                << "seed " << seed << " op " << ops << " seq " << ss.seq << " position " << p;
          }
        }
        s.step_done(out);
        for (const ScheduledSeq& ss : out.seqs) {
          if (!ss.sample) continue;
          const SeqId id = ss.seq;
          const int32_t tok = static_cast<int32_t>(rng() % 3);
          s.append_token(id, tok);
          int64_t& left = budget_left.at(id);
          --left;
          const Sequence& q = s.sequence(id);
          if (left == 0 || static_cast<int64_t>(q.tokens.size()) >= q.max_len || rng() % 8 == 0) {
            if (left > 0 && q.seats > 1 && rng() % 2 == 0) {
              // n > 1: a copy of this sequence continues beside it.
              s.fork(id, next);
              budget_left[next] = left;
              ++next;
            } else {
              s.remove(id);
              budget_left.erase(id);
            }
          }
        }
      }
      s.block_manager().check_invariants();
      ++ops;
    }
    for (const auto& [id, left] : budget_left)
      s.remove(id);
    s.block_manager().check_invariants();
    EXPECT_EQ(s.block_manager().num_free_blocks(), c.num_blocks) << "seed " << seed;
    EXPECT_EQ(s.block_manager().usage(), 0.0);
    EXPECT_FALSE(s.has_unfinished());
    preemptions += s.num_preemptions();
    hits += s.block_manager().prefix_cache_stats().hits;
  }
  // The workload reached every path: preemptions, prefix hits and copy-on-write.
  EXPECT_GT(preemptions, 0);
  EXPECT_GT(hits, 0);
  EXPECT_GT(copies, 0);
}

}  // namespace
}  // namespace pagoda::engine
