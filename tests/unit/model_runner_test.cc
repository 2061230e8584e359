// ModelRunner on the tiny llama of tests/data/golden (made by transformers): every check of a
// step's input, and the same logits whichever way a prompt is split into steps and batched with
// others, and as transformers computed them.

#include "worker/model_runner.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/loader/model_files.h"
#include "worker/static_batch.h"

namespace pagoda::worker {
namespace {

std::string golden(const std::string& name) {
  return std::string(PAGODA_TEST_DATA_DIR) + "/golden/" + name;
}

nlohmann::json expected(const std::string& name) {
  std::ifstream f(golden(name) + "/expected.json");
  return nlohmann::json::parse(f);
}

class RunnerTest : public testing::Test {
 protected:
  void SetUp() override {
    files_ = std::make_unique<ModelFiles>(ModelFiles::open(golden("llama")));
    RunnerOptions o;
    o.block_size = 4;
    o.num_blocks = 64;
    o.max_model_len = 128;
    runner_ = std::make_unique<ModelRunner>(*files_, o);
  }

  // One sequence's tokens [first, first + n) of `ids` as a step, blocks 0, 1, 2, ... in order.
  static StepInput one_sequence(const std::vector<int32_t>& ids, int64_t first, int64_t n, int64_t bs = 4) {
    StepInput s;
    const int64_t len = first + n;
    s.max_blocks_per_seq = (len + bs - 1) / bs;
    for (int64_t b = 0; b < s.max_blocks_per_seq; ++b)
      s.block_tables.push_back(static_cast<int32_t>(b));
    for (int64_t p = first; p < len; ++p) {
      s.token_ids.push_back(ids[static_cast<size_t>(p)]);
      s.positions.push_back(static_cast<int32_t>(p));
      s.slot_mapping.push_back(p);
    }
    s.seq_lens = {static_cast<int32_t>(len)};
    s.cu_query_lens = {0, static_cast<int32_t>(n)};
    s.logits_indices = {static_cast<int32_t>(n - 1)};
    return s;
  }

  void expect_invalid(const StepInput& s, const std::string& fragment) {
    try {
      (void)runner_->execute(s);
      ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }

  std::unique_ptr<ModelFiles> files_;
  std::unique_ptr<ModelRunner> runner_;
};

std::vector<int32_t> prompt_of(const nlohmann::json& p) {
  return p["prompt_ids"].get<std::vector<int32_t>>();
}

double max_diff(const float* got, const std::vector<double>& want) {
  double d = 0;
  for (size_t i = 0; i < want.size(); ++i)
    d = std::max(d, std::abs(static_cast<double>(got[i]) - want[i]));
  return d;
}

TEST_F(RunnerTest, Shape) {
  EXPECT_EQ(runner_->block_size(), 4);
  EXPECT_EQ(runner_->num_blocks(), 64);
  EXPECT_EQ(runner_->max_model_len(), 128);
  EXPECT_EQ(runner_->config().arch, model::Arch::kLlama);
}

TEST_F(RunnerTest, PromptLogitsMatchTransformersHoweverSplit) {
  const nlohmann::json exp = expected("llama");
  const auto& p = exp["prompts"][1];
  const std::vector<int32_t> ids = prompt_of(p);
  const auto want = p["last_logits"].get<std::vector<double>>();
  const auto n = static_cast<int64_t>(ids.size());

  Tensor whole = runner_->execute(one_sequence(ids, 0, n));
  ASSERT_EQ(whole.dim(0), 1);
  ASSERT_EQ(whole.dim(1), 256);
  EXPECT_LT(max_diff(whole.data<float>(), want), 1e-3);

  // Token by token (decode steps), then in two uneven chunks: the cache is rewritten each time.
  Tensor last;
  for (int64_t t = 0; t < n; ++t)
    last = runner_->execute(one_sequence(ids, t, 1));
  EXPECT_LT(max_diff(last.data<float>(), want), 1e-3);
  (void)runner_->execute(one_sequence(ids, 0, 5));
  Tensor chunked = runner_->execute(one_sequence(ids, 5, n - 5));
  for (int64_t i = 0; i < 256; ++i)
    EXPECT_NEAR(chunked.data<float>()[i], whole.data<float>()[i], 1e-4) << i;
}

TEST_F(RunnerTest, CacheTypesF16AndBf16) {
  const nlohmann::json exp = expected("llama");
  const std::vector<int32_t> ids = prompt_of(exp["prompts"][2]);
  const auto want = exp["prompts"][2]["last_logits"].get<std::vector<double>>();
  for (DType t : {DType::kF16, DType::kBF16}) {
    RunnerOptions o;
    o.cache_dtype = t;
    o.max_model_len = 64;
    ModelRunner r(*files_, o);
    Tensor got = r.execute(one_sequence(ids, 0, static_cast<int64_t>(ids.size()), 16));
    // Keys and values rounded to 16 bits: close, not equal.
    EXPECT_LT(max_diff(got.data<float>(), want), 0.25) << dtype_name(t);
  }
}

TEST_F(RunnerTest, StaticBatchMatchesTransformersGreedy) {
  const nlohmann::json exp = expected("llama");
  std::vector<GenerateRequest> requests;
  for (const auto& p : exp["prompts"]) {
    GenerateRequest r;
    r.prompt = prompt_of(p);
    r.max_tokens = exp["max_new_tokens"].get<int64_t>();
    r.sampling.temperature = 0.0;
    r.ignore_eos = true;
    requests.push_back(r);
  }
  for (int64_t chunk : {0, 3}) {
    StaticBatch batch(*runner_, {}, chunk);
    const std::vector<GenerateResult> results = batch.generate(requests);
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_EQ(results[i].token_ids, exp["prompts"][i]["generated_ids"].get<std::vector<int32_t>>()) << i;
      EXPECT_EQ(results[i].finish_reason, "length");
    }
  }
}

TEST_F(RunnerTest, StaticBatchStopsAtEos) {
  const nlohmann::json exp = expected("llama");
  const auto generated = exp["prompts"][0]["generated_ids"].get<std::vector<int32_t>>();
  GenerateRequest r;
  r.prompt = prompt_of(exp["prompts"][0]);
  r.max_tokens = 24;
  r.sampling.temperature = 0.0;
  StaticBatch batch(*runner_, {generated[3]});
  const GenerateResult out = batch.generate({r})[0];
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(out.token_ids, std::vector<int32_t>(generated.begin(), generated.begin() + 4));
}

TEST_F(RunnerTest, RejectsBadSteps) {
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};
  StepInput s = one_sequence(ids, 0, 6);
  s.token_ids[2] = 256;
  expect_invalid(s, "token id 256 (at index 2 of the step) is outside the vocabulary [0, 256)");
  s.token_ids[2] = -3;
  expect_invalid(s, "outside the vocabulary");

