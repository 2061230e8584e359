// The paged KV cache (docs/design/kv-cache.md): per layer, key_cache and value_cache each
// (num_blocks, num_kv_heads, block_size, head_size) in f32, f16 or bf16.

// key/value (tokens, kv_heads, head_size) f32 into their slots; a negative slot is padding.
// Global (kv_heads * head_size, tokens).
kernel void reshape_and_cache(global const float* key, ulong k_off, global const float* value, ulong v_off,
                              global uchar* key_cache, ulong kc_off, global uchar* value_cache, ulong vc_off,
                              global const long* slots, ulong s_off, int dtype, int kv_heads, int block_size,
                              int head_size, long num_slots) {
  const int e = get_global_id(0);
  const long t = get_global_id(1);
  if (e >= kv_heads * head_size) return;
  const long slot = CPTR(long, slots, s_off)[t];
  if (slot < 0 || slot >= num_slots) return;
  const int h = e / head_size;
  const int d = e % head_size;
  const long block = slot / block_size;
  const long offset = slot % block_size;
  const long at = ((block * kv_heads + h) * block_size + offset) * head_size + d;
  const long src = t * kv_heads * head_size + e;
  store_elem(key_cache + kc_off, dtype, at, CPTR(float, key, k_off)[src]);
  store_elem(value_cache + vc_off, dtype, at, CPTR(float, value, v_off)[src]);
}

#define MAX_HEAD 256
#define ATT_LWS 64
#define ATT_DIMS (MAX_HEAD / ATT_LWS)  // output dimensions per work-item

