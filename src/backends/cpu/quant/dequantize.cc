#include "backends/cpu/quant/dequantize.h"

#include <cstring>

#include "backends/cpu/quant/block_layout.h"
#include "backends/cpu/quant/dequantize_avx2.h"
#include "core/error.h"

namespace pagoda::cpu {

namespace L = layout;

static_assert(L::q4_0::kBytes == 18 && L::q4_1::kBytes == 20 && L::q5_0::kBytes == 22 && L::q5_1::kBytes == 24);
static_assert(L::q8_0::kBytes == 34 && L::q2_k::kBytes == 84 && L::q3_k::kBytes == 110);
static_assert(L::q4_k::kBytes == 144 && L::q5_k::kBytes == 176 && L::q6_k::kBytes == 210 && L::q8_k::kBytes == 292);

// Each formula below is written as the reference computes it: float32 products (exact, see
// dequantize.h), then one rounded float32 sum or difference.

void dequantize_row_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i)
    dst[i] = L::read_f16(p + 2 * i);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i)
    dst[i] = bf16_to_fp32(L::read_u16(p + 2 * i));
}

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q4_0::kBytes, dst += L::kQK) {
    const float d = L::read_f16(b + L::q4_0::kD);
    const uint8_t* qs = b + L::q4_0::kQs;
    for (int j = 0; j < L::kQK / 2; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
      dst[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q4_1::kBytes, dst += L::kQK) {
    const float d = L::read_f16(b + L::q4_1::kD);
    const float m = L::read_f16(b + L::q4_1::kM);
    const uint8_t* qs = b + L::q4_1::kQs;
    for (int j = 0; j < L::kQK / 2; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
      dst[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q5_0::kBytes, dst += L::kQK) {
    const float d = L::read_f16(b + L::q5_0::kD);
    const uint32_t qh = L::read_u32(b + L::q5_0::kQh);
    const uint8_t* qs = b + L::q5_0::kQs;
    for (int j = 0; j < L::kQK / 2; ++j) {
      const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo - 16);
      dst[j + 16] = d * static_cast<float>(hi - 16);
    }
  }
}

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q5_1::kBytes, dst += L::kQK) {
    const float d = L::read_f16(b + L::q5_1::kD);
    const float m = L::read_f16(b + L::q5_1::kM);
    const uint32_t qh = L::read_u32(b + L::q5_1::kQh);
    const uint8_t* qs = b + L::q5_1::kQs;
    for (int j = 0; j < L::kQK / 2; ++j) {
      const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q8_0::kBytes, dst += L::kQK) {
    const float d = L::read_f16(b + L::q8_0::kD);
    const auto* qs = reinterpret_cast<const int8_t*>(b + L::q8_0::kQs);
    for (int j = 0; j < L::kQK; ++j)
      dst[j] = static_cast<float>(qs[j]) * d;
  }
}

// The K-quants store their 2-, 4- or 6-bit quants in 32-byte (Q6_K's low nibbles: 64-byte) runs;
// the bits at shift s of a run's bytes give consecutive output elements. Sub-blocks of 16 or 32
// elements share a scale (and a min).

void dequantize_row_q2_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q2_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q2_k::kD);
    const float dmin = L::read_f16(b + L::q2_k::kDmin);
    const uint8_t* scales = b + L::q2_k::kScales;
    const uint8_t* qs = b + L::q2_k::kQs;
    for (int o = 0; o < L::kQK_K; o += 16) {  // one sub-block of 16
      const float dl = d * static_cast<float>(scales[o / 16] & 0x0f);
      const float ml = dmin * static_cast<float>(scales[o / 16] >> 4);
      const uint8_t* run = qs + (o / 128) * 32 + (o % 32);
      const int shift = 2 * ((o / 32) % 4);
      for (int i = 0; i < 16; ++i)
        dst[o + i] = dl * static_cast<float>((run[i] >> shift) & 3) - ml;
    }
  }
}

void dequantize_row_q3_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q3_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q3_k::kD);
    const uint8_t* hmask = b + L::q3_k::kHmask;
    const uint8_t* qs = b + L::q3_k::kQs;
    for (int o = 0; o < L::kQK_K; o += 16) {
      const float dl = d * static_cast<float>(L::q3_k_scale(b + L::q3_k::kScales, o / 16));
      const uint8_t* run = qs + (o / 128) * 32 + (o % 32);
      const uint8_t* high = hmask + (o % 32);
      const int shift = 2 * ((o / 32) % 4);
      const int bit = o / 32;
      for (int i = 0; i < 16; ++i) {
        // A clear high bit means "subtract 4": the quant is (low two bits) - 4 * !high.
        const int q = ((run[i] >> shift) & 3) - (((high[i] >> bit) & 1) != 0 ? 0 : 4);
        dst[o + i] = dl * static_cast<float>(q);
      }
    }
  }
}

void dequantize_row_q4_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q4_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q4_k::kD);
    const float dmin = L::read_f16(b + L::q4_k::kDmin);
    const uint8_t* qs = b + L::q4_k::kQs;
    for (int s = 0; s < 8; ++s) {  // sub-blocks of 32: low nibbles of run s/2, then high nibbles
      uint8_t sc = 0;
      uint8_t mn = 0;
      L::k_scale_min(b + L::q4_k::kScales, s, &sc, &mn);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(mn);
      const uint8_t* run = qs + (s / 2) * 32;
      const int shift = 4 * (s % 2);
      for (int i = 0; i < 32; ++i)
        dst[s * 32 + i] = dl * static_cast<float>((run[i] >> shift) & 0x0f) - ml;
    }
  }
}

