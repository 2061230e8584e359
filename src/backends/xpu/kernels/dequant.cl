// GGUF block dequantization, 32 elements at a time, in registers. Chunk c of a row holds
// elements 32c .. 32c + 31; for the 256-element K-quants that is sub-chunk c % 8 of block c / 8.
// Each formula is the one the CPU reference computes (float products, then one rounded sum or
// difference), so a dequantized value is the same float on every device.

#define QK 32
#define QK_K 256

inline void deq_q4_0(global const uchar* row, int c, float* w) {
  global const uchar* b = row + c * 18;
  const float d = half_at(b);
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[2 + j];
    w[j] = d * (float)((int)(q & 0x0f) - 8);
    w[j + 16] = d * (float)((int)(q >> 4) - 8);
  }
}

inline void deq_q4_1(global const uchar* row, int c, float* w) {
  global const uchar* b = row + c * 20;
  const float d = half_at(b);
  const float m = half_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[4 + j];
    w[j] = d * (float)(q & 0x0f) + m;
    w[j + 16] = d * (float)(q >> 4) + m;
  }
}

inline void deq_q5_0(global const uchar* row, int c, float* w) {
  global const uchar* b = row + c * 22;
  const float d = half_at(b);
  const uint qh = u32_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[6 + j];
    const int lo = (q & 0x0f) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    w[j] = d * (float)(lo - 16);
    w[j + 16] = d * (float)(hi - 16);
  }
}

inline void deq_q5_1(global const uchar* row, int c, float* w) {
  global const uchar* b = row + c * 24;
  const float d = half_at(b);
  const float m = half_at(b + 2);
  const uint qh = u32_at(b + 4);
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[8 + j];
    const int lo = (q & 0x0f) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    w[j] = d * (float)lo + m;
    w[j + 16] = d * (float)hi + m;
  }
}

inline void deq_q8_0(global const uchar* row, int c, float* w) {
  global const uchar* b = row + c * 34;
  const float d = half_at(b);
  global const char* qs = (global const char*)(b + 2);
  for (int j = 0; j < 32; ++j)
    w[j] = (float)qs[j] * d;
}

inline void deq_q2_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 84;
  const int s = c % 8;
  const float d = half_at(b + 80);
  const float dmin = half_at(b + 82);
  global const uchar* run = b + 16 + (s / 4) * 32;
  const int shift = 2 * (s % 4);
  for (int h = 0; h < 2; ++h) {
    const uchar sc = b[2 * s + h];
    const float dl = d * (float)(sc & 0x0f);
    const float ml = dmin * (float)(sc >> 4);
    for (int i = 0; i < 16; ++i)
      w[16 * h + i] = dl * (float)((run[16 * h + i] >> shift) & 3) - ml;
  }
}

inline int q3_k_scale(global const uchar* scales, int j) {
  const int low = (scales[j % 8] >> (4 * (j / 8))) & 0x0f;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
  return (low | (high << 4)) - 32;
}

inline void deq_q3_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 110;
  const int s = c % 8;
  const float d = half_at(b + 108);
  global const uchar* run = b + 32 + (s / 4) * 32;
  const int shift = 2 * (s % 4);
  for (int h = 0; h < 2; ++h) {
    const float dl = d * (float)q3_k_scale(b + 96, 2 * s + h);
    for (int i = 0; i < 16; ++i) {
      const int k = 16 * h + i;
      const int q = ((run[k] >> shift) & 3) - (((b[k] >> s) & 1) != 0 ? 0 : 4);
      w[k] = dl * (float)q;
    }
  }
}

inline void k_scale_min(global const uchar* scales, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = scales[j] & 0x3f;
    *mn = scales[j + 4] & 0x3f;
  } else {
    *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 2) & 0x30);
    *mn = (scales[j + 4] >> 4) | ((scales[j] >> 2) & 0x30);
  }
}

inline void deq_q4_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 144;
  const int s = c % 8;
  const float d = half_at(b);
  const float dmin = half_at(b + 2);
  int sc, mn;
  k_scale_min(b + 4, s, &sc, &mn);
  const float dl = d * (float)sc;
  const float ml = dmin * (float)mn;
  global const uchar* run = b + 16 + (s / 2) * 32;
  const int shift = 4 * (s % 2);
  for (int i = 0; i < 32; ++i)
    w[i] = dl * (float)((run[i] >> shift) & 0x0f) - ml;
}

inline void deq_q5_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 176;
  const int s = c % 8;
  const float d = half_at(b);
  const float dmin = half_at(b + 2);
  int sc, mn;
  k_scale_min(b + 4, s, &sc, &mn);
  const float dl = d * (float)sc;
  const float ml = dmin * (float)mn;
  global const uchar* qh = b + 16;
  global const uchar* run = b + 48 + (s / 2) * 32;
  const int shift = 4 * (s % 2);
  for (int i = 0; i < 32; ++i) {
    const int q = ((run[i] >> shift) & 0x0f) | (((qh[i] >> s) & 1) << 4);
    w[i] = dl * (float)q - ml;
  }
}

