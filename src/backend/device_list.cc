#include "backend/device_list.h"

#include <fmt/format.h>

#include <thread>

namespace pagoda {

std::vector<BackendReport> list_backends() {
  std::vector<BackendReport> out;
  BackendReport cpu{.name = "cpu", .compiled = true, .status = "ok", .devices = {}};
  DeviceReport host;
  host.id = "cpu";
  host.name = fmt::format("host CPU, {} hardware threads", std::thread::hardware_concurrency());
  cpu.devices.push_back(host);
  out.push_back(cpu);
#if PAGODA_HAS_XPU
  out.push_back(xpu_backend_report());
#else
  out.push_back(
      {.name = "xpu", .compiled = false, .status = "not built (configure with -DPAGODA_XPU=ON)", .devices = {}});
#endif
#if PAGODA_HAS_CUDA
  out.push_back(cuda_backend_report());
#else
  out.push_back(
      {.name = "cuda", .compiled = false, .status = "not built (configure with -DPAGODA_CUDA=ON)", .devices = {}});
#endif
  return out;
}

}  // namespace pagoda