void dequantize_row_q5_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q5_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q5_k::kD);
    const float dmin = L::read_f16(b + L::q5_k::kDmin);
    const uint8_t* qh = b + L::q5_k::kQh;
    const uint8_t* qs = b + L::q5_k::kQs;
    for (int s = 0; s < 8; ++s) {  // as Q4_K, plus bit s of qh[i] as the fifth bit
      uint8_t sc = 0;
      uint8_t mn = 0;
      L::k_scale_min(b + L::q5_k::kScales, s, &sc, &mn);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(mn);
      const uint8_t* run = qs + (s / 2) * 32;
      const int shift = 4 * (s % 2);
      for (int i = 0; i < 32; ++i) {
        const int q = ((run[i] >> shift) & 0x0f) | (((qh[i] >> s) & 1) << 4);
        dst[s * 32 + i] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

void dequantize_row_q6_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q6_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q6_k::kD);
    const auto* scales = reinterpret_cast<const int8_t*>(b + L::q6_k::kScales);
    // Each half of 128 elements takes 64 bytes of ql (low nibbles: elements 0-63, high: 64-127)
    // and 32 bytes of qh (bit pair k: elements 32k .. 32k+31).
    for (int o = 0; o < L::kQK_K; o += 16) {
      const float dl = d * static_cast<float>(scales[o / 16]);
      const int r = o % 128;
      const uint8_t* ql = b + L::q6_k::kQl + (o / 128) * 64 + (r % 64);
      const uint8_t* qh = b + L::q6_k::kQh + (o / 128) * 32 + (r % 32);
      const int lshift = 4 * (r / 64);
      const int hshift = 2 * (r / 32);
      for (int i = 0; i < 16; ++i) {
        const int q = (((ql[i] >> lshift) & 0x0f) | (((qh[i] >> hshift) & 3) << 4)) - 32;
        dst[o + i] = dl * static_cast<float>(q);
      }
    }
  }
}

void dequantize_row_q8_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q8_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f32(b + L::q8_k::kD);
    const auto* qs = reinterpret_cast<const int8_t*>(b + L::q8_k::kQs);
    for (int j = 0; j < L::kQK_K; ++j)
      dst[j] = d * static_cast<float>(qs[j]);
  }
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
#if PAGODA_DEQUANT_HAS_AVX2
  static const bool f16c = cpu_has_f16c();
  if (f16c) {
    quantize_row_f16_f16c(src, dst, n);
    return;
  }
#endif
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(src[i]);
    std::memcpy(p + 2 * i, &h, sizeof h);
  }
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(src[i]);
    std::memcpy(p + 2 * i, &h, sizeof h);
  }
}

namespace {

using RowFn = void (*)(const void*, float*, int64_t);

RowFn scalar_kernel(DType t) {
  switch (t) {
    case DType::kF32: return dequantize_row_f32;
    case DType::kF16: return dequantize_row_f16;
    case DType::kBF16: return dequantize_row_bf16;
    case DType::kQ4_0: return dequantize_row_q4_0;
    case DType::kQ4_1: return dequantize_row_q4_1;
    case DType::kQ5_0: return dequantize_row_q5_0;
    case DType::kQ5_1: return dequantize_row_q5_1;
    case DType::kQ8_0: return dequantize_row_q8_0;
    case DType::kQ2_K: return dequantize_row_q2_k;
    case DType::kQ3_K: return dequantize_row_q3_k;
    case DType::kQ4_K: return dequantize_row_q4_k;
    case DType::kQ5_K: return dequantize_row_q5_k;
    case DType::kQ6_K: return dequantize_row_q6_k;
    case DType::kQ8_K: return dequantize_row_q8_k;
    default: return nullptr;
  }
}

RowFn fast_kernel(DType t) {
#if PAGODA_DEQUANT_HAS_AVX2
  static const bool avx2 = cpu_has_avx2();
  if (avx2) {
    switch (t) {
      case DType::kF16: return dequantize_row_f16_avx2;
      case DType::kQ4_1: return dequantize_row_q4_1_avx2;
      case DType::kQ4_K: return dequantize_row_q4_k_avx2;
      case DType::kQ6_K: return dequantize_row_q6_k_avx2;
      case DType::kQ8_0: return dequantize_row_q8_0_avx2;
      default: break;
    }
  }
#else
  (void)t;
#endif
  return nullptr;
}

RowFn checked_kernel(DType t, int64_t n, bool allow_fast) {
  RowFn fn = scalar_kernel(t);
  if (fn == nullptr) fail(ErrorCode::kUnsupported, "dequantization of {} tensors is not implemented", dtype_name(t));
  const int64_t block = dtype_block_size(t);
  if (n < 0 || n % block != 0) {
    fail(ErrorCode::kInvalidArgument, "cannot dequantize {} elements of {}: not a whole number of {}-element blocks", n,
         dtype_name(t), block);
  }
  if (allow_fast) {
    if (RowFn fast = fast_kernel(t)) return fast;
  }
  return fn;
}

}  // namespace

bool can_dequantize(DType t) {
  return scalar_kernel(t) != nullptr;
}

bool has_fast_dequantize(DType t) {
  return fast_kernel(t) != nullptr;
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  checked_kernel(t, n, true)(src, dst, n);
}

void dequantize_row_scalar(DType t, const void* src, float* dst, int64_t n) {
  checked_kernel(t, n, false)(src, dst, n);
}

}  // namespace pagoda::cpu