inline void deq_q6_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 210;
  const int s = c % 8;
  const float d = half_at(b + 208);
  global const char* scales = (global const char*)(b + 192);
  const int o = 32 * s;
  const int r = o % 128;
  global const uchar* ql = b + (o / 128) * 64 + (r % 64);
  global const uchar* qh = b + 128 + (o / 128) * 32;
  const int lshift = 4 * (r / 64);
  const int hshift = 2 * (r / 32);
  for (int h = 0; h < 2; ++h) {
    const float dl = d * (float)scales[2 * s + h];
    for (int i = 0; i < 16; ++i) {
      const int k = 16 * h + i;
      const int q = (((ql[k] >> lshift) & 0x0f) | (((qh[k] >> hshift) & 3) << 4)) - 32;
      w[k] = dl * (float)q;
    }
  }
}

inline void deq_q8_k(global const uchar* row, int c, float* w) {
  global const uchar* b = row + (c / 8) * 292;
  const float d = as_float(u32_at(b));
  global const char* qs = (global const char*)(b + 4 + 32 * (c % 8));
  for (int i = 0; i < 32; ++i)
    w[i] = d * (float)qs[i];
}

// Plain float rows: chunk c, zero past the row's k elements.
inline void deq_f32(global const uchar* row, int c, int k, float* w) {
  global const float* p = (global const float*)row;
  for (int i = 0; i < 32; ++i) {
    const int e = 32 * c + i;
    w[i] = e < k ? p[e] : 0.0f;
  }
}
inline void deq_f16(global const uchar* row, int c, int k, float* w) {
  for (int i = 0; i < 32; ++i) {
    const int e = 32 * c + i;
    w[i] = e < k ? vload_half(e, (global const half*)row) : 0.0f;
  }
}
inline void deq_bf16(global const uchar* row, int c, int k, float* w) {
  global const ushort* p = (global const ushort*)row;
  for (int i = 0; i < 32; ++i) {
    const int e = 32 * c + i;
    w[i] = e < k ? bf16_to_float(p[e]) : 0.0f;
  }
}

// Weight type codes (the host's WeightCode).
#define WT_F32 0
#define WT_F16 1
#define WT_BF16 2
#define WT_Q4_0 3
#define WT_Q4_1 4
#define WT_Q5_0 5
#define WT_Q5_1 6
#define WT_Q8_0 7
#define WT_Q2_K 8
#define WT_Q3_K 9
#define WT_Q4_K 10
#define WT_Q5_K 11
#define WT_Q6_K 12
#define WT_Q8_K 13

// Chunk c of a row of type `wt` with k elements. The switch is uniform across a work-group, so
// it costs a branch, not divergence.
inline void deq_chunk(int wt, global const uchar* row, int c, int k, float* w) {
  switch (wt) {
    case WT_F32: deq_f32(row, c, k, w); break;
    case WT_F16: deq_f16(row, c, k, w); break;
    case WT_BF16: deq_bf16(row, c, k, w); break;
    case WT_Q4_0: deq_q4_0(row, c, w); break;
    case WT_Q4_1: deq_q4_1(row, c, w); break;
    case WT_Q5_0: deq_q5_0(row, c, w); break;
    case WT_Q5_1: deq_q5_1(row, c, w); break;
    case WT_Q8_0: deq_q8_0(row, c, w); break;
    case WT_Q2_K: deq_q2_k(row, c, w); break;
    case WT_Q3_K: deq_q3_k(row, c, w); break;
    case WT_Q4_K: deq_q4_k(row, c, w); break;
    case WT_Q5_K: deq_q5_k(row, c, w); break;
    case WT_Q6_K: deq_q6_k(row, c, w); break;
    default: deq_q8_k(row, c, w); break;
  }
}

// out (tokens, hidden) = table[ids]: one work-item per 32-element chunk of one token's row.
kernel void embedding(global float* out, ulong out_off, global const int* ids, ulong ids_off,
                      global const uchar* table, ulong table_off, int wt, int hidden, ulong row_bytes, int vocab) {
  const int chunk = get_global_id(0);
  const int t = get_global_id(1);
  const int chunks = (hidden + 31) / 32;
  if (chunk >= chunks) return;
  int id = CPTR(int, ids, ids_off)[t];
  id = clamp(id, 0, vocab - 1);  // the host checked the ids; this keeps a stale read in bounds
  float w[32];
  deq_chunk(wt, table + table_off + (ulong)id * row_bytes, chunk, hidden, w);
  global float* o = PTR(float, out, out_off) + (long)t * hidden;
  for (int i = 0; i < 32; ++i) {
    const int e = 32 * chunk + i;
    if (e < hidden) o[e] = w[i];
  }
}
