#include "backends/xpu/xpu_runtime.h"

#include <CL/cl_ext.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backends/xpu/kernel_sources.h"
#include "core/error.h"

namespace pagoda::xpu {

namespace {

std::string device_string(cl_device_id dev, cl_device_info what) {
  size_t size = 0;
  if (clGetDeviceInfo(dev, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return {};
  std::string s(size, '\0');
  if (clGetDeviceInfo(dev, what, size, s.data(), nullptr) != CL_SUCCESS) return {};
  while (!s.empty() && s.back() == '\0')
    s.pop_back();
  return s;
}

std::string platform_string(cl_platform_id p, cl_platform_info what) {
  size_t size = 0;
  if (clGetPlatformInfo(p, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return {};
  std::string s(size, '\0');
  if (clGetPlatformInfo(p, what, size, s.data(), nullptr) != CL_SUCCESS) return {};
  while (!s.empty() && s.back() == '\0')
    s.pop_back();
  return s;
}

template <typename T>
T device_value(cl_device_id dev, cl_device_info what) {
  T v{};
  if (clGetDeviceInfo(dev, what, sizeof(T), &v, nullptr) != CL_SUCCESS) return T{};
  return v;
}

// FNV-1a, 64 bits: the cache key needs stability across runs, not cryptographic strength (a
// wrong binary is still checked by clBuildProgram and falls back to the source).
uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

void check_cl(cl_int rc, const char* what) {
  if (rc != CL_SUCCESS) fail(ErrorCode::kInternal, "xpu: {} failed: {} ({})", what, cl_status_name(rc), rc);
}

const char* cl_status_name(cl_int rc) {
  switch (rc) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_ARG_INDEX: return "CL_INVALID_ARG_INDEX";
    case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_MEM_COPY_OVERLAP: return "CL_MEM_COPY_OVERLAP";
    case CL_MISALIGNED_SUB_BUFFER_OFFSET: return "CL_MISALIGNED_SUB_BUFFER_OFFSET";
    default: return "OpenCL error";
  }
}

bool has_extension(const std::string& extensions, const std::string& name) {
  size_t pos = 0;
  while ((pos = extensions.find(name, pos)) != std::string::npos) {
    const size_t end = pos + name.size();
    const bool starts = pos == 0 || extensions[pos - 1] == ' ';
    const bool ends = end == extensions.size() || extensions[end] == ' ';
    if (starts && ends) return true;
    pos = end;
  }
  return false;
}

DeviceCaps query_caps(cl_platform_id platform, cl_device_id dev) {
  DeviceCaps c;
  c.name = device_string(dev, CL_DEVICE_NAME);
  c.vendor = device_string(dev, CL_DEVICE_VENDOR);
  c.driver = device_string(dev, CL_DRIVER_VERSION);
  c.version = device_string(dev, CL_DEVICE_VERSION);
  c.platform = platform_string(platform, CL_PLATFORM_NAME) + " " + platform_string(platform, CL_PLATFORM_VERSION);
  c.extensions = device_string(dev, CL_DEVICE_EXTENSIONS);
  c.type = device_value<cl_device_type>(dev, CL_DEVICE_TYPE);
  c.global_memory = device_value<cl_ulong>(dev, CL_DEVICE_GLOBAL_MEM_SIZE);
  c.max_alloc = device_value<cl_ulong>(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  c.local_memory = device_value<cl_ulong>(dev, CL_DEVICE_LOCAL_MEM_SIZE);
  c.max_work_group_size = device_value<size_t>(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE);
  c.fp16 = has_extension(c.extensions, "cl_khr_fp16");
  c.intel_subgroups = has_extension(c.extensions, "cl_intel_subgroups");
  c.intel_reqd_subgroup = has_extension(c.extensions, "cl_intel_required_subgroup_size");
  c.khr_subgroups = has_extension(c.extensions, "cl_khr_subgroups");
  c.intel_usm = has_extension(c.extensions, "cl_intel_unified_shared_memory");
#ifdef CL_DEVICE_SUB_GROUP_SIZES_INTEL
  size_t bytes = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_SUB_GROUP_SIZES_INTEL, 0, nullptr, &bytes) == CL_SUCCESS && bytes > 0) {
    std::vector<size_t> sizes(bytes / sizeof(size_t));
    if (clGetDeviceInfo(dev, CL_DEVICE_SUB_GROUP_SIZES_INTEL, bytes, sizes.data(), nullptr) == CL_SUCCESS) {
      for (size_t s : sizes)
        c.subgroup_sizes.push_back(s);
    }
  }
#endif
  const bool intel = c.vendor.find("Intel") != std::string::npos || c.vendor.find("intel") != std::string::npos;
  c.is_intel_gpu = intel && (c.type & CL_DEVICE_TYPE_GPU) != 0;
  return c;
}

std::vector<OrderedDevice> ordered_devices() {
  std::vector<OrderedDevice> groups[3];
  cl_uint num_platforms = 0;
  if (clGetPlatformIDs(0, nullptr, &num_platforms) != CL_SUCCESS || num_platforms == 0) return {};
  std::vector<cl_platform_id> platforms(num_platforms);
  if (clGetPlatformIDs(num_platforms, platforms.data(), nullptr) != CL_SUCCESS) return {};
  for (cl_platform_id platform : platforms) {
    cl_uint n = 0;
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &n) != CL_SUCCESS || n == 0) continue;
    std::vector<cl_device_id> devices(n);
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, n, devices.data(), nullptr) != CL_SUCCESS) continue;
    for (cl_device_id d : devices) {
      const DeviceCaps c = query_caps(platform, d);
      const int group = c.is_intel_gpu ? 0 : (c.type & CL_DEVICE_TYPE_GPU) != 0 ? 1 : 2;
      groups[group].push_back({platform, d});
    }
  }
  std::vector<OrderedDevice> out;
  for (auto& g : groups)
    out.insert(out.end(), g.begin(), g.end());
  return out;
}

