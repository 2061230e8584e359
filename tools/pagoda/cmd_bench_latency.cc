// `pagoda bench latency [MODEL] -p 512 -n 128 -r 3`: single-sequence speed, as llama-bench measures
// it. Each repetition runs a prompt of -p random token ids as one step (prompt tokens/s), then -n
// decode steps of one token each, greedy (decode tokens/s), straight through worker::ModelRunner
// with no scheduler or sampling overhead. A warm-up run (not counted) comes first; the cold start
// (opening the model, building the runner, and the first prompt up to its first token) and the
// peak resident set size are reported too. Progress goes to stderr, results to stdout (a table,
// or one JSON object with --json).

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "bench_common.h"
#include "command.h"
#include "core/error.h"
#include "engine/llm_engine.h"
#include "model/loader/model_files.h"
#include "worker/model_runner.h"

namespace pagoda::cli::bench {
namespace {

struct LatencyArgs {
  std::string model;
  int64_t prompt = 512;
  int64_t gen = 128;
  int64_t reps = 3;
  std::string device = "cpu";
  std::string matmul = "float";
  std::string kv_cache_dtype = "auto";
  bool json = false;
  uint64_t seed = 1234;
};

// One sequence in a runner's cache: blocks 0 .. max_blocks - 1 in order.
struct Sequence {
  int64_t block_size;
  int64_t max_blocks;

  [[nodiscard]] worker::StepInput step(const std::vector<int32_t>& ids, int64_t first_pos) const {
    worker::StepInput s;
    const auto n = static_cast<int64_t>(ids.size());
    s.token_ids = ids;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = first_pos + i;
      s.positions.push_back(static_cast<int32_t>(pos));
      s.slot_mapping.push_back(pos);  // block b of the sequence is cache block b
    }
    s.seq_lens = {static_cast<int32_t>(first_pos + n)};
    s.cu_query_lens = {0, static_cast<int32_t>(n)};
    for (int64_t b = 0; b < max_blocks; ++b)
      s.block_tables.push_back(static_cast<int32_t>(b));
    s.max_blocks_per_seq = max_blocks;
    s.logits_indices = {static_cast<int32_t>(n - 1)};
    return s;
  }
};

int32_t greedy(const Tensor& logits) {
  const float* p = logits.data<float>();
  const int64_t n = logits.dim(-1);
  return static_cast<int32_t>(std::max_element(p, p + n) - p);
}

struct RunTimes {
  double prompt_s = 0.0;
  double decode_s = 0.0;
};

RunTimes run_once(worker::ModelRunner& runner, const Sequence& seq, const std::vector<int32_t>& prompt, int64_t gen,
                  double* first_token_at) {
  RunTimes t;
  double start = now_seconds();
  Tensor logits = runner.execute(seq.step(prompt, 0));
  int32_t next = greedy(logits);
  t.prompt_s = now_seconds() - start;
  if (first_token_at != nullptr) *first_token_at = now_seconds();
  start = now_seconds();
  auto pos = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < gen; ++i, ++pos) {
    logits = runner.execute(seq.step({next}, pos));
    next = greedy(logits);
  }
  t.decode_s = now_seconds() - start;
  return t;
}

