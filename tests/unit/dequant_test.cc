#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/quant/dequantize_avx2.h"
#include "backends/cpu/quant/float_convert.h"
#include "core/dtype.h"
#include "core/error.h"

// Blocks are packed here from chosen quant values following the format definitions (ggml's block
// structs), the opposite direction of the code under test. Scales are powers of two and quants
// small integers, so every expected value is exact and independent of rounding order; rounding
// order itself is checked against the gguf package in tests/models/test_dequant_reference.py.

namespace pagoda::cpu {
namespace {

uint32_t bits(float f) {
  return std::bit_cast<uint32_t>(f);
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16

// The value of a binary16 from its definition, in double (exact for every finite half).
double half_value(uint16_t h) {
  const int sign = (h >> 15) != 0 ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(Fp16, EveryHalfWidensExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto x = static_cast<uint16_t>(h);
    const float f = fp16_to_fp32(x);
    const int exponent = (x >> 10) & 0x1f;
    if (exponent == 0x1f) {
      // Infinity or NaN: same sign, all-ones exponent, the ten payload bits on top of the mantissa.
      const uint32_t expect =
          (static_cast<uint32_t>(x & 0x8000u) << 16) | 0x7f800000u | (static_cast<uint32_t>(x & 0x3ffu) << 13);
      EXPECT_EQ(bits(f), expect) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), half_value(x)) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (x & 0x8000u) != 0) << std::hex << h;
    }
  }
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0400), 0x1p-14f);         // smallest normal
  EXPECT_EQ(fp16_to_fp32(0x0001), 0x1p-24f);         // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03ff), 1023 * 0x1p-24f);  // largest subnormal
  EXPECT_EQ(fp16_to_fp32(0x8200), -0x1p-15f);
  EXPECT_EQ(bits(fp16_to_fp32(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(bits(fp16_to_fp32(0x7c00)), 0x7f800000u);
  EXPECT_EQ(bits(fp16_to_fp32(0xfc00)), 0xff800000u);
  EXPECT_EQ(bits(fp16_to_fp32(0x7e00)), 0x7fc00000u);  // quiet NaN
  EXPECT_EQ(bits(fp16_to_fp32(0x7c01)), 0x7f802000u);  // signalling NaN stays signalling
  EXPECT_EQ(bits(fp16_to_fp32(0xfd55)), 0xffaaa000u);
}

TEST(Fp16, NarrowingRoundsToNearestEven) {
  // Every finite half survives the round trip.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;
    EXPECT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  // Between two neighbouring positive halves: the midpoint goes to the even one, anything off the
  // midpoint to the nearer one. Midpoints need 12 significant bits, so they are exact floats.
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    const float lo = fp16_to_fp32(h);
    const float hi = fp16_to_fp32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    const uint16_t even = (h & 1) == 0 ? h : static_cast<uint16_t>(h + 1);
    EXPECT_EQ(fp32_to_fp16(mid), even) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(-mid), even | 0x8000) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(std::nextafter(mid, 1e9f)), h + 1) << std::hex << h;
  }
}

TEST(Fp16, NarrowingEdgeCases) {
  EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7bff);  // below 65504 + half an ulp: stays finite
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);    // the midpoint rounds to even: infinity
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);  // half the smallest subnormal: ties to zero
  EXPECT_EQ(fp32_to_fp16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(3 * 0x1p-25f), 0x0002);  // 1.5 subnormal ulps: ties to even (2)
  EXPECT_EQ(fp32_to_fp16(0x1p-26f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0x1p-30f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(fp32_to_fp16(0x1p-14f - 0x1p-26f), 0x0400);  // rounds up into the normal range
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  const uint16_t nan = fp32_to_fp16(std::bit_cast<float>(0x7f800001u));  // payload below the kept bits
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x3ff, 0);
  EXPECT_EQ(fp32_to_fp16(std::bit_cast<float>(0xffc00000u)), 0xfe00);
}

TEST(Bf16, WidenAndNarrow) {
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xc040), -3.0f);
  EXPECT_EQ(bits(bf16_to_fp32(0x0001)), 0x00010000u);  // subnormal
  EXPECT_EQ(bits(bf16_to_fp32(0xff81)), 0xff810000u);  // signalling NaN kept as is
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    EXPECT_EQ(bits(f), b << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(fp32_to_bf16(f), b) << std::hex << b;
    }
  }
  EXPECT_EQ(fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);      // tie, even below
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);  // tie, even above
  EXPECT_EQ(fp32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to infinity
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x7f800001u)), 0x7fc0);  // NaN made quiet, not inf
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0xff80ffffu)), 0xffc0);
}