  std::vector<int32_t> long_ids(130, 7);
  expect_invalid(one_sequence(long_ids, 126, 3), "position 128 (at index 2 of the step) is beyond the maximum context");

  s = one_sequence(ids, 0, 6);
  s.positions[3] = 4;
  expect_invalid(s, "has position 4, expected 3");
  s = one_sequence(ids, 0, 6);
  s.slot_mapping[1] = 9;
  expect_invalid(s, "maps to slot 9, but its block table says 1");
  s = one_sequence(ids, 0, 6);
  s.slot_mapping[1] = 64 * 4;
  expect_invalid(s, "past the cache");
  s = one_sequence(ids, 0, 6);
  s.block_tables[1] = 64;
  expect_invalid(s, "outside the cache's 64 blocks");
  s = one_sequence(ids, 0, 6);
  s.block_tables.pop_back();
  s.max_blocks_per_seq = 1;
  expect_invalid(s, "needs 2 blocks");
  s = one_sequence(ids, 0, 6);
  s.seq_lens = {3};
  expect_invalid(s, "must be between its 6 new tokens");
  s = one_sequence(ids, 0, 6);
  s.cu_query_lens = {0, 5};
  expect_invalid(s, "query offsets must run from 0 to the 6 tokens");
  s = one_sequence(ids, 0, 6);
  s.positions.pop_back();
  expect_invalid(s, "6 token ids but 5 positions");
  s = one_sequence(ids, 0, 6);
  s.logits_indices = {6};
  expect_invalid(s, "logits requested for token 6");
  StepInput empty;
  expect_invalid(empty, "at least one token");
}

// The three golden prompts as one step (sequence q in blocks 16q ...), with the logits of each
// prompt's last token and of two tokens inside the longest.
StepInput three_prompts(const nlohmann::json& exp) {
  StepInput s;
  s.max_blocks_per_seq = 16;
  s.cu_query_lens = {0};
  for (int32_t q = 0; q < 3; ++q) {
    const std::vector<int32_t> ids = prompt_of(exp["prompts"][q]);
    for (size_t p = 0; p < ids.size(); ++p) {
      s.token_ids.push_back(ids[p]);
      s.positions.push_back(static_cast<int32_t>(p));
      s.slot_mapping.push_back(int64_t{16} * q * 4 + static_cast<int64_t>(p));
    }
    for (int32_t b = 0; b < 16; ++b)
      s.block_tables.push_back(16 * q + b);
    s.seq_lens.push_back(static_cast<int32_t>(ids.size()));
    s.cu_query_lens.push_back(static_cast<int32_t>(s.token_ids.size()));
    s.logits_indices.push_back(s.cu_query_lens.back() - 1);
  }
  s.logits_indices.insert(s.logits_indices.begin() + 1, s.cu_query_lens[2] + 7);
  s.logits_indices.push_back(s.cu_query_lens[2] + 20);
  return s;
}

TEST_F(RunnerTest, MicroBatchesGiveTheSameLogits) {
  const nlohmann::json exp = expected("llama");
  const StepInput step = three_prompts(exp);
  RunnerOptions o;
  o.block_size = 4;
  o.num_blocks = 64;
  o.max_model_len = 128;
  o.micro_batch = 0;
  ModelRunner one_pass(*files_, o);
  EXPECT_EQ(one_pass.micro_batch(), 0);
  const Tensor want = one_pass.execute(step);
  ASSERT_EQ(want.dim(0), 5);
  // 57 tokens in passes of 7, 16 and 56: prompts split inside and across passes, a logits row in
  // the last pass alone.
  for (int64_t size : {7, 16, 56}) {
    o.micro_batch = size;
    ModelRunner parts(*files_, o);
    EXPECT_EQ(parts.micro_batch(), size);
    const Tensor got = parts.execute(step);
    ASSERT_EQ(got.dim(0), 5);
    ASSERT_EQ(got.dim(1), 256);
    for (int64_t i = 0; i < got.numel(); ++i)
      ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4) << size << " " << i;
    for (int q = 0; q < 3; ++q) {
      const auto last = exp["prompts"][q]["last_logits"].get<std::vector<double>>();
      const int64_t row = q == 0 ? 0 : q == 1 ? 2 : 3;
      EXPECT_LT(max_diff(got.data<float>() + row * 256, last), 1e-3) << size << " " << q;
    }
  }
  // No logits wanted: the passes fill the cache, and a decode step after them sees it.
  StepInput fill = step;
  fill.logits_indices.clear();
  o.micro_batch = 16;
  ModelRunner parts(*files_, o);
  EXPECT_EQ(parts.execute(fill).numel(), 0);
  const std::vector<int32_t> ids = prompt_of(exp["prompts"][2]);
  StepInput next;
  next.token_ids = {exp["prompts"][2]["generated_ids"][0].get<int32_t>()};
  next.positions = {static_cast<int32_t>(ids.size())};
  next.slot_mapping = {int64_t{16} * 2 * 4 + static_cast<int64_t>(ids.size())};
  for (int32_t b = 0; b < 16; ++b)
    next.block_tables.push_back(32 + b);
  next.max_blocks_per_seq = 16;
  next.seq_lens = {static_cast<int32_t>(ids.size() + 1)};
  next.cu_query_lens = {0, 1};
  next.logits_indices = {0};
  const Tensor a = parts.execute(next);
  (void)one_pass.execute(fill);
  const Tensor b = one_pass.execute(next);
  for (int64_t i = 0; i < 256; ++i)
    ASSERT_NEAR(a.data<float>()[i], b.data<float>()[i], 1e-4) << i;
}

