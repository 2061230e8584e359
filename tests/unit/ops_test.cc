// Op tests: each op on every compiled backend against a plain double-precision reference written
// here (naive loops, no shortcuts), on random inputs of many shapes. Attention and the KV cache
// ops are in ops_attention_test.cc, the argument checks of the front ends in ops_checks_test.cc.

#include "ops/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/quant/block_layout.h"
#include "ops_test_util.h"

namespace pagoda::test {
namespace {

class OpsTest : public DeviceOpTest {};

// ---------------------------------------------------------------------------------------------
// Weights of any dtype

// The block types the CPU dequantizers implement (the matmul and embedding weight types).
const std::vector<DType> kQuantTypes = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                                        DType::kQ8_0, DType::kQ2_K, DType::kQ3_K, DType::kQ4_K,
                                        DType::kQ5_K, DType::kQ6_K, DType::kQ8_K};

void put_half(uint8_t* p, float v) {
  const uint16_t h = cpu::fp32_to_fp16(v);
  std::memcpy(p, &h, sizeof h);
}

// Random quant bits with scales of a sensible size (random bytes there could be huge or NaN).
void randomize_block(DType t, uint8_t* b, std::mt19937& rng) {
  namespace L = cpu::layout;
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t i = 0; i < dtype_block_bytes(t); ++i)
    b[i] = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> d(-0.02f, 0.02f);
  std::uniform_real_distribution<float> m(0.0f, 0.02f);
  switch (t) {
    case DType::kQ4_0: put_half(b + L::q4_0::kD, d(rng)); break;
    case DType::kQ4_1:
      put_half(b + L::q4_1::kD, d(rng));
      put_half(b + L::q4_1::kM, -m(rng));
      break;
    case DType::kQ5_0: put_half(b + L::q5_0::kD, d(rng)); break;
    case DType::kQ5_1:
      put_half(b + L::q5_1::kD, d(rng));
      put_half(b + L::q5_1::kM, -m(rng));
      break;
    case DType::kQ8_0: put_half(b + L::q8_0::kD, d(rng) * 0.1f); break;
    case DType::kQ2_K:
      put_half(b + L::q2_k::kD, d(rng) * 0.1f);
      put_half(b + L::q2_k::kDmin, m(rng) * 0.1f);
      break;
    case DType::kQ3_K: put_half(b + L::q3_k::kD, d(rng) * 0.1f); break;
    case DType::kQ4_K:
      put_half(b + L::q4_k::kD, d(rng) * 0.1f);
      put_half(b + L::q4_k::kDmin, m(rng) * 0.1f);
      break;
    case DType::kQ5_K:
      put_half(b + L::q5_k::kD, d(rng) * 0.1f);
      put_half(b + L::q5_k::kDmin, m(rng) * 0.1f);
      break;
    case DType::kQ6_K: put_half(b + L::q6_k::kD, d(rng) * 0.05f); break;
    case DType::kQ8_K: {
      const float v = d(rng) * 0.05f;
      std::memcpy(b + L::q8_k::kD, &v, sizeof v);
      break;
    }
    default: FAIL() << "not a block type: " << dtype_name(t);
  }
}

// A host weight (rows, cols) of `dtype` with random contents.
Tensor random_weight(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols) {
  Tensor w = Tensor::empty(Shape{rows, cols}, dtype);
  if (dtype_is_quantized(dtype)) {
    auto* p = static_cast<uint8_t*>(w.raw_data());
    const int64_t blocks = rows * cols / dtype_block_size(dtype);
    for (int64_t i = 0; i < blocks; ++i)
      randomize_block(dtype, p + i * dtype_block_bytes(dtype), rng);
  } else {
    const std::vector<float> v = random_floats(rng, static_cast<size_t>(rows * cols));
    store_as(dtype, v.data(), w.raw_data(), rows * cols);
  }
  return w;
}

// The values a weight holds, by the portable scalar dequantizers (checked bit for bit against
// the gguf package in tests/models).
std::vector<float> dequantized(const Tensor& w) {
  const int64_t cols = w.dim(-1);
  const int64_t rows = w.numel() / cols;
  const uint64_t row_bytes = *dtype_row_bytes(w.dtype(), cols);
  std::vector<float> out(static_cast<size_t>(w.numel()));
  const auto* p = static_cast<const uint8_t*>(w.raw_data());
  for (int64_t r = 0; r < rows; ++r)
    cpu::dequantize_row_scalar(w.dtype(), p + r * row_bytes, out.data() + r * cols, cols);
  return out;
}

// ---------------------------------------------------------------------------------------------
// embedding