XpuStorage::~XpuStorage() {
  pool_->sub_live(size_);
  pool_->give(std::move(mem_), size_);
}

std::string kernel_program_source() {
  std::string src;
  for (const KernelSource& k : embedded_kernel_sources()) {
    src += "// ---- ";
    src += k.name;
    src += "\n";
    src += k.text;
    src += "\n";
  }
  return src;
}

std::string kernel_build_options(bool subgroup_paths, bool emulate_subgroups) {
  // No -cl-fast-relaxed-math: the kernels must agree with the CPU reference within float
  // rounding, and dequantization bit for bit (FP_CONTRACT is off in common.cl for that reason).
  std::string options = "-cl-std=CL1.2";
  if (subgroup_paths) options += " -DPAGODA_INTEL_SUBGROUPS=1";
  if (subgroup_paths && emulate_subgroups) options += " -DPAGODA_SUBGROUP_EMULATION=1";
  // Kernel-internal tuning constants (see kernels/matmul.cl), for measuring a device.
  if (const char* extra = std::getenv("PAGODA_XPU_KERNEL_DEFINES"); extra != nullptr && *extra != '\0') {
    options += ' ';
    options += extra;
  }
  return options;
}

std::string kernel_cache_dir() {
  if (const char* dir = std::getenv("PAGODA_KERNEL_CACHE"); dir != nullptr && *dir != '\0') {
    if (std::string(dir) == "off") return {};
    return dir;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/pagoda/kernels";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.cache/pagoda/kernels";
  }
  return {};
}

XpuRuntime::XpuRuntime(int index) {
  const std::vector<OrderedDevice> devices = ordered_devices();
  if (devices.empty()) {
    fail(ErrorCode::kNotFound,
         "there is no OpenCL device for xpu:{} (no OpenCL platform or device; install an ICD such as "
         "intel-opencl-icd for Intel GPUs or pocl-opencl-icd for CPUs)",
         index);
  }
  if (index < 0 || static_cast<size_t>(index) >= devices.size()) {
    fail(ErrorCode::kNotFound, "there is no device xpu:{}: {} OpenCL device(s) found (see pagoda info --devices)",
         index, devices.size());
  }
  device_ = Device{DeviceKind::kXpu, index};
  platform_ = devices[static_cast<size_t>(index)].platform;
  id_ = devices[static_cast<size_t>(index)].device;
  caps_ = query_caps(platform_, id_);
  // Idle activation buffers kept for reuse: enough for a large prefill step's temporaries, a small
  // share of the device.
  pool_ = std::make_shared<BufferPool>(std::min<uint64_t>(caps_.global_memory / 16, uint64_t{2} << 30));
  cl_int rc = CL_SUCCESS;
  const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(platform_), 0};
  context_ = ClContext(clCreateContext(props, 1, &id_, nullptr, nullptr, &rc));
  check_cl(rc, "clCreateContext");
  // One in-order queue: ops run in the order they were enqueued, as the op contract assumes.
  // clCreateCommandQueue (deprecated in OpenCL 2.0) because OpenCL 1.2 devices have no other.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (const char* env = std::getenv("PAGODA_XPU_PROFILE"); env != nullptr && std::string(env) == "1") {
    profiling_ = true;
  }
  queue_ = ClQueue(clCreateCommandQueue(context_.get(), id_, profiling_ ? CL_QUEUE_PROFILING_ENABLE : 0, &rc));
