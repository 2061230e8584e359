// The engine end to end on the tiny golden checkpoints of tests/data/golden (made by transformers):
// outputs against transformers' greedy tokens, batch invariance under every scheduling mode,
// prefix reuse, n > 1, stop conditions, logprobs and aborts, through the public LLM API and
// LLMEngine.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/llm_engine.h"
#include "model/loader/model_files.h"
#include "model/model.h"
#include "pagoda/llm.h"
#include "worker/model_runner.h"
#include "worker/static_batch.h"

#if defined(__SANITIZE_ADDRESS__)
#define PAGODA_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAGODA_TEST_ASAN 1
#endif
#endif
#ifndef PAGODA_TEST_ASAN
#define PAGODA_TEST_ASAN 0
#endif

namespace pagoda {
namespace {

std::string golden(const std::string& name) {
  return std::string(PAGODA_TEST_DATA_DIR) + "/golden/" + name;
}

std::vector<std::string> golden_cases() {
  std::vector<std::string> cases;
  for (const auto& e : std::filesystem::directory_iterator(std::string(PAGODA_TEST_DATA_DIR) + "/golden")) {
    if (std::filesystem::exists(e.path() / "expected.json")) cases.push_back(e.path().filename().string());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

nlohmann::json expected(const std::string& name) {
  std::ifstream f(golden(name) + "/expected.json");
  return nlohmann::json::parse(f);
}

SamplingParams greedy(int64_t max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

EngineArgs args_for(const std::string& name) {
  EngineArgs a;
  a.model = golden(name);
  a.kv_cache_memory = 16 << 20;
  return a;
}

TEST(Engine, GreedyTokensMatchTransformersForEveryGoldenModel) {
  for (const std::string& name : golden_cases()) {
    SCOPED_TRACE(name);
    const nlohmann::json exp = expected(name);
    LLM llm(args_for(name));
    std::vector<Prompt> prompts;
    for (const auto& p : exp["prompts"])
      prompts.emplace_back(p["prompt_ids"].get<std::vector<int32_t>>());
    const std::vector<RequestOutput> outs = llm.generate(prompts, greedy(exp["max_new_tokens"].get<int64_t>()));
    ASSERT_EQ(outs.size(), prompts.size());
    for (size_t i = 0; i < outs.size(); ++i) {
      EXPECT_EQ(outs[i].outputs.at(0).token_ids, exp["prompts"][i]["generated_ids"].get<std::vector<int32_t>>());
      EXPECT_EQ(outs[i].outputs[0].finish_reason, FinishReason::kLength);
      EXPECT_TRUE(outs[i].finished);
    }
  }
}

// 64 requests of mixed lengths, some sharing prefixes, each with its own budget.
struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
};

Workload mixed_workload(int64_t vocab, int64_t context, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Workload w;
  const int64_t max_prompt = std::min<int64_t>(40, context / 2);
  const int64_t max_new = std::min<int64_t>(20, context / 2 - 1);
  std::vector<int32_t> shared(static_cast<size_t>(max_prompt));
  for (int32_t& t : shared)
    t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  for (int i = 0; i < 64; ++i) {
    const auto len = static_cast<size_t>(1 + rng() % static_cast<uint64_t>(max_prompt));
    std::vector<int32_t> ids(len);
    const size_t common = i % 3 == 0 ? std::min(len - 1, shared.size()) : 0;  // a third share a prefix
    for (size_t k = 0; k < len; ++k)
      ids[k] = k < common ? shared[k] : static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
    w.prompts.push_back(std::move(ids));
    w.params.push_back(greedy(1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_new))));
  }
  return w;
}

// Runs every prompt through the engine at once; outputs in order.
std::vector<RequestOutput> run_all(engine::LLMEngine& e, const std::vector<std::vector<int32_t>>& prompts,
                                   const std::vector<SamplingParams>& params) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::EngineRequest r;
    r.request_id = std::to_string(i);
    r.prompt_token_ids = prompts[i];
    r.params = params[i];
    e.add_request(std::move(r));
  }
  std::vector<RequestOutput> outs(prompts.size());
  while (e.has_unfinished()) {
    for (RequestOutput& o : e.step()) {
      if (o.finished) outs[std::stoul(o.request_id)] = std::move(o);
    }
  }
  return outs;
}

std::vector<std::vector<int32_t>> token_ids(const std::vector<RequestOutput>& outs) {
  std::vector<std::vector<int32_t>> ids;
  for (const RequestOutput& o : outs)
    ids.push_back(o.outputs.at(0).token_ids);
  return ids;
}

