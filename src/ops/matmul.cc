#include "ops/matmul.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

// The checks of one product; returns its device's backend.
Backend& check(const char* op, Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  const detail::OpCheck c(op, out.device());
  c.output("out", out);
  c.input("x", x);
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
    c.disjoint("out", out, "bias", *bias);
  }
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
    Backend& b = check("matmul_shared", *p.out, x, *p.weight, p.bias);
    if (backend != nullptr && &b != backend) {
      fail(ErrorCode::kInvalidArgument, "matmul_shared: part {} is on {}, part 0 on {}", i, b.name(), backend->name());
    }
    backend = &b;
    const detail::OpCheck c("matmul_shared", p.out->device());
    for (size_t j = 0; j < i; ++j)
      c.disjoint("out", *p.out, "another part's out", *parts[j].out);
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