TEST(Bf16, RowConversions) {
  const std::vector<float> x = {1.0f, -2.5f, 0.0f, 65504.0f, 0x1p-24f, 3.140625f};
  std::vector<uint8_t> half(2 * x.size());
  std::vector<uint8_t> brain(2 * x.size());
  quantize_row_f16(x.data(), half.data(), static_cast<int64_t>(x.size()));
  quantize_row_bf16(x.data(), brain.data(), static_cast<int64_t>(x.size()));
  std::vector<float> back(x.size());
  dequantize_row_f16(half.data(), back.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(back, x);
  dequantize_row_bf16(brain.data(), back.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(back, (std::vector<float>{1.0f, -2.5f, 0.0f, 65536.0f, 0x1p-24f, 3.140625f}));
  EXPECT_EQ(half[0], 0x00);  // 1.0 = 0x3c00, little-endian
  EXPECT_EQ(half[1], 0x3c);
}

// ---------------------------------------------------------------------------------------------
// Block packing from known values

void put_u16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v & 0xff);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}
void put_half(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = fp32_to_fp16(v);
  ASSERT_EQ(fp16_to_fp32(h), v) << "test scale must be a half";
  put_u16(b, at, h);
}

// A deterministic pattern of integers in [lo, hi] that visits every value.
int pattern(int i, int lo, int hi) {
  return lo + (i * 7 + i / 5) % (hi - lo + 1);
}

std::vector<float> dequant(DType t, const std::vector<uint8_t>& block) {
  const int64_t n = dtype_block_size(t) * static_cast<int64_t>(block.size()) / dtype_block_bytes(t);
  std::vector<float> out(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
  dequantize_row_scalar(t, block.data(), out.data(), n);
  return out;
}

void expect_values(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(static_cast<double>(got[i]), want[i]) << "element " << i;
}

TEST(Dequant, Q4_0) {
  const float d = 0.25f;
  std::vector<uint8_t> b(18);
  put_half(b, 0, d);
  std::vector<double> want(32);
  for (int e = 0; e < 32; ++e) {
    const int q = pattern(e, 0, 15);
    b[2 + e % 16] |= static_cast<uint8_t>(q << (4 * (e / 16)));  // element e+16: high nibble
    want[e] = d * (q - 8);
  }
  expect_values(dequant(DType::kQ4_0, b), want);
  EXPECT_EQ(want[0], -2.0);  // quant 0 is the most negative value, -8 * d
}

TEST(Dequant, Q4_1) {
  const float d = 0.5f;
  const float m = -3.25f;
  std::vector<uint8_t> b(20);
  put_half(b, 0, d);
  put_half(b, 2, m);
  std::vector<double> want(32);
  for (int e = 0; e < 32; ++e) {
    const int q = pattern(e, 0, 15);
    b[4 + e % 16] |= static_cast<uint8_t>(q << (4 * (e / 16)));
    want[e] = d * q + m;
  }
  expect_values(dequant(DType::kQ4_1, b), want);
  // A fully spelled-out block: every quant 15 gives d*15 + m.
  std::fill(b.begin() + 4, b.end(), 0xff);
  for (float v : dequant(DType::kQ4_1, b))
    EXPECT_EQ(v, 4.25f);
}

TEST(Dequant, Q5_0AndQ5_1) {
  const float d = 0.125f;
  const float m = 1.5f;
  std::vector<uint8_t> b0(22);
  std::vector<uint8_t> b1(24);
  put_half(b0, 0, d);
  put_half(b1, 0, d);
  put_half(b1, 2, m);
  uint32_t qh = 0;
  std::vector<double> want0(32);
  std::vector<double> want1(32);
  for (int e = 0; e < 32; ++e) {
    const int q = pattern(e, 0, 31);
    b0[6 + e % 16] |= static_cast<uint8_t>((q & 15) << (4 * (e / 16)));
    b1[8 + e % 16] |= static_cast<uint8_t>((q & 15) << (4 * (e / 16)));
    qh |= static_cast<uint32_t>(q >> 4) << e;  // fifth bit of element e: bit e of qh
    want0[e] = d * (q - 16);
    want1[e] = d * q + m;
  }
  for (int i = 0; i < 4; ++i) {
    b0[2 + i] = static_cast<uint8_t>(qh >> (8 * i));
    b1[4 + i] = static_cast<uint8_t>(qh >> (8 * i));
  }
  expect_values(dequant(DType::kQ5_0, b0), want0);
  expect_values(dequant(DType::kQ5_1, b1), want1);
}

TEST(Dequant, Q8_0) {
  const float d = -0.0625f;
  std::vector<uint8_t> b(34);
  put_half(b, 0, d);
  std::vector<double> want(32);
  for (int e = 0; e < 32; ++e) {
    const int q = e == 0 ? -128 : e == 1 ? 127 : pattern(e, -128, 127);
    b[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(q));
    want[e] = static_cast<double>(d) * q;
  }
  expect_values(dequant(DType::kQ8_0, b), want);
  EXPECT_EQ(want[0], 8.0);
}

TEST(Dequant, Q8_K) {
  const float d = 0.001953125f;  // 2^-9
  std::vector<uint8_t> b(292);
  std::memcpy(b.data(), &d, 4);
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) {
    const int q = pattern(e, -128, 127);
    b[4 + e] = static_cast<uint8_t>(static_cast<int8_t>(q));
    want[e] = static_cast<double>(d) * q;
  }
  for (int i = 0; i < 32; ++i)
    b[260 + i] = 0xa5;  // bsums: must not matter
  expect_values(dequant(DType::kQ8_K, b), want);
}

