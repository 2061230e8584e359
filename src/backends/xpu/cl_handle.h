#pragma once

// RAII for OpenCL objects: each handle owns one reference and releases it when destroyed.

#include <CL/cl.h>

#include <utility>

namespace pagoda::xpu {

template <typename T, cl_int (*Release)(T)>
class ClHandle {
 public:
  ClHandle() = default;
  explicit ClHandle(T handle) : handle_(handle) {}  // takes ownership of one reference
  ~ClHandle() { reset(); }
  ClHandle(const ClHandle&) = delete;
  ClHandle& operator=(const ClHandle&) = delete;
  ClHandle(ClHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  ClHandle& operator=(ClHandle&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }

  [[nodiscard]] T get() const { return handle_; }
  [[nodiscard]] explicit operator bool() const { return handle_ != nullptr; }
  void reset() {
    if (handle_ != nullptr) (void)Release(std::exchange(handle_, nullptr));
  }

 private:
  T handle_ = nullptr;
};

using ClContext = ClHandle<cl_context, clReleaseContext>;
using ClQueue = ClHandle<cl_command_queue, clReleaseCommandQueue>;
using ClProgram = ClHandle<cl_program, clReleaseProgram>;
using ClKernel = ClHandle<cl_kernel, clReleaseKernel>;
using ClMem = ClHandle<cl_mem, clReleaseMemObject>;
using ClEvent = ClHandle<cl_event, clReleaseEvent>;

// Throws Error(kInternal) naming `what` and the OpenCL status unless rc is CL_SUCCESS.
void check_cl(cl_int rc, const char* what);
[[nodiscard]] const char* cl_status_name(cl_int rc);

}  // namespace pagoda::xpu