#pragma GCC diagnostic pop
  check_cl(rc, "clCreateCommandQueue");
  // Subgroup kernels need both the shuffles and a way to require a subgroup size of 16.
  subgroup_paths_ =
      caps_.intel_subgroups && caps_.intel_reqd_subgroup &&
      std::find(caps_.subgroup_sizes.begin(), caps_.subgroup_sizes.end(), 16u) != caps_.subgroup_sizes.end();
  // PAGODA_XPU_SUBGROUPS: 0 forces the portable kernels; "emulate" runs the subgroup kernels on
  // any device with work-items standing in for subgroups (kernels/matmul.cl), for testing them
  // where there is no Intel GPU.
  if (const char* env = std::getenv("PAGODA_XPU_SUBGROUPS"); env != nullptr) {
    const std::string mode(env);
    if (mode == "0") {
      subgroup_paths_ = false;
    } else if (mode == "emulate") {
      subgroup_paths_ = true;
      emulated_subgroups_ = true;
    } else if (!mode.empty() && mode != "1") {
      fail(ErrorCode::kInvalidArgument, "PAGODA_XPU_SUBGROUPS={} is not one of 0, 1 or emulate", mode);
    }
  }
  build_program();
}

void XpuRuntime::build_program() {
  const std::string source = kernel_program_source();
  const std::string options = kernel_build_options(subgroup_paths_, emulated_subgroups_);
  uint64_t key = 0xcbf29ce484222325ull;
  for (const std::string& part :
       {caps_.name, caps_.vendor, caps_.driver, caps_.version, caps_.platform, options, source}) {
    key = fnv1a(key, part);
    key = fnv1a(key, std::string_view("\x1f", 1));
  }
  const std::string dir = kernel_cache_dir();
  const std::string path = dir.empty() ? std::string() : fmt::format("{}/{:016x}.bin", dir, key);
  cl_int rc = CL_SUCCESS;
  // A cached binary first; anything wrong with it (unreadable, rejected, fails to build) falls
  // back to compiling the source.
  if (!path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::vector<unsigned char> bin((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!bin.empty()) {
        const unsigned char* ptr = bin.data();
        const size_t size = bin.size();
        cl_int status = CL_SUCCESS;
        ClProgram p(clCreateProgramWithBinary(context_.get(), 1, &id_, &size, &ptr, &status, &rc));
        if (rc == CL_SUCCESS && status == CL_SUCCESS &&
            clBuildProgram(p.get(), 1, &id_, options.c_str(), nullptr, nullptr) == CL_SUCCESS) {
          program_ = std::move(p);
          program_origin_ = "cached binary " + path;
          return;
        }
      }
    }
  }
  const char* text = source.c_str();
  const size_t length = source.size();
  program_ = ClProgram(clCreateProgramWithSource(context_.get(), 1, &text, &length, &rc));
  check_cl(rc, "clCreateProgramWithSource");
  rc = clBuildProgram(program_.get(), 1, &id_, options.c_str(), nullptr, nullptr);
  if (rc != CL_SUCCESS) {
    size_t log_size = 0;
    clGetProgramBuildInfo(program_.get(), id_, CL_PROGRAM_BUILD_LOG, 0, nullptr, &log_size);
    std::string log(log_size, '\0');
    if (log_size > 0) clGetProgramBuildInfo(program_.get(), id_, CL_PROGRAM_BUILD_LOG, log_size, log.data(), nullptr);
    if (log.size() > 4000) log.resize(4000);
    fail(ErrorCode::kInternal, "xpu: building the kernels for {} failed ({}): {}", caps_.name, cl_status_name(rc), log);
  }
  program_origin_ = "compiled";
  if (path.empty()) return;
  size_t bin_size = 0;
  if (clGetProgramInfo(program_.get(), CL_PROGRAM_BINARY_SIZES, sizeof bin_size, &bin_size, nullptr) != CL_SUCCESS ||
      bin_size == 0) {
    return;
  }
  std::vector<unsigned char> bin(bin_size);
  unsigned char* ptr = bin.data();
  if (clGetProgramInfo(program_.get(), CL_PROGRAM_BINARIES, sizeof ptr, &ptr, nullptr) != CL_SUCCESS) return;
  // Written to a temporary name and renamed, so a concurrent reader never sees half a file. A
  // cache that cannot be written is not an error: the next run compiles again.
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string tmp = fmt::format("{}.{}.tmp", path, static_cast<long>(getpid()));
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) return;
    out.write(reinterpret_cast<const char*>(bin.data()), static_cast<std::streamsize>(bin.size()));
    if (!out) {
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

cl_kernel XpuRuntime::kernel(const std::string& name) {
  std::lock_guard lock(kernels_mutex_);
  auto it = kernels_.find(name);
  if (it != kernels_.end()) return it->second.get();
  cl_int rc = CL_SUCCESS;
  ClKernel k(clCreateKernel(program_.get(), name.c_str(), &rc));
  if (rc != CL_SUCCESS) fail(ErrorCode::kInternal, "xpu: kernel {} is missing: {}", name, cl_status_name(rc));
  cl_kernel raw = k.get();
  kernels_.emplace(name, std::move(k));
  return raw;
}

size_t XpuRuntime::required_work_group_size(const std::string& name) {
  const cl_kernel k = kernel(name);
  std::lock_guard lock(kernels_mutex_);
  auto it = required_sizes_.find(name);
  if (it != required_sizes_.end()) return it->second;
  size_t sizes[3] = {0, 0, 0};
  check_cl(clGetKernelWorkGroupInfo(k, id_, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof sizes, sizes, nullptr),
           "clGetKernelWorkGroupInfo");
  if (sizes[0] == 0) fail(ErrorCode::kInternal, "xpu: kernel {} declares no reqd_work_group_size", name);
  required_sizes_.emplace(name, sizes[0]);
  return sizes[0];
}

std::shared_ptr<Storage> XpuRuntime::allocate(uint64_t nbytes) {
  // OpenCL refuses zero-sized buffers; an empty tensor still gets a real (tiny) one.
  const uint64_t size = std::min(BufferPool::size_class(nbytes), caps_.max_alloc);
  if (nbytes > caps_.max_alloc) {
    fail(ErrorCode::kOutOfMemory, "xpu: a buffer of {} bytes exceeds the largest allocation of {} ({} bytes)", nbytes,
         caps_.name, caps_.max_alloc);
  }
  ClMem mem = pool_->take(size);
  if (!mem) {
    pool_->count_miss();
    const auto create = [&](cl_int& rc) {
      return ClMem(clCreateBuffer(context_.get(), CL_MEM_READ_WRITE, size, nullptr, &rc));
    };
    const auto out_of_memory = [](cl_int rc) {
      return rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_RESOURCES || rc == CL_OUT_OF_HOST_MEMORY;
    };
    cl_int rc = CL_SUCCESS;
    mem = create(rc);
    if (out_of_memory(rc)) {  // idle pooled buffers may be what is missing
      pool_->drain();
      mem = create(rc);
    }
    if (out_of_memory(rc)) {
      fail(ErrorCode::kOutOfMemory, "xpu: allocating {} bytes on {} failed: {}", nbytes, caps_.name,
           cl_status_name(rc));
    }
    check_cl(rc, "clCreateBuffer");
  }
  pool_->add_live(size);
  return std::make_shared<XpuStorage>(std::move(mem), nbytes, size, device_, pool_, next_serial_.fetch_add(1));
}

void XpuRuntime::write(cl_mem dst, uint64_t offset, const void* src, uint64_t n) {
  if (n == 0) return;
  std::lock_guard lock(staging_mutex_);
  if (!staging_tried_ && n >= kStagedWriteMin) {
    staging_tried_ = true;
    const char* env = std::getenv("PAGODA_XPU_STAGING");
    if (env == nullptr || std::string(env) != "0") {
      // Pinned host memory where the device offers it; any failure leaves plain writes in place.
      std::vector<Staging> staging(2);
      bool ok = true;
      for (Staging& st : staging) {
        cl_int rc = CL_SUCCESS;
        st.buffer = ClMem(
            clCreateBuffer(context_.get(), CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, kStagingChunk, nullptr, &rc));
        if (rc != CL_SUCCESS) {
          ok = false;
          break;
        }
        st.host = clEnqueueMapBuffer(queue_.get(), st.buffer.get(), CL_TRUE, CL_MAP_WRITE, 0, kStagingChunk, 0, nullptr,
                                     nullptr, &rc);
        if (rc != CL_SUCCESS || st.host == nullptr) {
          ok = false;
          break;
        }
      }
      if (ok) staging_ = std::move(staging);
    }
  }
  if (n < kStagedWriteMin || staging_.empty()) {
    check_cl(clEnqueueWriteBuffer(queue_.get(), dst, CL_TRUE, offset, n, src, 0, nullptr, nullptr),
             "clEnqueueWriteBuffer");
    return;
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  size_t turn = 0;
  for (uint64_t done = 0; done < n; done += kStagingChunk, turn ^= 1) {
    Staging& st = staging_[turn];
    if (st.last_write) {
      cl_event e = st.last_write.get();
      check_cl(clWaitForEvents(1, &e), "clWaitForEvents");
      st.last_write.reset();
    }
    const uint64_t len = std::min(kStagingChunk, n - done);
    std::memcpy(st.host, bytes + done, len);
    cl_event e = nullptr;
    check_cl(clEnqueueWriteBuffer(queue_.get(), dst, CL_FALSE, offset + done, len, st.host, 0, nullptr, &e),
             "clEnqueueWriteBuffer");
    st.last_write = ClEvent(e);
  }
  // `src` is fully copied into the staging buffers: the caller may free it now.
}

std::vector<uint8_t> XpuRuntime::host_copy(const Tensor& t) {
  auto* storage = dynamic_cast<XpuStorage*>(t.storage().get());
  if (storage == nullptr) fail(ErrorCode::kInvalidArgument, "xpu: {} is not xpu device memory", t.str());
  const HostCopyKey key{storage->serial(), t.byte_offset(), t.nbytes()};
  std::lock_guard lock(host_copies_mutex_);
  auto it = host_copies_.find(key);
  if (it != host_copies_.end()) return it->second;
  // Index tensors are small; a cap keeps a long run of distinct ones from growing the map.
  constexpr size_t kMaxEntries = 64;
  if (host_copies_.size() >= kMaxEntries) host_copies_.clear();
  std::vector<uint8_t> bytes(t.nbytes());
  if (!bytes.empty()) {
    check_cl(clEnqueueReadBuffer(queue_.get(), storage->mem(), CL_TRUE, t.byte_offset(), bytes.size(), bytes.data(), 0,
                                 nullptr, nullptr),
             "clEnqueueReadBuffer");
  }
  return host_copies_.emplace(key, std::move(bytes)).first->second;
}

void XpuRuntime::invalidate_host_copies() {
  std::lock_guard lock(host_copies_mutex_);
  host_copies_.clear();
}

void XpuRuntime::record(const char* kernel_name, std::string shape, cl_event event) {
  std::lock_guard lock(profile_mutex_);
  events_.push_back(Recorded{kernel_name, std::move(shape), ClEvent(event)});
}

std::vector<KernelTiming> XpuRuntime::profile() {
  check_cl(clFinish(queue_.get()), "clFinish");
  std::vector<Recorded> events;
  {
    std::lock_guard lock(profile_mutex_);
    events.swap(events_);
  }
  std::map<std::string, KernelTiming> by_name;
  for (const auto& [kernel, shape, event] : events) {
    const std::string name = std::string(kernel) + " " + shape;
    cl_ulong start = 0;
    cl_ulong end = 0;
    if (clGetEventProfilingInfo(event.get(), CL_PROFILING_COMMAND_START, sizeof start, &start, nullptr) != CL_SUCCESS ||
        clGetEventProfilingInfo(event.get(), CL_PROFILING_COMMAND_END, sizeof end, &end, nullptr) != CL_SUCCESS) {
      continue;
    }
    KernelTiming& k = by_name[name];
    k.name = name;
    ++k.launches;
    k.seconds += end > start ? static_cast<double>(end - start) * 1e-9 : 0.0;
  }
  std::vector<KernelTiming> out;
  for (auto& [name, k] : by_name)
    out.push_back(std::move(k));
  std::sort(out.begin(), out.end(), [](const KernelTiming& a, const KernelTiming& b) { return a.seconds > b.seconds; });
  return out;
}

cl_mem mem_of(const Tensor& t) {
  auto* s = dynamic_cast<XpuStorage*>(t.storage().get());
  if (s == nullptr) fail(ErrorCode::kInvalidArgument, "xpu: {} is not xpu device memory", t.str());
  return s->mem();
}

}  // namespace pagoda::xpu