TEST(Dequant, Q2_K) {
  const float d = 0.5f;
  const float dmin = 0.25f;
  std::vector<uint8_t> b(84);
  put_half(b, 80, d);
  put_half(b, 82, dmin);
  for (int s = 0; s < 16; ++s)
    b[s] = static_cast<uint8_t>(pattern(s, 0, 15) | (pattern(s + 3, 0, 15) << 4));
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) {
    const int q = pattern(e, 0, 3);
    // Element e: byte (e / 128) * 32 + e % 32 of qs, bits 2 * ((e / 32) % 4).
    b[16 + (e / 128) * 32 + e % 32] |= static_cast<uint8_t>(q << (2 * ((e / 32) % 4)));
    const int s = e / 16;
    want[e] = static_cast<double>(d) * (b[s] & 15) * q - static_cast<double>(dmin) * (b[s] >> 4);
  }
  expect_values(dequant(DType::kQ2_K, b), want);
}

TEST(Dequant, Q3_K) {
  const float d = 0.25f;
  std::vector<uint8_t> b(110);
  put_half(b, 108, d);
  int scale[16];
  for (int s = 0; s < 16; ++s) {
    scale[s] = s == 0 ? -32 : s == 1 ? 31 : pattern(s, -32, 31);
    const int u = scale[s] + 32;                                       // stored unsigned, 6 bits
    b[96 + s % 8] |= static_cast<uint8_t>((u & 15) << (4 * (s / 8)));  // low nibble
    b[96 + 8 + s % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (s / 4)));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) {
    const int q = pattern(e, -4, 3);
    // q >= 0 is stored as its two bits with the hmask bit set; q < 0 as q + 4 with it clear.
    const int low = q >= 0 ? q : q + 4;
    b[32 + (e / 128) * 32 + e % 32] |= static_cast<uint8_t>(low << (2 * ((e / 32) % 4)));
    if (q >= 0) b[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
    want[e] = static_cast<double>(d) * scale[e / 16] * q;
  }
  expect_values(dequant(DType::kQ3_K, b), want);
}

