#pragma once

// The OpenCL C sources of the xpu kernels, embedded at build time (cmake/EmbedOpenCL.cmake turns
// src/backends/xpu/kernels/*.cl into a generated source file).

#include <span>
#include <string_view>

namespace pagoda::xpu {

struct KernelSource {
  std::string_view name;  // file name, "common.cl"
  std::string_view text;
};

// In build order: common.cl first (shared helpers), then the rest by name.
[[nodiscard]] std::span<const KernelSource> embedded_kernel_sources();

}  // namespace pagoda::xpu
