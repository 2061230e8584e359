// `pagoda bench decode`: decode speed of one model on one device, without the engine's scheduler.
// B sequences get a prompt of P tokens in one prefill step, then N decode steps run with all B
// sequences in every step (each step returns the logits of every sequence to the host, as a
// serving step does). Reports tokens/s and the weight bytes a step must read over the step's time
// (achieved weight bandwidth). With `--load-format dummy` the model is built from a config.json
// alone with random weights (ModelFiles::open_dummy). `--profile` adds the device time of each
// kernel per step (backends that can time their kernels: xpu), which splits a step into kernel
// time and the host and launch time around it.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "bench_common.h"
#include "core/error.h"
#include "model/loader/model_files.h"
#include "worker/model_runner.h"

namespace pagoda::cli::bench {
namespace {

struct BenchArgs {
  std::string model;
  std::string load_format = "auto";
  std::string dtype = "auto";
  std::string device = "cpu";
  std::vector<int64_t> batches{1};
  int64_t prompt_len = 16;
  int64_t steps = 32;
  int64_t warmup = 4;
  uint64_t seed = 0;
  std::string kv_cache_dtype = "f16";
  bool profile = false;
  bool json = false;
  int64_t copy_mib = 0;
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

// The device's copy rate, the ceiling a weight-streaming step is measured against: `reps` copies
// of `bytes` between two device buffers after one untimed copy, counting bytes read plus bytes
// written (as STREAM and vendors' bandwidth tests do); and the host-to-device rate of the same
// buffer (how fast weights load), `reps` writes from host memory.
struct CopyRates {
  double device = 0.0;
  double host_to_device = 0.0;
};
CopyRates copy_bandwidth(Backend& backend, uint64_t bytes, int reps) {
  if (bytes == 0) return {};
  const auto n = static_cast<int64_t>(bytes / 4);
  Tensor src = empty_on(backend.device(), Shape{n}, DType::kF32);
  Tensor dst = empty_on(backend.device(), Shape{n}, DType::kF32);
  Tensor host = Tensor::empty(Shape{n}, DType::kF32);
  for (int64_t i = 0; i < n; ++i)
    host.data<float>()[i] = static_cast<float>(i % 1000);  // not zeros: some devices compress those
  backend.copy(src, host);
  backend.copy(dst, src);
  backend.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i)
    backend.copy(i % 2 == 0 ? dst : src, i % 2 == 0 ? src : dst);
  backend.synchronize();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CopyRates rates;
  rates.device = 2.0 * static_cast<double>(n * 4) * reps / s;
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i)
    backend.copy(src, host);
  backend.synchronize();
  const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  rates.host_to_device = static_cast<double>(n * 4) * reps / w;
  return rates;
}

struct BatchResult {
  int64_t batch = 0;
  double prefill_s = 0.0;
  std::vector<double> sorted;  // step times, ascending
  double mean = 0.0;
  std::vector<KernelTiming> kernels;
};

int run_bench(const BenchArgs& a) {
  if (a.batches.empty()) fail(ErrorCode::kInvalidArgument, "bench decode: --batch needs at least one value");
  int64_t max_batch = 0;
  for (int64_t b : a.batches) {
    if (b < 1 || b > 1024) fail(ErrorCode::kInvalidArgument, "bench decode: --batch {} is outside 1..1024", b);
    max_batch = std::max(max_batch, b);
  }
  if (a.prompt_len < 1 || a.prompt_len > 65536 || a.steps < 1 || a.steps > 100000 || a.warmup < 0 || a.warmup > 1000 ||
      a.copy_mib < 0 || a.copy_mib > 65536) {
    fail(ErrorCode::kInvalidArgument, "bench decode: --prompt-len, --steps, --warmup or --copy-mib out of range");
  }
  std::optional<DType> dtype;
  if (a.dtype != "auto") {
    dtype = dtype_from_name(a.dtype);
    if (!dtype) fail(ErrorCode::kInvalidArgument, "bench decode: unknown --dtype '{}'", a.dtype);
  }
  ModelFiles files = [&] {
    if (a.load_format == "dummy") return ModelFiles::open_dummy(a.model, dtype, a.seed);
    if (a.load_format != "auto") {
      fail(ErrorCode::kInvalidArgument, "bench decode: --load-format must be auto or dummy, not '{}'", a.load_format);
    }
    return ModelFiles::open(a.model);
  }();
  const model::ModelConfig& c = files.config();

  worker::RunnerOptions o;
  o.device = parse_device(a.device);
  o.block_size = 16;
  const int64_t len = a.prompt_len + a.warmup + a.steps;
  const int64_t blocks_per_seq = (len + o.block_size - 1) / o.block_size;
  o.num_blocks = blocks_per_seq * max_batch;
  o.max_model_len = len;
  auto cache_dtype = dtype_from_name(a.kv_cache_dtype);
  if (!cache_dtype) fail(ErrorCode::kInvalidArgument, "bench decode: unknown --kv-cache-dtype '{}'", a.kv_cache_dtype);
  o.cache_dtype = *cache_dtype;

  // The queue records kernel events only if profiling is on when the backend is created, which
  // happens as the runner loads the weights.
  if (a.profile) ::setenv("PAGODA_XPU_PROFILE", "1", 1);
  std::fprintf(stderr, "loading %s ...\n", files.path().c_str());
  const auto load_start = std::chrono::steady_clock::now();
  worker::ModelRunner runner(files, o);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const DType weight_dtype = files.is_dummy() ? files.dummy_dtype() : DType::kF16;
  Backend& backend = backend_for(o.device);

  // Sequence q owns blocks [q * blocks_per_seq, (q + 1) * blocks_per_seq); each batch size starts
  // its sequences over from position 0.
  auto step_of = [&](int64_t batch, int64_t first, int64_t n, uint64_t salt) {
    worker::StepInput s;
    s.max_blocks_per_seq = blocks_per_seq;
    for (int64_t q = 0; q < batch; ++q) {
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
    s.cu_query_lens.push_back(static_cast<int32_t>(batch * n));
    return s;
  };

  std::vector<BatchResult> results;
  for (int64_t batch : a.batches) {
    BatchResult r;
    r.batch = batch;
    std::fprintf(stderr, "batch %lld: prefill of %lld tokens, %lld warm-up and %lld timed decode steps ...\n",
                 static_cast<long long>(batch), static_cast<long long>(batch * a.prompt_len),
                 static_cast<long long>(a.warmup), static_cast<long long>(a.steps));
    const auto prefill_start = std::chrono::steady_clock::now();
    (void)runner.execute(step_of(batch, 0, a.prompt_len, a.seed));
    r.prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - prefill_start).count();
    int64_t pos = a.prompt_len;
    for (int64_t i = 0; i < a.warmup; ++i, ++pos)
      (void)runner.execute(step_of(batch, pos, 1, a.seed + static_cast<uint64_t>(pos)));
    (void)backend.take_kernel_profile();  // only the timed steps count
    std::vector<double> times;
    for (int64_t i = 0; i < a.steps; ++i, ++pos) {
      const worker::StepInput s = step_of(batch, pos, 1, a.seed + static_cast<uint64_t>(pos));
      const auto t0 = std::chrono::steady_clock::now();
      Tensor logits = runner.execute(s);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (logits.dim(0) != batch) fail(ErrorCode::kInternal, "bench decode: wrong logits shape");
    }
    r.kernels = backend.take_kernel_profile();
    r.mean = stats(times).mean;
    std::sort(times.begin(), times.end());
    r.sorted = std::move(times);
    results.push_back(std::move(r));
  }
  if (a.profile && results.front().kernels.empty()) {
    std::fprintf(stderr, "note: --profile: the %s backend does not time its kernels\n", device_name(o.device).c_str());
  }
  double copy_rate = 0.0;
  double upload_rate = 0.0;
  if (a.copy_mib > 0) {
    std::fprintf(stderr, "copy ceiling: %lld MiB device-to-device copies ...\n", static_cast<long long>(a.copy_mib));
    const CopyRates rates = copy_bandwidth(backend, static_cast<uint64_t>(a.copy_mib) << 20, 10);
    copy_rate = rates.device;
    upload_rate = rates.host_to_device;
    (void)backend.take_kernel_profile();
  }

  const uint64_t wbytes = files.is_dummy() ? weight_bytes_per_step(c, weight_dtype) : file_weight_bytes(files);
  const auto steps = static_cast<double>(a.steps);
  auto kernel_seconds = [](const BatchResult& r) {
    double total = 0.0;
    for (const KernelTiming& k : r.kernels)
      total += k.seconds;
    return total;
  };
  if (a.json) {
    nlohmann::ordered_json j;
    j["model"] = files.path();
    j["architecture"] = architecture_name(c.arch);
    j["weights"] = files.is_dummy() ? std::string(dtype_name(weight_dtype)) + " (dummy)" : "as stored";
    j["device"] = backend.name();
    j["prompt_len"] = a.prompt_len;
    j["steps"] = a.steps;
    j["load_s"] = load_s;
    j["weight_bytes_per_step"] = wbytes;
    if (copy_rate > 0) {
      j["copy_gb_per_s"] = copy_rate / 1e9;
      j["host_to_device_gb_per_s"] = upload_rate / 1e9;
    }
    nlohmann::ordered_json runs = nlohmann::ordered_json::array();
    for (const BatchResult& r : results) {
      const double median = r.sorted[r.sorted.size() / 2];
      nlohmann::ordered_json run;
      run["batch"] = r.batch;
      run["prefill_s"] = r.prefill_s;
      run["step_ms"] = {{"median", median * 1e3},
                        {"mean", r.mean * 1e3},
                        {"min", r.sorted.front() * 1e3},
                        {"max", r.sorted.back() * 1e3}};
      run["tokens_per_s"] = static_cast<double>(r.batch) / median;
      run["weight_gb_per_s"] = static_cast<double>(wbytes) / median / 1e9;
      if (copy_rate > 0) run["weight_bandwidth_of_copy"] = static_cast<double>(wbytes) / median / copy_rate;
      if (!r.kernels.empty()) {
        nlohmann::ordered_json ks = nlohmann::ordered_json::array();
        for (const KernelTiming& k : r.kernels) {
          ks.push_back({{"kernel", k.name},
                        {"launches_per_step", static_cast<double>(k.launches) / steps},
                        {"ms_per_step", k.seconds / steps * 1e3}});
        }
        run["kernel_ms_per_step"] = kernel_seconds(r) / steps * 1e3;
        run["kernels"] = std::move(ks);
      }
      runs.push_back(std::move(run));
    }
    j["runs"] = std::move(runs);
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("model: {} ({}, {} layers, hidden {}, vocab {}), weights {}\n", files.path(), architecture_name(c.arch),
             c.num_layers, c.hidden_size, c.vocab_size,
             files.is_dummy() ? fmt::format("{} (dummy, random)", dtype_name(weight_dtype)) : "as stored in the files");
  fmt::print("device: {}  prompt {}  decode steps {} (+{} warm-up)  kv cache {}  load {:.2f} s\n", backend.name(),
             a.prompt_len, a.steps, a.warmup, a.kv_cache_dtype, load_s);
  fmt::print("weight bytes per step: {:.3f} GB", static_cast<double>(wbytes) / 1e9);
  if (copy_rate > 0) {
    fmt::print("  device copy rate: {:.1f} GB/s (read + write, {} MiB)  host to device: {:.1f} GB/s", copy_rate / 1e9,
               a.copy_mib, upload_rate / 1e9);
  }
  fmt::print("\n\n{:>6} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}{}\n", "batch", "prefill s", "median ms", "min ms",
             "max ms", "tokens/s", "weight GB/s", copy_rate > 0 ? "  of copy" : "");
  for (const BatchResult& r : results) {
    const double median = r.sorted[r.sorted.size() / 2];
    const double gbs = static_cast<double>(wbytes) / median / 1e9;
    fmt::print("{:>6} {:>10.3f} {:>11.3f} {:>11.3f} {:>11.3f} {:>11.1f} {:>11.1f}", r.batch, r.prefill_s, median * 1e3,
               r.sorted.front() * 1e3, r.sorted.back() * 1e3, static_cast<double>(r.batch) / median, gbs);
    if (copy_rate > 0) fmt::print("  {:>7.1f}%", 100.0 * gbs * 1e9 / copy_rate);
    fmt::print("\n");
  }
  for (const BatchResult& r : results) {
    if (r.kernels.empty()) continue;
    const double kernel_s = kernel_seconds(r);
    fmt::print(
        "\nbatch {}: kernels take {:.3f} ms of device time per step in a {:.3f} ms mean step ({:.0f}%); the "
        "rest is host and launch time the device waited for\n",
        r.batch, kernel_s / steps * 1e3, r.mean * 1e3, 100.0 * kernel_s / steps / r.mean);
    fmt::print("{:<40} {:>10} {:>12} {:>7}\n", "kernel and global size", "launches", "ms/step", "share");
    for (const KernelTiming& k : r.kernels) {
      fmt::print("{:<40} {:>10.1f} {:>12.4f} {:>6.1f}%\n", k.name, static_cast<double>(k.launches) / steps,
                 k.seconds / steps * 1e3, kernel_s > 0 ? 100.0 * k.seconds / kernel_s : 0.0);
    }
  }
  return 0;
}

const BenchRegistration kRegisterBenchDecode("decode", [](CLI::App& bench) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub =
      bench.add_subcommand("decode", "Decode steps of one batch on a device: tokens/s and achieved weight bandwidth");
  sub->add_option("model", a->model, "A .gguf file or HF folder; with --load-format dummy a config.json or its folder")
      ->required();
  sub->add_option("--load-format", a->load_format, "auto (the model's files) or dummy (random weights)")
      ->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Dummy weight type: auto (config torch_dtype), f16, bf16 or f32")
      ->capture_default_str();
  sub->add_option("--device", a->device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--batch", a->batches,
                  "Sequences per decode step; several values (--batch 1,32) run one after another")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--prompt-len", a->prompt_len, "Prompt tokens per sequence")->capture_default_str();
  sub->add_option("--steps", a->steps, "Timed decode steps")->capture_default_str();
  sub->add_option("--warmup", a->warmup, "Untimed decode steps first")->capture_default_str();
  sub->add_option("--seed", a->seed, "Seed of the dummy weights and token ids")->capture_default_str();
  sub->add_option("--kv-cache-dtype", a->kv_cache_dtype, "f32, f16 or bf16")->capture_default_str();
  sub->add_option("--copy-mib", a->copy_mib,
                  "Also measure the device's copy rate with buffers of this many MiB (0: skip), and report the "
                  "weight bandwidth as a share of it")
      ->capture_default_str();
  sub->add_flag("--profile", a->profile, "Also report each kernel's device time per step (xpu)");
  sub->add_flag("--json", a->json, "Print one JSON object instead of the table");
  return [a] { return run_bench(*a); };
});

}  // namespace
}  // namespace pagoda::cli::bench