// The 12-byte packing of eight 6-bit scales and mins shared by Q4_K and Q5_K.
void pack_k_scales(uint8_t* p, const int* sc, const int* mn) {
  for (int j = 0; j < 4; ++j) {
    p[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    p[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    p[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

TEST(Dequant, Q4_KAndQ5_K) {
  const float d = 0.125f;
  const float dmin = 0.5f;
  int sc[8];
  int mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = s == 7 ? 63 : pattern(s * 9, 0, 63);
    mn[s] = s == 6 ? 63 : pattern(s * 5 + 1, 0, 63);
  }
  std::vector<uint8_t> b4(144);
  std::vector<uint8_t> b5(176);
  put_half(b4, 0, d);
  put_half(b4, 2, dmin);
  put_half(b5, 0, d);
  put_half(b5, 2, dmin);
  pack_k_scales(&b4[4], sc, mn);
  pack_k_scales(&b5[4], sc, mn);
  std::vector<double> want4(256);
  std::vector<double> want5(256);
  for (int e = 0; e < 256; ++e) {
    const int q4 = pattern(e, 0, 15);
    const int q5 = pattern(e + 11, 0, 31);
    // Element e: byte (e / 64) * 32 + e % 32, low nibble for (e / 32) even, high for odd.
    const int byte = (e / 64) * 32 + e % 32;
    const int shift = 4 * ((e / 32) % 2);
    b4[16 + byte] |= static_cast<uint8_t>(q4 << shift);
    b5[48 + byte] |= static_cast<uint8_t>((q5 & 15) << shift);
    b5[16 + e % 32] |= static_cast<uint8_t>((q5 >> 4) << (e / 32));  // qh: byte e % 32, bit e / 32
    const int s = e / 32;
    want4[e] = static_cast<double>(d) * sc[s] * q4 - static_cast<double>(dmin) * mn[s];
    want5[e] = static_cast<double>(d) * sc[s] * q5 - static_cast<double>(dmin) * mn[s];
  }
  expect_values(dequant(DType::kQ4_K, b4), want4);
  expect_values(dequant(DType::kQ5_K, b5), want5);
}

TEST(Dequant, Q6_K) {
  const float d = 0.0078125f;  // 2^-7
  std::vector<uint8_t> b(210);
  put_half(b, 208, d);
  int scale[16];
  for (int s = 0; s < 16; ++s) {
    scale[s] = s == 3 ? -128 : s == 4 ? 127 : pattern(s * 13, -128, 127);
    b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(scale[s]));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) {
    const int q = pattern(e, -32, 31);
    const int u = q + 32;
    const int half = e / 128;
    const int r = e % 128;
    // Low four bits: byte half*64 + r%64 of ql, nibble r/64; top two: byte half*32 + r%32 of
    // qh, bit pair r/32.
    b[half * 64 + r % 64] |= static_cast<uint8_t>((u & 15) << (4 * (r / 64)));
    b[128 + half * 32 + r % 32] |= static_cast<uint8_t>((u >> 4) << (2 * (r / 32)));
    want[e] = static_cast<double>(d) * scale[e / 16] * q;
  }
  expect_values(dequant(DType::kQ6_K, b), want);
}

// dequantize.h relies on every scale-times-quant product being exact, so that the result cannot
// depend on FMA contraction: a fused multiply-add (one rounding) must give the same bits.
TEST(Dequant, ProductsAreExactSoFusingCannotChangeResults) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> any_half(0, 0xffff);
  auto finite_half = [&] {
    uint16_t h = 0;
    do {
      h = static_cast<uint16_t>(any_half(rng));
    } while ((h & 0x7c00) == 0x7c00);
    return h;
  };
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> b(20);
    put_u16(b, 0, finite_half());
    put_u16(b, 2, finite_half());
    for (int i = 0; i < 16; ++i)
      b[4 + i] = static_cast<uint8_t>(i * 17 + round);
    const float d = fp16_to_fp32(static_cast<uint16_t>(b[0] | (b[1] << 8)));
    const float m = fp16_to_fp32(static_cast<uint16_t>(b[2] | (b[3] << 8)));
    const std::vector<float> got = dequant(DType::kQ4_1, b);
    for (int e = 0; e < 32; ++e) {
      const int q = (b[4 + e % 16] >> (4 * (e / 16))) & 15;
      ASSERT_EQ(bits(got[e]), bits(std::fma(d, static_cast<float>(q), m))) << round << " " << e;
    }
  }
  // Q6_K's widest product: a half scale, an int8 sub-block scale and a 6-bit quant.
  for (int round = 0; round < 2000; ++round) {
    const float d = fp16_to_fp32(finite_half());
    for (int sc : {-128, -127, 127}) {
      for (int q : {-32, -31, 31}) {
        const float dl = d * static_cast<float>(sc);
        EXPECT_EQ(static_cast<double>(dl) * q, static_cast<double>(d) * sc * q);
        EXPECT_EQ(static_cast<double>(dl * static_cast<float>(q)), static_cast<double>(d) * sc * q);
      }
    }
  }
}

TEST(Dequant, PlainFloatRows) {
  const std::vector<float> x = {1.5f, -0.0f, std::numeric_limits<float>::infinity(), 0x1p-149f};
  std::vector<float> out(4);
  dequantize_row(DType::kF32, x.data(), out.data(), 4);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(bits(out[i]), bits(x[i]));
  const uint16_t halves[] = {0x3e00, 0x8001, 0x7c01, 0xfbff};
  dequantize_row(DType::kF16, halves, out.data(), 4);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -0x1p-24f);
  EXPECT_EQ(bits(out[2]), 0x7f802000u);
  EXPECT_EQ(out[3], -65504.0f);
  const uint16_t brains[] = {0x3fc0, 0x8001, 0x7f81, 0xff80};
  dequantize_row(DType::kBF16, brains, out.data(), 4);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(bits(out[1]), 0x80010000u);
  EXPECT_EQ(bits(out[2]), 0x7f810000u);
  EXPECT_EQ(bits(out[3]), 0xff800000u);
}