void check_batch_invariance(const std::string& device, const std::vector<std::string>& cases) {
  for (const std::string& name : cases) {
    SCOPED_TRACE(name + " on " + device);
    const ModelFiles files = ModelFiles::open(golden(name));
    int64_t context = std::min<int64_t>(model::context_length(files.config()), 96);
    if (files.config().rope.type == model::RopeType::kDynamic) {
      // Dynamic NTK as transformers computes it rotates each new token with a base set by the
      // sequence's length when the token is computed, so past max_position_embeddings the
      // output depends on how the sequence was split into steps (chunks, recomputation after
      // preemption), in transformers as here. Within it every split agrees.
      context = std::min<int64_t>(context, files.config().max_position_embeddings);
    }
    const Workload w = mixed_workload(files.config().vocab_size, context, 42);

    EngineArgs base = args_for(name);
    base.device = device;
    base.max_model_len = context;
    base.enable_prefix_caching = false;
    std::vector<std::vector<int32_t>> alone;
    {
      engine::LLMEngine e(base);
      for (size_t i = 0; i < w.prompts.size(); ++i)
        alone.push_back(run_all(e, {w.prompts[i]}, {w.params[i]}).at(0).outputs.at(0).token_ids);
    }
    struct Mode {
      const char* what;
      bool prefix;
      bool chunked;
      int64_t batched;
      int64_t cache_tokens;  // 0: plenty
    };
    const Mode modes[] = {
        {"prefix caching, chunked prefill", true, true, 64, 0},
        {"no prefix caching, no chunked prefill", false, false, 64, 0},
        {"prefix caching, chunked prefill, small cache", true, true, 32, context + 16},
        {"no prefix caching, chunked prefill, small cache", false, true, 48, context + 16},
    };
    for (const Mode& m : modes) {
      SCOPED_TRACE(m.what);
      EngineArgs a = base;
      a.enable_prefix_caching = m.prefix;
      a.enable_chunked_prefill = m.chunked;
      a.max_num_batched_tokens = m.batched;
      a.max_num_seqs = 64;
      if (m.cache_tokens > 0) {
        a.kv_cache_memory = (m.cache_tokens / a.block_size + 1) *
                            worker::ModelRunner::block_bytes(files.config(), a.block_size, DType::kF32);
      }
      engine::LLMEngine e(a);
      const std::vector<RequestOutput> outs = run_all(e, w.prompts, w.params);
      EXPECT_EQ(token_ids(outs), alone);
      const engine::EngineStats s = e.stats();
      if (m.cache_tokens > 0) {
        EXPECT_GT(s.num_preemptions, 0);
      }
      EXPECT_EQ(s.num_free_blocks, s.num_blocks);
      EXPECT_EQ(s.num_running + s.num_waiting, 0);
    }
  }
}

TEST(Engine, GreedyOutputIsTheSameAloneAndAmongSixtyThreeOthers) {
  check_batch_invariance("cpu", golden_cases());
}

TEST(Engine, XpuGreedyOutputIsTheSameAloneAndAmongSixtyThreeOthers) {
#if PAGODA_HAS_XPU
#if PAGODA_TEST_ASAN
  // Under the sanitizers PoCL runs about ten times slower: four models that cover dense, sliding
  // window and soft-cap, longrope and MoE here; the release build's run covers every model.
  std::cout << "[ NOTE     ] sanitizer build: xpu batch invariance on 4 of the golden models\n";
  check_batch_invariance("xpu", {"llama", "gemma2", "phi3", "qwen3_moe"});
#else
  // Every golden model on the first OpenCL device (PoCL in CI).
  check_batch_invariance("xpu", golden_cases());
#endif
#else
  GTEST_SKIP() << "the xpu backend is not built (configure with -DPAGODA_XPU=ON)";
#endif
}

TEST(Engine, SecondRequestSharingALongPrefixComputesOnlyItsNewTokens) {
  engine::LLMEngine e(args_for("llama"));
  std::vector<int32_t> a(60);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<int32_t>((i * 37 + 11) % 200);
  std::vector<int32_t> b(a.begin(), a.begin() + 50);
  for (int32_t t : {3, 4, 5, 6, 7})
    b.push_back(t);
  const auto first = run_all(e, {a}, {greedy(4)});
  const int64_t before = e.stats().prompt_tokens;
  EXPECT_EQ(before, 60);
  const auto second = run_all(e, {b}, {greedy(4)});
  // 3 full blocks of 16 tokens (48) are reused; the 7 tokens after them are computed.
  EXPECT_EQ(second[0].metrics.num_cached_prompt_tokens, 48);
  EXPECT_EQ(e.stats().prompt_tokens - before, 55 - 48);
  EXPECT_EQ(e.stats().prefix_cache_hits, 48);
  // The reused blocks give the same tokens as computing everything.
  EngineArgs cold = args_for("llama");
  cold.enable_prefix_caching = false;
  engine::LLMEngine fresh(cold);
  EXPECT_EQ(run_all(fresh, {b}, {greedy(4)})[0].outputs[0].token_ids, second[0].outputs[0].token_ids);
}