std::string model_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int run_latency(const LatencyArgs& a) {
  if (a.prompt < 1 || a.gen < 0 || a.reps < 1 || a.prompt > 1 << 20 || a.gen > 1 << 20 || a.reps > 1000) {
    fail(ErrorCode::kInvalidArgument, "bench latency: need -p >= 1, -n >= 0, 1 <= -r <= 1000 (got {}, {}, {})",
         a.prompt, a.gen, a.reps);
  }
  if (a.matmul != "float" && a.matmul != "int8") {
    fail(ErrorCode::kInvalidArgument, "bench latency: --matmul must be float or int8, got '{}'", a.matmul);
  }
  const Device device = parse_device(a.device);
  if (device.kind == DeviceKind::kCpu) cpu::cpu_backend().set_quantized_activations(a.matmul == "int8");
  const double t0 = now_seconds();
  const std::string path = a.model.empty() ? default_model_path() : a.model;
  const ModelFiles files = ModelFiles::open(path);
  const int64_t total = a.prompt + a.gen;
  worker::RunnerOptions ro;
  ro.device = device;
  ro.block_size = 16;
  ro.cache_dtype = engine::kv_cache_dtype_for(a.kv_cache_dtype, device);
  ro.max_model_len = total;
  ro.num_blocks = (total + ro.block_size - 1) / ro.block_size;
  worker::ModelRunner runner(files, ro);
  if (total > runner.max_model_len()) {
    fail(ErrorCode::kInvalidArgument, "bench latency: -p + -n = {} exceeds the model's context of {} tokens", total,
         runner.max_model_len());
  }
  const Sequence seq{ro.block_size, ro.num_blocks};
  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(runner.config().vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(a.prompt));
  for (auto& id : prompt)
    id = token(rng);
  const int threads = device.kind == DeviceKind::kCpu ? cpu::cpu_backend().pool().num_threads() : 0;

  fmt::print(stderr, "bench latency: {} on {} ({} threads, matmul {}, KV cache {}), warm-up run...\n", model_name(path),
             device_name(device), threads, a.matmul, dtype_name(ro.cache_dtype));
  double first_token_at = 0.0;
  (void)run_once(runner, seq, prompt, std::min<int64_t>(a.gen, 8), &first_token_at);
  const double cold_start = first_token_at - t0;
  std::vector<double> pp, tg;
  for (int64_t r = 0; r < a.reps; ++r) {
    const RunTimes t = run_once(runner, seq, prompt, a.gen, nullptr);
    pp.push_back(static_cast<double>(a.prompt) / t.prompt_s);
    if (a.gen > 0) tg.push_back(static_cast<double>(a.gen) / t.decode_s);
    fmt::print(stderr, "  run {}/{}: prompt {:.1f} tok/s, decode {:.1f} tok/s\n", r + 1, a.reps, pp.back(),
               a.gen > 0 ? tg.back() : 0.0);
  }
  const Stats spp = stats(pp);
  const Stats stg = stats(tg);
  const uint64_t rss = peak_rss_bytes();
  const double size_mib = static_cast<double>(files.weight_bytes()) / (1024.0 * 1024.0);
  const double params_m = static_cast<double>(files.parameter_count()) / 1e6;

  if (a.json) {
    nlohmann::ordered_json j;
    j["model"] = path;
    j["model_bytes"] = files.weight_bytes();
    j["parameters"] = files.parameter_count();
    j["device"] = device_name(device);
    j["threads"] = threads;
    j["matmul"] = a.matmul;
    j["kv_cache_dtype"] = dtype_name(ro.cache_dtype);
    j["n_prompt"] = a.prompt;
    j["n_gen"] = a.gen;
    j["repetitions"] = a.reps;
    j["prompt_tokens_per_s"] = {{"mean", spp.mean}, {"stddev", spp.stddev}, {"samples", pp}};
    j["decode_tokens_per_s"] = {{"mean", stg.mean}, {"stddev", stg.stddev}, {"samples", tg}};
    j["cold_start_to_first_token_s"] = cold_start;
    j["peak_rss_bytes"] = rss;
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("| model | size | params | backend | threads | matmul | test | t/s |\n");
  fmt::print("|---|---:|---:|---|---:|---|---|---:|\n");
  const std::string head = fmt::format("| {} | {:.2f} MiB | {:.2f} M | {} | {} | {} |", model_name(path), size_mib,
                                       params_m, device_name(device), threads, a.matmul);
  fmt::print("{} pp{} | {:.2f} ± {:.2f} |\n", head, a.prompt, spp.mean, spp.stddev);
  if (a.gen > 0) fmt::print("{} tg{} | {:.2f} ± {:.2f} |\n", head, a.gen, stg.mean, stg.stddev);
  fmt::print("\ncold start to first token: {:.3f} s (open, load, {}-token prompt)\n", cold_start, a.prompt);
  fmt::print("peak RSS: {:.1f} MiB\n", static_cast<double>(rss) / (1024.0 * 1024.0));
  return 0;
}

const BenchRegistration kRegisterLatency("latency", [](CLI::App& bench) {
  auto a = std::make_shared<LatencyArgs>();
  CLI::App* sub = bench.add_subcommand("latency", "Prompt and decode tokens/s of one sequence (like llama-bench)");
  sub->add_option("model", a->model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct)");
  sub->add_option("-p,--n-prompt", a->prompt, "Prompt tokens (random ids), processed as one step")
      ->capture_default_str();
  sub->add_option("-n,--n-gen", a->gen, "Decode steps of one token after the prompt")->capture_default_str();
  sub->add_option("-r,--repetitions", a->reps, "Timed repetitions (after one warm-up run)")->capture_default_str();
  sub->add_option("--device", a->device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--matmul", a->matmul,
                  "CPU matmul over quantized weights: float (dequantize, float32 dot products) or int8 "
                  "(8-bit quantized activations, integer dot products, as llama.cpp; bf16 weights meet bf16 "
                  "activations where the CPU has AMX-BF16 or AVX512-BF16)")
      ->capture_default_str();
  sub->add_option("--kv-cache-dtype", a->kv_cache_dtype,
                  "KV cache type: auto (f32 on the CPU, f16 on devices), f32, f16, bf16")
      ->capture_default_str();
  sub->add_option("--seed", a->seed, "Seed of the random prompt")->capture_default_str();
  sub->add_flag("--json", a->json, "Print one JSON object instead of the table");
  return [a] { return run_latency(*a); };
});

}  // namespace
}  // namespace pagoda::cli::bench
