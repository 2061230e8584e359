// The CPU backend's integer-dot matmul (8-bit quantized activations against GGUF block weights)
// against a double-precision reference over the bit-exact dequantizer, and batch invariance of
// matmul and attention: a row's result must not depend on the other rows of the batch.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ops/matmul.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/quant/float_convert.h"
#include "backends/cpu/quant/qdot.h"
#include "backends/cpu/quant/qdot_vnni.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace pagoda::cpu {
namespace {

const DType kIntTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K};

// Byte offsets of the half-precision scales in a block of `t`.
std::vector<int> half_offsets(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0: return {0};
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K: return {0, 2};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    case DType::kQ6_K: return {208};
    default: return {};
  }
}

// `rows` rows of k elements of `t`: random quant bits and finite random scales.
std::vector<uint8_t> random_weight(std::mt19937& rng, DType t, int64_t rows, int64_t k) {
  const auto row_bytes = static_cast<int64_t>(*dtype_row_bytes(t, k));
  std::vector<uint8_t> data(static_cast<size_t>(rows * row_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : data)
    b = static_cast<uint8_t>(byte(rng));
  if (dtype_block_size(t) == 1) {  // plain floats: random values instead of random bits
    std::vector<float> v(static_cast<size_t>(rows * k));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& x : v)
      x = u(rng);
    if (t == DType::kF32) std::memcpy(data.data(), v.data(), data.size());
    if (t == DType::kF16) quantize_row_f16(v.data(), data.data(), rows * k);
    if (t == DType::kBF16) quantize_row_bf16(v.data(), data.data(), rows * k);
    return data;
  }
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  const int64_t block_bytes = dtype_block_bytes(t);
  for (int64_t b = 0; b < rows * row_bytes / block_bytes; ++b) {
    for (int at : half_offsets(t)) {
      const uint16_t h = fp32_to_fp16(scale(rng));
      std::memcpy(&data[static_cast<size_t>(b * block_bytes + at)], &h, 2);
    }
  }
  return data;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -2.0f, float hi = 2.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v)
    x = u(rng);
  // A few outliers, as real activations have: they set their block's scale.
  for (size_t i = 0; i < n; i += 97)
    v[i] *= 8.0f;
  return v;
}

std::vector<float> dequantized(DType t, const std::vector<uint8_t>& w, int64_t rows, int64_t k) {
  std::vector<float> out(static_cast<size_t>(rows * k));
  const uint64_t row_bytes = *dtype_row_bytes(t, k);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row_scalar(t, w.data() + r * row_bytes, out.data() + r * k, k);
  return out;
}

TEST(CpuQdot, QuantizeRowBoundsAndMatchesScalar) {
  std::mt19937 rng(1);
  for (int64_t k : {32, 64, 576}) {
    auto x = random_floats(rng, static_cast<size_t>(k));
    for (int i = 0; i < 32; ++i)
      x[static_cast<size_t>(i)] = 0.0f;  // an all-zero block
    std::vector<qdot::ActBlock> fast(static_cast<size_t>(k / 32));
    std::vector<qdot::ActBlock> ref(fast.size());
    qdot::quantize_row(x.data(), fast.data(), k);
    qdot::quantize_row_scalar(x.data(), ref.data(), k);
    ASSERT_EQ(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(qdot::ActBlock)), 0) << "k " << k;
    for (size_t b = 0; b < fast.size(); ++b) {
      const qdot::ActBlock& a = fast[b];
      float amax = 0.0f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        amax = std::max(amax, std::abs(x[b * 32 + static_cast<size_t>(i)]));
        EXPECT_GE(a.q[i], -127);
        sum += a.q[i];
      }
      EXPECT_EQ(a.d, amax / 127.0f);
      EXPECT_EQ(a.dsum, a.d * static_cast<float>(sum));
      EXPECT_EQ(a.qsum, sum);
      for (int i = 0; i < 32; ++i) {
        const double err =
            std::abs(static_cast<double>(x[b * 32 + static_cast<size_t>(i)]) - static_cast<double>(a.d) * a.q[i]);
        EXPECT_LE(err, 0.5 * a.d * (1.0 + 1e-5)) << "block " << b << " element " << i;
      }
    }
  }
  // A non-finite input poisons its block only.
  std::vector<float> x(64, 1.0f);
  x[40] = std::numeric_limits<float>::infinity();
  std::vector<qdot::ActBlock> q(2);
  qdot::quantize_row(x.data(), q.data(), 64);
  EXPECT_TRUE(std::isfinite(q[0].d));
  EXPECT_TRUE(std::isnan(q[1].d));
}