// Attention of one query (token t, head h) to the keys of partition `part` of its causal (and
// windowed) range. A work-group of ATT_LWS items takes the keys ATT_LWS at a time: each item
// scores one key, the group finds the tile's maximum and sum, and then each item accumulates its
// own output dimensions over the tile's values (reads of consecutive dimensions, coalesced).
// Online softmax across tiles: a running maximum m, a running sum l of exp(score - m) and an
// unnormalised output, rescaled whenever m grows. No score matrix exists beyond one tile.
//
// Global (num_heads * ATT_LWS, tokens, partitions), local (ATT_LWS, 1, 1). Decode is the case
// has_cu == 0 (token t is sequence t, one query each). With one partition the normalised row goes
// to `out`; with more, each partition leaves (m, l, acc) in `part_ml` / `part_acc` for
// attention_combine.
kernel void attention(global float* out, ulong out_off, global const float* query, ulong q_off,
                      global const uchar* key_cache, ulong kc_off, global const uchar* value_cache, ulong vc_off,
                      int dtype, global const int* block_tables, ulong bt_off, int max_blocks,
                      global const int* seq_lens, ulong sl_off, global const int* cu_query_lens, ulong cu_off,
                      int has_cu, int num_seqs, int num_heads, int kv_heads, int head_size, int block_size,
                      int num_blocks, float scale, int window, float softcap, global const float* alibi,
                      ulong alibi_off, int has_alibi, int partition_size, global float* part_ml,
                      global float* part_acc) {
  local float qs[MAX_HEAD];
  local float ps[ATT_LWS];
  local float red[ATT_LWS];
  local long rows[ATT_LWS];  // element offset of each key's row in this tile (keys and values alike)
  const int lid = get_local_id(0);
  const bool vec_f16 = dtype == DT_F16 && head_size % 8 == 0 && (kc_off & 15) == 0;
  const int h = get_group_id(0);
  const int t = get_group_id(1);
  const int part = get_group_id(2);
  const int parts = get_num_groups(2);
  int s = t;
  int pos;
  if (has_cu) {
    global const int* cu = CPTR(int, cu_query_lens, cu_off);
    int lo = 0, hi = num_seqs - 1;  // the sequence whose [cu[s], cu[s + 1]) holds t
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (cu[mid] <= t) lo = mid; else hi = mid - 1;
    }
    s = lo;
    const int qlen = cu[s + 1] - cu[s];
    pos = CPTR(int, seq_lens, sl_off)[s] - qlen + (t - cu[s]);
  } else {
    pos = CPTR(int, seq_lens, sl_off)[s] - 1;
  }
  const int kvh = h / (num_heads / kv_heads);
  global const float* q = CPTR(float, query, q_off) + ((long)t * num_heads + h) * head_size;
  for (int d = lid; d < head_size; d += ATT_LWS)
    qs[d] = q[d];
  barrier(CLK_LOCAL_MEM_FENCE);
  float acc[ATT_DIMS];
  for (int i = 0; i < ATT_DIMS; ++i)
    acc[i] = 0.0f;
  float m = -INFINITY;
  float l = 0.0f;
  int first = window > 0 ? max(0, pos - window + 1) : 0;
  int last = pos;  // inclusive; pos < 0 (an empty sequence) attends to nothing
  first = max(first, part * partition_size);
  last = min(last, (part + 1) * partition_size - 1);
  const float slope = has_alibi ? CPTR(float, alibi, alibi_off)[h] : 0.0f;
  global const int* table = CPTR(int, block_tables, bt_off) + (long)s * max_blocks;
  global const uchar* kc = key_cache + kc_off;
  global const uchar* vc = value_cache + vc_off;
  for (int base = first; base <= last; base += ATT_LWS) {  // uniform across the work-group
    const int j = base + lid;
    float score = -INFINITY;
    if (j <= last) {
      const int block = clamp(table[j / block_size], 0, num_blocks - 1);
      const long at = (((long)block * kv_heads + kvh) * block_size + j % block_size) * head_size;
      rows[lid] = at;
      float dot = 0.0f;
      if (vec_f16) {
        // 16 bytes at a time, converted on the device; the same sum order as the scalar loop.
        global const uint4* kp = (global const uint4*)(kc + 2 * at);
        for (int d8 = 0; d8 < head_size / 8; ++d8) {
          const uint4 u = kp[d8];
          const uint words[4] = {u.x, u.y, u.z, u.w};
          const float8 f = vload_half8(0, (const private half*)words);
          const int d = 8 * d8;
          dot += qs[d] * f.s0;
          dot += qs[d + 1] * f.s1;
          dot += qs[d + 2] * f.s2;
          dot += qs[d + 3] * f.s3;
          dot += qs[d + 4] * f.s4;
          dot += qs[d + 5] * f.s5;
          dot += qs[d + 6] * f.s6;
          dot += qs[d + 7] * f.s7;
        }
      } else {
        for (int d = 0; d < head_size; ++d)
          dot += qs[d] * load_elem(kc, dtype, at + d);
      }
      score = scale * dot;
      if (softcap > 0.0f) score = softcap * tanh(score / softcap);
      score += slope * (float)(j - pos);
    }
    red[lid] = score;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = ATT_LWS / 2; stride > 0; stride /= 2) {
      if (lid < stride) red[lid] = fmax(red[lid], red[lid + stride]);
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float new_m = fmax(m, red[0]);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (new_m == -INFINITY) continue;  // the same for every item: nothing but -inf so far
    const float p = j <= last ? exp(score - new_m) : 0.0f;
    ps[lid] = p;
    red[lid] = p;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = ATT_LWS / 2; stride > 0; stride /= 2) {
      if (lid < stride) red[lid] += red[lid + stride];
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = exp(m - new_m);  // 0 on the first tile
    l = l * r + red[0];
    for (int i = 0; i < ATT_DIMS; ++i)
      acc[i] *= r;
    const int count = min(ATT_LWS, last - base + 1);
    // The value rows were located while scoring (rows[]): one global load per value element
    // here, and the iterations are independent, so their loads overlap.
    #pragma unroll 4
    for (int kk = 0; kk < count; ++kk) {
      const long at = rows[kk];
      const float pk = ps[kk];
      for (int i = 0; i < ATT_DIMS; ++i) {
        const int d = lid + i * ATT_LWS;
        if (d < head_size) acc[i] += pk * load_elem(vc, dtype, at + d);
      }
    }
    m = new_m;
    barrier(CLK_LOCAL_MEM_FENCE);  // ps and red are rewritten by the next tile
  }
  const long row = (long)t * num_heads + h;
  if (parts == 1) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    global float* o = PTR(float, out, out_off) + row * head_size;
    for (int i = 0; i < ATT_DIMS; ++i) {
      const int d = lid + i * ATT_LWS;
      if (d < head_size) o[d] = acc[i] * inv;
    }
  } else {
    const long slot = row * parts + part;
    if (lid == 0) {
      part_ml[2 * slot] = m;
      part_ml[2 * slot + 1] = l;
    }
    for (int i = 0; i < ATT_DIMS; ++i) {
      const int d = lid + i * ATT_LWS;
      if (d < head_size) part_acc[slot * head_size + d] = acc[i];
    }
  }
}

// Merges the partitions of each (token, head): global (head_size, num_heads, tokens).
kernel void attention_combine(global float* out, ulong out_off, global const float* part_ml,
                              global const float* part_acc, int num_heads, int head_size, int parts) {
  const int d = get_global_id(0);
  const int h = get_global_id(1);
  const long t = get_global_id(2);
  if (d >= head_size) return;
  const long row = t * num_heads + h;
  float m = -INFINITY;
  for (int p = 0; p < parts; ++p)
    m = fmax(m, part_ml[2 * (row * parts + p)]);
  float l = 0.0f;
  float acc = 0.0f;
  if (m != -INFINITY) {
    for (int p = 0; p < parts; ++p) {
      const long slot = row * parts + p;
      const float pm = part_ml[2 * slot];
      if (pm == -INFINITY) continue;
      const float r = exp(pm - m);
      l += part_ml[2 * slot + 1] * r;
      acc += part_acc[slot * head_size + d] * r;
    }
  }
  PTR(float, out, out_off)[row * head_size + d] = l > 0.0f ? acc / l : 0.0f;
}
