// Shared helpers of the xpu kernels: 16-bit float loads and stores without cl_khr_fp16, and the
// argument convention.
//
// Every tensor reaches a kernel as a buffer plus a byte offset (a tensor may be a view into a
// larger buffer). Activations are float; weights and caches are stored as f32, f16, bf16 or GGUF
// blocks and widened to float in registers. Accumulation is always float.

// Contraction into fma would change rounding: dequantized values must equal the CPU's bit for bit.
#pragma OPENCL FP_CONTRACT OFF

#define PTR(type, buf, off) ((global type*)((global uchar*)(buf) + (off)))
#define CPTR(type, buf, off) ((global const type*)((global const uchar*)(buf) + (off)))

// Storage dtypes of caches and plain weights (values of the runtime's dtype argument).
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2

inline float bf16_to_float(ushort v) {
  return as_float(((uint)v) << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN.
inline ushort float_to_bf16(float f) {
  uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (ushort)(u >> 16);
}

inline float half_at(global const uchar* p) {  // p is 2-byte aligned
  return vload_half(0, (global const half*)p);
}

inline uint u32_at(global const uchar* p) {  // any alignment
  return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

// Element i of a row stored as f32, f16 or bf16.
inline float load_elem(global const uchar* base, int dtype, long i) {
  if (dtype == DT_F32) return ((global const float*)base)[i];
  if (dtype == DT_F16) return vload_half(i, (global const half*)base);
  return bf16_to_float(((global const ushort*)base)[i]);
}

inline void store_elem(global uchar* base, int dtype, long i, float v) {
  if (dtype == DT_F32) {
    ((global float*)base)[i] = v;
  } else if (dtype == DT_F16) {
    vstore_half_rte(v, i, (global half*)base);
  } else {
    ((global ushort*)base)[i] = float_to_bf16(v);
  }
}

inline float act_silu(float x) {
  return x / (1.0f + exp(-x));
}
// 1 + erf(z) and 1 + tanh(u) cancel catastrophically for negative arguments; erfc(-z) and
// 2 / (1 + exp(-2u)) are the same values without the cancellation.
inline float act_gelu(float x) {
  return 0.5f * x * erfc(-x * 0.70710678118654752f);
}
inline float act_gelu_tanh(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp(-2.0f * u));
}
// 0 silu, 1 gelu (erf), 2 gelu (tanh): ActivationKind's order.
inline float apply_act(int act, float x) {
  if (act == 0) return act_silu(x);
  if (act == 1) return act_gelu(x);
  return act_gelu_tanh(x);
}