// Both kernels (fast and scalar) against double sums: over the dequantized weight times the
// quantized activations (tight: only float rounding of the block scales differs), and times the
// original activations, within the bound the activation rounding allows: sum over elements of
// |w| * d / 2, d being the element's block scale.
TEST(CpuQdot, EveryTypeMatchesTheFloatReference) {
  std::mt19937 rng(2);
  struct Shape2 {
    int64_t m, n, blocks;
  };
  const std::vector<Shape2> shapes = {{1, 1, 1}, {1, 7, 2}, {3, 5, 3}, {5, 33, 1}, {7, 4, 4}, {9, 13, 2}};
  for (DType t : kIntTypes) {
    ASSERT_TRUE(qdot::supports(t)) << dtype_name(t);
    for (const Shape2& s : shapes) {
      const int64_t k = s.blocks * dtype_block_size(t);
      const auto w = random_weight(rng, t, s.n, k);
      const auto wf = dequantized(t, w, s.n, k);
      const auto x = random_floats(rng, static_cast<size_t>(s.m * k));
      const int64_t nb = k / 32;
      std::vector<qdot::ActBlock> xq(static_cast<size_t>(s.m * nb));
      for (int64_t r = 0; r < s.m; ++r)
        qdot::quantize_row(x.data() + r * k, xq.data() + r * nb, k);
      const uint64_t row_bytes = *dtype_row_bytes(t, k);
      std::vector<float> fast(static_cast<size_t>(s.m * s.n));
      std::vector<float> scalar(fast.size());
      qdot::dot_rows(t, w.data(), row_bytes, s.n, xq.data(), nb, s.m, fast.data(), s.n);
      qdot::dot_rows_scalar(t, w.data(), row_bytes, s.n, xq.data(), nb, s.m, scalar.data(), s.n);
      const std::string what = std::string(dtype_name(t)) + " m " + std::to_string(s.m) + " n " + std::to_string(s.n) +
                               " k " + std::to_string(k);
      for (int64_t r = 0; r < s.m; ++r) {
        for (int64_t j = 0; j < s.n; ++j) {
          double on_quantized = 0.0, magnitude = 0.0, on_float = 0.0, bound = 0.0;
          for (int64_t i = 0; i < k; ++i) {
            const qdot::ActBlock& a = xq[static_cast<size_t>(r * nb + i / 32)];
            const double wi = wf[static_cast<size_t>(j * k + i)];
            const double xhat = static_cast<double>(a.d) * a.q[i % 32];
            on_quantized += wi * xhat;
            magnitude += std::abs(wi * xhat);
            on_float += wi * x[static_cast<size_t>(r * k + i)];
            bound += std::abs(wi) * 0.5 * a.d;
          }
          const double tight = 2e-6 * magnitude + 1e-9;
          for (const auto* got : {&fast, &scalar}) {
            const double v = (*got)[static_cast<size_t>(r * s.n + j)];
            EXPECT_NEAR(v, on_quantized, tight) << what << " row " << r << " col " << j;
            EXPECT_LE(std::abs(v - on_float), bound * (1.0 + 1e-4) + tight) << what << " row " << r << " col " << j;
          }
        }
      }
    }
  }
}

