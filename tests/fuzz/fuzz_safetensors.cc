// libFuzzer target: arbitrary bytes as a safetensors file. The parser may only answer with a
// pagoda::Error; anything it accepts must describe tensors that lie inside the file.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loader/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagoda;
  auto file = MappedFile::from_memory("fuzz.safetensors", std::vector<uint8_t>(data, data + size));
  try {
    safetensors::File f = safetensors::File::parse(file);
    uint64_t covered = 0;
    for (const safetensors::TensorInfo& info : f.tensors()) {
      if (info.offset < f.data_offset() || info.offset + info.nbytes > file->size()) std::abort();
      covered += info.nbytes;
      Tensor t = f.tensor(info);
      if (t.nbytes() != info.nbytes) std::abort();
      if (info.nbytes > 0) {
        // Touch the first and last byte so that ASan checks the view's bounds.
        const auto* p = static_cast<const volatile uint8_t*>(t.raw_data());
        (void)p[0];
        (void)p[info.nbytes - 1];
      }
      if (f.find_tensor(info.name) != &info) std::abort();
    }
    // Accepted files are exactly tiled by their tensors.
    if (covered != file->size() - f.data_offset()) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
