// The integer-dot kernels on repacked weights, one core, each kernel family this CPU has side by
// side: the in-place kernels on the original rows (dot_rows), AVX2 one group (eight weight rows)
// per call, AVX2 two groups (Q4_0 / Q4_1 only), AVX-512 VNNI one group (256-bit vectors) and two
// groups (512-bit), and AMX (two groups against 16 activation rows per tile multiply; Q6_K has the
// AVX2 kernel only). For every repacked type, a stack of
// weight matrices of the default model's MLP shape (too large for the caches, as in a decode step)
// against 1 to 128 activation rows. Every family's output is checked bit for bit against the
// in-place AVX2 kernels (qdot::dot_rows).
//
//   pagoda_cpu_qdot_bench [--reps N] [--matrices N]
//
// Prints one line per (type, rows, family): best-of-N milliseconds, GMAC/s and weight GB/s.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/quant/qdot.h"
#include "backends/cpu/quant/qdot_avx2.h"
#include "backends/cpu/quant/qdot_vnni.h"
#include "core/dtype.h"

namespace {

using pagoda::DType;
namespace qdot = pagoda::cpu::qdot;

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Random quants with small positive f16 scales (and minimums), so no block is NaN or infinite.
std::vector<uint8_t> random_rows(std::mt19937& rng, DType t, int64_t n, int64_t k, uint64_t row_bytes) {
  std::vector<uint8_t> w(static_cast<size_t>(n) * row_bytes);
  for (auto& b : w)
    b = static_cast<uint8_t>(rng());
  const uint64_t block_bytes = row_bytes / static_cast<uint64_t>(k / pagoda::dtype_block_size(t));
  for (uint64_t o = 0; o < w.size(); o += block_bytes) {
    // the first f16 (d; Q6_K's is last) and, for Q4_1 and Q4_K, the second (m or dmin): 0x2c00 = 1/16
    const uint64_t d = t == DType::kQ6_K ? 208 : 0;
    w[o + d] = 0x00, w[o + d + 1] = 0x2c;
    if (t == DType::kQ4_1 || t == DType::kQ4_K) w[o + 2] = 0x00, w[o + 3] = 0x2c;
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  int64_t matrices = 48;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--matrices" && i + 1 < argc) {
      matrices = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--matrices N]\n", argv[0]);
      return 2;
    }
  }
