// pagoda info --devices: every OpenCL device, in the order --device xpu:N counts them, with the
// capabilities the xpu kernels use.

#include <CL/cl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/device_list.h"
#include "backends/xpu/onednn_matmul.h"
#include "backends/xpu/xpu_runtime.h"

namespace pagoda {

BackendReport xpu_backend_report() {
  BackendReport report{.name = "xpu", .compiled = true, .status = "ok", .devices = {}};
  cl_uint num_platforms = 0;
  if (clGetPlatformIDs(0, nullptr, &num_platforms) != CL_SUCCESS || num_platforms == 0) {
    report.status =
        "no OpenCL platform found (install an ICD: intel-opencl-icd for Intel GPUs, pocl-opencl-icd for CPUs)";
    return report;
  }
  int index = 0;
  for (const xpu::OrderedDevice& od : xpu::ordered_devices()) {
    const xpu::DeviceCaps c = xpu::query_caps(od.platform, od.device);
    DeviceReport d;
    d.id = "xpu:" + std::to_string(index++);
    d.name = c.name;
    d.vendor = c.vendor;
    d.driver = c.driver;
    d.global_memory = c.global_memory;
    d.max_alloc = c.max_alloc;
    d.local_memory = c.local_memory;
    d.max_work_group_size = c.max_work_group_size;
    d.fp16 = c.fp16;
    d.subgroups = c.intel_subgroups || c.khr_subgroups;
    d.subgroup_sizes = c.subgroup_sizes;
    d.usm = c.intel_usm;
    // As the runtime decides it (XpuRuntime's constructor): shuffles, block reads and size 16.
    const bool sg_path = c.intel_subgroups && c.intel_reqd_subgroup &&
                         std::find(c.subgroup_sizes.begin(), c.subgroup_sizes.end(), 16u) != c.subgroup_sizes.end();
    d.notes = c.version + "; " + c.platform + "; matmul path: " +
              (sg_path ? "Intel subgroups (cl_intel_subgroups block reads and reductions, subgroup size 16)"
                       : "portable work-group reduction") +
              "; oneDNN matmul: " +
              (!xpu::OneDnnMatmul::built()      ? "not built"
               : !c.is_intel_gpu                ? "no (Intel GPUs only)"
               : xpu::OneDnnMatmul::requested() ? "on (PAGODA_XPU_ONEDNN=1)"
                                                : "available, off (PAGODA_XPU_ONEDNN=1 turns it on)");
    report.devices.push_back(std::move(d));
  }
  if (report.devices.empty()) report.status = "OpenCL platforms found, but no devices";
  return report;
}

}  // namespace pagoda
