#pragma once

// The OpenCL side of one xpu device: context, one in-order queue, the kernel program (built once
// per device and cached on disk), and device buffers.
//
// Devices are numbered in one order everywhere (pagoda info --devices, --device xpu:N): Intel
// GPUs first, then other GPUs, then everything else (accelerators, CPUs such as PoCL), each group
// in platform order. So plain "xpu" (xpu:0) prefers an Intel GPU when there is one.

#include <CL/cl.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backends/xpu/buffer_pool.h"
#include "backends/xpu/cl_handle.h"
#include "core/tensor.h"

namespace pagoda::xpu {

// Capabilities that pick kernel paths.
struct DeviceCaps {
  std::string name, vendor, driver, platform, version, extensions;
  cl_device_type type = 0;
  uint64_t global_memory = 0;
  uint64_t max_alloc = 0;
  uint64_t local_memory = 0;
  uint64_t max_work_group_size = 0;
  bool fp16 = false;
  bool intel_subgroups = false;      // cl_intel_subgroups (shuffles, block reads)
  bool intel_reqd_subgroup = false;  // cl_intel_required_subgroup_size
  bool khr_subgroups = false;
  bool intel_usm = false;
  std::vector<uint64_t> subgroup_sizes;
  bool is_intel_gpu = false;
};

struct OrderedDevice {
  cl_platform_id platform;
  cl_device_id device;
};

// Every OpenCL device, in pagoda's order (see above). Empty when there is no platform.
[[nodiscard]] std::vector<OrderedDevice> ordered_devices();
[[nodiscard]] DeviceCaps query_caps(cl_platform_id platform, cl_device_id device);
[[nodiscard]] bool has_extension(const std::string& extensions, const std::string& name);

// Device memory of the xpu backend.
class XpuStorage final : public Storage {
 public:
  // `size` is the buffer's real size (its pool size class), at least `nbytes`.
  XpuStorage(ClMem mem, uint64_t nbytes, uint64_t size, Device device, std::shared_ptr<BufferPool> pool,
             uint64_t serial)
      : mem_(std::move(mem)), nbytes_(nbytes), size_(size), device_(device), pool_(std::move(pool)), serial_(serial) {}
  ~XpuStorage() override;
  [[nodiscard]] void* data() override { return nullptr; }
  [[nodiscard]] uint64_t nbytes() const override { return nbytes_; }
  [[nodiscard]] Device device() const override { return device_; }
  [[nodiscard]] StorageKind kind() const override { return StorageKind::kDevice; }
  [[nodiscard]] bool writable() const override { return true; }
  [[nodiscard]] cl_mem mem() const { return mem_.get(); }
  // Unique per allocation in this process (a cl_mem value can be reused after a release).
  [[nodiscard]] uint64_t serial() const { return serial_; }

 private:
  ClMem mem_;
  uint64_t nbytes_;
  uint64_t size_;
  Device device_;
  std::shared_ptr<BufferPool> pool_;  // shared with the runtime: either may go first
  uint64_t serial_;
};

class XpuRuntime {
 public:
  // Opens device `index` of ordered_devices(); Error(kNotFound) if there is none.
  explicit XpuRuntime(int index);

  [[nodiscard]] const DeviceCaps& caps() const { return caps_; }
  [[nodiscard]] Device device() const { return device_; }
  [[nodiscard]] cl_context context() const { return context_.get(); }
  [[nodiscard]] cl_device_id device_id() const { return id_; }
  [[nodiscard]] cl_command_queue queue() const { return queue_.get(); }

  [[nodiscard]] std::shared_ptr<Storage> allocate(uint64_t nbytes);
  // Bytes held on the device: live buffers plus the pool's idle ones.
  [[nodiscard]] uint64_t allocated() const { return pool_->held(); }
  [[nodiscard]] const BufferPool& pool() const { return *pool_; }
  // Releases the pool's idle buffers back to the device.
  void release_idle_buffers() { pool_->drain(); }

  // Kernel timing, on when PAGODA_XPU_PROFILE=1 was set as the runtime was created (the queue
  // then records an event per launch). record() keeps a launch's event; profile() waits for the
  // queue and returns, per kernel and shape, the launch count and summed device time, then forgets
  // them.
  [[nodiscard]] bool profiling() const { return profiling_; }
  // `shape` tells launches of one kernel apart (its global size), so that each matmul shape of a
  // model gets its own line.
  void record(const char* kernel_name, std::string shape, cl_event event);
  [[nodiscard]] std::vector<KernelTiming> profile();

