// out (m, n) = x (m, k) @ weight (n, k)^T (+ bias): a GEMV-shaped GEMM. A group of work-items
// owns one weight row and a tile of up to MM_TILE activation rows; the items walk the row's
// 32-element chunks, dequantize each once into registers and dot it with every activation row
// of the tile, then reduce across the group. A quantized weight is never expanded in memory,
// and each weight byte is read once per tile of activation rows.

#define MM_TILE 8
#define MM_LWS 64

inline void mm_accumulate(int wt, global const uchar* wrow, global const float* x, int k, int m_count, int lid,
                          int lws, float* acc) {
  const int chunks = (k + 31) / 32;
  float w[32];
  for (int c = lid; c < chunks; c += lws) {
    deq_chunk(wt, wrow, c, k, w);
    const int base = 32 * c;
    const int len = min(32, k - base);
    for (int r = 0; r < MM_TILE; ++r) {
      if (r >= m_count) break;
      global const float* xr = x + (long)r * k + base;
      float s = 0.0f;
      if (len == 32) {
        for (int i = 0; i < 32; ++i)
          s += w[i] * xr[i];
      } else {
        for (int i = 0; i < len; ++i)
          s += w[i] * xr[i];
      }
      acc[r] += s;
    }
  }
}

// A work-group of MM_LWS items holds MM_LWS / lanes weight rows, `lanes` items per row (a power
// of two the host picks from k, so that short rows do not leave most items idle). Global size
// (ceil(n / rows) * MM_LWS, ceil(m / MM_TILE)), local (MM_LWS, 1).
kernel void matmul(global float* out, ulong out_off, global const float* x, ulong x_off, global const uchar* weight,
                   ulong w_off, ulong row_bytes, global const float* bias, ulong bias_off, int has_bias, int wt, int m,
                   int n, int k, int lanes) {
  local float red[MM_TILE][MM_LWS];
  const int lid = get_local_id(0);
  const int lane = lid % lanes;
  const int j = get_group_id(0) * (MM_LWS / lanes) + lid / lanes;
  const int m0 = get_group_id(1) * MM_TILE;
  const int m_count = min(MM_TILE, m - m0);
  float acc[MM_TILE];
  for (int r = 0; r < MM_TILE; ++r)
    acc[r] = 0.0f;
  if (j < n && m_count > 0) {
    mm_accumulate(wt, weight + w_off + (ulong)j * row_bytes, CPTR(float, x, x_off) + (long)m0 * k, k, m_count, lane,
                  lanes, acc);
  }
  for (int r = 0; r < MM_TILE; ++r)
    red[r][lid] = acc[r];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int stride = lanes / 2; stride > 0; stride /= 2) {
    if (lane < stride) {
      for (int r = 0; r < MM_TILE; ++r)
        red[r][lid] += red[r][lid + stride];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lane == 0 && j < n) {
    const float b = has_bias ? CPTR(float, bias, bias_off)[j] : 0.0f;
    global float* o = PTR(float, out, out_off);
    for (int r = 0; r < m_count; ++r)
      o[(long)(m0 + r) * n + j] = red[r][lid] + b;
  }
}

#ifdef PAGODA_INTEL_SUBGROUPS
// Subgroup primitives. On Intel devices they are the cl_intel_subgroups builtins, with the
// subgroup size fixed at 16 by intel_reqd_sub_group_size. A build with PAGODA_SUBGROUP_EMULATION
// (PAGODA_XPU_SUBGROUPS=emulate, for testing on devices without the extension) runs the same
// kernels with 16 consecutive work-items standing in for a subgroup: block reads become plain
// reads in the builtin's element order and reductions go through local memory. That checks the
// kernels' indexing and the host's dispatch on any device; ocloc checks the builtins themselves.
// The emulated reduction has barriers, so every work-item of the group must reach each SG_SUM.
#define SG_SIZE 16
#ifdef PAGODA_SUBGROUP_EMULATION
#define SG_REQD
#define SG_SCRATCH(items) local float sg_scratch[items]
#define SG_LID() ((int)(get_local_id(0) % SG_SIZE))
#define SG_SUM(v) sg_sum_emulated((v), sg_scratch)
inline float sg_sum_emulated(float v, local float* scratch) {
  const int lid = get_local_id(0);
  const int base = lid - lid % SG_SIZE;
  barrier(CLK_LOCAL_MEM_FENCE);  // the previous sum's readers are done with the scratch
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  float s = 0.0f;
  for (int i = 0; i < SG_SIZE; ++i)
    s += scratch[base + i];
  return s;
}
// Item l of the subgroup gets the words l, l + 16, l + 32 and l + 48 from p, as the builtin does.
inline uint4 sg_read4(global const uint* p) {
  const int l = SG_LID();
  return (uint4)(p[l], p[l + SG_SIZE], p[l + 2 * SG_SIZE], p[l + 3 * SG_SIZE]);
}
#else
#define SG_REQD __attribute__((intel_reqd_sub_group_size(SG_SIZE)))
#define SG_SCRATCH(items)
#define SG_LID() ((int)get_sub_group_local_id())
#define SG_SUM(v) sub_group_reduce_add(v)
#define sg_read4(p) intel_sub_group_block_read4(p)
#endif