// Weights and activations at the ends of their ranges (every quant at its largest or smallest
// value, every activation at +-127): the kernels' int16 partial sums are closest to overflowing
// here. The fast kernels must agree with the scalar reference, in 1..4-row and 1..8-row groups.
TEST(CpuQdot, ExtremeQuantsMatchTheScalarKernel) {
  for (DType t : kIntTypes) {
    const int64_t k = dtype_block_size(t) == 256 ? 512 : 128;
    const uint64_t row_bytes = *dtype_row_bytes(t, k);
    const int64_t n = 11, m = 5;
    for (const uint8_t fill : {uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x00}}) {
      std::vector<uint8_t> w(static_cast<size_t>(n) * row_bytes, fill);
      // Scales (and minima) of 1.0 where the type has f16 fields; Q6_K's int8 scales stay `fill`.
      const int64_t block_bytes = dtype_block_bytes(t);
      for (size_t at = 0; at < w.size(); at += static_cast<size_t>(block_bytes)) {
        std::vector<int> halves;
        switch (t) {
          case DType::kQ4_1: halves = {0, 2}; break;
          case DType::kQ4_K: halves = {0, 2}; break;
          case DType::kQ6_K: halves = {208}; break;
          default: halves = {0}; break;
        }
        for (int h : halves) {
          w[at + static_cast<size_t>(h)] = 0x00;
          w[at + static_cast<size_t>(h) + 1] = 0x3c;
        }
      }
      for (const float sign : {1.0f, -1.0f}) {
        std::vector<float> x(static_cast<size_t>(m * k), sign);
        const int64_t nb = k / 32;
        std::vector<qdot::ActBlock> xq(static_cast<size_t>(m * nb));
        for (int64_t r = 0; r < m; ++r)
          qdot::quantize_row(x.data() + r * k, xq.data() + r * nb, k);
        ASSERT_EQ(xq[0].q[0], sign > 0 ? 127 : -127);
        std::vector<float> fast(static_cast<size_t>(m * n));
        std::vector<float> scalar(fast.size());
        qdot::dot_rows(t, w.data(), row_bytes, n, xq.data(), nb, m, fast.data(), n);
        qdot::dot_rows_scalar(t, w.data(), row_bytes, n, xq.data(), nb, m, scalar.data(), n);
        for (size_t i = 0; i < fast.size(); ++i) {
          EXPECT_NEAR(fast[i], scalar[i], 1e-5 * std::abs(scalar[i]) + 1e-6)
              << dtype_name(t) << " fill " << int{fill} << " sign " << sign << " output " << i;
        }
        if (qdot::packs(t)) {  // the repacked kernels' int16 sums at their extremes: the same bits
          std::vector<uint8_t> packed(static_cast<size_t>((n + 7) / 8) * qdot::packed_group_bytes(t, nb));
          qdot::pack_rows8(t, w.data(), row_bytes, n, nb, packed.data());
          std::vector<float> repacked(fast.size());
          qdot::dot_rows_packed(t, packed.data(), n, xq.data(), nb, m, repacked.data(), n);
          EXPECT_EQ(std::memcmp(repacked.data(), fast.data(), fast.size() * sizeof(float)), 0)
              << dtype_name(t) << " fill " << int{fill} << " sign " << sign;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Batch invariance

// Sets the backend's activation quantization for one scope.
class QuantizedActivations {
 public:
  explicit QuantizedActivations(bool on) : saved_(cpu_backend().quantized_activations()) {
    cpu_backend().set_quantized_activations(on);
  }
  ~QuantizedActivations() { cpu_backend().set_quantized_activations(saved_); }
  QuantizedActivations(const QuantizedActivations&) = delete;
  QuantizedActivations& operator=(const QuantizedActivations&) = delete;

 private:
  bool saved_;
};

// The half sums Q6_K's repacked kernel takes: 8 times the sums of elements 0-15 and 16-31 of each
// activation block, in the low and high 16 bits (two's complement), at the ends of the range too.
TEST(CpuQdot, HalfSumsOfActivationBlocks) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<qdot::ActBlock> x(37);
  for (auto& b : x) {
    for (auto& v : b.q)
      v = static_cast<int8_t>(q(rng));
  }
  std::fill(std::begin(x[3].q), std::end(x[3].q), int8_t{127});
  std::fill(std::begin(x[4].q), std::end(x[4].q), int8_t{-127});
  std::vector<int32_t> got(x.size());
  qdot::half_sums(x.data(), static_cast<int64_t>(x.size()), got.data());
  for (size_t i = 0; i < x.size(); ++i) {
    int lo = 0, hi = 0;
    for (int e = 0; e < 16; ++e) {
      lo += x[i].q[e];
      hi += x[i].q[16 + e];
    }
    EXPECT_EQ(static_cast<int16_t>(got[i] & 0xffff), 8 * lo) << "block " << i;
    EXPECT_EQ(static_cast<int16_t>(static_cast<uint32_t>(got[i]) >> 16), 8 * hi) << "block " << i;
  }
}

// Repacked weights (groups of eight rows interleaved) give bit for bit what the original rows give,
// for every count of rows (a last group padded with repeats) and of activation rows.
TEST(CpuQdot, RepackedRowsGiveTheSameBits) {
  bool any = false;
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K}) {
    if (!qdot::packs(t)) continue;
    any = true;
    std::mt19937 rng(static_cast<unsigned>(static_cast<int>(t) + 40));
    const int64_t k = dtype_block_size(t) == 256 ? 512 : 96;
    const int64_t blocks = k / qdot::kBlock;
    for (int64_t n : {1, 5, 8, 13, 16, 21, 24, 40}) {
      const auto w = random_weight(rng, t, n, k);
      const uint64_t row_bytes = *dtype_row_bytes(t, k);
      std::vector<uint8_t> packed(static_cast<size_t>((n + 7) / 8) * qdot::packed_group_bytes(t, blocks));
      qdot::pack_rows8(t, w.data(), row_bytes, n, blocks, packed.data());
      for (int64_t m : {1, 2, 3, 4, 5, 9, 16, 21}) {
        const auto x = random_floats(rng, static_cast<size_t>(m * k));
        std::vector<qdot::ActBlock> xq(static_cast<size_t>(m * blocks));
        for (int64_t r = 0; r < m; ++r)
          qdot::quantize_row(x.data() + r * k, xq.data() + r * blocks, k);
        std::vector<float> want(static_cast<size_t>(m * n), -1.0f);
        std::vector<float> got(static_cast<size_t>(m * n), -2.0f);
        qdot::dot_rows(t, w.data(), row_bytes, n, xq.data(), blocks, m, want.data(), n);
        qdot::dot_rows_packed(t, packed.data(), n, xq.data(), blocks, m, got.data(), n);
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << dtype_name(t) << " n " << n << " m " << m;
        if (qdot::needs_half_sums(t)) {  // with the half sums given, as the matmul gives them
          std::vector<int32_t> half(xq.size());
          qdot::half_sums(xq.data(), m * blocks, half.data());
          std::fill(got.begin(), got.end(), -2.0f);
          qdot::dot_rows_packed(t, packed.data(), n, xq.data(), blocks, m, got.data(), n, half.data());
          EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
              << dtype_name(t) << " n " << n << " m " << m << " (half sums given)";
        }
      }
    }
  }
  if (!any) GTEST_SKIP() << "this CPU has no repacked kernels (AVX2 is required)";
  std::cout << "[ NOTE     ] repacked kernels: " << qdot::packed_kernel_name() << "\n";
}

// The AMX kernels' layout of the activation rows holds each row's quant bytes and, per group of
// 16 rows and block, the rows' d and dsum at their lanes, whichever calls wrote the rows; and
// the kernels given it (where the CPU runs them) give the in-place kernels' bits, for block counts
// that end the three-block pipeline at each of its phases and for a last pair or group of weight
// rows that is partial.
TEST(CpuQdot, AmxLayoutGivesTheSameBits) {
  std::mt19937 rng(77);
  bool amx_ran = false;
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ8_0, DType::kQ4_K}) {
    const std::vector<int64_t> ks =
        dtype_block_size(t) == 256 ? std::vector<int64_t>{256, 512, 768} : std::vector<int64_t>{32, 64, 128, 160, 320};
    for (const int64_t k : ks) {
      const int64_t blocks = k / qdot::kBlock;
      for (const int64_t m : {16, 32, 48}) {
        const auto x = random_floats(rng, static_cast<size_t>(m * k));
        std::vector<qdot::ActBlock> xq(static_cast<size_t>(m * blocks));
        for (int64_t r = 0; r < m; ++r)
          qdot::quantize_row(x.data() + r * k, xq.data() + r * blocks, k);
        std::vector<int8_t> q(static_cast<size_t>(m * k), 0);
        std::vector<float> scales(static_cast<size_t>((m + 15) / 16 * blocks * qdot::kAmxScaleFloats), -1.0f);
        qdot::amx_rows_layout(xq.data(), blocks, 0, 5, q.data(), scales.data());  // a group split over calls
        qdot::amx_rows_layout(xq.data(), blocks, 5, m, q.data(), scales.data());
        for (const int64_t r : {int64_t{0}, int64_t{4}, int64_t{5}, m - 1}) {
          for (int64_t b = 0; b < blocks; ++b) {
            const qdot::ActBlock& a = xq[static_cast<size_t>(r * blocks + b)];
            ASSERT_EQ(std::memcmp(q.data() + (r * blocks + b) * qdot::kBlock, a.q, qdot::kBlock), 0);
            const float* s = scales.data() + (r / 16 * blocks + b) * qdot::kAmxScaleFloats;
            ASSERT_EQ(s[r % 16], a.d);
            ASSERT_EQ(s[16 + r % 16], a.dsum);
          }
        }
        if (!qdot::packs(t)) continue;
        const qdot::AmxRows rows{q.data(), scales.data()};
        amx_ran = amx_ran || qdot::uses_amx(t, m);
        for (const int64_t n : {16, 24, 40, 44}) {
          const auto w = random_weight(rng, t, n, k);
          const uint64_t row_bytes = *dtype_row_bytes(t, k);
          std::vector<uint8_t> packed(static_cast<size_t>((n + 7) / 8) * qdot::packed_group_bytes(t, blocks));
          qdot::pack_rows8(t, w.data(), row_bytes, n, blocks, packed.data());
          std::vector<float> want(static_cast<size_t>(m * n), -1.0f);
          std::vector<float> got(want.size(), -2.0f);
          qdot::dot_rows(t, w.data(), row_bytes, n, xq.data(), blocks, m, want.data(), n);
          qdot::dot_rows_packed(t, packed.data(), n, xq.data(), blocks, m, got.data(), n, nullptr, &rows);
          EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
              << dtype_name(t) << " k " << k << " n " << n << " m " << m;
        }
      }
    }
  }
  std::cout << "[ NOTE     ] AMX kernels " << (amx_ran ? "ran" : "not on this CPU (the layout checks ran)") << "\n";
}

