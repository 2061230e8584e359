#include "backends/xpu/onednn_matmul.h"

#include <cstdlib>
#include <string>

#if PAGODA_HAS_ONEDNN
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_ocl.hpp>
#include <set>
#include <tuple>
#include <unordered_map>

#include "backends/xpu/ops/launch.h"
#endif

#include "backends/xpu/xpu_runtime.h"
#include "core/error.h"

namespace pagoda::xpu {

bool OneDnnMatmul::requested() {
  const char* env = std::getenv("PAGODA_XPU_ONEDNN");
  return env != nullptr && std::string(env) == "1";
}

bool OneDnnMatmul::built() {
  return PAGODA_HAS_ONEDNN != 0;
}

#if PAGODA_HAS_ONEDNN
namespace {

// Element offset of a byte offset, or -1 if it is not a whole number of elements.
int64_t elements(uint64_t bytes, uint64_t size) {
  return bytes % size == 0 ? static_cast<int64_t>(bytes / size) : -1;
}

class OneDnnMatmulImpl final : public OneDnnMatmul {
 public:
  OneDnnMatmulImpl(XpuRuntime& rt, dnnl::engine engine)
      : rt_(rt), engine_(std::move(engine)), stream_(dnnl::ocl_interop::make_stream(engine_, rt.queue())) {}

  bool run(cl_mem out, uint64_t out_off, cl_mem x, uint64_t x_off, int64_t m, cl_mem w, uint64_t w_off, DType wtype,
           int64_t n, int64_t k, cl_mem bias, uint64_t bias_off) override {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    dt wt = dt::f32;
    uint64_t wsize = 4;
    switch (wtype) {
      case DType::kF32: break;
      case DType::kF16:
        wt = dt::f16;
        wsize = 2;
        break;
      case DType::kBF16:
        wt = dt::bf16;
        wsize = 2;
        break;
      default: return false;
    }
    std::lock_guard lock(mutex_);
    if (refused_.count(wtype) != 0) return false;
    const int64_t w_e = elements(w_off, wsize);
    const int64_t x_e = elements(x_off, 4);
    const int64_t o_e = elements(out_off, 4);
    const int64_t b_e = elements(bias_off, 4);
    if (w_e < 0 || x_e < 0 || o_e < 0 || (bias != nullptr && b_e < 0)) return false;
    // Activations in the weight type, unless the weights are f32.
    cl_mem src = x;
    int64_t src_e = x_e;
    Tensor converted;
    if (wt != dt::f32) {
      converted = scratch(rt_, Shape{m, k}, wtype);
      Launch(rt_, "store_as")
          .tensor(converted)
          .mem(x)
          .u64(x_off)
          .i32(cache_code(wtype))
          .i64(m * k)
          .run({static_cast<size_t>(m * k), 1, 1}, {256, 1, 1}, 1);
      src = mem_of(converted);
      src_e = 0;
    }
    try {
      dnnl::memory::desc src_md({m, k}, wt, tag::ab);
      dnnl::memory::desc wei_md({k, n}, wt, tag::ba);
      dnnl::memory::desc dst_md({m, n}, dt::f32, tag::ab);
      dnnl::memory::desc bias_md({1, n}, dt::f32, tag::ab);
      src_md.data.offset0 = src_e;
      wei_md.data.offset0 = w_e;
      dst_md.data.offset0 = o_e;
      bias_md.data.offset0 = b_e;
      const auto key = std::make_tuple(m, n, k, static_cast<int>(wtype), src_e, w_e, o_e, bias != nullptr ? b_e : -1);
      auto it = primitives_.find(key);
      if (it == primitives_.end()) {
        const dnnl::matmul::desc d = bias != nullptr ? dnnl::matmul::desc(src_md, wei_md, bias_md, dst_md)
                                                     : dnnl::matmul::desc(src_md, wei_md, dst_md);
        it = primitives_.emplace(key, dnnl::matmul(dnnl::matmul::primitive_desc(d, engine_))).first;
        constexpr size_t kMaxPrimitives = 256;  // shapes vary with the batch; oneDNN caches too
        if (primitives_.size() > kMaxPrimitives) {
          auto keep = *it;
          primitives_.clear();
          it = primitives_.emplace(std::move(keep)).first;
        }
      }
      std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::ocl_interop::make_memory(src_md, engine_, src)},
                                                 {DNNL_ARG_WEIGHTS, dnnl::ocl_interop::make_memory(wei_md, engine_, w)},
                                                 {DNNL_ARG_DST, dnnl::ocl_interop::make_memory(dst_md, engine_, out)}};
      if (bias != nullptr) args.emplace(DNNL_ARG_BIAS, dnnl::ocl_interop::make_memory(bias_md, engine_, bias));
      it->second.execute(stream_, args);
    } catch (const dnnl::error& e) {
      if (e.status == dnnl_unimplemented) {
        refused_.insert(wtype);
        return false;
      }
      fail(ErrorCode::kInternal, "xpu: oneDNN matmul ({}x{}x{}, {}) failed: {}", m, n, k, dtype_name(wtype), e.what());
    }
    return true;
  }

 private:
  XpuRuntime& rt_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mutex_;
  std::set<DType> refused_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int, int64_t, int64_t, int64_t, int64_t>, dnnl::matmul> primitives_;
};

}  // namespace
#endif

std::unique_ptr<OneDnnMatmul> OneDnnMatmul::create(XpuRuntime& rt, std::string& why) {
  if (!requested()) {
    why = "not requested (PAGODA_XPU_ONEDNN=1 turns it on)";
    return nullptr;
  }
#if PAGODA_HAS_ONEDNN
  if (!rt.caps().is_intel_gpu) {
    why = "oneDNN's OpenCL engine runs on Intel GPUs only; " + rt.caps().name + " uses pagoda's kernels";
    return nullptr;
  }
  try {
    dnnl::engine engine = dnnl::ocl_interop::make_engine(rt.device_id(), rt.context());
    return std::make_unique<OneDnnMatmulImpl>(rt, std::move(engine));
  } catch (const dnnl::error& e) {
    why = std::string("oneDNN refused the device: ") + e.what();
    return nullptr;
  }
#else
  why = "this build has no oneDNN (install libdnnl-dev and reconfigure)";
  return nullptr;
#endif
}

}  // namespace pagoda::xpu