TEST(ModelLogits, OfHiddenRowsAsForwardComputesThem) {
  const ModelFiles files = ModelFiles::open(golden("llama"));
  model::ModelOptions mo;
  mo.max_model_len = 64;
  const std::unique_ptr<model::Model> m = model::load_model(files, mo);
  const int64_t hidden = m->config().hidden_size;
  // one token, position 0, through forward with and without hidden_rows
  Tensor ids = Tensor::empty(Shape{1}, DType::kI32);
  ids.data<int32_t>()[0] = 7;
  Tensor zero = Tensor::empty(Shape{1}, DType::kI32);
  zero.data<int32_t>()[0] = 0;
  Tensor slot = Tensor::empty(Shape{1}, DType::kI64);
  slot.data<int64_t>()[0] = 0;
  Tensor one = Tensor::empty(Shape{1}, DType::kI32);
  one.data<int32_t>()[0] = 1;
  Tensor cu = Tensor::empty(Shape{2}, DType::kI32);
  cu.data<int32_t>()[0] = 0;
  cu.data<int32_t>()[1] = 1;
  model::BatchInput b;
  b.token_ids = ids;
  b.positions = zero;
  b.slot_mapping = slot;
  b.block_tables = Tensor::empty(Shape{1, 1}, DType::kI32);
  b.block_tables.data<int32_t>()[0] = 0;
  b.seq_lens = one;
  b.cu_query_lens = cu;
  b.logits_indices = zero;
  b.num_tokens = 1;
  b.num_seqs = 1;
  b.max_query_len = 1;
  b.max_seq_len = 1;
  b.host_positions = {zero.data<int32_t>(), 1};
  b.host_seq_lens = {one.data<int32_t>(), 1};
  b.host_cu_query_lens = {cu.data<int32_t>(), 2};
  model::KvCache cache;
  cache.block_size = 16;
  cache.num_blocks = 1;
  const model::ModelConfig& c = m->config();
  for (int64_t l = 0; l < c.num_layers; ++l) {
    cache.keys.push_back(Tensor::empty(Shape{1, c.num_kv_heads, 16, c.head_dim}, DType::kF32));
    cache.values.push_back(Tensor::empty(Shape{1, c.num_kv_heads, 16, c.head_dim}, DType::kF32));
  }
  const Tensor want = m->forward(b, cache);
  b.hidden_rows = true;
  const Tensor rows = m->forward(b, cache);
  ASSERT_EQ(rows.dim(0), 1);
  ASSERT_EQ(rows.dim(1), hidden);
  const Tensor got = m->logits(rows);
  ASSERT_EQ(got.dim(1), want.dim(1));
  for (int64_t i = 0; i < want.numel(); ++i)
    EXPECT_EQ(got.data<float>()[i], want.data<float>()[i]) << i;
  EXPECT_EQ(m->logits(Tensor::empty(Shape{0, hidden}, DType::kF32)).numel(), 0);
  EXPECT_THROW((void)m->logits(Tensor::empty(Shape{1, hidden + 1}, DType::kF32)), Error);
  EXPECT_THROW((void)m->logits(Tensor::empty(Shape{hidden}, DType::kF32)), Error);
}

