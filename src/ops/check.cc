#include "ops/check.h"

namespace pagoda::ops::detail {

namespace {
const char* storage_kind_name(StorageKind kind) {
  switch (kind) {
    case StorageKind::kOwned: return "owned memory";
    case StorageKind::kBorrowed: return "borrowed memory";
    case StorageKind::kMapped: return "a read-only memory-mapped file";
    case StorageKind::kDevice: return "device memory";
  }
  return "memory";
}
}  // namespace

void OpCheck::input(std::string_view name, const Tensor& t) const {
  if (!t.defined()) fail("{} is undefined", name);
  if (t.device() != device_) {
    fail("{} is on {}, but the op runs on {}", name, device_name(t.device()), device_name(device_));
  }
  if (!t.is_contiguous()) fail("{} ({}) is not contiguous", name, t.str());
}

void OpCheck::output(std::string_view name, const Tensor& t) const {
  input(name, t);
  if (!t.storage()->writable()) fail("{} is not writable ({})", name, storage_kind_name(t.storage_kind()));
}

void OpCheck::dtype(std::string_view name, const Tensor& t, DType expected) const {
  if (t.dtype() != expected) fail("{} has dtype {}, expected {}", name, dtype_name(t.dtype()), dtype_name(expected));
}

void OpCheck::ndim(std::string_view name, const Tensor& t, int expected) const {
  if (t.ndim() != expected) fail("{} has shape {}, expected {} dimensions", name, t.shape().str(), expected);
}

void OpCheck::min_ndim(std::string_view name, const Tensor& t, int at_least) const {
  if (t.ndim() < at_least) fail("{} has shape {}, expected at least {} dimensions", name, t.shape().str(), at_least);
}

void OpCheck::shape(std::string_view name, const Tensor& t, const Shape& expected) const {
  if (!(t.shape() == expected)) fail("{} has shape {}, expected {}", name, t.shape().str(), expected.str());
}

void OpCheck::dim(std::string_view name, const Tensor& t, int axis, int64_t expected) const {
  if (axis >= t.ndim() || t.shape()[axis] != expected) {
    fail("{} has shape {}, expected {} at axis {}", name, t.shape().str(), expected, axis);
  }
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage()) return false;
  const uint64_t a_end = a.byte_offset() + a.nbytes();
  const uint64_t b_end = b.byte_offset() + b.nbytes();
  return a.byte_offset() < b_end && b.byte_offset() < a_end && a.nbytes() != 0 && b.nbytes() != 0;
}

void OpCheck::disjoint(std::string_view a_name, const Tensor& a, std::string_view b_name, const Tensor& b) const {
  if (overlaps(a, b)) fail("{} and {} share memory", a_name, b_name);
}

void OpCheck::same_or_disjoint(std::string_view a_name, const Tensor& a, std::string_view b_name,
                               const Tensor& b) const {
  if (!overlaps(a, b)) return;
  if (a.byte_offset() == b.byte_offset() && a.shape() == b.shape() && a.dtype() == b.dtype()) return;
  fail("{} partly overlaps {} (only the very same tensor may be both)", a_name, b_name);
}

void OpCheck::supported(Backend& backend, OpKind kind, std::string_view name, DType dtype) const {
  if (!backend.supports(kind, dtype)) {
    throw Error(ErrorCode::kUnsupported, fmt::format("{}: the {} backend does not implement {} for {} of dtype {}", op_,
                                                     backend.name(), op_name(kind), name, dtype_name(dtype)));
  }
}

}  // namespace pagoda::ops::detail