#if PAGODA_QDOT_HAS_AVX2
  if (!qdot::qdot_cpu_has_avx2()) {
    std::printf("this CPU has no AVX2: there are no repacked kernels to measure\n");
    return 0;
  }
  const bool vnni = qdot::qdot_cpu_has_vnni();
  std::printf("CPU: AVX2%s\n", vnni ? ", AVX-512 VNNI" : " (no AVX-512 VNNI: its kernels are not measured)");
  const int64_t n = 1536;
  const int64_t k = 768;
  const int64_t blocks = k / qdot::kBlock;
  std::printf("%-5s %4s %-14s %10s %9s %8s  %s\n", "type", "rows", "kernels", "ms", "GMAC/s", "GB/s", "bits");
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K}) {
    std::mt19937 rng(static_cast<unsigned>(t) + 7);
    const uint64_t row_bytes = *pagoda::dtype_row_bytes(t, k);
    const uint64_t group = qdot::packed_group_bytes(t, blocks);
    std::vector<std::vector<uint8_t>> w;
    std::vector<std::vector<uint8_t>> packed;
    for (int64_t i = 0; i < matrices; ++i) {
      w.push_back(random_rows(rng, t, n, k, row_bytes));
      packed.emplace_back(static_cast<size_t>(n / 8) * group);
      if (qdot::packs(t)) qdot::pack_rows8(t, w.back().data(), row_bytes, n, blocks, packed.back().data());
    }
    struct Family {
      const char* name;
      qdot::PackedTileFn tiles[4];
      qdot::PackedPairFn pairs[4];
      bool use_pairs;
      qdot::PackedAmxFn amx;
      bool in_place;  // dot_rows on the original rows
      bool q6_k;      // Q6_K's repacked kernel (its own entry point)
    };
    std::vector<Family> families;
    Family f{};
    f.name = "in place";
    f.in_place = true;
    families.push_back(f);
    if (qdot::packs(t)) {  // (a build whose kernels do not repack a type measures its in-place line only)
      f = Family{};
      f.name = "avx2 1 group";
      if (t == DType::kQ6_K) {
        f.q6_k = true;
        families.push_back(f);
      } else {
        qdot::packed_tiles_avx2(t, f.tiles);
        families.push_back(f);
        qdot::packed_pairs_avx2(t, f.pairs);
      }
      if (f.pairs[0] != nullptr) {
        f.name = "avx2 2 groups";
        f.use_pairs = true;
        families.push_back(f);
      }
      if (vnni && t != DType::kQ6_K) {
        Family v{};
        v.name = "vnni 1 group";
        qdot::packed_tiles_vnni(t, v.tiles);
        families.push_back(v);
        qdot::packed_pairs_vnni(t, v.pairs);
        v.name = "vnni 2 groups";
        v.use_pairs = true;
        families.push_back(v);
        if (qdot::qdot_cpu_has_amx()) {
          v.name = "amx";
          v.amx = qdot::packed_amx_kernel(t);
          families.push_back(v);
        }
      }
    }
    for (int64_t m : {1, 2, 4, 8, 16, 32, 128}) {
      std::vector<float> x(static_cast<size_t>(m * k));
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      for (auto& v : x)
        v = dist(rng);
      std::vector<qdot::ActBlock> xq(static_cast<size_t>(m * blocks));
      for (int64_t r = 0; r < m; ++r)
        qdot::quantize_row(x.data() + r * k, xq.data() + r * blocks, k);
      // the AMX kernels' layout of the rows, as gemm_int8 writes it once per matmul
      std::vector<int8_t> amx_q(static_cast<size_t>(m * k));
      std::vector<float> amx_scales(static_cast<size_t>((m + 15) / 16 * blocks * qdot::kAmxScaleFloats));
      qdot::amx_rows_layout(xq.data(), blocks, 0, m, amx_q.data(), amx_scales.data());
      const qdot::AmxRows amx_rows{amx_q.data(), amx_scales.data()};
      std::vector<float> want(static_cast<size_t>(m * n));
      qdot::dot_rows(t, w[0].data(), row_bytes, n, xq.data(), blocks, m, want.data(), n);
      for (const Family& fam : families) {
        if (fam.amx != nullptr && m % 16 != 0) continue;  // AMX takes 16 activation rows at a time
        std::vector<float> got(static_cast<size_t>(m * n), -1.0f);
        double best = 1e30;
        const auto run = [&](int64_t i) {
          const uint8_t* p = packed[static_cast<size_t>(i)].data();
          if (fam.in_place) {
            qdot::dot_rows(t, w[static_cast<size_t>(i)].data(), row_bytes, n, xq.data(), blocks, m, got.data(), n);
          } else if (fam.q6_k) {
            qdot::dot_rows_packed(t, p, n, xq.data(), blocks, m, got.data(), n);
          } else if (fam.amx != nullptr) {
            qdot::run_packed_amx(fam.amx, fam.tiles, group, p, n, xq.data(), amx_rows, blocks, m, got.data(), n);
          } else {
            qdot::run_packed(fam.tiles, fam.use_pairs ? fam.pairs : nullptr, group, p, n, xq.data(), blocks, m,
                             got.data(), n);
          }
        };
        for (int rep = 0; rep < reps; ++rep) {
          const double t0 = seconds_now();
          for (int64_t i = 0; i < matrices; ++i)
            run(i);
          best = std::min(best, seconds_now() - t0);
        }
        run(0);  // the last matrix's output is in `got`: check the first one's
        const bool same = std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0;
        const double macs = static_cast<double>(matrices) * n * k * m;
        const double bytes = static_cast<double>(matrices) * n * row_bytes;
        std::printf("%-5s %4lld %-14s %10.3f %9.1f %8.1f  %s\n", std::string(pagoda::dtype_name(t)).c_str(),
                    static_cast<long long>(m), fam.name, best * 1e3, macs / best / 1e9, bytes / best / 1e9,
                    same ? "same" : "DIFFERENT");
        if (!same) return 1;
      }
    }
  }
  return 0;
#else
  (void)reps, (void)matrices;
  std::printf("not an x86-64 build: there are no repacked kernels to measure\n");
  return 0;
#endif
}
