#include "ops/sampling.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

void argmax(Tensor& out, const Tensor& logits) {
  const detail::OpCheck c("argmax", out.device());
  c.output("out", out);
  c.input("logits", logits);
  c.dtype("logits", logits, DType::kF32);
  c.ndim("logits", logits, 2);
  if (logits.dim(0) > 0 && logits.dim(1) == 0) c.fail("logits has shape {}: empty rows", logits.shape().str());
  c.dtype("out", out, DType::kI32);
  c.shape("out", out, Shape{logits.dim(0)});
  c.disjoint("out", out, "logits", logits);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kArgmax, "logits", logits.dtype());
  backend.ops().argmax(out, logits);
}

}  // namespace pagoda::ops