// A thread keeps the weight rows it unpacked for the AMX kernels from one task to the next of the
// same matmul (a tile's next block of activation rows), and only within that matmul. One thread,
// one tile (32 rows), two blocks of 64 activation rows: the second block reuses the first's
// unpacked rows. Then other weights are packed at the same address: the next matmul must unpack
// them, not take the rows left from the first, and each product must give the in-place kernels'
// bits.
TEST(CpuQdot, UnpackedWeightsLastOneMatmul) {
  ThreadPool pool(1);
  std::mt19937 rng(91);
  const DType t = DType::kQ4_1;
  const int64_t n = 32, k = 128, m = 128;
  const uint64_t row_bytes = *dtype_row_bytes(t, k);
  std::vector<uint8_t> packed(static_cast<size_t>(n / 8) * qdot::packed_group_bytes(t, k / qdot::kBlock));
  const auto x = random_floats(rng, static_cast<size_t>(m * k));
  for (int round = 0; round < 3; ++round) {
    const auto w = random_weight(rng, t, n, k);
    qdot::pack_rows8(t, w.data(), row_bytes, n, k / qdot::kBlock, packed.data());
    std::vector<float> want(static_cast<size_t>(m * n), -1.0f);
    std::vector<float> got(want.size(), -2.0f);
    gemm(pool, x.data(), k, m, w.data(), t, n, k, nullptr, want.data(), n, true);
    gemm(pool, x.data(), k, m, w.data(), t, n, k, nullptr, got.data(), n, true, packed.data());
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "weights " << round;
  }
  std::cout << "[ NOTE     ] AMX kernels " << (qdot::uses_amx(t, m) ? "ran" : "not on this CPU") << "\n";
}

