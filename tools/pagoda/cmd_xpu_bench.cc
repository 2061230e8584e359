// `pagoda bench-decode`: decode speed of one model on one device, without the engine's scheduler.
// B sequences get a prompt of P tokens in one prefill step, then N decode steps run with all B
// sequences in every step (each step returns the logits of every sequence to the host, as a
// serving step does). Reports tokens/s and the weight bytes a step must read over the step's time
// (achieved weight bandwidth). With `--load-format dummy` the model is built from a config.json
// alone with random weights (ModelFiles::open_dummy).

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "command.h"
#include "core/error.h"
#include "model/loader/model_files.h"
#include "worker/model_runner.h"

namespace pagoda::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string load_format = "auto";
  std::string dtype = "auto";
  std::string device = "cpu";
  int64_t batch = 1;
  int64_t prompt_len = 16;
  int64_t steps = 32;
  int64_t warmup = 4;
  uint64_t seed = 0;
  std::string kv_cache_dtype = "f16";
};

// Bytes of the matrices one decode step reads: every linear layer of every layer and the lm_head
// (the embedding table is only gathered, a few rows per step). Norm vectors are negligible.
uint64_t weight_bytes_per_step(const model::ModelConfig& c, DType dtype) {
  const auto hidden = static_cast<uint64_t>(c.hidden_size);
  uint64_t per_layer =
      hidden * static_cast<uint64_t>(c.q_size() + 2 * c.kv_size()) + static_cast<uint64_t>(c.q_size()) * hidden;
  if (c.moe.num_experts > 0) {
    per_layer += 3 * hidden * static_cast<uint64_t>(c.moe.expert_intermediate_size) *
                 static_cast<uint64_t>(c.moe.num_experts_per_tok);
  } else {
    per_layer += 3 * hidden * static_cast<uint64_t>(c.intermediate_size);
  }
  const uint64_t elements =
      per_layer * static_cast<uint64_t>(c.num_layers) + static_cast<uint64_t>(c.vocab_size) * hidden;
  return elements * static_cast<uint64_t>(dtype_block_bytes(dtype)) / static_cast<uint64_t>(dtype_block_size(dtype));
}

// For a model from files: the bytes of its matrices as stored (quantized types at their size),
// the embedding table counted only when it doubles as the lm_head. A mixture-of-experts model is
// counted with all its experts, an upper bound on what one step reads.
uint64_t file_weight_bytes(const ModelFiles& f) {
  uint64_t total = 0;
  for (const TensorEntry& t : f.tensors()) {
    if (t.shape.ndim() < 2) continue;
    const bool embedding =
        t.name.find("token_embd") != std::string::npos || t.name.find("embed_tokens") != std::string::npos;
    if (embedding && !f.config().tie_word_embeddings) continue;
    total += t.nbytes;
  }
  return total;
}

