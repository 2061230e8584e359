#include "ops/embedding.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

void embedding(Tensor& out, const Tensor& ids, const Tensor& table) {
  const detail::OpCheck c("embedding", out.device());
  c.output("out", out);
  c.input("ids", ids);
  c.input("table", table);
  c.dtype("out", out, DType::kF32);
  c.ndim("out", out, 2);
  c.dtype("ids", ids, DType::kI32);
  c.shape("ids", ids, Shape{out.dim(0)});
  c.ndim("table", table, 2);
  c.dim("table", table, 1, out.dim(1));
  c.disjoint("out", out, "table", table);
  c.disjoint("out", out, "ids", ids);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kEmbedding, "table", table.dtype());
  backend.ops().embedding(out, ids, table);
}

}  // namespace pagoda::ops