// Where the CPU has AVX-512 VNNI (and AMX) the repacked weights take those kernels (and the test
// above holds them to the AVX2 in-place kernels' bits); PAGODA_CPU_ISA=avx2 keeps the AVX2 ones,
// PAGODA_CPU_ISA=avx512 the VNNI ones without AMX.
TEST(CpuQdot, RepackedKernelsFollowTheCpu) {
  const char* isa = std::getenv("PAGODA_CPU_ISA");
  const bool forced_avx2 = isa != nullptr && std::string(isa) == "avx2";
  const bool forced_avx512 = isa != nullptr && std::string(isa) == "avx512";
#if PAGODA_QDOT_HAS_AVX2
  if (!qdot::qdot_cpu_has_vnni()) {
    EXPECT_STREQ(qdot::packed_kernel_name(), qdot::qdot_cpu_has_avx2() ? "avx2" : "none");
    GTEST_SKIP() << "this CPU has no AVX-512 VNNI: the repacked kernels are the AVX2 ones (checked)";
  }
  const char* want = forced_avx2                                  ? "avx2"
                     : !forced_avx512 && qdot::qdot_cpu_has_amx() ? "avx512-vnni+amx"
                                                                  : "avx512-vnni";
  EXPECT_STREQ(qdot::packed_kernel_name(), want);
#else
  (void)forced_avx2, (void)forced_avx512;
  GTEST_SKIP() << "not an x86-64 build: no repacked kernels";
#endif
}

