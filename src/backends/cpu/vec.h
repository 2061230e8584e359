#pragma once

// The inner loops the CPU kernels share: dot products, a dot-product tile for matmul and
// attention scores, and y += a * x. Each picks an AVX2+FMA version at run time when the CPU has
// one (the library itself stays runnable on any x86-64) and otherwise a portable loop with
// several partial sums. Results differ from a sequential sum only in rounding order.

#include <cstdint>

namespace pagoda::cpu::vec {

[[nodiscard]] float dot(const float* a, const float* b, int64_t n);

// out[i * ldo + j] = dot(x + i * ldx, w + j * ldw, k) for i < m, j < n: every activation row
// against every weight row, with each weight element loaded once per pair of activation rows.
void dot_tile(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n, int64_t k, float* out,
              int64_t ldo);

// y += a * x.
void axpy(float a, const float* x, float* y, int64_t n);

// y *= s.
void scale(float* y, float s, int64_t n);

// Whether the AVX2 versions are in use on this CPU.
[[nodiscard]] bool uses_avx2();
// The dot_tile kernel in use: "avx512" (AVX-512F, unless PAGODA_CPU_ISA=avx2), "avx2" or
// "portable".
[[nodiscard]] const char* tile_kernel_name();

}  // namespace pagoda::cpu::vec