TEST(Engine, ParallelSamplesShareThePromptAndFollowTheirSeeds) {
  engine::LLMEngine e(args_for("llama"));
  const std::vector<int32_t> prompt = expected("llama")["prompts"][2]["prompt_ids"].get<std::vector<int32_t>>();
  SamplingParams p = greedy(10);
  p.n = 3;
  const RequestOutput g = run_all(e, {prompt}, {p})[0];
  ASSERT_EQ(g.outputs.size(), 3u);
  for (const CompletionOutput& c : g.outputs)
    EXPECT_EQ(c.token_ids, g.outputs[0].token_ids);  // greedy: all the same

  p.temperature = 1.0;
  p.seed = 1234;
  const RequestOutput s1 = run_all(e, {prompt}, {p})[0];
  const RequestOutput s2 = run_all(e, {prompt}, {p})[0];
  ASSERT_EQ(s1.outputs.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(s1.outputs[i].token_ids, s2.outputs[i].token_ids);
  EXPECT_NE(s1.outputs[0].token_ids, s1.outputs[1].token_ids);
  // Sample 0 of n is the sample of n = 1 with the same seed.
  SamplingParams one = p;
  one.n = 1;
  EXPECT_EQ(run_all(e, {prompt}, {one})[0].outputs[0].token_ids, s1.outputs[0].token_ids);
  EXPECT_EQ(e.stats().num_free_blocks, e.stats().num_blocks);
}

TEST(Engine, SeededSamplingDoesNotDependOnTheRestOfTheBatch) {
  const ModelFiles files = ModelFiles::open(golden("qwen2"));
  const Workload w = mixed_workload(files.config().vocab_size, 96, 7);
  SamplingParams p;
  p.temperature = 0.8;
  p.top_p = 0.9;
  p.max_tokens = 12;
  p.seed = 99;
  p.ignore_eos = true;
  EngineArgs a = args_for("qwen2");
  a.max_model_len = 96;
  engine::LLMEngine e(a);
  const auto alone = run_all(e, {w.prompts[5]}, {p})[0].outputs[0].token_ids;
  std::vector<SamplingParams> params = w.params;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].temperature = 1.0;  // unseeded neighbours draw from the engine's generator
  }
  params[5] = p;
  const auto outs = run_all(e, w.prompts, params);
  EXPECT_EQ(outs[5].outputs[0].token_ids, alone);
}

