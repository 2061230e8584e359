// CPU matmul. Work is split over tiles of weight rows (and, for long batches, blocks of
// activation rows); each task holds one weight tile against all the activation rows of its block,
// so a step reads every weight once whatever the number of rows.
//
// Two ways to multiply:
//  - float: a tile of a non-f32 weight is dequantized once into a small thread-local buffer and
//    dotted with every activation row of the task in float32 (the whole weight is never
//    converted). Accurate to float rounding.
//  - integer (quantized activations, when enabled and the weight type has a kernel): each
//    activation row is quantized to 8-bit blocks once per call and multiplied with the weight's
//    blocks in integer arithmetic (quant/qdot.h), as ggml does. Several times faster; the
//    activation rounding adds a relative error of about 1/254 per element. In the same mode bf16
//    weights, where the CPU multiplies bf16 pairs (AMX-BF16 or AVX512-BF16), meet activations
//    rounded to bf16 (quant/bf16dot.h; a relative error of at most 2^-9 per element).
// Either way a row's result depends only on that row and the weight: the same kernel and the same
// summation order whatever the number of rows or the row's place in the batch (threads split only
// independent outputs).

#include "backends/cpu/ops/matmul.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/quant/bf16dot.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/quant/qdot.h"
#include "backends/cpu/vec.h"

namespace pagoda::cpu {

namespace {

// Weight rows per tile: enough to amortise the loop over activation rows, few enough that the
// dequantized tile (tile * k floats) stays within ~64 KiB of cache. A multiple of six (the
// dot_tile kernel's width).
int64_t tile_rows(int64_t k) {
  const int64_t fit = (64 * 1024) / (4 * std::max<int64_t>(1, k));
  return std::clamp<int64_t>(fit - fit % 6, 6, 60);
}

constexpr int64_t kRowBlock = 64;  // activation rows per task

void add_bias(const float* bias, int64_t j0, int64_t rows, int64_t count, float* o, int64_t ldo) {
  if (bias == nullptr) return;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t j = 0; j < rows; ++j)
      o[i * ldo + j] += bias[j0 + j];
  }
}

// One task of a matmul: weight rows [j0, j0 + rows) (tile t) against activation rows
// [i0, i0 + count). `first` marks the first task of a thread's range, where a weight tile kept
// from an earlier range (of another call, perhaps another weight) must be loaded again.
struct Task {
  int64_t t, j0, rows, i0, count;
  bool first;
};

// fn(task) for every tile of `tile` weight rows against every block of kRowBlock activation rows,
// over the pool; a thread takes a run of consecutive tasks (one tile's row blocks in a row).
template <class Fn>
void for_each_task(ThreadPool& pool, int64_t n, int64_t m, int64_t tile, Fn&& fn) {
  const int64_t tiles = (n + tile - 1) / tile;
  const int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(tiles * row_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / row_blocks;
      const int64_t i0 = task % row_blocks * kRowBlock;
      fn(Task{t, t * tile, std::min(tile, n - t * tile), i0, std::min(kRowBlock, m - i0), task == begin});
    }
  });
}

