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
// Intel GPUs: one subgroup of 16 per weight row, reduced with subgroup operations instead of
// local memory and barriers. Global size (n * 16, ceil(m / MM_TILE)), local (16, 1).
__attribute__((intel_reqd_sub_group_size(16))) kernel void matmul_sg16(
    global float* out, ulong out_off, global const float* x, ulong x_off, global const uchar* weight, ulong w_off,
    ulong row_bytes, global const float* bias, ulong bias_off, int has_bias, int wt, int m, int n, int k) {
  const int lid = get_sub_group_local_id();
  const int j = get_group_id(0);
  const int m0 = get_group_id(1) * MM_TILE;
  const int m_count = min(MM_TILE, m - m0);
  float acc[MM_TILE];
  for (int r = 0; r < MM_TILE; ++r)
    acc[r] = 0.0f;
  if (j < n && m_count > 0) {
    mm_accumulate(wt, weight + w_off + (ulong)j * row_bytes, CPTR(float, x, x_off) + (long)m0 * k, k, m_count, lid,
                  16, acc);
  }
  const float b = (j < n && has_bias) ? CPTR(float, bias, bias_off)[j] : 0.0f;
  global float* o = PTR(float, out, out_off);
  for (int r = 0; r < MM_TILE; ++r) {
    const float total = sub_group_reduce_add(acc[r]);
    if (lid == 0 && j < n && r < m_count) o[(long)(m0 + r) * n + j] = total + b;
  }
}
#endif
