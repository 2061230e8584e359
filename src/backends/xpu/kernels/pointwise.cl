// Pointwise ops, norms, rotary embedding, and the row lookups (gather, argmax, top-k routing).

kernel void act_and_mul(global float* out, ulong out_off, global const float* x, ulong x_off, int d, int act,
                        long total) {
  const long i = get_global_id(0);
  if (i >= total) return;
  const long r = i / d;
  const int c = (int)(i % d);
  global const float* xr = CPTR(float, x, x_off) + r * 2 * d;
  PTR(float, out, out_off)[i] = apply_act(act, xr[c]) * xr[d + c];
}

kernel void activation(global float* out, ulong out_off, global const float* x, ulong x_off, int act, long total) {
  const long i = get_global_id(0);
  if (i < total) PTR(float, out, out_off)[i] = apply_act(act, CPTR(float, x, x_off)[i]);
}

kernel void add(global float* out, ulong out_off, global const float* a, ulong a_off, global const float* b,
                ulong b_off, long total) {
  const long i = get_global_id(0);
  if (i < total) PTR(float, out, out_off)[i] = CPTR(float, a, a_off)[i] + CPTR(float, b, b_off)[i];
}

kernel void scale(global float* x, ulong x_off, float s, long total) {
  const long i = get_global_id(0);
  if (i < total) PTR(float, x, x_off)[i] *= s;
}

kernel void softcap(global float* x, ulong x_off, float cap, long total) {
  const long i = get_global_id(0);
  if (i < total) {
    global float* p = PTR(float, x, x_off);
    p[i] = cap * tanh(p[i] / cap);
  }
}

#define ROW_LWS 256