// A buffer kept across calls: a prompt's rows are megabytes, which a new vector would fault in and
// zero on every matmul. Grown as needed, never initialised.
template <class T>
class Scratch {
 public:
  T* get(size_t n) {
    if (n > size_) {
      data_ = std::make_unique_for_overwrite<T[]>(n);
      size_ = n;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t size_ = 0;
};

// Activation rows quantized once for one or more integer matmuls (buffers of the calling thread,
// valid until its next matmul).
struct Int8Rows {
  int64_t m = 0, k = 0, blocks = 0;
  qdot::ActBlock* xq = nullptr;
  int32_t* half = nullptr;  // Q6_K's repacked kernel also takes the blocks' half sums
  int8_t* amx_q = nullptr;  // the AMX kernels' layout of the rows (qdot::AmxRows)
  float* amx_scales = nullptr;
};

// One weight of an integer matmul.
struct Int8Part {
  const uint8_t* w;
  DType wtype;
  int64_t n;
  const float* bias;
  float* out;
  int64_t ldo;
  const uint8_t* packed;
};

// Quantizes the m rows for the parts' kernels: the half sums and the AMX layout where some part's
// kernel reads them, computed here, once, while the rows just quantized are in cache (not per task).
void quantize_rows(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, int64_t k, std::span<const Int8Part> parts,
                   Int8Rows& rows) {
  thread_local Scratch<qdot::ActBlock> xq;
  thread_local Scratch<int32_t> half;
  thread_local Scratch<int8_t> amx_q;
  thread_local Scratch<float> amx_scales;
  rows.m = m, rows.k = k, rows.blocks = k / qdot::kBlock;
  const int64_t blocks = rows.blocks;
  bool halves = false, amx = false;
  for (const Int8Part& p : parts) {
    halves = halves || (p.packed != nullptr && qdot::needs_half_sums(p.wtype));
    amx = amx || (p.packed != nullptr && qdot::uses_amx(p.wtype, m));
  }
  const auto count = static_cast<size_t>(m * blocks);
  rows.xq = xq.get(count);
  rows.half = halves ? half.get(count) : nullptr;
  rows.amx_q = amx ? amx_q.get(static_cast<size_t>(m * k)) : nullptr;
  rows.amx_scales = amx ? amx_scales.get(static_cast<size_t>((m + 15) / 16 * blocks * qdot::kAmxScaleFloats)) : nullptr;
  // (ranges of whole groups of 16 rows for the AMX layout, whose groups share cache lines)
  pool.parallel_for(m, amx ? 16 : 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      qdot::quantize_row(x + i * ldx, rows.xq + i * blocks, k);
    if (rows.half != nullptr)
      qdot::half_sums(rows.xq + begin * blocks, (end - begin) * blocks, rows.half + begin * blocks);
    if (rows.amx_q != nullptr) qdot::amx_rows_layout(rows.xq, blocks, begin, end, rows.amx_q, rows.amx_scales);
  });
}

// Weight rows per task: about 16 KiB of weight blocks, which stay in L1 while the task's
// activation rows pass over them four at a time. 16 or 32, whole pairs of groups for the
// two-group and AMX kernels: with 8, a 1152-byte Q4_K row of k = 2048 gave tasks of one group,
// which those never took, and with 24 (a 612-byte Q8_0 row of k = 576) every task's third group
// went to the one-group kernel.
int64_t int8_tile(DType wtype, int64_t k) {
  const uint64_t row_bytes = *dtype_row_bytes(wtype, k);
  const int64_t fit = static_cast<int64_t>(16384 / std::max<uint64_t>(1, row_bytes));
  return std::clamp<int64_t>((fit + 8) & ~int64_t{15}, 16, 32);
}

// Row blocks per pass of run_int8_parts: about 512 KiB of quantized rows, which stay in L2 while
// every weight tile goes over them.
int64_t pass_row_blocks(int64_t k) {
  return std::max<int64_t>(1, (int64_t{512} << 10) / (std::max<int64_t>(1, k) * kRowBlock));
}

// Every part's tasks (tiles of its weight rows against blocks of kRowBlock rows) as one job. The
// tasks go by passes of pass_row_blocks row blocks: every part's tiles against the pass's row
// blocks (a tile's blocks one after another), then the next pass. A prompt's quantized rows are
// megabytes (2,048 rows of k = 1536: 3 MiB); tile by tile over all of them, they were read from L3
// again for every tile, and a 2,048-row matmul ran at 0.6-0.8 times a 512-row one's rate.
void run_int8_parts(ThreadPool& pool, const Int8Rows& rows, std::span<const Int8Part> parts) {
  const int64_t m = rows.m, k = rows.k, blocks = rows.blocks;
  const int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  const int64_t per_pass = std::min(row_blocks, pass_row_blocks(k));
  struct Layout {
    int64_t first_tile, tile;
    uint64_t row_bytes, group_bytes;
  };
  std::vector<Layout> layout(parts.size() + 1);  // part p's tiles are from layout[p].first_tile on
  for (size_t p = 0; p < parts.size(); ++p) {
    Layout& l = layout[p];
    l.tile = int8_tile(parts[p].wtype, k);
    l.row_bytes = *dtype_row_bytes(parts[p].wtype, k);
    l.group_bytes = parts[p].packed != nullptr ? qdot::packed_group_bytes(parts[p].wtype, blocks) : 0;
    layout[p + 1].first_tile = l.first_tile + (parts[p].n + l.tile - 1) / l.tile;
  }
  const int64_t tiles = layout.back().first_tile;
  // A tile's consecutive tasks keep its unpacked AMX operands (qdot::AmxRows::epoch).
  const uint64_t epoch = rows.amx_q != nullptr ? qdot::new_amx_epoch() : 0;
  pool.parallel_for(tiles * row_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t pass = task / (tiles * per_pass);  // every pass but the last has per_pass blocks
      const int64_t in_pass = task % (tiles * per_pass);
      const int64_t pass_blocks = std::min(per_pass, row_blocks - pass * per_pass);
      const int64_t tile = in_pass / pass_blocks;
      size_t p = 0;
      while (tile >= layout[p + 1].first_tile)
        ++p;
      const Int8Part& part = parts[p];
      const Layout& l = layout[p];
      const int64_t j0 = (tile - l.first_tile) * l.tile;
      const int64_t i0 = (pass * per_pass + in_pass % pass_blocks) * kRowBlock;
      const int64_t count = std::min(kRowBlock, m - i0);
      const int64_t n_rows = std::min(l.tile, part.n - j0);
      float* o = part.out + i0 * part.ldo + j0;
      const qdot::ActBlock* xt = rows.xq + i0 * blocks;
      if (part.packed != nullptr) {  // j0 is a multiple of eight: the start of a packed group
        // i0 is a multiple of kRowBlock, so of the AMX layout's 16-row groups (where there is one)
        qdot::AmxRows amx{};
        if (rows.amx_q != nullptr)
          amx = {rows.amx_q + i0 * k, rows.amx_scales + i0 / 16 * blocks * qdot::kAmxScaleFloats, epoch};
        qdot::dot_rows_packed(part.wtype, part.packed + static_cast<uint64_t>(j0 / 8) * l.group_bytes, n_rows, xt,
                              blocks, count, o, part.ldo, rows.half != nullptr ? rows.half + i0 * blocks : nullptr,
                              rows.amx_q != nullptr ? &amx : nullptr);
      } else {
        qdot::dot_rows(part.wtype, part.w + static_cast<uint64_t>(j0) * l.row_bytes, l.row_bytes, n_rows, xt, blocks,
                       count, o, part.ldo);
      }
      add_bias(part.bias, j0, n_rows, count, o, part.ldo);
    }
  });
}