TEST_P(OpsTest, EmbeddingEveryTableDtype) {
  std::mt19937 rng(1);
  std::vector<DType> types = {DType::kF32, DType::kF16, DType::kBF16};
  types.insert(types.end(), kQuantTypes.begin(), kQuantTypes.end());
  for (DType t : types) {
    const int64_t hidden = dtype_block_size(t) == 256 ? 256 : 64;
    const int64_t vocab = 37;
    const Tensor table = random_weight(rng, t, vocab, hidden);
    const std::vector<float> values = dequantized(table);
    std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1, 36};
    Tensor out = empty(Shape{7, hidden}, DType::kF32);
    ops::embedding(out, upload(host_i32(Shape{7}, ids)), upload(table));
    const std::vector<float> got = download_f32(out);
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t d = 0; d < hidden; ++d) {
        ASSERT_EQ(got[i * hidden + d], values[ids[i] * hidden + d]) << dtype_name(t) << " token " << i << " dim " << d;
      }
    }
  }
}

TEST_P(OpsTest, EmbeddingRejectsIdsOutsideTheVocabulary) {
  std::mt19937 rng(2);
  const Tensor table = upload(random_weight(rng, DType::kF32, 10, 8));
  Tensor out = empty(Shape{2, 8}, DType::kF32);
  EXPECT_PAGODA_ERROR(ops::embedding(out, upload(host_i32(Shape{2}, {3, 10})), table), ErrorCode::kInvalidArgument,
                      "ids[1] = 10");
  EXPECT_PAGODA_ERROR(ops::embedding(out, upload(host_i32(Shape{2}, {-1, 0})), table), ErrorCode::kInvalidArgument,
                      "ids[0] = -1");
}

// ---------------------------------------------------------------------------------------------
// norms

std::vector<double> ref_rms_norm(const std::vector<float>& x, const std::vector<float>& w, int64_t hidden, double eps,
                                 double offset) {
  std::vector<double> out(x.size());
  for (size_t r = 0; r < x.size() / hidden; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < hidden; ++i)
      ss += static_cast<double>(x[r * hidden + i]) * x[r * hidden + i];
    const double inv = 1.0 / std::sqrt(ss / hidden + eps);
    for (int64_t i = 0; i < hidden; ++i)
      out[r * hidden + i] = x[r * hidden + i] * inv * (w[i] + offset);
  }
  return out;
}

TEST_P(OpsTest, RmsNorm) {
  std::mt19937 rng(3);
  const std::vector<Shape> shapes = {Shape{1, 8}, Shape{7, 576}, Shape{3, 5, 64}, Shape{2, 1000}, Shape{4, 33}};
  for (const Shape& shape : shapes) {
    for (float offset : {0.0f, 1.0f}) {
      const int64_t hidden = shape[shape.ndim() - 1];
      const auto x = random_floats(rng, static_cast<size_t>(shape.numel()), -3.0f, 3.0f);
      const auto w = random_floats(rng, static_cast<size_t>(hidden), -1.0f, 1.0f);
      const float eps = 1e-6f;
      const std::vector<double> want = ref_rms_norm(x, w, hidden, eps, offset);
      Tensor out = empty(shape, DType::kF32);
      const Tensor dx = upload(host_f32(shape, x));
      const Tensor dw = upload(host_f32(Shape{hidden}, w));
      ops::rms_norm(out, dx, dw, eps, offset);
      expect_close(download_f32(out), want, 1e-5, 1e-6, "rms_norm " + shape.str());
      Tensor inplace = upload(host_f32(shape, x));
      ops::rms_norm(inplace, inplace, dw, eps, offset);
      expect_close(download_f32(inplace), want, 1e-5, 1e-6, "rms_norm in place " + shape.str());
    }
  }
}

TEST_P(OpsTest, FusedAddRmsNorm) {
  std::mt19937 rng(4);
  for (const Shape& shape : {Shape{1, 16}, Shape{9, 576}, Shape{2, 3, 80}}) {
    const int64_t hidden = shape[shape.ndim() - 1];
    const auto x = random_floats(rng, static_cast<size_t>(shape.numel()));
    const auto res = random_floats(rng, static_cast<size_t>(shape.numel()));
    const auto w = random_floats(rng, static_cast<size_t>(hidden));
    std::vector<float> sum(x.size());
    std::vector<double> want_res(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      sum[i] = x[i] + res[i];  // float addition, as the op stores the residual in f32
      want_res[i] = sum[i];
    }
    for (float offset : {0.0f, 1.0f}) {
      Tensor dx = upload(host_f32(shape, x));
      Tensor dres = upload(host_f32(shape, res));
      ops::fused_add_rms_norm(dx, dres, upload(host_f32(Shape{hidden}, w)), 1e-5f, offset);
      expect_close(download_f32(dres), want_res, 0.0, 0.0, "fused_add_rms_norm residual " + shape.str());
      expect_close(download_f32(dx), ref_rms_norm(sum, w, hidden, 1e-5, offset), 1e-5, 1e-6,
                   "fused_add_rms_norm x " + shape.str());
    }
  }
}