// ---------------------------------------------------------------------------------------------
// Dispatcher

const DType kImplemented[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                              DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                              DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_K};

TEST(Dequant, SupportedTypes) {
  int supported = 0;
  for (int i = 0; i < kNumDTypes; ++i) {
    const auto t = static_cast<DType>(i);
    const bool listed = std::find(std::begin(kImplemented), std::end(kImplemented), t) != std::end(kImplemented);
    EXPECT_EQ(can_dequantize(t), listed) << dtype_name(t);
    supported += listed ? 1 : 0;
  }
  EXPECT_EQ(supported, 14);
}

TEST(Dequant, UnsupportedTypeNamesIt) {
  std::vector<uint8_t> block(256);
  std::vector<float> out(256);
  for (DType t : {DType::kIQ2_XXS, DType::kQ8_1, DType::kI32, DType::kMXFP4}) {
    try {
      dequantize_row(t, block.data(), out.data(), dtype_block_size(t));
      ADD_FAILURE() << "no error for " << dtype_name(t);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(dtype_name(t)), std::string::npos) << e.what();
    }
  }
}

TEST(Dequant, PartialBlocksAreRejected) {
  std::vector<uint8_t> block(512);
  std::vector<float> out(512);
  for (auto [t, n] : {std::pair{DType::kQ4_0, int64_t{31}}, std::pair{DType::kQ6_K, int64_t{128}},
                      std::pair{DType::kF16, int64_t{-1}}}) {
    try {
      dequantize_row(t, block.data(), out.data(), n);
      ADD_FAILURE() << "no error for " << n << " elements of " << dtype_name(t);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
  dequantize_row(DType::kQ4_0, block.data(), out.data(), 0);  // an empty row is fine
}

// Random blocks whose half-precision scales are finite (as in real files: a NaN scale's payload
// depends on which operand the hardware propagates, which no reference pins down).
std::vector<uint8_t> random_blocks(DType t, int64_t blocks, std::mt19937& rng) {
  const int64_t block_bytes = dtype_block_bytes(t);
  std::vector<uint8_t> data(static_cast<size_t>(blocks * block_bytes) + 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& x : data)
    x = static_cast<uint8_t>(byte(rng));
  // Offsets of the half scales in each block.
  std::vector<int> halves;
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0: halves = {0}; break;
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K: halves = {0, 2}; break;
    case DType::kQ2_K: halves = {80, 82}; break;
    case DType::kQ3_K: halves = {108}; break;
    case DType::kQ6_K: halves = {208}; break;
    default: break;
  }
  std::uniform_real_distribution<float> scale(-1.0f, 1.0f);
  // Data starts one byte in, to exercise unaligned loads.
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int at : halves) {
      const uint16_t h = fp32_to_fp16(scale(rng) * (blk % 3 == 0 ? 1e-4f : 1.0f));
      std::memcpy(&data[static_cast<size_t>(1 + blk * block_bytes + at)], &h, 2);
    }
  }
  return data;
}

TEST(Dequant, DispatcherMatchesScalarOnRandomBlocks) {
  std::mt19937 rng(1234);
  for (DType t : kImplemented) {
    if (dtype_block_size(t) == 1) continue;
    for (int64_t blocks : {1, 3, 17}) {
      const std::vector<uint8_t> data = random_blocks(t, blocks, rng);
      const int64_t n = blocks * dtype_block_size(t);
      std::vector<float> fast(static_cast<size_t>(n));
      std::vector<float> scalar(static_cast<size_t>(n));
      dequantize_row(t, data.data() + 1, fast.data(), n);
      dequantize_row_scalar(t, data.data() + 1, scalar.data(), n);
      EXPECT_EQ(std::memcmp(fast.data(), scalar.data(), fast.size() * sizeof(float)), 0) << dtype_name(t);
    }
  }
}

