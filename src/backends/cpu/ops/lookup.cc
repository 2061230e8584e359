// CPU row lookups: embedding, gather_rows, and argmax over logits rows.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "core/error.h"

namespace pagoda::cpu {

void CpuOps::embedding(Tensor& out, const Tensor& ids, const Tensor& table) {
  const int64_t tokens = out.dim(0);
  const int64_t hidden = out.dim(1);
  const int64_t vocab = table.dim(0);
  const int32_t* pid = ids.data<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    if (pid[t] < 0 || pid[t] >= vocab) {
      fail(ErrorCode::kInvalidArgument, "embedding: ids[{}] = {} is outside the vocabulary of {} rows", t, pid[t],
           vocab);
    }
  }
  if (hidden == 0) return;
  const uint64_t row_bytes = *dtype_row_bytes(table.dtype(), hidden);
  const auto* base = static_cast<const uint8_t*>(table.raw_data());
  float* po = out.data<float>();
  pool_.parallel_for(tokens, std::max<int64_t>(1, 16384 / hidden), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      dequantize_row(table.dtype(), base + static_cast<uint64_t>(pid[t]) * row_bytes, po + t * hidden, hidden);
  });
}

void CpuOps::gather_rows(Tensor& out, const Tensor& x, const Tensor& indices) {
  const int64_t n = indices.dim(0);
  const int64_t rows = x.dim(0);
  const int32_t* idx = indices.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= rows) {
      fail(ErrorCode::kInvalidArgument, "gather_rows: indices[{}] = {} is outside the {} rows of x", i, idx[i], rows);
    }
  }
  const uint64_t row_bytes = *dtype_row_bytes(x.dtype(), x.dim(1));
  const auto* src = static_cast<const uint8_t*>(x.raw_data());
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  // over the pool in runs of at least 16 KiB (a prompt's gate/up interleave is megabytes)
  const auto grain = static_cast<int64_t>(std::max<uint64_t>(1, 16384 / std::max<uint64_t>(1, row_bytes)));
  pool_.parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      std::memcpy(dst + static_cast<uint64_t>(i) * row_bytes, src + static_cast<uint64_t>(idx[i]) * row_bytes,
                  row_bytes);
    }
  });
}

void CpuOps::argmax(Tensor& out, const Tensor& logits) {
  const int64_t rows = logits.dim(0);
  const int64_t vocab = logits.dim(1);
  const float* pl = logits.data<float>();
  int32_t* po = out.data<int32_t>();
  pool_.parallel_for(rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* row = pl + r * vocab;
      int64_t best = -1;
      for (int64_t i = 0; i < vocab; ++i) {
        // Strictly greater: the first of equal maxima wins. NaN compares false, so it never does.
        if (std::isnan(row[i])) continue;
        if (best < 0 || row[i] > row[best]) best = i;
      }
      po[r] = static_cast<int32_t>(best < 0 ? 0 : best);
    }
  });
}

}  // namespace pagoda::cpu