TEST_P(OpsTest, LayerNorm) {
  std::mt19937 rng(5);
  for (const Shape& shape : {Shape{1, 8}, Shape{6, 384}, Shape{3, 2, 50}}) {
    for (bool with_bias : {false, true}) {
      const int64_t hidden = shape[shape.ndim() - 1];
      // An offset mean checks that the variance is taken about the mean.
      const auto x = random_floats(rng, static_cast<size_t>(shape.numel()), 4.0f, 6.0f);
      const auto w = random_floats(rng, static_cast<size_t>(hidden));
      const auto b = random_floats(rng, static_cast<size_t>(hidden));
      std::vector<double> want(x.size());
      for (size_t r = 0; r < x.size() / hidden; ++r) {
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < hidden; ++i)
          mean += x[r * hidden + i];
        mean /= hidden;
        for (int64_t i = 0; i < hidden; ++i)
          var += (x[r * hidden + i] - mean) * (x[r * hidden + i] - mean);
        var /= hidden;
        for (int64_t i = 0; i < hidden; ++i)
          want[r * hidden + i] = (x[r * hidden + i] - mean) / std::sqrt(var + 1e-5) * w[i] + (with_bias ? b[i] : 0.0);
      }
      Tensor out = empty(shape, DType::kF32);
      const Tensor db = upload(host_f32(Shape{hidden}, b));
      ops::layer_norm(out, upload(host_f32(shape, x)), upload(host_f32(Shape{hidden}, w)), with_bias ? &db : nullptr,
                      1e-5f);
      expect_close(download_f32(out), want, 1e-4, 1e-5, "layer_norm " + shape.str());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// rotary embedding

// The cos/sin cache of plain RoPE (the model layer builds the scaled variants), float values.
Tensor rope_cache(int64_t max_positions, int64_t rotary_dim, double base) {
  Tensor cache = Tensor::empty(Shape{max_positions, rotary_dim}, DType::kF32);
  float* p = cache.data<float>();
  const int64_t half = rotary_dim / 2;
  for (int64_t pos = 0; pos < max_positions; ++pos) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * std::pow(base, -2.0 * i / rotary_dim);
      p[pos * rotary_dim + i] = static_cast<float>(std::cos(angle));
      p[pos * rotary_dim + half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return cache;
}

// Rotates heads of x (tokens, heads * head_size) in double, by the definition: pairs (i, i + r/2)
// for NeoX, (2i, 2i + 1) for GPT-J, over the first r dimensions.
std::vector<double> ref_rotary(const std::vector<float>& x, int64_t tokens, int64_t heads, int64_t head_size,
                               const std::vector<int32_t>& pos, const Tensor& cache, bool neox) {
  const int64_t rot = cache.dim(1);
  const float* c = cache.data<float>();
  std::vector<double> out(x.begin(), x.end());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (t * heads + h) * head_size;
      for (int64_t i = 0; i < rot / 2; ++i) {
        const int64_t a = neox ? i : 2 * i;
        const int64_t b = neox ? i + rot / 2 : 2 * i + 1;
        const double cs = c[pos[t] * rot + i];
        const double sn = c[pos[t] * rot + rot / 2 + i];
        out[base + a] = x[base + a] * cs - x[base + b] * sn;
        out[base + b] = x[base + b] * cs + x[base + a] * sn;
      }
    }
  }
  return out;
}

TEST_P(OpsTest, RotaryEmbedding) {
  std::mt19937 rng(6);
  struct Case {
    int64_t head_size, rotary_dim, heads, kv_heads, tokens;
  };
  const std::vector<Case> cases = {{64, 64, 4, 2, 5},   {64, 32, 3, 3, 3},  {80, 80, 2, 1, 4},   {80, 20, 4, 4, 2},
                                   {128, 128, 8, 2, 3}, {128, 64, 2, 2, 6}, {256, 256, 2, 1, 2}, {256, 64, 1, 1, 1}};
  const int64_t max_positions = 300;
  for (const Case& k : cases) {
    const Tensor cache = rope_cache(max_positions, k.rotary_dim, 10000.0);
    for (bool neox : {true, false}) {
      for (bool with_key : {true, false}) {
        for (bool three_d : {false, true}) {
          std::vector<int32_t> pos(static_cast<size_t>(k.tokens));
          for (auto& p : pos)
            p = static_cast<int32_t>(random_int(rng, 0, max_positions - 1));
          pos[0] = max_positions - 1;
          const auto q = random_floats(rng, static_cast<size_t>(k.tokens * k.heads * k.head_size));
          const auto kk = random_floats(rng, static_cast<size_t>(k.tokens * k.kv_heads * k.head_size));
          const Shape qs = three_d ? Shape{k.tokens, k.heads, k.head_size} : Shape{k.tokens, k.heads * k.head_size};
          const Shape ks =
              three_d ? Shape{k.tokens, k.kv_heads, k.head_size} : Shape{k.tokens, k.kv_heads * k.head_size};
          Tensor dq = upload(host_f32(qs, q));
          Tensor dk = upload(host_f32(ks, kk));
          ops::rotary_embedding(upload(host_i32(Shape{k.tokens}, pos)), dq, with_key ? &dk : nullptr, k.head_size,
                                upload(cache), neox);
          const std::string what = "rotary hs " + std::to_string(k.head_size) + " rot " + std::to_string(k.rotary_dim) +
                                   (neox ? " neox" : " gptj");
          expect_close(download_f32(dq), ref_rotary(q, k.tokens, k.heads, k.head_size, pos, cache, neox), 0.0, 1e-6,
                       what + " query");
          const std::vector<double> key_want = with_key
                                                   ? ref_rotary(kk, k.tokens, k.kv_heads, k.head_size, pos, cache, neox)
                                                   : std::vector<double>(kk.begin(), kk.end());
          expect_close(download_f32(dk), key_want, 0.0, 1e-6, what + " key");
        }
      }
    }
  }
}

TEST_P(OpsTest, RotaryEmbeddingRejectsPositionsOutsideTheCache) {
  Tensor q = upload(host_f32(Shape{2, 8}, std::vector<float>(16, 1.0f)));
  const Tensor cache = upload(rope_cache(10, 8, 10000.0));
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(upload(host_i32(Shape{2}, {3, 10})), q, nullptr, 8, cache, true),
                      ErrorCode::kInvalidArgument, "positions[1] = 10");
}

