#include "ops/norm.h"

#include <cmath>

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

void check_rows(const detail::OpCheck& c, const char* name, const Tensor& x) {
  c.dtype(name, x, DType::kF32);
  c.min_ndim(name, x, 1);
  if (x.dim(-1) == 0) c.fail("{} has shape {}: the normalized dimension is empty", name, x.shape().str());
}

void check_param(const detail::OpCheck& c, const char* name, const Tensor& p, int64_t hidden) {
  c.input(name, p);
  c.dtype(name, p, DType::kF32);
  c.shape(name, p, Shape{hidden});
}

void check_eps(const detail::OpCheck& c, float eps) {
  if (!(eps >= 0.0f) || !std::isfinite(eps)) c.fail("eps is {}, expected a finite value >= 0", eps);
}

}  // namespace

void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) {
  const detail::OpCheck c("rms_norm", out.device());
  c.output("out", out);
  c.input("x", x);
  check_rows(c, "x", x);
  c.dtype("out", out, DType::kF32);
  c.shape("out", out, x.shape());
  check_param(c, "weight", weight, x.dim(-1));
  check_eps(c, eps);
  if (!std::isfinite(weight_offset)) c.fail("weight_offset is {}, expected a finite value", weight_offset);
  c.same_or_disjoint("out", out, "x", x);
  c.disjoint("out", out, "weight", weight);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kRmsNorm, "x", x.dtype());
  backend.ops().rms_norm(out, x, weight, eps, weight_offset);
}

void fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset) {
  const detail::OpCheck c("fused_add_rms_norm", x.device());
  c.output("x", x);
  c.output("residual", residual);
  check_rows(c, "x", x);
  c.dtype("residual", residual, DType::kF32);
  c.shape("residual", residual, x.shape());
  check_param(c, "weight", weight, x.dim(-1));
  check_eps(c, eps);
  if (!std::isfinite(weight_offset)) c.fail("weight_offset is {}, expected a finite value", weight_offset);
  c.disjoint("x", x, "residual", residual);
  c.disjoint("x", x, "weight", weight);
  c.disjoint("residual", residual, "weight", weight);
  Backend& backend = backend_for(x.device());
  c.supported(backend, OpKind::kFusedAddRmsNorm, "x", x.dtype());
  backend.ops().fused_add_rms_norm(x, residual, weight, eps, weight_offset);
}

void layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) {
  const detail::OpCheck c("layer_norm", out.device());
  c.output("out", out);
  c.input("x", x);
  check_rows(c, "x", x);
  c.dtype("out", out, DType::kF32);
  c.shape("out", out, x.shape());
  check_param(c, "weight", weight, x.dim(-1));
  if (bias != nullptr) {
    check_param(c, "bias", *bias, x.dim(-1));
    c.disjoint("out", out, "bias", *bias);
  }
  check_eps(c, eps);
  c.same_or_disjoint("out", out, "x", x);
  c.disjoint("out", out, "weight", weight);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kLayerNorm, "x", x.dtype());
  backend.ops().layer_norm(out, x, weight, bias, eps);
}

}  // namespace pagoda::ops
