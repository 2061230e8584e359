#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pagoda {

// A device a compiled backend can see, with the capabilities its kernels care about.
struct DeviceReport {
  std::string id;  // "xpu:0", "cuda:0"
  std::string name;
  std::string vendor;
  std::string driver;
  uint64_t global_memory = 0;
  uint64_t max_alloc = 0;
  uint64_t local_memory = 0;
  uint64_t max_work_group_size = 0;
  bool fp16 = false;
  bool subgroups = false;
  std::vector<uint64_t> subgroup_sizes;
  bool usm = false;
  std::string notes;
};

struct BackendReport {
  std::string name;       // "cpu", "xpu", "cuda"
  bool compiled = false;  // false: this build of pagoda has no such backend
  std::string status;     // why no devices are listed, when none are
  std::vector<DeviceReport> devices;
};

// Every backend pagoda knows, compiled in or not, with the devices each one can use now.
[[nodiscard]] std::vector<BackendReport> list_backends();

// Implemented by each optional backend's target; the registry calls them only when compiled.
[[nodiscard]] BackendReport xpu_backend_report();
[[nodiscard]] BackendReport cuda_backend_report();

}  // namespace pagoda