// ---------------------------------------------------------------------------------------------
// activations

double ref_act(ActivationKind act, double x) {
  switch (act) {
    case ActivationKind::kSilu: return x / (1.0 + std::exp(-x));
    case ActivationKind::kGelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case ActivationKind::kGeluTanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  }
  return 0.0;
}

TEST_P(OpsTest, ActAndMul) {
  std::mt19937 rng(7);
  for (ActivationKind act : {ActivationKind::kSilu, ActivationKind::kGelu, ActivationKind::kGeluTanh}) {
    for (const Shape& out_shape : {Shape{1, 1}, Shape{5, 11}, Shape{3, 1536}, Shape{2, 3, 7}}) {
      Shape in_shape = out_shape;
      const int64_t d = out_shape[out_shape.ndim() - 1];
      in_shape[in_shape.ndim() - 1] = 2 * d;
      const auto x = random_floats(rng, static_cast<size_t>(in_shape.numel()), -6.0f, 6.0f);
      std::vector<double> want(static_cast<size_t>(out_shape.numel()));
      for (size_t r = 0; r < want.size() / d; ++r) {
        for (int64_t i = 0; i < d; ++i)
          want[r * d + i] = ref_act(act, x[r * 2 * d + i]) * x[r * 2 * d + d + i];
      }
      const Tensor dx = upload(host_f32(in_shape, x));
      Tensor out = empty(out_shape, DType::kF32);
      ops::act_and_mul(out, dx, act);
      expect_close(download_f32(out), want, 1e-5, 1e-6, "act_and_mul " + out_shape.str());
      Tensor out2 = empty(out_shape, DType::kF32);
      if (act == ActivationKind::kSilu) ops::silu_and_mul(out2, dx);
      if (act == ActivationKind::kGelu) ops::gelu_and_mul(out2, dx);
      if (act == ActivationKind::kGeluTanh) ops::gelu_tanh_and_mul(out2, dx);
      EXPECT_EQ(download_f32(out2), download_f32(out));
    }
  }
}

