#pragma once

// AVX2 versions of the integer-dot kernels (qdot.h). Call them only when qdot_cpu_has_avx2().

#include <cstdint>

#include "backends/cpu/quant/qdot.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_QDOT_HAS_AVX2 1
#else
#define PAGODA_QDOT_HAS_AVX2 0
#endif

namespace pagoda::cpu::qdot {

#if PAGODA_QDOT_HAS_AVX2
[[nodiscard]] bool qdot_cpu_has_avx2();
void quantize_row_avx2(const float* x, ActBlock* out, int64_t k);
void dot_rows_avx2(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                   int64_t m, float* out, int64_t ldo);
void dot_rows_packed_avx2(DType t, const uint8_t* packed, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
                          float* out, int64_t ldo);
#endif

}  // namespace pagoda::cpu::qdot