Tensor host_tensor(const Shape& shape, DType dtype, const void* data, size_t bytes) {
  Tensor t = Tensor::empty(shape, dtype);
  std::memcpy(t.raw_data(), data, bytes);
  return t;
}

std::vector<float> run_matmul(const Tensor& w, const std::vector<float>& x, int64_t m, int64_t k) {
  const int64_t n = w.dim(0);
  Tensor out = Tensor::empty(Shape{m, n}, DType::kF32);
  ops::matmul(out, host_tensor(Shape{m, k}, DType::kF32, x.data(), x.size() * 4), w);
  const float* p = out.data<float>();
  return {p, p + m * n};
}

// Row `probe` alone, then placed first, in the middle and last of batches of several sizes
// (sizes that cross the kernels' groups of rows and the tasks' blocks of rows): bit-for-bit equal.
void check_matmul_invariance(DType t, bool int8) {
  const QuantizedActivations mode(int8);
  std::mt19937 rng(static_cast<unsigned>(static_cast<int>(t) * 7 + int8));
  const int64_t n = 45;
  const int64_t k = dtype_block_size(t) == 256 ? 512 : 96;
  const auto wbytes = random_weight(rng, t, n, k);
  const Tensor w = host_tensor(Shape{n, k}, t, wbytes.data(), wbytes.size());
  const auto probe = random_floats(rng, static_cast<size_t>(k));
  const std::vector<float> alone = run_matmul(w, probe, 1, k);
  for (int64_t m : {2, 3, 5, 8, 63, 64, 65, 130}) {
    for (int64_t at : {int64_t{0}, m / 2, m - 1}) {
      auto x = random_floats(rng, static_cast<size_t>(m * k));
      std::copy(probe.begin(), probe.end(), x.begin() + at * k);
      const std::vector<float> all = run_matmul(w, x, m, k);
      EXPECT_EQ(std::memcmp(all.data() + at * n, alone.data(), static_cast<size_t>(n) * 4), 0)
          << dtype_name(t) << (int8 ? " int8" : " float") << ": row " << at << " of " << m << " differs from alone";
    }
  }
}