TEST_P(OpsTest, Activation) {
  std::mt19937 rng(8);
  for (ActivationKind act : {ActivationKind::kSilu, ActivationKind::kGelu, ActivationKind::kGeluTanh}) {
    const Shape shape{13, 257};
    const auto x = random_floats(rng, static_cast<size_t>(shape.numel()), -8.0f, 8.0f);
    std::vector<double> want(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      want[i] = ref_act(act, x[i]);
    Tensor out = empty(shape, DType::kF32);
    ops::activation(out, upload(host_f32(shape, x)), act);
    expect_close(download_f32(out), want, 1e-5, 1e-6, "activation");
    Tensor inplace = upload(host_f32(shape, x));
    ops::activation(inplace, inplace, act);
    expect_close(download_f32(inplace), want, 1e-5, 1e-6, "activation in place");
  }
  const auto x = random_floats(rng, 40, -3.0f, 3.0f);
  Tensor a = empty(Shape{40}, DType::kF32);
  Tensor b = empty(Shape{40}, DType::kF32);
  ops::gelu(a, upload(host_f32(Shape{40}, x)));
  ops::activation(b, upload(host_f32(Shape{40}, x)), ActivationKind::kGelu);
  EXPECT_EQ(download_f32(a), download_f32(b));
}

// ---------------------------------------------------------------------------------------------
// matmul

// out (m, n) in double over the weight's values, and per element a tolerance of rel * sum |x w|
// (the size of the terms, so cancellation does not make the check meaningless).
void ref_matmul(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* bias, int64_t m,
                int64_t n, int64_t k, double rel, std::vector<double>& want, std::vector<double>& tol) {
  want.assign(static_cast<size_t>(m * n), 0.0);
  tol.assign(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int64_t l = 0; l < k; ++l) {
        const double term = static_cast<double>(x[i * k + l]) * w[j * k + l];
        sum += term;
        mag += std::abs(term);
      }
      if (bias != nullptr) {
        sum += (*bias)[j];
        mag += std::abs((*bias)[j]);
      }
      want[i * n + j] = sum;
      tol[i * n + j] = rel * mag + 1e-7;
    }
  }
}

void check_matmul(OpsTest& t, std::mt19937& rng, DType wtype, int64_t m, int64_t n, int64_t k, bool with_bias,
                  bool quant_entry = false) {
  const Tensor w = random_weight(rng, wtype, n, k);
  const auto x = random_floats(rng, static_cast<size_t>(m * k));
  const auto bias = random_floats(rng, static_cast<size_t>(n));
  std::vector<double> want, tol;
  const std::vector<float> wv = dequantized(w);
  ref_matmul(x, wv, with_bias ? &bias : nullptr, m, n, k, 1e-5, want, tol);
  Tensor out = t.empty(Shape{m, n}, DType::kF32);
  const Tensor db = t.upload(host_f32(Shape{n}, bias));
  if (quant_entry) {
    ops::quant_matmul(out, t.upload(host_f32(Shape{m, k}, x)), t.upload(w), with_bias ? &db : nullptr);
  } else {
    ops::matmul(out, t.upload(host_f32(Shape{m, k}, x)), t.upload(w), with_bias ? &db : nullptr);
  }
  expect_close(DeviceOpTest::download_f32(out), want, tol,
               "matmul " + std::string(dtype_name(wtype)) + " m " + std::to_string(m) + " n " + std::to_string(n) +
                   " k " + std::to_string(k) + (with_bias ? " bias" : ""));
}

TEST_P(OpsTest, MatmulF32) {
  std::mt19937 rng(9);
  struct Case {
    int64_t m, n, k;
  };
  // Odd sizes, single rows and columns, several weight tiles, more rows than one task's block.
  const std::vector<Case> cases = {{1, 1, 1},     {1, 3, 7},     {3, 17, 33},  {2, 5, 8},    {5, 64, 64},
                                   {17, 37, 100}, {2, 130, 576}, {70, 70, 96}, {130, 9, 32}, {4, 200, 13}};
  for (const Case& c : cases) {
    for (bool bias : {false, true})
      check_matmul(*this, rng, DType::kF32, c.m, c.n, c.k, bias);
  }
}

TEST_P(OpsTest, MatmulHalfWeights) {
  std::mt19937 rng(10);
  for (DType t : {DType::kF16, DType::kBF16}) {
    check_matmul(*this, rng, t, 1, 19, 64, false);
    check_matmul(*this, rng, t, 6, 33, 96, true);
    check_matmul(*this, rng, t, 67, 8, 40, false);
    // Rows of several 256-byte blocks plus a rest (the subgroup kernel's block reads and tail).
    check_matmul(*this, rng, t, 2, 130, 576, false);
    check_matmul(*this, rng, t, 9, 21, 1040, true);
  }
}

TEST_P(OpsTest, MatmulQuantizedWeights) {
  std::mt19937 rng(11);
  for (DType t : kQuantTypes) {
    const int64_t block = dtype_block_size(t);
    check_matmul(*this, rng, t, 1, 13, 2 * block, false);
    check_matmul(*this, rng, t, 3, 21, block, true);
    check_matmul(*this, rng, t, 66, 6, 2 * block, false, /*quant_entry=*/true);
  }
}