#if PAGODA_DEQUANT_HAS_AVX2
TEST(DequantAvx2, BitIdenticalToScalar) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2; the AVX2 kernels cannot run";
  struct Kernel {
    DType type;
    void (*fast)(const void*, float*, int64_t);
    void (*scalar)(const void*, float*, int64_t);
  };
  const Kernel kernels[] = {
      {DType::kQ4_1, dequantize_row_q4_1_avx2, dequantize_row_q4_1},
      {DType::kQ4_K, dequantize_row_q4_k_avx2, dequantize_row_q4_k},
      {DType::kQ6_K, dequantize_row_q6_k_avx2, dequantize_row_q6_k},
      {DType::kQ8_0, dequantize_row_q8_0_avx2, dequantize_row_q8_0},
  };
  std::mt19937 rng(99);
  for (const Kernel& k : kernels) {
    EXPECT_TRUE(has_fast_dequantize(k.type)) << dtype_name(k.type);
    for (int round = 0; round < 20; ++round) {
      const int64_t blocks = 1 + round * 5;
      const std::vector<uint8_t> data = random_blocks(k.type, blocks, rng);
      const int64_t n = blocks * dtype_block_size(k.type);
      std::vector<float> fast(static_cast<size_t>(n) + 1, -7.0f);
      std::vector<float> scalar(static_cast<size_t>(n));
      k.fast(data.data() + 1, fast.data(), n);
      k.scalar(data.data() + 1, scalar.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(bits(fast[i]), bits(scalar[i])) << dtype_name(k.type) << " element " << i;
      }
      EXPECT_EQ(fast[n], -7.0f) << "wrote past the row";
    }
  }
}

// Float to f16 with vcvtps2ph against fp32_to_fp16: a stride through all 2^32 patterns, every
// f16 value's neighbourhood and midpoints (the ties), overflow, subnormals, and NaNs (quiet and
// signalling, which take the scalar path) among finite values; the rows start off alignment
// and end in a tail shorter than a vector.
TEST(DequantAvx2, F32ToF16MatchesTheScalarRounding) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "this CPU has no F16C; the conversion cannot run";
  std::vector<float> x;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 4099)
    x.push_back(std::bit_cast<float>(static_cast<uint32_t>(b)));
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // each positive finite f16, its midpoint with the next
    const float v = fp16_to_fp32(static_cast<uint16_t>(h));
    const float next = fp16_to_fp32(static_cast<uint16_t>(h + 1));
    const float mid = v + (next - v) / 2;  // exact in float
    for (float f : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      x.push_back(f);
      x.push_back(-f);
    }
  }
  for (float f :
       {65504.0f, 65519.99f, 65520.0f, 1e30f, std::numeric_limits<float>::infinity(), 0x1p-25f, 0x1.000002p-25f,
        0x1p-26f, std::numeric_limits<float>::denorm_min(), std::bit_cast<float>(0x7f800001u),
        std::bit_cast<float>(0xffa00000u), std::bit_cast<float>(0x7fc00001u), std::numeric_limits<float>::quiet_NaN()})
    x.push_back(f);
  for (size_t offset : {size_t{0}, size_t{3}}) {
    const auto n = static_cast<int64_t>(x.size() - offset);
    std::vector<uint16_t> fast(static_cast<size_t>(n) + 1, 0xabcd);
    quantize_row_f16_f16c(x.data() + offset, fast.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(fast[static_cast<size_t>(i)], fp32_to_fp16(x[offset + static_cast<size_t>(i)]))
          << std::hex << std::bit_cast<uint32_t>(x[offset + static_cast<size_t>(i)]);
    }
    EXPECT_EQ(fast[static_cast<size_t>(n)], 0xabcd) << "wrote past the row";
  }
}

TEST(DequantAvx2, F16EveryBitPattern) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2; the AVX2 kernels cannot run";
  EXPECT_TRUE(has_fast_dequantize(DType::kF16));
  // All 65536 patterns, starting one byte in, plus a tail shorter than a vector.
  std::vector<uint8_t> data(2 * 65539 + 1);
  for (uint32_t i = 0; i < 65539; ++i) {
    data[1 + 2 * i] = static_cast<uint8_t>(i & 0xff);
    data[2 + 2 * i] = static_cast<uint8_t>((i >> 8) & 0xff);
  }
  std::vector<float> fast(65539);
  dequantize_row_f16_avx2(data.data() + 1, fast.data(), 65539);
  for (uint32_t i = 0; i < 65539; ++i) {
    ASSERT_EQ(bits(fast[i]), bits(fp16_to_fp32(static_cast<uint16_t>(i & 0xffff)))) << std::hex << i;
  }
}
#endif

}  // namespace
}  // namespace pagoda::cpu