  // Writes n host bytes at `src` to `dst` at byte `offset`. Returns once `src` may be reused; the
  // write itself is ordered before every later command of the queue. Large writes (at least
  // kStagedWriteMin bytes) are copied through two pinned staging buffers in turn, so the DMA of one
  // chunk overlaps the host's copy of the next and runs at the pinned-memory rate; smaller ones are
  // plain blocking writes. PAGODA_XPU_STAGING=0 turns staging off.
  static constexpr uint64_t kStagedWriteMin = uint64_t{1} << 20;
  static constexpr uint64_t kStagingChunk = uint64_t{8} << 20;
  void write(cl_mem dst, uint64_t offset, const void* src, uint64_t n);

  // The bytes of a small device tensor on the host (a blocking read). Request indices are read
  // this way to be checked before a kernel uses them; the layers of one step share the same index
  // tensors, so a copy is kept until something may have rewritten device integers: a copy() into
  // device memory or an op with an integer output calls invalidate_host_copies().
  [[nodiscard]] std::vector<uint8_t> host_copy(const Tensor& t);
  void invalidate_host_copies();

  // The kernel called `name` of the program (created once, then reused).
  [[nodiscard]] cl_kernel kernel(const std::string& name);
  // The work-group size a kernel declares with reqd_work_group_size (dimension 0).
  [[nodiscard]] size_t required_work_group_size(const std::string& name);
  // Whether the program was built with the Intel subgroup paths.
  [[nodiscard]] bool subgroup_paths() const { return subgroup_paths_; }
  // How the program was obtained: "compiled" or "cached binary" (tests and pagoda info show it).
  [[nodiscard]] const std::string& program_origin() const { return program_origin_; }

 private:
  void build_program();

  Device device_;
  cl_platform_id platform_ = nullptr;
  cl_device_id id_ = nullptr;
  DeviceCaps caps_;
  ClContext context_;
  ClQueue queue_;
  ClProgram program_;
  bool subgroup_paths_ = false;
  bool emulated_subgroups_ = false;  // PAGODA_XPU_SUBGROUPS=emulate
  std::string program_origin_;
  std::mutex kernels_mutex_;
  std::map<std::string, ClKernel> kernels_;
  std::map<std::string, size_t> required_sizes_;
  std::shared_ptr<BufferPool> pool_;
  bool profiling_ = false;
  std::mutex profile_mutex_;
  struct Recorded {
    const char* name;
    std::string shape;
    ClEvent event;
  };
  std::vector<Recorded> events_;
  std::atomic<uint64_t> next_serial_{1};
  struct HostCopyKey {
    uint64_t serial, offset, nbytes;
    auto operator<=>(const HostCopyKey&) const = default;  // NOLINT(modernize-use-nullptr): a false positive on <=>
  };
  struct Staging {
    ClMem buffer;
    void* host = nullptr;  // mapped for the runtime's lifetime
    ClEvent last_write;    // the write still reading `host`, if any
  };
  std::mutex staging_mutex_;
  std::vector<Staging> staging_;  // empty until the first large write; stays empty if unavailable
  bool staging_tried_ = false;
  std::mutex host_copies_mutex_;
  std::map<HostCopyKey, std::vector<uint8_t>> host_copies_;
};

// The build options and full source text the program is made from (exposed for the cache key
// test and scripts/check_xpu_kernels.sh's description).
[[nodiscard]] std::string kernel_program_source();
[[nodiscard]] std::string kernel_build_options(bool subgroup_paths, bool emulate_subgroups = false);

// Where compiled programs are cached: $PAGODA_KERNEL_CACHE, else $XDG_CACHE_HOME/pagoda/kernels,
// else $HOME/.cache/pagoda/kernels; empty when none can be named ("off" turns the cache off).
[[nodiscard]] std::string kernel_cache_dir();

// The cl_mem behind a device tensor and the byte offset of its first element.
[[nodiscard]] cl_mem mem_of(const Tensor& t);

}  // namespace pagoda::xpu