TEST_P(OpsTest, MatmulKeepsLeadingDimensions) {
  std::mt19937 rng(12);
  const auto x = random_floats(rng, 2 * 3 * 10);
  const Tensor w = random_weight(rng, DType::kF32, 4, 10);
  std::vector<double> want, tol;
  ref_matmul(x, dequantized(w), nullptr, 6, 4, 10, 1e-5, want, tol);
  Tensor out = empty(Shape{2, 3, 4}, DType::kF32);
  ops::matmul(out, upload(host_f32(Shape{2, 3, 10}, x)), upload(w));
  expect_close(download_f32(out), want, tol, "matmul 3-d");
}

// An f32 weight that is not 4-byte aligned (a tensor in a file need not be) still multiplies.
TEST_P(OpsTest, MatmulMisalignedF32Weight) {
  if (device().kind != DeviceKind::kCpu) GTEST_SKIP() << "host memory layout only";
  std::mt19937 rng(13);
  const int64_t n = 5, k = 12, m = 3;
  const auto wv = random_floats(rng, static_cast<size_t>(n * k));
  auto storage = make_host_storage(static_cast<uint64_t>(n * k) * 4 + 2);
  std::memcpy(static_cast<uint8_t*>(storage->data()) + 2, wv.data(), wv.size() * 4);
  const Tensor w = Tensor::from_storage(storage, 2, Shape{n, k}, DType::kF32);
  const auto x = random_floats(rng, static_cast<size_t>(m * k));
  std::vector<double> want, tol;
  ref_matmul(x, wv, nullptr, m, n, k, 1e-5, want, tol);
  Tensor out = empty(Shape{m, n}, DType::kF32);
  ops::matmul(out, host_f32(Shape{m, k}, x), w);
  expect_close(download_f32(out), want, tol, "matmul misaligned");
}

// ---------------------------------------------------------------------------------------------
// elementwise

TEST_P(OpsTest, AddScaleSoftcap) {
  std::mt19937 rng(14);
  const Shape shape{7, 333};
  const auto a = random_floats(rng, static_cast<size_t>(shape.numel()), -50.0f, 50.0f);
  const auto b = random_floats(rng, static_cast<size_t>(shape.numel()), -50.0f, 50.0f);
  std::vector<double> sum(a.size()), scaled(a.size()), capped(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    sum[i] = static_cast<double>(a[i]) + b[i];
    scaled[i] = a[i] * 0.125;
    capped[i] = 30.0 * std::tanh(a[i] / 30.0);
  }
  Tensor out = empty(shape, DType::kF32);
  const Tensor da = upload(host_f32(shape, a));
  ops::add(out, da, upload(host_f32(shape, b)));
  expect_close(download_f32(out), sum, 1e-7, 1e-6, "add");
  Tensor alias = upload(host_f32(shape, a));
  ops::add(alias, alias, upload(host_f32(shape, b)));
  expect_close(download_f32(alias), sum, 1e-7, 1e-6, "add in place");
  Tensor s = upload(host_f32(shape, a));
  ops::scale(s, 0.125f);
  expect_close(download_f32(s), scaled, 0.0, 0.0, "scale");
  Tensor c = upload(host_f32(shape, a));
  ops::softcap(c, 30.0f);
  expect_close(download_f32(c), capped, 1e-6, 1e-6, "softcap");
}

// ---------------------------------------------------------------------------------------------
// argmax, topk_softmax, gather_rows

TEST_P(OpsTest, Argmax) {
  std::mt19937 rng(15);
  const int64_t rows = 9, vocab = 1001;
  auto logits = random_floats(rng, static_cast<size_t>(rows * vocab), -20.0f, 20.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Row 1: a tie, the first index wins. Row 2: NaNs around the maximum. Row 3: all -inf.
  // Row 4: +inf. Row 5: all NaN.
  logits[1 * vocab + 500] = 30.0f;
  logits[1 * vocab + 20] = 30.0f;
  logits[2 * vocab + 0] = nan;
  logits[2 * vocab + 7] = 25.0f;
  logits[2 * vocab + 8] = nan;
  std::fill_n(logits.begin() + 3 * vocab, vocab, -inf);
  logits[4 * vocab + 999] = inf;
  std::fill_n(logits.begin() + 5 * vocab, vocab, nan);
  std::vector<int32_t> want(rows);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t best = -1;
    for (int64_t i = 0; i < vocab; ++i) {
      const float v = logits[r * vocab + i];
      if (!std::isnan(v) && (best < 0 || v > logits[r * vocab + best])) best = static_cast<int32_t>(i);
    }
    want[r] = best < 0 ? 0 : best;
  }
  ASSERT_EQ(want[1], 20);
  ASSERT_EQ(want[2], 7);
  ASSERT_EQ(want[3], 0);
  ASSERT_EQ(want[4], 999);
  Tensor out = empty(Shape{rows}, DType::kI32);
  ops::argmax(out, upload(host_f32(Shape{rows, vocab}, logits)));
  EXPECT_EQ(download_i32(out), want);
}

