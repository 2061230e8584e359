#pragma once

// oneDNN's matmul on Intel GPUs, through its OpenCL interop: the engine wraps the runtime's
// context and device, the stream wraps its in-order queue, and memory objects wrap the runtime's
// buffers, so oneDNN's kernels run in queue order with pagoda's own.
//
// Opt-in (PAGODA_XPU_ONEDNN=1): oneDNN chooses its kernels by shape, so a row's result depends on
// how many rows share the call, and the engine's guarantee that a request's greedy output does not
// depend on the rest of the batch no longer holds. pagoda's own kernels keep that guarantee and
// stay the default. oneDNN's OpenCL GPU engine runs on Intel GPUs only; elsewhere create() returns
// nothing and says why.
//
// Weights f32, f16 or bf16 ([n, k] row-major, read as a [k, n] "ba" matrix in place); f16/bf16
// activations are made by converting the f32 rows first (a small kernel); accumulation and the
// f32 output are oneDNN's.

#include <CL/cl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace pagoda::xpu {

class XpuRuntime;

class OneDnnMatmul {
 public:
  virtual ~OneDnnMatmul() = default;

  // The oneDNN path for `rt`, or nullptr (with the reason in `why`): not asked for, not built,
  // not an Intel GPU, or oneDNN refused the device.
  [[nodiscard]] static std::unique_ptr<OneDnnMatmul> create(XpuRuntime& rt, std::string& why);

  // Whether PAGODA_XPU_ONEDNN=1 asks for the path, and whether this build has it.
  [[nodiscard]] static bool requested();
  [[nodiscard]] static bool built();

  // out[m, n] = x[m, k] · w[n, k]^T (+ bias[n]). Returns false when oneDNN has no implementation
  // for this type on this device (the caller uses its own kernel; the answer is remembered).
  [[nodiscard]] virtual bool run(cl_mem out, uint64_t out_off, cl_mem x, uint64_t x_off, int64_t m, cl_mem w,
                                 uint64_t w_off, DType wtype, int64_t n, int64_t k, cl_mem bias, uint64_t bias_off) = 0;
};

}  // namespace pagoda::xpu