TEST(ModelRunnerMicroBatch, SizedToTheModel) {
  model::ModelConfig c;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  EXPECT_EQ(micro_batch_tokens(c, 0), 256);  // 3 MiB over 3,072 floats a token
  c.intermediate_size = 2048;
  EXPECT_EQ(micro_batch_tokens(c, 0), 192);
  c.intermediate_size = 11008;
  EXPECT_EQ(micro_batch_tokens(c, 0), 64);
  c.intermediate_size = 64;
  c.hidden_size = 64;
  c.num_heads = 1;
  c.num_kv_heads = 1;
  EXPECT_EQ(micro_batch_tokens(c, 0), 1024);
  EXPECT_EQ(micro_batch_tokens(c, 4096), 0);
  c.moe.num_experts = 8;
  EXPECT_EQ(micro_batch_tokens(c, 0), 0);
}

TEST(ModelRunnerMicroBatch, FromTheEnvironment) {
  const ModelFiles files = ModelFiles::open(golden("llama"));
  RunnerOptions o;
  o.max_model_len = 64;
  ::setenv("PAGODA_CPU_MICRO_BATCH", "32", 1);
  EXPECT_EQ(ModelRunner(files, o).micro_batch(), 32);
  o.micro_batch = 8;  // an explicit size wins
  EXPECT_EQ(ModelRunner(files, o).micro_batch(), 8);
  o.micro_batch = -1;
  for (const char* bad : {"many", "-1", "12x", "99999999999"}) {
    ::setenv("PAGODA_CPU_MICRO_BATCH", bad, 1);
    try {
      ModelRunner r(files, o);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("PAGODA_CPU_MICRO_BATCH must be a token count"), std::string::npos)
          << e.what();
    }
  }
  ::unsetenv("PAGODA_CPU_MICRO_BATCH");
  EXPECT_EQ(ModelRunner(files, o).micro_batch(), micro_batch_tokens(files.config(), 0));
}

TEST(ModelRunnerOptions, RejectsBadOptions) {
  const ModelFiles files = ModelFiles::open(golden("llama"));
  RunnerOptions o;
  o.block_size = 0;
  EXPECT_THROW(ModelRunner(files, o), Error);
  o = RunnerOptions{};
  o.cache_dtype = DType::kQ8_0;
  EXPECT_THROW(ModelRunner(files, o), Error);
  o = RunnerOptions{};
  o.max_model_len = 513;  // past max_position_embeddings
  EXPECT_THROW(ModelRunner(files, o), Error);
}

}  // namespace
}  // namespace pagoda::worker