void gemm_int8(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const uint8_t* w, DType wtype, int64_t n,
               int64_t k, const float* bias, float* out, int64_t ldo, const uint8_t* packed) {
  const Int8Part part{w, wtype, n, bias, out, ldo, packed};
  Int8Rows rows;
  quantize_rows(pool, x, ldx, m, k, {&part, 1}, rows);
  run_int8_parts(pool, rows, {&part, 1});
}

// bf16 weights against activations rounded to bf16 (bf16dot.h). Tasks as in gemm_int8, a tile
// being two packed groups (32 weight rows); without a repacked copy each task packs its tile.
void gemm_bf16(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const uint8_t* w, int64_t n, int64_t k,
               const float* bias, float* out, int64_t ldo, const uint8_t* packed) {
  const int64_t kp = bf16dot::padded_k(k);
  std::vector<uint16_t> xb(static_cast<size_t>(bf16dot::padded_rows(m) * kp));  // zeros past row m
  pool.parallel_for(m, 8, [&](int64_t begin, int64_t end) {
    bf16dot::round_rows(x + begin * ldx, ldx, end - begin, k, xb.data() + begin * kp);
  });
  const uint64_t row_bytes = static_cast<uint64_t>(k) * 2;
  const uint64_t group_bytes = bf16dot::packed_group_bytes(k);
  constexpr int64_t tile = 2 * bf16dot::kGroupRows;
  for_each_task(pool, n, m, tile, [&](const Task& task) {
    thread_local std::vector<uint8_t> buffer;
    thread_local int64_t loaded = -1;  // the tile now in buffer
    if (task.first) loaded = -1;
    const uint8_t* wt = nullptr;
    if (packed != nullptr) {
      wt = packed + static_cast<uint64_t>(task.j0 / bf16dot::kGroupRows) * group_bytes;
    } else {
      if (loaded != task.t) {
        buffer.resize(2 * group_bytes);
        bf16dot::pack_rows16(w + static_cast<uint64_t>(task.j0) * row_bytes, row_bytes, task.rows, k, buffer.data());
        loaded = task.t;
      }
      wt = buffer.data();
    }
    float* o = out + task.i0 * ldo + task.j0;
    bf16dot::dot_rows_packed(wt, task.rows, k, xb.data() + task.i0 * kp, task.count, o, ldo);
    add_bias(bias, task.j0, task.rows, task.count, o, ldo);
  });
}

}  // namespace

