#pragma once

// Shared pieces of the op tests: the backends to run on, tensors to and from a device, random
// inputs, and comparison with a tolerance. Every op test runs on each backend backend_for() can
// give (cpu always; xpu:0 and cuda:0 when built and present) and compares with a plain reference
// written in the test in double precision.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/quant/float_convert.h"
#include "core/error.h"
#include "core/tensor.h"

namespace pagoda {
// gtest prints a device parameter by name rather than as bytes.
inline void PrintTo(const Device& d, std::ostream* os) {
  *os << device_name(d);
}
}  // namespace pagoda

namespace pagoda::test {

inline std::vector<Device> op_test_devices() {
  return {Device{DeviceKind::kCpu, 0}, Device{DeviceKind::kXpu, 0}, Device{DeviceKind::kCuda, 0}};
}

inline std::string device_param_name(const testing::TestParamInfo<Device>& info) {
  switch (info.param.kind) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kXpu: return "xpu" + std::to_string(info.param.index);
    case DeviceKind::kCuda: return "cuda" + std::to_string(info.param.index);
  }
  return "unknown";
}

// A test fixture parameterised by device. A backend that is not built or has no such device is a
// visible skip with the backend's own reason.
class DeviceOpTest : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    try {
      (void)backend_for(GetParam());
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kNotFound) {
        GTEST_SKIP() << device_name(GetParam()) << " backend not available in this build: " << e.what();
      }
      throw;
    }
  }

 public:
  [[nodiscard]] Device device() const { return GetParam(); }

  // A fresh copy of a host tensor on the device under test (never the host tensor itself, so
  // in-place ops leave the test's inputs alone).
  [[nodiscard]] Tensor upload(const Tensor& host) const {
    Tensor t = empty_on(device(), host.shape(), host.dtype());
    backend_for(device()).copy(t, host);
    return t;
  }
  [[nodiscard]] Tensor empty(const Shape& shape, DType dtype) const { return empty_on(device(), shape, dtype); }

  [[nodiscard]] static std::vector<float> download_f32(const Tensor& t) {
    Tensor h = to_host(t);
    const float* p = h.data<float>();
    return {p, p + h.numel()};
  }
  [[nodiscard]] static std::vector<int32_t> download_i32(const Tensor& t) {
    Tensor h = to_host(t);
    const int32_t* p = h.data<int32_t>();
    return {p, p + h.numel()};
  }
};

// Host tensors from values.
inline Tensor host_f32(const Shape& shape, const std::vector<float>& values) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}
inline Tensor host_i32(const Shape& shape, const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty(shape, DType::kI32);
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t;
}
inline Tensor host_i64(const Shape& shape, const std::vector<int64_t>& values) {
  Tensor t = Tensor::empty(shape, DType::kI64);
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  return t;
}

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v)
    x = dist(rng);
  return v;
}

inline int64_t random_int(std::mt19937& rng, int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A float stored as `dtype` (f32, f16 or bf16) and read back: the value a tensor of that dtype
// holds.
inline float round_to(DType dtype, float x) {
  switch (dtype) {
    case DType::kF16: return cpu::fp16_to_fp32(cpu::fp32_to_fp16(x));
    case DType::kBF16: return cpu::bf16_to_fp32(cpu::fp32_to_bf16(x));
    default: return x;
  }
}

// Writes float values into raw storage of `dtype` (f32, f16, bf16).
inline void store_as(DType dtype, const float* src, void* dst, int64_t n) {
  switch (dtype) {
    case DType::kF16: {
      auto* p = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        p[i] = cpu::fp32_to_fp16(src[i]);
      break;
    }
    case DType::kBF16: {
      auto* p = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        p[i] = cpu::fp32_to_bf16(src[i]);
      break;
    }
    default: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); break;
  }
}

// |got - want| <= atol[i] for every element, with a report of the worst few otherwise.
inline void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                         const std::vector<double>& atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  size_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    const bool ok = err <= atol[i] || (std::isnan(got[i]) && std::isnan(want[i]));
    if (!ok) {
      ++bad;
      worst = std::max(worst, err / std::max(atol[i], 1e-300));
      if (reported++ < 5) {
        ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want[i] << " (error " << err
                      << " > tolerance " << atol[i] << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements out of tolerance (worst " << worst
                     << "x)";
}

// The same with one tolerance: rtol * |want| + atol.
inline void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol,
                         const std::string& what) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i)
    tol[i] = rtol * std::abs(want[i]) + atol;
  expect_close(got, want, tol, what);
}

// Throws pagoda::Error with `code`; the message must contain `fragment`.
#define EXPECT_PAGODA_ERROR(statement, expected_code, fragment)           \
  do {                                                                    \
    try {                                                                 \
      statement;                                                          \
      ADD_FAILURE() << #statement << " did not throw";                    \
    } catch (const ::pagoda::Error& e_) {                                 \
      EXPECT_EQ(e_.code(), expected_code) << e_.what();                   \
      EXPECT_NE(std::string(e_.what()).find(fragment), std::string::npos) \
          << "message '" << e_.what() << "' lacks '" << fragment << "'";  \
    }                                                                     \
  } while (0)

}  // namespace pagoda::test
