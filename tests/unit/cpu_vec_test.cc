// The float matmul tile (vec::dot_tile), whichever kernel this CPU takes (AVX-512, AVX2 or the
// portable one; PAGODA_CPU_ISA=avx2 picks AVX2 on an AVX-512 machine): every output is close to
// a double-precision dot, and an output's bits do not depend on how many rows share the call or
// where in the tile the pair sits, which is what keeps a sequence's result independent of its
// batch.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "backends/cpu/vec.h"

namespace pagoda::cpu {
namespace {

TEST(CpuVec, DotTileIsCloseToDoubleAndTheSameHoweverTiled) {
  std::cout << "[ NOTE     ] float tile kernel: " << vec::tile_kernel_name() << "\n";
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const int64_t k : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{15}, int64_t{16}, int64_t{33}, int64_t{576}}) {
    const int64_t m = 9;
    const int64_t n = 13;
    const int64_t ldx = k + 3;  // rows that do not start on a vector boundary
    const int64_t ldw = k + 1;
    std::vector<float> x(static_cast<size_t>(m * ldx));
    std::vector<float> w(static_cast<size_t>(n * ldw));
    for (auto& v : x)
      v = dist(rng);
    for (auto& v : w)
      v = dist(rng);
    std::vector<float> all(static_cast<size_t>(m * n));
    vec::dot_tile(x.data(), ldx, m, w.data(), ldw, n, k, all.data(), n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double want = 0.0;
        double mag = 0.0;
        for (int64_t t = 0; t < k; ++t) {
          want += static_cast<double>(x[static_cast<size_t>(i * ldx + t)]) * w[static_cast<size_t>(j * ldw + t)];
          mag +=
              std::fabs(static_cast<double>(x[static_cast<size_t>(i * ldx + t)]) * w[static_cast<size_t>(j * ldw + t)]);
        }
        // any summation order in float: within (k + 1) roundings of the absolute sum
        EXPECT_NEAR(all[static_cast<size_t>(i * n + j)], want, static_cast<double>(k + 1) * 6e-8 * mag)
            << "k " << k << " i " << i << " j " << j;
      }
    }
    // Each output again, from calls of every other shape that contain it.
    for (const int64_t rows : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}}) {
      for (const int64_t cols : {int64_t{1}, int64_t{4}, int64_t{7}}) {
        for (int64_t i0 = 0; i0 + rows <= m; i0 += 2) {
          for (int64_t j0 = 0; j0 + cols <= n; j0 += 3) {
            std::vector<float> part(static_cast<size_t>(rows * cols));
            vec::dot_tile(x.data() + i0 * ldx, ldx, rows, w.data() + j0 * ldw, ldw, cols, k, part.data(), cols);
            for (int64_t i = 0; i < rows; ++i) {
              for (int64_t j = 0; j < cols; ++j) {
                const float a = part[static_cast<size_t>(i * cols + j)];
                const float b = all[static_cast<size_t>((i0 + i) * n + j0 + j)];
                ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0)
                    << "k " << k << ": output (" << i0 + i << ", " << j0 + j << ") of a " << rows << " x " << cols
                    << " call differs from the 9 x 13 call's";
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace pagoda::cpu
