// libFuzzer target: arbitrary bytes through the GGUF reader. Only pagoda::Error may escape the
// parser; anything else (a crash, a sanitizer report, another exception) is a finding.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "model/loader/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  pagoda::gguf::Limits limits;
  limits.max_header_bytes = 1 << 20;  // keep each input cheap; the caps themselves are unit-tested
  try {
    auto file = pagoda::gguf::File::parse(pagoda::MappedFile::from_memory("fuzz.gguf", std::move(bytes)), limits);
    for (const auto& [key, value] : file.metadata())
      (void)value.to_display(4);
    for (const auto& info : file.tensors()) {
      pagoda::Tensor t = file.tensor(info);
      if (info.nbytes > 0) (void)static_cast<const uint8_t*>(t.raw_data())[info.nbytes - 1];
    }
  } catch (const pagoda::Error&) {
  }
  return 0;
}