TEST_P(OpsTest, TopkSoftmax) {
  std::mt19937 rng(16);
  struct Case {
    int64_t tokens, experts, k;
  };
  for (const Case& c : std::vector<Case>{{1, 8, 2}, {7, 8, 2}, {5, 64, 6}, {3, 5, 5}, {4, 60, 1}}) {
    auto gating = random_floats(rng, static_cast<size_t>(c.tokens * c.experts), -4.0f, 4.0f);
    gating[1] = gating[0];  // a tie: the lower expert id comes first
    for (bool renorm : {false, true}) {
      std::vector<double> want_w;
      std::vector<int32_t> want_id;
      for (int64_t t = 0; t < c.tokens; ++t) {
        const float* g = gating.data() + t * c.experts;
        double mx = -1e300, sum = 0.0;
        for (int64_t e = 0; e < c.experts; ++e)
          mx = std::max(mx, static_cast<double>(g[e]));
        std::vector<double> p(static_cast<size_t>(c.experts));
        for (int64_t e = 0; e < c.experts; ++e)
          sum += p[e] = std::exp(g[e] - mx);
        std::vector<int32_t> order(static_cast<size_t>(c.experts));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return g[a] > g[b]; });
        double chosen = 0.0;
        for (int64_t j = 0; j < c.k; ++j)
          chosen += p[order[j]] / sum;
        for (int64_t j = 0; j < c.k; ++j) {
          want_id.push_back(order[j]);
          want_w.push_back(p[order[j]] / sum / (renorm ? chosen : 1.0));
        }
      }
      Tensor w = empty(Shape{c.tokens, c.k}, DType::kF32);
      Tensor ids = empty(Shape{c.tokens, c.k}, DType::kI32);
      ops::topk_softmax(w, ids, upload(host_f32(Shape{c.tokens, c.experts}, gating)), renorm);
      EXPECT_EQ(download_i32(ids), want_id) << c.experts << " experts, k " << c.k;
      expect_close(download_f32(w), want_w, 1e-5, 1e-7, "topk_softmax weights");
    }
  }
}

TEST_P(OpsTest, GatherRows) {
  std::mt19937 rng(17);
  const auto x = random_floats(rng, 6 * 50);
  const std::vector<int32_t> idx = {5, 0, 0, 3};
  Tensor out = empty(Shape{4, 50}, DType::kF32);
  ops::gather_rows(out, upload(host_f32(Shape{6, 50}, x)), upload(host_i32(Shape{4}, idx)));
  std::vector<double> want;
  for (int32_t i : idx) {
    for (int64_t c = 0; c < 50; ++c)
      want.push_back(x[i * 50 + c]);
  }
  expect_close(download_f32(out), want, 0.0, 0.0, "gather_rows f32");
  // Any dtype: i32 rows are bytes like the others.
  Tensor out_i = empty(Shape{2, 3}, DType::kI32);
  ops::gather_rows(out_i, upload(host_i32(Shape{3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9})),
                   upload(host_i32(Shape{2}, {2, 0})));
  EXPECT_EQ(download_i32(out_i), (std::vector<int32_t>{7, 8, 9, 1, 2, 3}));
  EXPECT_PAGODA_ERROR(
      ops::gather_rows(out, upload(host_f32(Shape{6, 50}, x)), upload(host_i32(Shape{4}, {0, 1, 6, 2}))),
      ErrorCode::kInvalidArgument, "indices[2] = 6");
}

// ---------------------------------------------------------------------------------------------
// MoE experts