// Intel GPUs: one subgroup of 16 per weight row, reduced with subgroup operations instead of
// local memory and barriers. Global size (n * 16, ceil(m / MM_TILE)), local (16, 1).
SG_REQD kernel void matmul_sg16(global float* out, ulong out_off, global const float* x, ulong x_off,
                                global const uchar* weight, ulong w_off, ulong row_bytes, global const float* bias,
                                ulong bias_off, int has_bias, int wt, int m, int n, int k) {
  SG_SCRATCH(SG_SIZE);
  const int lid = SG_LID();
  const int j = get_group_id(0);
  const int m0 = get_group_id(1) * MM_TILE;
  const int m_count = min(MM_TILE, m - m0);
  float acc[MM_TILE];
  for (int r = 0; r < MM_TILE; ++r)
    acc[r] = 0.0f;
  if (j < n && m_count > 0) {
    mm_accumulate(wt, weight + w_off + (ulong)j * row_bytes, CPTR(float, x, x_off) + (long)m0 * k, k, m_count, lid,
                  SG_SIZE, acc);
  }
  const float b = (j < n && has_bias) ? CPTR(float, bias, bias_off)[j] : 0.0f;
  global float* o = PTR(float, out, out_off);
  for (int r = 0; r < MM_TILE; ++r) {
    const float total = SG_SUM(acc[r]);
    if (lid == 0 && j < n && r < m_count) o[(long)(m0 + r) * n + j] = total + b;
  }
}
#endif

// Weights of f32, f16 or bf16 whose rows are 16-byte aligned and a multiple of 8 elements long,
// and activations at a 16-byte aligned offset (the host checks): each item reads 16 bytes at a time (uint4 / float4), consecutive items
// consecutive 16 bytes, so a row is streamed with fully coalesced 128-bit loads. A work-group
// holds MV_ROWS rows of MV_LANES items each; dimension 0 of the grid walks the tiles of
// MV_TILE activation rows, so that the tiles over the same weight rows run side by side and a
// weight is fetched from memory about once per step for the whole batch (the other tiles find it
// in the cache). Every activation row's sum is formed in the same order whatever the batch.
// The loops over the tile are unrolled so that the accumulators stay in registers (an array
// indexed in a loop that is not unrolled lives in slow private memory).
// Global size (ceil(m / MV_TILE) * MV_ROWS * MV_LANES, ceil(n / MV_ROWS)), local (MV_ROWS * MV_LANES, 1).
// MV_ROWS may be set from outside like MV_UNROLL: the host reads the work-group size back from
// the kernel's reqd_work_group_size.
#ifndef MV_ROWS
#define MV_ROWS 2
#endif
#define MV_LANES 32
#define MV_TILE 8
// Weight loads in flight per item; only the kernel depends on it, so it may be set from outside
// (PAGODA_XPU_KERNEL_DEFINES=-DMV_UNROLL=2) to tune a device.
#ifndef MV_UNROLL
#define MV_UNROLL 8
#endif

inline void mv_unpack8(int wt, uint4 u, float* w);

inline void mv_set8(float* w, float4 a, float4 b) {
  w[0] = a.x;
  w[1] = a.y;
  w[2] = a.z;
  w[3] = a.w;
  w[4] = b.x;
  w[5] = b.y;
  w[6] = b.z;
  w[7] = b.w;
}

inline void mv_load8(int wt, global const uchar* row, int v, float* w) {
  if (wt == WT_F32) {
    mv_set8(w, ((global const float4*)row)[2 * v], ((global const float4*)row)[2 * v + 1]);
    return;
  }
  mv_unpack8(wt, ((global const uint4*)row)[v], w);
}

// Eight f16 or bf16 weights from one 16-byte load, as floats.
inline void mv_unpack8(int wt, uint4 u, float* w) {
  const uint words[4] = {u.x, u.y, u.z, u.w};
  if (wt == WT_F16) {
    // One 16-byte load, then the device's own exact half-to-float conversion (vload_half is core
    // OpenCL: no cl_khr_fp16 needed) on the registers.
    const float8 f = vload_half8(0, (const private half*)words);
    mv_set8(w, f.lo, f.hi);
    return;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[2 * i] = as_float(words[i] << 16);
    w[2 * i + 1] = as_float(words[i] & 0xffff0000u);
  }
}