// Sum of v over the work-group (ROW_LWS items), in `scratch`; every item gets the total.
inline float group_sum(float v, local float* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int stride = ROW_LWS / 2; stride > 0; stride /= 2) {
    if (lid < stride) scratch[lid] += scratch[lid + stride];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

// One work-group per row. mode 0: out = rms_norm(x); mode 1: residual += x, x = rms_norm(residual).
// Each item always touches the same elements of the row (i = lid, lid + ROW_LWS, ...; in float4
// units when every row starts 16-byte aligned), so it re-reads only what it wrote itself.
kernel void rms_norm(global float* out, ulong out_off, global float* x, ulong x_off, global float* residual,
                     ulong res_off, global const float* weight, ulong w_off, int hidden, float eps, float offset,
                     int mode) {
  local float scratch[ROW_LWS];
  const long r = get_group_id(0);
  const int lid = get_local_id(0);
  global float* xr = PTR(float, x, x_off) + r * hidden;
  global float* src = mode == 1 ? PTR(float, residual, res_off) + r * hidden : xr;
  global float* o = mode == 1 ? xr : PTR(float, out, out_off) + r * hidden;
  global const float* w = CPTR(float, weight, w_off);
  const bool vec = hidden % 4 == 0 && ((x_off | res_off | w_off | out_off) & 15) == 0;
  float ss = 0.0f;
  if (vec) {
    const int h4 = hidden / 4;
    for (int i = lid; i < h4; i += ROW_LWS) {
      float4 v = ((global float4*)src)[i];
      if (mode == 1) {
        v += ((global float4*)xr)[i];
        ((global float4*)src)[i] = v;
      }
      ss += v.x * v.x;
      ss += v.y * v.y;
      ss += v.z * v.z;
      ss += v.w * v.w;
    }
  } else {
    for (int i = lid; i < hidden; i += ROW_LWS) {
      float v = src[i];
      if (mode == 1) {
        v += xr[i];
        src[i] = v;
      }
      ss += v * v;
    }
  }
  const float mean_sq = group_sum(ss, scratch) / (float)hidden;
  const float inv = 1.0f / sqrt(mean_sq + eps);
  if (vec) {
    const int h4 = hidden / 4;
    for (int i = lid; i < h4; i += ROW_LWS)
      ((global float4*)o)[i] = ((global float4*)src)[i] * inv * (((global const float4*)w)[i] + offset);
  } else {
    for (int i = lid; i < hidden; i += ROW_LWS)
      o[i] = src[i] * inv * (w[i] + offset);
  }
}

kernel void layer_norm(global float* out, ulong out_off, global const float* x, ulong x_off,
                       global const float* weight, ulong w_off, global const float* bias, ulong b_off, int has_bias,
                       int hidden, float eps) {
  local float scratch[ROW_LWS];
  const long r = get_group_id(0);
  const int lid = get_local_id(0);
  global const float* xr = CPTR(float, x, x_off) + r * hidden;
  float s = 0.0f;
  for (int i = lid; i < hidden; i += ROW_LWS)
    s += xr[i];
  const float mean = group_sum(s, scratch) / (float)hidden;
  float v = 0.0f;
  for (int i = lid; i < hidden; i += ROW_LWS)
    v += (xr[i] - mean) * (xr[i] - mean);
  const float inv = 1.0f / sqrt(group_sum(v, scratch) / (float)hidden + eps);
  global const float* w = CPTR(float, weight, w_off);
  global const float* b = CPTR(float, bias, b_off);
  global float* o = PTR(float, out, out_off) + r * hidden;
  for (int i = lid; i < hidden; i += ROW_LWS)
    o[i] = (xr[i] - mean) * inv * w[i] + (has_bias ? b[i] : 0.0f);
}

// One work-item per (token, head, pair). Heads 0 .. q_heads - 1 are the query's, the rest the
// key's.
kernel void rotary(global const int* positions, ulong pos_off, global float* q, ulong q_off, global float* k,
                   ulong k_off, int q_heads, int k_heads, int head_size, global const float* cache, ulong cache_off,
                   int rotary_dim, int max_positions, int is_neox) {
  const int i = get_global_id(0);
  const int h = get_global_id(1);
  const long t = get_global_id(2);
  const int half_dim = rotary_dim / 2;
  if (i >= half_dim || h >= q_heads + k_heads) return;
  const int pos = clamp(CPTR(int, positions, pos_off)[t], 0, max_positions - 1);
  global const float* cs = CPTR(float, cache, cache_off) + (long)pos * rotary_dim;
  const float c = cs[i];
  const float s = cs[half_dim + i];
  global float* v = h < q_heads ? PTR(float, q, q_off) + (t * q_heads + h) * head_size
                                : PTR(float, k, k_off) + (t * k_heads + (h - q_heads)) * head_size;
  const int ia = is_neox ? i : 2 * i;
  const int ib = is_neox ? i + half_dim : 2 * i + 1;
  const float a = v[ia];
  const float b = v[ib];
  v[ia] = a * c - b * s;
  v[ib] = b * c + a * s;
}

// out (n, row_bytes) = x[indices]: one work-item per byte.
kernel void gather_rows(global uchar* out, ulong out_off, global const uchar* x, ulong x_off,
                        global const int* indices, ulong idx_off, ulong row_bytes, int rows) {
  const ulong b = get_global_id(0);
  const long i = get_global_id(1);
  if (b >= row_bytes) return;
  const int src = clamp(CPTR(int, indices, idx_off)[i], 0, rows - 1);
  out[out_off + (ulong)i * row_bytes + b] = x[x_off + (ulong)src * row_bytes + b];
}

// One work-group per row: the first index of the largest non-NaN value (0 for an all-NaN row).
kernel void argmax(global int* out, ulong out_off, global const float* logits, ulong l_off, int vocab) {
  local float best_v[ROW_LWS];
  local int best_i[ROW_LWS];
  const long r = get_group_id(0);
  const int lid = get_local_id(0);
  global const float* row = CPTR(float, logits, l_off) + r * vocab;
  float bv = 0.0f;
  int bi = -1;
  for (int i = lid; i < vocab; i += ROW_LWS) {
    const float v = row[i];
    if (isnan(v)) continue;
    if (bi < 0 || v > bv) {
      bv = v;
      bi = i;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int stride = ROW_LWS / 2; stride > 0; stride /= 2) {
    if (lid < stride) {
      const int oi = best_i[lid + stride];
      const float ov = best_v[lid + stride];
      const int mi = best_i[lid];
      if (oi >= 0 && (mi < 0 || ov > best_v[lid] || (ov == best_v[lid] && oi < mi))) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) PTR(int, out, out_off)[r] = best_i[0] < 0 ? 0 : best_i[0];
}

// One work-item per token: softmax over the experts, then the k largest by repeated scans
// (strictly greater keeps the lower id on ties).
kernel void topk_softmax(global float* weights, ulong w_off, global int* ids, ulong ids_off,
                         global const float* gating, ulong g_off, int experts, int k, int renormalize) {
  const long t = get_global_id(0);
  global const float* g = CPTR(float, gating, g_off) + t * experts;
  float mx = -INFINITY;
  for (int i = 0; i < experts; ++i)
    mx = fmax(mx, g[i]);
  float sum = 0.0f;
  for (int i = 0; i < experts; ++i)
    sum += exp(g[i] - mx);
  global float* pw = PTR(float, weights, w_off) + t * k;
  global int* pi = PTR(int, ids, ids_off) + t * k;
  float selected = 0.0f;
  float prev = INFINITY;
  int prev_id = -1;
  for (int j = 0; j < k; ++j) {
    // The next in (probability descending, id ascending) order after (prev, prev_id).
    int best = -1;
    float bp = 0.0f;
    for (int i = 0; i < experts; ++i) {
      const float p = exp(g[i] - mx);
      const bool after = p < prev || (p == prev && i > prev_id);
      if (!after) continue;
      if (best < 0 || p > bp) {
        best = i;
        bp = p;
      }
    }
    if (best < 0) best = 0;
    prev = bp;
    prev_id = best;
    const float p = bp / sum;
    pw[j] = p;
    pi[j] = best;
    selected += p;
  }
  if (renormalize && selected > 0.0f) {
    for (int j = 0; j < k; ++j)
      pw[j] /= selected;
  }
}

// out[token(r)] += weight(r) * y[r] for the rows r of one expert's route, in route order (one
// work-item per hidden element walks every row, so a token routed twice adds in a fixed order).
kernel void moe_accumulate(global float* out, ulong out_off, global const float* y, ulong y_off,
                           global const int* tokens, ulong t_off, global const float* weights, ulong w_off, int count,
                           int hidden) {
  const int i = get_global_id(0);
  if (i >= hidden) return;
  global float* o = PTR(float, out, out_off);
  global const float* yy = CPTR(float, y, y_off);
  global const int* tk = CPTR(int, tokens, t_off);
  global const float* tw = CPTR(float, weights, w_off);
  for (int r = 0; r < count; ++r)
    o[(long)tk[r] * hidden + i] += tw[r] * yy[(long)r * hidden + i];
}

kernel void fill_zero(global float* x, ulong x_off, long total) {
  const long i = get_global_id(0);
  if (i < total) PTR(float, x, x_off)[i] = 0.0f;
}

// out (f32, f16 or bf16 by dtype) = x, element by element (activations for a library matmul that
// wants them in the weight type).
kernel void store_as(global uchar* out, ulong out_off, global const float* x, ulong x_off, int dtype, long total) {
  const long i = get_global_id(0);
  if (i >= total) return;
  store_elem(out + out_off, dtype, i, CPTR(float, x, x_off)[i]);
}
