#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// out (tokens, hidden) f32 = rows ids (tokens) i32 of table (vocab, hidden), dequantized from any
// dtype the backend supports for embedding. An id outside [0, vocab) is an error.
void embedding(Tensor& out, const Tensor& ids, const Tensor& table);

}  // namespace pagoda::ops