int run_bench(const BenchArgs& a) {
  if (a.batch < 1 || a.batch > 1024 || a.prompt_len < 1 || a.prompt_len > 65536 || a.steps < 1 || a.steps > 100000 ||
      a.warmup < 0 || a.warmup > 1000) {
    fail(ErrorCode::kInvalidArgument, "bench-decode: --batch, --prompt-len, --steps or --warmup out of range");
  }
  std::optional<DType> dtype;
  if (a.dtype != "auto") {
    dtype = dtype_from_name(a.dtype);
    if (!dtype) fail(ErrorCode::kInvalidArgument, "bench-decode: unknown --dtype '{}'", a.dtype);
  }
  ModelFiles files = [&] {
    if (a.load_format == "dummy") return ModelFiles::open_dummy(a.model, dtype, a.seed);
    if (a.load_format != "auto") {
      fail(ErrorCode::kInvalidArgument, "bench-decode: --load-format must be auto or dummy, not '{}'", a.load_format);
    }
    return ModelFiles::open(a.model);
  }();
  const model::ModelConfig& c = files.config();

  worker::RunnerOptions o;
  o.device = parse_device(a.device);
  o.block_size = 16;
  const int64_t len = a.prompt_len + a.warmup + a.steps;
  const int64_t blocks_per_seq = (len + o.block_size - 1) / o.block_size;
  o.num_blocks = blocks_per_seq * a.batch;
  o.max_model_len = len;
  auto cache_dtype = dtype_from_name(a.kv_cache_dtype);
  if (!cache_dtype) fail(ErrorCode::kInvalidArgument, "bench-decode: unknown --kv-cache-dtype '{}'", a.kv_cache_dtype);
  o.cache_dtype = *cache_dtype;

  const auto load_start = std::chrono::steady_clock::now();
  worker::ModelRunner runner(files, o);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const DType weight_dtype = files.is_dummy() ? files.dummy_dtype() : DType::kF16;

  // Sequence s owns blocks [s * blocks_per_seq, (s + 1) * blocks_per_seq).
  auto step_of = [&](int64_t first, int64_t n, uint64_t salt) {
    worker::StepInput s;
    s.max_blocks_per_seq = blocks_per_seq;
    for (int64_t q = 0; q < a.batch; ++q) {
      for (int64_t b = 0; b < blocks_per_seq; ++b)
        s.block_tables.push_back(static_cast<int32_t>(q * blocks_per_seq + b));
      s.cu_query_lens.push_back(static_cast<int32_t>(q * n));
      for (int64_t p = first; p < first + n; ++p) {
        const uint64_t h = (salt + static_cast<uint64_t>(q * 7919 + p) * 2654435761ull) % 1000003;
        s.token_ids.push_back(static_cast<int32_t>(h % static_cast<uint64_t>(c.vocab_size)));
        s.positions.push_back(static_cast<int32_t>(p));
        s.slot_mapping.push_back(q * blocks_per_seq * o.block_size + p);
      }
      s.seq_lens.push_back(static_cast<int32_t>(first + n));
      s.logits_indices.push_back(static_cast<int32_t>(q * n + n - 1));
    }
    s.cu_query_lens.push_back(static_cast<int32_t>(a.batch * n));
    return s;
  };

  const auto prefill_start = std::chrono::steady_clock::now();
  (void)runner.execute(step_of(0, a.prompt_len, a.seed));
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - prefill_start).count();
  int64_t pos = a.prompt_len;
  for (int64_t i = 0; i < a.warmup; ++i, ++pos)
    (void)runner.execute(step_of(pos, 1, a.seed + static_cast<uint64_t>(pos)));
  std::vector<double> times;
  for (int64_t i = 0; i < a.steps; ++i, ++pos) {
    const worker::StepInput s = step_of(pos, 1, a.seed + static_cast<uint64_t>(pos));
    const auto t0 = std::chrono::steady_clock::now();
    Tensor logits = runner.execute(s);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (logits.dim(0) != a.batch) fail(ErrorCode::kInternal, "bench-decode: wrong logits shape");
  }
  double total = 0;
  for (double t : times)
    total += t;
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double mean = total / static_cast<double>(times.size());
  const uint64_t wbytes = files.is_dummy() ? weight_bytes_per_step(c, weight_dtype) : file_weight_bytes(files);
  fmt::print("model: {} ({}, {} layers, hidden {}, vocab {}), weights {}\n", files.path(), architecture_name(c.arch),
             c.num_layers, c.hidden_size, c.vocab_size,
             files.is_dummy() ? fmt::format("{} (dummy, random)", dtype_name(weight_dtype)) : "as stored in the files");
  fmt::print("device: {}  batch {}  prompt {}  decode steps {} (+{} warm-up)  kv cache {}\n", a.device, a.batch,
             a.prompt_len, a.steps, a.warmup, a.kv_cache_dtype);
  fmt::print("load {:.2f} s  prefill step ({} tokens) {:.3f} s\n", load_s, a.batch * a.prompt_len, prefill_s);
  fmt::print("decode step: median {:.3f} ms  mean {:.3f} ms  min {:.3f} ms  max {:.3f} ms\n", median * 1e3, mean * 1e3,
             sorted.front() * 1e3, sorted.back() * 1e3);
  fmt::print("tokens/s: {:.1f} (median step), {:.1f} (mean step)\n", static_cast<double>(a.batch) / median,
             static_cast<double>(a.batch) / mean);
  fmt::print("weight bytes per step: {:.3f} GB  achieved weight bandwidth: {:.1f} GB/s (median step)\n",
             static_cast<double>(wbytes) / 1e9, static_cast<double>(wbytes) / median / 1e9);
  return 0;
}

const CommandRegistration kRegisterBenchDecode("bench-decode", [](CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench-decode", "Time decode steps of one batch (tokens/s, weight bandwidth)");
  sub->add_option("model", a->model, "A .gguf file or HF folder; with --load-format dummy a config.json or its folder")
      ->required();
  sub->add_option("--load-format", a->load_format, "auto (the model's files) or dummy (random weights)")
      ->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Dummy weight type: auto (config torch_dtype), f16, bf16 or f32")
      ->capture_default_str();
  sub->add_option("--device", a->device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--batch", a->batch, "Sequences per decode step")->capture_default_str();
  sub->add_option("--prompt-len", a->prompt_len, "Prompt tokens per sequence")->capture_default_str();
  sub->add_option("--steps", a->steps, "Timed decode steps")->capture_default_str();
  sub->add_option("--warmup", a->warmup, "Untimed decode steps first")->capture_default_str();
  sub->add_option("--seed", a->seed, "Seed of the dummy weights and token ids")->capture_default_str();
  sub->add_option("--kv-cache-dtype", a->kv_cache_dtype, "f32, f16 or bf16")->capture_default_str();
  return [a] { return run_bench(*a); };
});

}  // namespace
}  // namespace pagoda::cli
