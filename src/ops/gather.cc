#include "ops/gather.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

void gather_rows(Tensor& out, const Tensor& x, const Tensor& indices) {
  const detail::OpCheck c("gather_rows", out.device());
  c.output("out", out);
  c.input("x", x);
  c.input("indices", indices);
  c.ndim("x", x, 2);
  c.dtype("indices", indices, DType::kI32);
  c.ndim("indices", indices, 1);
  c.dtype("out", out, x.dtype());
  c.shape("out", out, Shape{indices.dim(0), x.dim(1)});
  c.disjoint("out", out, "x", x);
  c.disjoint("out", out, "indices", indices);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kGatherRows, "x", x.dtype());
  backend.ops().gather_rows(out, x, indices);
}

}  // namespace pagoda::ops
