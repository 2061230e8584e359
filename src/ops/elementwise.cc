#include "ops/elementwise.h"

#include <cmath>

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const detail::OpCheck c("add", out.device());
  c.output("out", out);
  c.input("a", a);
  c.input("b", b);
  c.dtype("a", a, DType::kF32);
  c.dtype("b", b, DType::kF32);
  c.dtype("out", out, DType::kF32);
  c.shape("b", b, a.shape());
  c.shape("out", out, a.shape());
  c.same_or_disjoint("out", out, "a", a);
  c.same_or_disjoint("out", out, "b", b);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kAdd, "a", a.dtype());
  backend.ops().add(out, a, b);
}

void scale(Tensor& x, float s) {
  const detail::OpCheck c("scale", x.device());
  c.output("x", x);
  c.dtype("x", x, DType::kF32);
  Backend& backend = backend_for(x.device());
  c.supported(backend, OpKind::kScale, "x", x.dtype());
  backend.ops().scale(x, s);
}

void softcap(Tensor& x, float cap) {
  const detail::OpCheck c("softcap", x.device());
  c.output("x", x);
  c.dtype("x", x, DType::kF32);
  if (!(cap > 0.0f) || !std::isfinite(cap)) c.fail("cap is {}, expected a finite value > 0", cap);
  Backend& backend = backend_for(x.device());
  c.supported(backend, OpKind::kSoftcap, "x", x.dtype());
  backend.ops().softcap(x, cap);
}

}  // namespace pagoda::ops
