#include <cuda_runtime_api.h>

#include <string>

#include "backend/device_list.h"

namespace pagoda {

// Devices are listed, but this build has no cuda kernels yet: ops on cuda devices are refused.
constexpr const char* kListingOnly = "devices listed; the cuda compute backend is not implemented in this build yet";

BackendReport cuda_backend_report() {
  BackendReport report{.name = "cuda", .compiled = true, .status = kListingOnly, .devices = {}};
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    report.status = std::string("no usable CUDA device: ") + cudaGetErrorString(rc);
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceReport d;
    d.id = "cuda:" + std::to_string(i);
    d.name = prop.name;
    d.vendor = "NVIDIA";
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess)
      d.driver = std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
    d.global_memory = prop.totalGlobalMem;
    d.max_alloc = prop.totalGlobalMem;
    d.local_memory = prop.sharedMemPerBlock;
    d.max_work_group_size = static_cast<uint64_t>(prop.maxThreadsPerBlock);
    d.fp16 = true;
    d.subgroups = true;
    d.subgroup_sizes = {static_cast<uint64_t>(prop.warpSize)};
    d.notes = "compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor);
    report.devices.push_back(std::move(d));
  }
  if (count == 0) report.status = "CUDA driver present, no devices";
  return report;
}

}  // namespace pagoda