TEST(CpuBatchInvariance, MatmulIntegerKernels) {
  for (DType t : kIntTypes)
    check_matmul_invariance(t, true);
}

TEST(CpuBatchInvariance, MatmulFloatKernels) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                  DType::kQ8_0, DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K})
    check_matmul_invariance(t, false);
}

// The integer path is used when enabled and the float path otherwise; the two agree to the
// activation rounding (a coarse check that the switch does switch and both compute the same).
TEST(CpuBatchInvariance, IntegerAndFloatPathsAgree) {
  std::mt19937 rng(5);
  const int64_t n = 16, k = 256, m = 3;
  const auto wbytes = random_weight(rng, DType::kQ4_K, n, k);
  const Tensor w = host_tensor(Shape{n, k}, DType::kQ4_K, wbytes.data(), wbytes.size());
  const auto x = random_floats(rng, static_cast<size_t>(m * k), -1.0f, 1.0f);
  std::vector<float> f, q;
  {
    const QuantizedActivations mode(false);
    f = run_matmul(w, x, m, k);
  }
  {
    const QuantizedActivations mode(true);
    q = run_matmul(w, x, m, k);
  }
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < f.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(f[i] - q[i])));
    scale = std::max(scale, static_cast<double>(std::abs(f[i])));
  }
  EXPECT_GT(diff, 0.0) << "the integer path was not taken";
  EXPECT_LT(diff, 0.05 * scale);
}

// Attention: one sequence's output alone and among other sequences (decode), and one
// sequence's prompt alone and inside a mixed batch of prompts and decodes (prefill), bitwise.
struct AttnCase {
  int64_t kv_heads = 2, heads = 6, head_size = 64, block_size = 16, num_blocks = 64, max_blocks = 8;
};