inline float mv_dot8(const float* w, global const float* xr) {
  // xr is 16-byte aligned (the host checks x's offset; rows are a multiple of 8 floats), so these
  // are two 16-byte loads rather than eight scalar ones.
  const float4 a = ((global const float4*)xr)[0];
  const float4 b = ((global const float4*)xr)[1];
  float s = w[0] * a.x;
  s += w[1] * a.y;
  s += w[2] * a.z;
  s += w[3] * a.w;
  s += w[4] * b.x;
  s += w[5] * b.y;
  s += w[6] * b.z;
  s += w[7] * b.w;
  return s;
}

kernel __attribute__((reqd_work_group_size(MV_ROWS * MV_LANES, 1, 1)))
void matmul_vec(global float* out, ulong out_off, global const float* x, ulong x_off, global const uchar* weight,
                ulong w_off, ulong row_bytes, global const float* bias, ulong bias_off, int has_bias, int wt, int m,
                int n, int k) {
  local float red[MV_ROWS][MV_TILE][MV_LANES];
  const int lid = get_local_id(0);
  const int lane = lid % MV_LANES;
  const int rw = lid / MV_LANES;
  const int j = get_group_id(1) * MV_ROWS + rw;
  const int m0 = get_group_id(0) * MV_TILE;
  const int m_count = min(MV_TILE, m - m0);
  float acc[MV_TILE];
  #pragma unroll
  for (int r = 0; r < MV_TILE; ++r)
    acc[r] = 0.0f;
  if (j < n && m_count > 0) {
    global const uchar* row = weight + w_off + (ulong)j * row_bytes;
    global const float* xb = CPTR(float, x, x_off) + (long)m0 * k;
    const int vecs = k / 8;
    int v = lane;
    // MV_UNROLL loads in flight per item before any arithmetic; the sum order per row stays fixed.
    for (; v + (MV_UNROLL - 1) * MV_LANES < vecs; v += MV_UNROLL * MV_LANES) {
      float w[MV_UNROLL][8];
      #pragma unroll
      for (int u = 0; u < MV_UNROLL; ++u)
        mv_load8(wt, row, v + u * MV_LANES, w[u]);
      #pragma unroll
      for (int r = 0; r < MV_TILE; ++r) {
        if (r < m_count) {
          global const float* xr = xb + (long)r * k;
          #pragma unroll
          for (int u = 0; u < MV_UNROLL; ++u)
            acc[r] += mv_dot8(w[u], xr + 8 * (v + u * MV_LANES));
        }
      }
    }
    for (; v < vecs; v += MV_LANES) {
      float w0[8];
      mv_load8(wt, row, v, w0);
      #pragma unroll
      for (int r = 0; r < MV_TILE; ++r) {
        if (r < m_count) acc[r] += mv_dot8(w0, xb + (long)r * k + 8 * v);
      }
    }
  }
  #pragma unroll
  for (int r = 0; r < MV_TILE; ++r) {
    if (r < m_count) red[rw][r][lane] = acc[r];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int stride = MV_LANES / 2; stride > 0; stride /= 2) {
    if (lane < stride) {
      #pragma unroll
      for (int r = 0; r < MV_TILE; ++r) {
        if (r < m_count) red[rw][r][lane] += red[rw][r][lane + stride];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lane == 0 && j < n) {
    const float b = has_bias ? CPTR(float, bias, bias_off)[j] : 0.0f;
    global float* o = PTR(float, out, out_off);
    for (int r = 0; r < m_count; ++r)
      o[(long)(m0 + r) * n + j] = red[rw][r][0] + b;
  }
}

#ifdef PAGODA_INTEL_SUBGROUPS
// matmul_vec for Intel GPUs: the same shapes and arguments, but one subgroup of 16 per weight row,
// which streams the row with subgroup block reads (intel_sub_group_block_read4: 256 contiguous
// bytes per read, item l holding the words l, l + 16, l + 32, l + 48) and sums with a subgroup
// reduction, so no local memory and no barriers. What is left of a row after its whole 256-byte
// blocks (rows are a multiple of 16 bytes) is read 16 bytes per item. A row's sum is formed in
// the same order whatever the batch. Global size (ceil(m / MV_TILE) * MVS_ROWS * 16,
// ceil(n / MVS_ROWS)), local (MVS_ROWS * 16, 1).
#ifndef MVS_ROWS
#define MVS_ROWS 4
#endif
#ifndef MVS_UNROLL
#define MVS_UNROLL 4
#endif

// Eight weights in the block-read order (words w0, w0 + 16, w0 + 32, w0 + 48; two elements per
// word) dotted with activation row xr. 16-bit weights only.
inline float mvs_dot_words16(const float* w, global const float* xr, int w0) {
  float s = 0.0f;
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const float2 a = vload2(0, xr + 2 * (w0 + SG_SIZE * t));
    s += w[2 * t] * a.x;
    s += w[2 * t + 1] * a.y;
  }
  return s;
}

inline float mvs_dot_words32(uint4 u, global const float* xr, int w0) {
  float s = as_float(u.x) * xr[w0];
  s += as_float(u.y) * xr[w0 + SG_SIZE];
  s += as_float(u.z) * xr[w0 + 2 * SG_SIZE];
  s += as_float(u.w) * xr[w0 + 3 * SG_SIZE];
  return s;
}

// Adds one block read's worth (the four words from w0 in the block-read order) to every row of
// the activation tile.
inline void mvs_block(int wt, uint4 u, int w0, global const float* xb, int k, int m_count, float* acc) {
  if (wt == WT_F32) {
#pragma unroll
    for (int r = 0; r < MV_TILE; ++r) {
      if (r < m_count) acc[r] += mvs_dot_words32(u, xb + (long)r * k, w0);
    }
    return;
  }
  float w[8];
  mv_unpack8(wt, u, w);
#pragma unroll
  for (int r = 0; r < MV_TILE; ++r) {
    if (r < m_count) acc[r] += mvs_dot_words16(w, xb + (long)r * k, w0);
  }
}

SG_REQD kernel __attribute__((reqd_work_group_size(MVS_ROWS * SG_SIZE, 1, 1)))
void matmul_vec_sg16(global float* out, ulong out_off, global const float* x, ulong x_off, global const uchar* weight,
                     ulong w_off, ulong row_bytes, global const float* bias, ulong bias_off, int has_bias, int wt,
                     int m, int n, int k) {
  SG_SCRATCH(MVS_ROWS * SG_SIZE);
  const int lane = SG_LID();
  const int j = get_group_id(1) * MVS_ROWS + (int)get_local_id(0) / SG_SIZE;  // the same for the whole subgroup
  const int m0 = get_group_id(0) * MV_TILE;
  const int m_count = min(MV_TILE, m - m0);
  float acc[MV_TILE];
#pragma unroll
  for (int r = 0; r < MV_TILE; ++r)
    acc[r] = 0.0f;
  if (j < n && m_count > 0) {
    global const uint* row = (global const uint*)(weight + w_off + (ulong)j * row_bytes);
    global const float* xb = CPTR(float, x, x_off) + (long)m0 * k;
    const int words = (int)(row_bytes / 4);
    const int blocks = words / (4 * SG_SIZE);
    int b = 0;
    // MVS_UNROLL block reads in flight before any arithmetic.
    for (; b + MVS_UNROLL <= blocks; b += MVS_UNROLL) {
      uint4 u[MVS_UNROLL];
#pragma unroll
      for (int t = 0; t < MVS_UNROLL; ++t)
        u[t] = sg_read4(row + 4 * SG_SIZE * (b + t));
#pragma unroll
      for (int t = 0; t < MVS_UNROLL; ++t)
        mvs_block(wt, u[t], 4 * SG_SIZE * (b + t) + lane, xb, k, m_count, acc);
    }
    for (; b < blocks; ++b)
      mvs_block(wt, sg_read4(row + 4 * SG_SIZE * b), 4 * SG_SIZE * b + lane, xb, k, m_count, acc);
    // The rest of the row, 16 bytes per item: words v .. v + 3, contiguous.
    for (int v = 4 * SG_SIZE * blocks + 4 * lane; v < words; v += 4 * SG_SIZE) {
      const uint4 u = ((global const uint4*)(row + v))[0];
      if (wt == WT_F32) {
#pragma unroll
        for (int r = 0; r < MV_TILE; ++r) {
          if (r < m_count) {
            const float4 a = ((global const float4*)(xb + (long)r * k + v))[0];
            float s = as_float(u.x) * a.x;
            s += as_float(u.y) * a.y;
            s += as_float(u.z) * a.z;
            s += as_float(u.w) * a.w;
            acc[r] += s;
          }
        }
      } else {
        float w[8];
        mv_unpack8(wt, u, w);
#pragma unroll
        for (int r = 0; r < MV_TILE; ++r) {
          if (r < m_count) acc[r] += mv_dot8(w, xb + (long)r * k + 2 * v);
        }
      }
    }
  }
  const float bv = (j < n && has_bias) ? CPTR(float, bias, bias_off)[j] : 0.0f;
  global float* o = PTR(float, out, out_off);
#pragma unroll
  for (int r = 0; r < MV_TILE; ++r) {
    const float total = SG_SUM(acc[r]);
    if (lane == 0 && j < n && r < m_count) o[(long)(m0 + r) * n + j] = total + bv;
  }
}
#endif
