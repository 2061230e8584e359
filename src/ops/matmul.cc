#include "ops/matmul.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

// The bytes a tensor's elements span: from its first to past its last, strides included.
uint64_t span_bytes(const Tensor& t) {
  if (t.is_contiguous() || t.numel() == 0) return t.nbytes();
  uint64_t last = 0;  // the offset of the last element, in elements
  for (int d = 0; d < t.ndim(); ++d)
    last += static_cast<uint64_t>(t.dim(d) - 1) * static_cast<uint64_t>(t.strides()[d]);
  return (last + 1) * static_cast<uint64_t>(dtype_block_bytes(t.dtype()));
}

// Whether two tensors' spans share bytes.
bool spans_meet(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage() || a.numel() == 0 || b.numel() == 0) return false;
  return a.byte_offset() < b.byte_offset() + span_bytes(b) && b.byte_offset() < a.byte_offset() + span_bytes(a);
}

// The checks of one product; returns its device's backend. With `strided_rows`, out may also be a
// 2-d view whose rows are further apart than n (matmul_shared on a backend that writes those).
Backend& check(const char* op, Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias,
               bool strided_rows = false) {
  const detail::OpCheck c(op, out.device());
  const bool strided = strided_rows && out.defined() && !out.is_contiguous();
  c.input("x", x);
  if (strided) {
    if (!backend_for(out.device()).ops().matmul_shared_writes_strided_rows()) {
      c.fail("out ({}) is not contiguous, and the {} backend writes only contiguous outputs", out.str(),
             backend_for(out.device()).name());
    }
    if (!out.storage()->writable()) c.fail("out is not writable");
    c.ndim("x", x, 2);
    c.ndim("out", out, 2);
    if (out.strides()[1] != 1 || out.strides()[0] < out.dim(1)) {
      c.fail("out ({}) must have contiguous rows, at least a row apart", out.str());
    }
  } else {
    c.output("out", out);
  }
  c.input("weight", weight);
  c.dtype("x", x, DType::kF32);
  c.dtype("out", out, DType::kF32);
  c.min_ndim("x", x, 1);
  c.ndim("weight", weight, 2);
  const int64_t k = x.dim(-1);
  const int64_t n = weight.dim(0);
  c.dim("weight", weight, 1, k);
  Shape expected = x.shape();
  expected[x.ndim() - 1] = n;
  c.shape("out", out, expected);
  if (bias != nullptr) {
    c.input("bias", *bias);
    c.dtype("bias", *bias, DType::kF32);
    c.shape("bias", *bias, Shape{n});
    if (strided && spans_meet(out, *bias)) c.fail("out and bias share memory");
    c.disjoint("out", out, "bias", *bias);
  }
  if (strided && (spans_meet(out, x) || spans_meet(out, weight))) c.fail("out shares memory with x or weight");
  c.disjoint("out", out, "x", x);
  c.disjoint("out", out, "weight", weight);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kMatmul, "weight", weight.dtype());
  return backend;
}

void check_and_run(const char* op, Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  check(op, out, x, weight, bias).ops().matmul(out, x, weight, bias);
}

}  // namespace

void matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  check_and_run("matmul", out, x, weight, bias);
}

void matmul_shared(const Tensor& x, std::span<const MatmulPart> parts) {
  if (parts.empty()) return;
  Backend* backend = nullptr;
  for (size_t i = 0; i < parts.size(); ++i) {
    const MatmulPart& p = parts[i];
    if (p.out == nullptr || p.weight == nullptr) {
      fail(ErrorCode::kInvalidArgument, "matmul_shared: part {} has no output or no weight", i);
    }
    Backend& b = check("matmul_shared", *p.out, x, *p.weight, p.bias, true);
    if (backend != nullptr && &b != backend) {
      fail(ErrorCode::kInvalidArgument, "matmul_shared: part {} is on {}, part 0 on {}", i, b.name(), backend->name());
    }
    backend = &b;
    const detail::OpCheck c("matmul_shared", p.out->device());
    for (size_t j = 0; j < i; ++j) {
      const Tensor& o = *parts[j].out;
      if (p.out->is_contiguous() || o.is_contiguous() || p.out->storage() != o.storage() ||
          p.out->strides()[0] != o.strides()[0]) {
        if (spans_meet(*p.out, o)) c.fail("out and another part's out share memory");
        continue;
      }
      // Strided views of the same storage and row stride: accepted as column ranges of the same
      // rows that do not meet (b starting d elements after a, within a row: a's columns end by
      // then and b's before a's next row), refused otherwise.
      const int64_t row = p.out->strides()[0];
      const auto element = static_cast<int64_t>(dtype_block_bytes(DType::kF32));
      const int64_t d = (static_cast<int64_t>(o.byte_offset()) - static_cast<int64_t>(p.out->byte_offset())) / element;
      const int64_t na = p.out->dim(1), nb = o.dim(1);
      const bool apart = d >= 0 ? d >= na && d + nb <= row : -d >= nb && -d + na <= row;
      if (!apart) c.fail("out and another part's out share memory");
    }
  }
  backend->ops().matmul_shared(x, parts);
}

void quant_matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  if (weight.defined() && !dtype_is_quantized(weight.dtype())) {
    fail(ErrorCode::kInvalidArgument, "quant_matmul: weight has dtype {}, expected a block-quantized type",
         dtype_name(weight.dtype()));
  }
  check_and_run("quant_matmul", out, x, weight, bias);
}

}  // namespace pagoda::ops