TEST_P(OpsTest, MoeExperts) {
  std::mt19937 rng(18);
  struct Case {
    DType wtype;
    int64_t tokens, experts, k, hidden, inter;
    ActivationKind act;
  };
  const std::vector<Case> cases = {{DType::kF32, 5, 4, 2, 24, 10, ActivationKind::kSilu},
                                   {DType::kF32, 1, 8, 3, 16, 6, ActivationKind::kGeluTanh},
                                   {DType::kQ8_0, 6, 4, 2, 64, 32, ActivationKind::kSilu},
                                   {DType::kQ4_K, 3, 3, 2, 256, 256, ActivationKind::kGelu}};
  for (const Case& c : cases) {
    const Tensor gate_up = random_weight(rng, c.wtype, c.experts * 2 * c.inter, c.hidden);
    const Tensor down = random_weight(rng, c.wtype, c.experts * c.hidden, c.inter);
    const std::vector<float> gu = dequantized(gate_up);
    const std::vector<float> dn = dequantized(down);
    const auto x = random_floats(rng, static_cast<size_t>(c.tokens * c.hidden));
    std::vector<int32_t> ids;
    std::vector<float> weights;
    for (int64_t t = 0; t < c.tokens; ++t) {
      std::vector<int32_t> experts(static_cast<size_t>(c.experts));
      std::iota(experts.begin(), experts.end(), 0);
      std::shuffle(experts.begin(), experts.end(), rng);
      for (int64_t j = 0; j < c.k; ++j) {
        ids.push_back(experts[j]);
        weights.push_back(std::uniform_real_distribution<float>(0.1f, 1.0f)(rng));
      }
    }
    std::vector<double> want(static_cast<size_t>(c.tokens * c.hidden), 0.0);
    std::vector<double> tol(want.size(), 0.0);
    for (int64_t t = 0; t < c.tokens; ++t) {
      for (int64_t j = 0; j < c.k; ++j) {
        const int64_t e = ids[t * c.k + j];
        // h = act(gate) * up, and a bound on its float rounding error (10x float epsilon on the
        // magnitudes of the terms; act' is at most 1.2 for these activations).
        std::vector<double> h(static_cast<size_t>(c.inter)), herr(static_cast<size_t>(c.inter));
        for (int64_t i = 0; i < c.inter; ++i) {
          double g = 0.0, u = 0.0, gmag = 0.0, umag = 0.0;
          for (int64_t l = 0; l < c.hidden; ++l) {
            const double xg = static_cast<double>(x[t * c.hidden + l]) * gu[(e * 2 * c.inter + i) * c.hidden + l];
            const double xu =
                static_cast<double>(x[t * c.hidden + l]) * gu[(e * 2 * c.inter + c.inter + i) * c.hidden + l];
            g += xg;
            u += xu;
            gmag += std::abs(xg);
            umag += std::abs(xu);
          }
          h[i] = ref_act(c.act, g) * u;
          herr[i] = 1e-6 * (1.2 * gmag * std::abs(u) + std::abs(ref_act(c.act, g)) * umag + std::abs(h[i]));
        }
        for (int64_t o = 0; o < c.hidden; ++o) {
          double y = 0.0, err = 0.0;
          for (int64_t i = 0; i < c.inter; ++i) {
            const double d = dn[(e * c.hidden + o) * c.inter + i];
            y += h[i] * d;
            err += (1e-6 * std::abs(h[i]) + herr[i]) * std::abs(d);
          }
          want[t * c.hidden + o] += weights[t * c.k + j] * y;
          tol[t * c.hidden + o] += weights[t * c.k + j] * 10.0 * err + 1e-7;
        }
      }
    }
    Tensor out = empty(Shape{c.tokens, c.hidden}, DType::kF32);
    const Tensor dgu = upload(gate_up.view(Shape{c.experts, 2 * c.inter, c.hidden}));
    const Tensor ddn = upload(down.view(Shape{c.experts, c.hidden, c.inter}));
    ops::moe_experts(out, upload(host_f32(Shape{c.tokens, c.hidden}, x)), dgu, ddn,
                     upload(host_f32(Shape{c.tokens, c.k}, weights)), upload(host_i32(Shape{c.tokens, c.k}, ids)),
                     c.act);
    expect_close(download_f32(out), want, tol, "moe_experts " + std::string(dtype_name(c.wtype)));
  }
}

TEST_P(OpsTest, MoeExpertsRejectsUnknownExperts) {
  Tensor out = empty(Shape{1, 8}, DType::kF32);
  const Tensor gu = upload(Tensor::zeros(Shape{2, 8, 8}, DType::kF32));
  const Tensor dn = upload(Tensor::zeros(Shape{2, 8, 4}, DType::kF32));
  EXPECT_PAGODA_ERROR(ops::moe_experts(out, upload(Tensor::zeros(Shape{1, 8}, DType::kF32)), gu, dn,
                                       upload(host_f32(Shape{1, 1}, {1.0f})), upload(host_i32(Shape{1, 1}, {2})),
                                       ActivationKind::kSilu),
                      ErrorCode::kInvalidArgument, "topk_ids[0][0] = 2");
}

INSTANTIATE_TEST_SUITE_P(Backends, OpsTest, testing::ValuesIn(op_test_devices()), device_param_name);

}  // namespace
}  // namespace pagoda::test