bool uses_bf16_kernel(DType wtype) {
  return wtype == DType::kBF16 && bf16dot::available();
}

bool uses_int8_kernel(DType wtype, int64_t k) {
  return qdot::supports(wtype) && k > 0 && k % dtype_block_size(wtype) == 0 && k % qdot::kBlock == 0;
}

void gemm(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const void* w, DType wtype, int64_t n, int64_t k,
          const float* bias, float* out, int64_t ldo, bool quantize_activations, const uint8_t* packed) {
  if (m == 0 || n == 0) return;
  if (quantize_activations && uses_int8_kernel(wtype, k)) {
    gemm_int8(pool, x, ldx, m, static_cast<const uint8_t*>(w), wtype, n, k, bias, out, ldo, packed);
    return;
  }
  if (quantize_activations && uses_bf16_kernel(wtype) && k > 0) {
    gemm_bf16(pool, x, ldx, m, static_cast<const uint8_t*>(w), n, k, bias, out, ldo, packed);
    return;
  }
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
  for_each_task(pool, n, m, tile, [&](const Task& task) {
    thread_local std::vector<float> buffer;
    thread_local int64_t loaded = -1;  // the tile now in buffer
    if (task.first) loaded = -1;
    const float* wt = nullptr;
    if (direct) {
      wt = reinterpret_cast<const float*>(wbase + static_cast<uint64_t>(task.j0) * row_bytes);
    } else {
      if (loaded != task.t) {
        buffer.resize(static_cast<size_t>(tile * k));
        for (int64_t r = 0; r < task.rows; ++r)
          dequantize_row(wtype, wbase + static_cast<uint64_t>(task.j0 + r) * row_bytes, buffer.data() + r * k, k);
        loaded = task.t;
      }
      wt = buffer.data();
    }
    float* o = out + task.i0 * ldo + task.j0;
    vec::dot_tile(x + task.i0 * ldx, ldx, task.count, wt, k, task.rows, k, o, ldo);
    add_bias(bias, task.j0, task.rows, task.count, o, ldo);
  });
}

void CpuOps::matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  matmul_rows(out, out.dim(-1), x, weight, bias);
}

void CpuOps::matmul_rows(Tensor& out, int64_t ldo, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  const int64_t k = x.dim(-1);
  const int64_t n = weight.dim(0);
  const int64_t m = k == 0 ? out.numel() / std::max<int64_t>(1, n) : x.numel() / k;
  const bool reduced =
      quantize_activations_ && (uses_int8_kernel(weight.dtype(), k) || uses_bf16_kernel(weight.dtype()));
  const uint8_t* packed = reduced ? packed_.get(weight, n, k) : nullptr;
  gemm(pool_, x.data<float>(), k, m, weight.raw_data(), weight.dtype(), n, k,
       bias != nullptr ? bias->data<float>() : nullptr, out.data<float>(), ldo, quantize_activations_, packed);
}

void CpuOps::matmul_shared(const Tensor& x, std::span<const MatmulPart> parts) {
  const int64_t k = x.dim(-1);
  const int64_t m = k == 0 ? 0 : x.numel() / k;
  // An output may be a 2-d view of columns (matmul_shared_writes_strided_rows): its rows are
  // strides()[0] apart.
  const auto ldo = [](const Tensor& out) { return out.is_contiguous() ? out.dim(-1) : out.strides()[0]; };
  bool shared = quantize_activations_ && m > 0 && parts.size() > 1;
  for (const MatmulPart& p : parts)
    shared = shared && uses_int8_kernel(p.weight->dtype(), k) && p.weight->dim(0) > 0;
  if (!shared) {
    for (const MatmulPart& p : parts)
      matmul_rows(*p.out, ldo(*p.out), x, *p.weight, p.bias);
    return;
  }
  // The integer path for every part: x quantized once, the parts' tasks one job.
  std::vector<Int8Part> int8;
  for (const MatmulPart& p : parts) {
    const int64_t n = p.weight->dim(0);
    int8.push_back({static_cast<const uint8_t*>(p.weight->raw_data()), p.weight->dtype(), n,
                    p.bias != nullptr ? p.bias->data<float>() : nullptr, p.out->data<float>(), ldo(*p.out),
                    packed_.get(*p.weight, n, k)});
  }
  Int8Rows rows;
  quantize_rows(pool_, x.data<float>(), k, m, k, int8, rows);
  run_int8_parts(pool_, rows, int8);
}

}  // namespace pagoda::cpu
