// CPU matmul. Work is split over tiles of weight rows (and, for long batches, blocks of
// activation rows). A tile of a non-f32 weight is dequantized once into a small thread-local
// buffer and then dotted with every activation row of the task, so a batch reads and converts
// each weight once; the whole weight is never converted.

#include "backends/cpu/ops/matmul.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/vec.h"

namespace pagoda::cpu {

namespace {

// Weight rows per tile: enough to amortise the loop over activation rows, few enough that the
// dequantized tile (tile * k floats) stays within ~64 KiB of cache. A multiple of four (the
// dot_tile kernel's width).
int64_t tile_rows(int64_t k) {
  const int64_t fit = (64 * 1024) / (4 * std::max<int64_t>(1, k));
  return std::clamp<int64_t>(fit - fit % 4, 4, 64);
}

constexpr int64_t kRowBlock = 64;  // activation rows per task

}  // namespace

void gemm(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const void* w, DType wtype, int64_t n, int64_t k,
          const float* bias, float* out, int64_t ldo) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j)
        out[i * ldo + j] = bias != nullptr ? bias[j] : 0.0f;
    }
    return;
  }
  const uint64_t row_bytes = *dtype_row_bytes(wtype, k);
  const auto* wbase = static_cast<const uint8_t*>(w);
  // f32 weights are used in place when they are float-aligned (a file mapping may not be).
  const bool direct = wtype == DType::kF32 && reinterpret_cast<uintptr_t>(w) % alignof(float) == 0;
  const int64_t tile = tile_rows(k);
  const int64_t tiles = (n + tile - 1) / tile;
  const int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(tiles * row_blocks, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> buffer;
    int64_t loaded = -1;  // the tile now in buffer, within this range
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / row_blocks;
      const int64_t rb = task % row_blocks;
      const int64_t j0 = t * tile;
      const int64_t rows = std::min(tile, n - j0);
      const float* wt = nullptr;
      if (direct) {
        wt = reinterpret_cast<const float*>(wbase + static_cast<uint64_t>(j0) * row_bytes);
      } else {
        if (loaded != t) {
          buffer.resize(static_cast<size_t>(tile * k));
          for (int64_t r = 0; r < rows; ++r)
            dequantize_row(wtype, wbase + static_cast<uint64_t>(j0 + r) * row_bytes, buffer.data() + r * k, k);
          loaded = t;
        }
        wt = buffer.data();
      }
      const int64_t i0 = rb * kRowBlock;
      const int64_t count = std::min(kRowBlock, m - i0);
      float* o = out + i0 * ldo + j0;
      vec::dot_tile(x + i0 * ldx, ldx, count, wt, k, rows, k, o, ldo);
      if (bias != nullptr) {
        for (int64_t i = 0; i < count; ++i) {
          for (int64_t j = 0; j < rows; ++j)
            o[i * ldo + j] += bias[j0 + j];
        }
      }
    }
  });
}

void CpuOps::matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  const int64_t k = x.dim(-1);
  const int64_t n = weight.dim(0);
  const int64_t m = k == 0 ? out.numel() / std::max<int64_t>(1, n) : x.numel() / k;
  gemm(pool_, x.data<float>(), k, m, weight.raw_data(), weight.dtype(), n, k,
       bias != nullptr ? bias->data<float>() : nullptr, out.data<float>(), n);
}

}  // namespace pagoda::cpu
