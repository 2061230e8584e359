// pagoda's CPU float matmul against oneDNN's, side by side in one process: out (m, n) = x (m, k)
// · w (n, k)^T with f32, bf16 and f16 weights, for the shapes of the default model's layers and a
// Llama-sized one, at 1, 32 and 512 activation rows. Both use every thread pagoda's pool uses
// (oneDNN through its own runtime: set OMP_NUM_THREADS to match). oneDNN multiplies bf16 and f16
// weights with activations of the same type (converted here first, outside the timing) where the
// CPU has a kernel for them; where it has none, the row says so. Where pagoda has a bf16 kernel
// (AMX-BF16 or AVX512-BF16), bf16 weights get a second line, "bf16r": that kernel, activations
// rounded to bf16 as oneDNN's are.
//
//   pagoda_cpu_matmul_bench [--reps N]
//
// Prints one line per case: best-of-N milliseconds and GFLOP/s for each, their ratio, and the
// largest difference between the two outputs relative to the largest output.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ops/matmul.h"
#include "backends/cpu/quant/bf16dot.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/quant/float_convert.h"
#include "backends/cpu/vec.h"

namespace {

using pagoda::DType;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename F>
double best_of(int reps, F&& f) {
  f();  // warm-up (oneDNN's first call also JIT-compiles its kernel)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = seconds_now();
    f();
    best = std::min(best, seconds_now() - t0);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
      return 2;
    }
  }
  pagoda::cpu::ThreadPool& pool = pagoda::cpu::cpu_backend().pool();
  const char* omp = std::getenv("OMP_NUM_THREADS");
  std::printf("pagoda threads %d, OMP_NUM_THREADS %s, best of %d, float tile %s, bf16 kernel %s\n", pool.num_threads(),
              omp != nullptr ? omp : "(unset)", reps, pagoda::cpu::vec::tile_kernel_name(),
              pagoda::cpu::bf16dot::kernel_name());
  std::printf("%-5s %5s %5s %4s | %9s %8s | %9s %8s | %6s | %s\n", "w", "n", "k", "m", "pagoda ms", "GFLOP/s",
              "oneDNN ms", "GFLOP/s", "oneDNN/pagoda", "max rel diff");
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Shape {
    int64_t n, k;
  };
  for (const Shape s : {Shape{1536, 576}, Shape{576, 1536}, Shape{4096, 4096}}) {
    std::vector<float> wf(static_cast<size_t>(s.n * s.k));
    for (auto& v : wf)
      v = u(rng);
    for (DType wt : {DType::kF32, DType::kBF16, DType::kF16}) {
      // The weight in its type, and as oneDNN's weight memory of that type ([k, n] read as "ba").
      std::vector<uint16_t> w16(wf.size());
      if (wt == DType::kBF16) pagoda::cpu::quantize_row_bf16(wf.data(), w16.data(), s.n * s.k);
      if (wt == DType::kF16) pagoda::cpu::quantize_row_f16(wf.data(), w16.data(), s.n * s.k);
      const void* w = wt == DType::kF32 ? static_cast<const void*>(wf.data()) : w16.data();
      const dt ddt = wt == DType::kF32 ? dt::f32 : wt == DType::kBF16 ? dt::bf16 : dt::f16;
      for (int64_t m : {1, 32, 512}) {
        if (s.n * s.k > 4096 * 4096 / 2 && m > 32) continue;  // keep the run short
        std::vector<float> x(static_cast<size_t>(m * s.k));
        for (auto& v : x)
          v = u(rng);
        std::vector<float> theirs(static_cast<size_t>(m * s.n), 0.0f);
        const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(s.n) * static_cast<double>(s.k);
        double t_dnnl = 0.0;
        std::string dnnl_error;
        try {
          const dnnl::memory::desc src_md({m, s.k}, ddt, tag::ab);
          const dnnl::memory::desc wei_md({s.k, s.n}, ddt, tag::ba);
          const dnnl::memory::desc dst_md({m, s.n}, dt::f32, tag::ab);
          const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), eng);
          const dnnl::matmul prim(pd);
          // Activations in the weight's type (converted once, untimed), weights in place.
          std::vector<uint16_t> x16(x.size());
          if (wt == DType::kBF16) pagoda::cpu::quantize_row_bf16(x.data(), x16.data(), m * s.k);
          if (wt == DType::kF16) pagoda::cpu::quantize_row_f16(x.data(), x16.data(), m * s.k);
          dnnl::memory src(src_md, eng, wt == DType::kF32 ? static_cast<void*>(x.data()) : x16.data());
          dnnl::memory wei(wei_md, eng, const_cast<void*>(w));
          dnnl::memory dst(dst_md, eng, theirs.data());
          t_dnnl = best_of(reps, [&] {
            prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
            stream.wait();
          });
        } catch (const dnnl::error& e) {
          dnnl_error = std::string("no kernel (") + e.what() + ")";
        }
        // pagoda's float path, and for bf16 weights where the CPU has one the bf16 kernel on the
        // weight repacked as PackedWeights would hold it ("bf16r": activations rounded to bf16).
        std::vector<std::string> labels{std::string(pagoda::dtype_name(wt))};
        if (wt == DType::kBF16 && pagoda::cpu::uses_bf16_kernel(wt)) labels.emplace_back("bf16r");
        std::vector<uint8_t> packed;
        for (const std::string& label : labels) {
          const bool reduced = label == "bf16r";
          if (reduced && packed.empty()) {
            packed.resize(static_cast<size_t>((s.n + 15) / 16) * pagoda::cpu::bf16dot::packed_group_bytes(s.k));
            pagoda::cpu::bf16dot::pack_rows16(static_cast<const uint8_t*>(w), static_cast<uint64_t>(s.k) * 2, s.n, s.k,
                                              packed.data());
          }
          std::vector<float> ours(static_cast<size_t>(m * s.n));
          const double t_ours = best_of(reps, [&] {
            pagoda::cpu::gemm(pool, x.data(), s.k, m, w, wt, s.n, s.k, nullptr, ours.data(), s.n, reduced,
                              reduced ? packed.data() : nullptr);
          });
          std::string dnnl_ms = "-", dnnl_gf = "-", ratio = "-", diff = dnnl_error;
          if (dnnl_error.empty()) {
            double max_out = 0.0, max_diff = 0.0;
            for (size_t i = 0; i < ours.size(); ++i) {
              max_out = std::max(max_out, std::fabs(static_cast<double>(ours[i])));
              max_diff = std::max(max_diff, std::fabs(static_cast<double>(ours[i]) - theirs[i]));
            }
            char buf[64];
            std::snprintf(buf, sizeof buf, "%9.3f", t_dnnl * 1e3);
            dnnl_ms = buf;
            std::snprintf(buf, sizeof buf, "%8.1f", flops / t_dnnl / 1e9);
            dnnl_gf = buf;
            std::snprintf(buf, sizeof buf, "%6.2fx", t_ours / t_dnnl);
            ratio = buf;
            std::snprintf(buf, sizeof buf, "%.2g", max_out > 0 ? max_diff / max_out : max_diff);
            diff = buf;
          }
          std::printf("%-5s %5lld %5lld %4lld | %9.3f %8.1f | %9s %8s | %13s | %s\n", label.c_str(),
                      static_cast<long long>(s.n), static_cast<long long>(s.k), static_cast<long long>(m), t_ours * 1e3,
                      flops / t_ours / 1e9, dnnl_ms.c_str(), dnnl_gf.c_str(), ratio.c_str(), diff.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
