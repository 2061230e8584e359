#include <CL/cl.h>
#include <CL/cl_ext.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/device_list.h"

namespace pagoda {

// Devices are listed, but this build has no xpu kernels yet: ops on xpu devices are refused.
constexpr const char* kListingOnly = "devices listed; the xpu compute backend is not implemented in this build yet";
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

template <typename T>
T device_value(cl_device_id dev, cl_device_info what) {
  T v{};
  if (clGetDeviceInfo(dev, what, sizeof(T), &v, nullptr) != CL_SUCCESS) return T{};
  return v;
}

bool has_extension(const std::string& extensions, const std::string& name) {
  size_t pos = 0;
  while ((pos = extensions.find(name, pos)) != std::string::npos) {
    size_t end = pos + name.size();
    bool starts = pos == 0 || extensions[pos - 1] == ' ';
    bool ends = end == extensions.size() || extensions[end] == ' ';
    if (starts && ends) return true;
    pos = end;
  }
  return false;
}

}  // namespace

BackendReport xpu_backend_report() {
  BackendReport report{.name = "xpu", .compiled = true, .status = kListingOnly, .devices = {}};
  cl_uint num_platforms = 0;
  cl_int rc = clGetPlatformIDs(0, nullptr, &num_platforms);
  if (rc != CL_SUCCESS || num_platforms == 0) {
    report.status =
        "no OpenCL platform found (install an ICD: intel-opencl-icd for Intel GPUs, pocl-opencl-icd for CPUs)";
    return report;
  }
  std::vector<cl_platform_id> platforms(num_platforms);
  if (clGetPlatformIDs(num_platforms, platforms.data(), nullptr) != CL_SUCCESS) {
    report.status = "clGetPlatformIDs failed";
    return report;
  }
  int index = 0;
  for (cl_platform_id platform : platforms) {
    cl_uint num_devices = 0;
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &num_devices) != CL_SUCCESS || num_devices == 0)
      continue;
    std::vector<cl_device_id> devices(num_devices);
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, num_devices, devices.data(), nullptr) != CL_SUCCESS) continue;
    for (cl_device_id dev : devices) {
      DeviceReport d;
      d.id = "xpu:" + std::to_string(index++);
      d.name = device_string(dev, CL_DEVICE_NAME);
      d.vendor = device_string(dev, CL_DEVICE_VENDOR);
      d.driver = device_string(dev, CL_DRIVER_VERSION);
      d.global_memory = device_value<cl_ulong>(dev, CL_DEVICE_GLOBAL_MEM_SIZE);
      d.max_alloc = device_value<cl_ulong>(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
      d.local_memory = device_value<cl_ulong>(dev, CL_DEVICE_LOCAL_MEM_SIZE);
      d.max_work_group_size = device_value<size_t>(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE);
      std::string ext = device_string(dev, CL_DEVICE_EXTENSIONS);
      d.fp16 = has_extension(ext, "cl_khr_fp16");
      d.subgroups = has_extension(ext, "cl_intel_subgroups") || has_extension(ext, "cl_khr_subgroups");
      d.usm = has_extension(ext, "cl_intel_unified_shared_memory");
#ifdef CL_DEVICE_SUB_GROUP_SIZES_INTEL
      size_t bytes = 0;
      if (clGetDeviceInfo(dev, CL_DEVICE_SUB_GROUP_SIZES_INTEL, 0, nullptr, &bytes) == CL_SUCCESS && bytes > 0) {
        std::vector<size_t> sizes(bytes / sizeof(size_t));
        if (clGetDeviceInfo(dev, CL_DEVICE_SUB_GROUP_SIZES_INTEL, bytes, sizes.data(), nullptr) == CL_SUCCESS) {
          for (size_t s : sizes)
            d.subgroup_sizes.push_back(s);
        }
      }
#endif
      report.devices.push_back(std::move(d));
    }
  }
  if (report.devices.empty()) report.status = "OpenCL platforms found, but no devices";
  return report;
}

}  // namespace pagoda