TEST(CpuBatchInvariance, PagedAndPrefillAttention) {
  std::mt19937 rng(6);
  const AttnCase c;
  const Shape cache_shape{c.num_blocks, c.kv_heads, c.block_size, c.head_size};
  const auto kv = random_floats(rng, static_cast<size_t>(cache_shape.numel()), -1.0f, 1.0f);
  const auto vv = random_floats(rng, static_cast<size_t>(cache_shape.numel()), -1.0f, 1.0f);
  const Tensor kc = host_tensor(cache_shape, DType::kF32, kv.data(), kv.size() * 4);
  const Tensor vc = host_tensor(cache_shape, DType::kF32, vv.data(), vv.size() * 4);
  AttentionParams params;
  params.scale = 0.125f;
  // Sequence lengths and block tables of 7 sequences (random distinct blocks).
  const int64_t seqs = 7;
  std::vector<int32_t> lens = {37, 5, 128, 1, 64, 99, 17};
  std::vector<int32_t> tables(static_cast<size_t>(seqs * c.max_blocks));
  for (auto& b : tables)
    b = static_cast<int32_t>(std::uniform_int_distribution<int>(0, static_cast<int>(c.num_blocks) - 1)(rng));
  const int64_t row = c.heads * c.head_size;
  const auto queries = random_floats(rng, static_cast<size_t>(seqs * row), -1.0f, 1.0f);

  auto decode = [&](const std::vector<int64_t>& which) {
    const auto ns = static_cast<int64_t>(which.size());
    std::vector<float> q;
    std::vector<int32_t> l, bt;
    for (int64_t s : which) {
      q.insert(q.end(), queries.begin() + s * row, queries.begin() + (s + 1) * row);
      l.push_back(lens[static_cast<size_t>(s)]);
      bt.insert(bt.end(), tables.begin() + s * c.max_blocks, tables.begin() + (s + 1) * c.max_blocks);
    }
    Tensor out = Tensor::empty(Shape{ns, c.heads, c.head_size}, DType::kF32);
    ops::paged_attention(out, host_tensor(Shape{ns, c.heads, c.head_size}, DType::kF32, q.data(), q.size() * 4), kc, vc,
                         c.kv_heads, host_tensor(Shape{ns, c.max_blocks}, DType::kI32, bt.data(), bt.size() * 4),
                         host_tensor(Shape{ns}, DType::kI32, l.data(), l.size() * 4), c.block_size, 128, params);
    const float* p = out.data<float>();
    return std::vector<float>(p, p + ns * row);
  };
  for (int64_t s = 0; s < seqs; ++s) {
    const auto alone = decode({s});
    const auto all = decode({0, 1, 2, 3, 4, 5, 6});
    EXPECT_EQ(std::memcmp(all.data() + s * row, alone.data(), static_cast<size_t>(row) * 4), 0)
        << "decode of sequence " << s;
  }

  // Prefill: sequence 2's last 40 tokens, alone and between a 1-token decode and a 20-token
  // chunk of other sequences. The decode token also matches paged_attention's result.
  const int64_t qlen = 40;
  const auto pq = random_floats(rng, static_cast<size_t>(qlen * row), -1.0f, 1.0f);
  auto prefill = [&](const std::vector<std::pair<int64_t, int64_t>>& parts,  // (sequence, new tokens)
                     const std::vector<float>& q) {
    std::vector<int32_t> cu = {0}, l, bt;
    for (auto [s, count] : parts) {
      cu.push_back(cu.back() + static_cast<int32_t>(count));
      l.push_back(lens[static_cast<size_t>(s)]);
      bt.insert(bt.end(), tables.begin() + s * c.max_blocks, tables.begin() + (s + 1) * c.max_blocks);
    }
    const auto ns = static_cast<int64_t>(parts.size());
    const int64_t tokens = cu.back();
    Tensor out = Tensor::empty(Shape{tokens, c.heads, c.head_size}, DType::kF32);
    ops::prefill_attention(out, host_tensor(Shape{tokens, c.heads, c.head_size}, DType::kF32, q.data(), q.size() * 4),
                           kc, vc, c.kv_heads,
                           host_tensor(Shape{ns, c.max_blocks}, DType::kI32, bt.data(), bt.size() * 4),
                           host_tensor(Shape{ns + 1}, DType::kI32, cu.data(), cu.size() * 4),
                           host_tensor(Shape{ns}, DType::kI32, l.data(), l.size() * 4), c.block_size, 128, params);
    const float* p = out.data<float>();
    return std::vector<float>(p, p + tokens * row);
  };
  const auto alone = prefill({{2, qlen}}, pq);
  std::vector<float> mixed(queries.begin(), queries.begin() + row);  // sequence 0's decode token
  mixed.insert(mixed.end(), pq.begin(), pq.end());
  const auto chunk = random_floats(rng, static_cast<size_t>(17 * row), -1.0f, 1.0f);
  mixed.insert(mixed.end(), chunk.begin(), chunk.end());
  const auto all = prefill({{0, 1}, {2, qlen}, {4, 17}}, mixed);
  EXPECT_EQ(std::memcmp(all.data() + row, alone.data(), static_cast<size_t>(qlen * row) * 4), 0)
      << "prefill among others";
  const auto decoded = decode({0});
  EXPECT_EQ(std::memcmp(all.data(), decoded.data(), static_cast<size_t>(row) * 4), 0)
      << "a decode token in a prefill batch";
}

}  // namespace
}  // namespace pagoda::cpu
