#include "ops/activation.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

void check_act(const detail::OpCheck& c, ActivationKind act) {
  if (act != ActivationKind::kSilu && act != ActivationKind::kGelu && act != ActivationKind::kGeluTanh) {
    c.fail("unknown activation {}", static_cast<int>(act));
  }
}

OpKind gated_kind(ActivationKind act) {
  switch (act) {
    case ActivationKind::kSilu: return OpKind::kSiluAndMul;
    case ActivationKind::kGelu: return OpKind::kGeluAndMul;
    case ActivationKind::kGeluTanh: return OpKind::kGeluTanhAndMul;
  }
  return OpKind::kCount;
}

}  // namespace

void act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) {
  const detail::OpCheck c("act_and_mul", out.device());
  check_act(c, act);
  c.output("out", out);
  c.input("x", x);
  c.dtype("x", x, DType::kF32);
  c.dtype("out", out, DType::kF32);
  c.min_ndim("x", x, 1);
  if (x.dim(-1) % 2 != 0) c.fail("x has shape {}: the last dimension must be even ([gate | up])", x.shape().str());
  Shape expected = x.shape();
  expected[x.ndim() - 1] = x.dim(-1) / 2;
  c.shape("out", out, expected);
  c.disjoint("out", out, "x", x);
  Backend& backend = backend_for(out.device());
  c.supported(backend, gated_kind(act), "x", x.dtype());
  backend.ops().act_and_mul(out, x, act);
}

void silu_and_mul(Tensor& out, const Tensor& x) {
  act_and_mul(out, x, ActivationKind::kSilu);
}

void gelu_and_mul(Tensor& out, const Tensor& x) {
  act_and_mul(out, x, ActivationKind::kGelu);
}

void gelu_tanh_and_mul(Tensor& out, const Tensor& x) {
  act_and_mul(out, x, ActivationKind::kGeluTanh);
}

void activation(Tensor& out, const Tensor& x, ActivationKind act) {
  const detail::OpCheck c("activation", out.device());
  check_act(c, act);
  c.output("out", out);
  c.input("x", x);
  c.dtype("x", x, DType::kF32);
  c.dtype("out", out, DType::kF32);
  c.shape("out", out, x.shape());
  c.same_or_disjoint("out", out, "x", x);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kGelu, "x", x.dtype());
  backend.ops().activation(out, x, act);
}

void gelu(Tensor& out, const Tensor& x) {
  activation(out, x, ActivationKind::kGelu);
}

}  // namespace pagoda::ops