TEST(Engine, StopTokenIdsMinTokensAndLength) {
  engine::LLMEngine e(args_for("llama"));
  const nlohmann::json exp = expected("llama");
  const auto prompt = exp["prompts"][1]["prompt_ids"].get<std::vector<int32_t>>();
  const auto want = exp["prompts"][1]["generated_ids"].get<std::vector<int32_t>>();
  SamplingParams p = greedy(20);
  p.stop_token_ids = {want[4]};
  const size_t first = static_cast<size_t>(std::find(want.begin(), want.end(), want[4]) - want.begin());
  RequestOutput o = run_all(e, {prompt}, {p})[0];
  EXPECT_EQ(o.outputs[0].token_ids, std::vector<int32_t>(want.begin(), want.begin() + static_cast<long>(first) + 1));
  EXPECT_EQ(o.outputs[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(o.outputs[0].stop_token_id, want[4]);
  // min_tokens masks the stop token until enough tokens are out: the output changes there.
  p.min_tokens = static_cast<int64_t>(first) + 2;
  o = run_all(e, {prompt}, {p})[0];
  EXPECT_GE(static_cast<int64_t>(o.outputs[0].token_ids.size()), p.min_tokens);
  EXPECT_NE(o.outputs[0].token_ids[first], want[4]);
  // max_tokens ends with "length".
  o = run_all(e, {prompt}, {greedy(3)})[0];
  EXPECT_EQ(o.outputs[0].token_ids.size(), 3u);
  EXPECT_EQ(o.outputs[0].finish_reason, FinishReason::kLength);
}

std::vector<double> log_softmax(const std::vector<float>& row) {
  long double m = -INFINITY;
  for (float v : row)
    m = std::max<long double>(m, v);
  long double sum = 0;
  for (float v : row)
    sum += std::exp(static_cast<long double>(v) - m);
  std::vector<double> out;
  for (float v : row)
    out.push_back(static_cast<double>(static_cast<long double>(v) - m - std::log(sum)));
  return out;
}

TEST(Engine, LogprobsAreTheLogSoftmaxOfTheModelsLogits) {
  const std::string name = "llama";
  const auto prompt = expected(name)["prompts"][1]["prompt_ids"].get<std::vector<int32_t>>();
  EngineArgs a = args_for(name);
  a.enable_prefix_caching = false;
  engine::LLMEngine e(a);
  SamplingParams p = greedy(3);
  p.logprobs = 4;
  p.prompt_logprobs = 2;
  const RequestOutput o = run_all(e, {prompt}, {p})[0];

  // References: the logits after every prefix, from the model runner without the engine.
  worker::RunnerOptions ro;
  ro.max_model_len = 128;
  ro.num_blocks = 64;
  const ModelFiles files = ModelFiles::open(golden(name));
  worker::ModelRunner runner(files, ro);
  worker::StaticBatch batch(runner, {});
  std::vector<std::vector<int32_t>> prefixes;
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), o.outputs[0].token_ids.begin(), o.outputs[0].token_ids.end());
  for (size_t n = 1; n < seq.size(); ++n)
    prefixes.emplace_back(seq.begin(), seq.begin() + static_cast<long>(n));
  const auto rows = batch.prompt_logits(prefixes);

  ASSERT_EQ(o.prompt_logprobs.size(), prompt.size());
  EXPECT_FALSE(o.prompt_logprobs[0].has_value());
  for (size_t i = 1; i < prompt.size(); ++i) {
    ASSERT_TRUE(o.prompt_logprobs[i].has_value()) << i;
    const std::vector<double> want = log_softmax(rows[i - 1]);
    const PositionLogprobs& lp = *o.prompt_logprobs[i];
    EXPECT_EQ(lp.chosen.token_id, prompt[i]);
    EXPECT_NEAR(lp.chosen.logprob, want[static_cast<size_t>(prompt[i])], 1e-4) << i;
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_NEAR(lp.top[0].logprob, *std::max_element(want.begin(), want.end()), 1e-4);
  }
  ASSERT_EQ(o.outputs[0].logprobs.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    const std::vector<double> want = log_softmax(rows[prompt.size() - 1 + k]);
    const PositionLogprobs& lp = o.outputs[0].logprobs[k];
    const int32_t tok = o.outputs[0].token_ids[k];
    EXPECT_EQ(lp.chosen.token_id, tok);
    EXPECT_NEAR(lp.chosen.logprob, want[static_cast<size_t>(tok)], 1e-4);
    EXPECT_EQ(lp.chosen.rank, 1);  // greedy picks the most likely
    ASSERT_EQ(lp.top.size(), 4u);
    for (size_t j = 0; j + 1 < lp.top.size(); ++j)
      EXPECT_GE(lp.top[j].logprob, lp.top[j + 1].logprob);
  }
}

TEST(Engine, AbortEndsTheRequestAndFreesItsBlocks) {
  engine::LLMEngine e(args_for("llama"));
  for (const char* id : {"a", "b"}) {
    engine::EngineRequest r;
    r.request_id = id;
    r.prompt_token_ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
    r.params = greedy(40);
    e.add_request(std::move(r));
  }
  for (int i = 0; i < 3; ++i)
    (void)e.step();
  EXPECT_LT(e.stats().num_free_blocks, e.stats().num_blocks);
  e.abort("a");
  e.abort("nobody");
  bool aborted = false;
  for (const RequestOutput& o : e.step()) {
    if (o.request_id == "a") {
      aborted = o.finished && o.outputs[0].finish_reason == FinishReason::kAbort;
    }
  }
  EXPECT_TRUE(aborted);
  EXPECT_EQ(e.num_requests(), 1);
  engine::EngineRequest dup;
  dup.request_id = "b";
  dup.prompt_token_ids = {1};
  EXPECT_THROW(e.add_request(dup), Error);  // "b" is still live
  while (e.has_unfinished())
    (void)e.step();
  EXPECT_EQ(e.stats().num_free_blocks, e.stats().num_blocks);
}

TEST(Engine, RefusesBadRequestsWithoutDisturbingOthers) {
  engine::LLMEngine e(args_for("llama"));
  auto request = [](std::vector<int32_t> ids, SamplingParams p) {
    engine::EngineRequest r;
    r.request_id = "x";
    r.prompt_token_ids = std::move(ids);
    r.params = std::move(p);
    return r;
  };
  EXPECT_THROW(e.add_request(request({}, greedy(4))), Error);
  EXPECT_THROW(e.add_request(request({1, 99999}, greedy(4))), Error);
  EXPECT_THROW(e.add_request(request({1, -1}, greedy(4))), Error);
  EXPECT_THROW(e.add_request(request({1, 2}, greedy(100000))), Error);
  SamplingParams bad = greedy(4);
  bad.top_p = 0;
  EXPECT_THROW(e.add_request(request({1, 2}, bad)), Error);
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(run_all(e, {{1, 2, 3}}, {greedy(2)})[0].outputs[0].token_ids.size(), 2u);
}

}  // namespace
}  // namespace pagoda
