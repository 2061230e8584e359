#pragma once

// Argument checks shared by the op front ends (internal to src/ops). Every failure is an
// Error(kInvalidArgument) whose message starts with the op's name and names the tensor:
// "rms_norm: weight has shape [7], expected [8]".

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "core/error.h"
#include "core/tensor.h"

namespace pagoda::ops::detail {

class OpCheck {
 public:
  // The op runs on `device` (that of its output, or first in-place tensor).
  OpCheck(const char* op, Device device) : op_(op), device_(device) {}

  [[nodiscard]] const char* op() const { return op_; }
  [[nodiscard]] Device device() const { return device_; }

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) const {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(op_) + ": " + fmt::format(format, std::forward<Args>(args)...));
  }

  // Defined, contiguous and on the op's device.
  void input(std::string_view name, const Tensor& t) const;
  // An input that the op also writes: in addition, writable memory.
  void output(std::string_view name, const Tensor& t) const;

  void dtype(std::string_view name, const Tensor& t, DType expected) const;
  void ndim(std::string_view name, const Tensor& t, int expected) const;
  void min_ndim(std::string_view name, const Tensor& t, int at_least) const;
  void shape(std::string_view name, const Tensor& t, const Shape& expected) const;
  void dim(std::string_view name, const Tensor& t, int axis, int64_t expected) const;

  // `a` and `b` share no bytes.
  void disjoint(std::string_view a_name, const Tensor& a, std::string_view b_name, const Tensor& b) const;
  // `a` and `b` are the same elements (an in-place op) or share no bytes.
  void same_or_disjoint(std::string_view a_name, const Tensor& a, std::string_view b_name, const Tensor& b) const;

  // Error(kUnsupported) unless the backend implements the op for `dtype` (of tensor `name`).
  void supported(Backend& backend, OpKind kind, std::string_view name, DType dtype) const;

 private:
  const char* op_;
  Device device_;
};

// Whether two tensors' byte ranges intersect.
[[nodiscard]] bool overlaps(const Tensor& a, const Tensor& b);

}  // namespace pagoda::ops::detail
