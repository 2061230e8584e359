// libFuzzer target: arbitrary bytes through the GGUF reader and then config_from_gguf, which reads
// metadata of any type and small rope factor tensors. Only pagoda::Error may escape.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "model/loader/gguf.h"
#include "model/loader/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  pagoda::gguf::Limits limits;
  limits.max_header_bytes = 1 << 20;  // keep each input cheap
  try {
    auto file = pagoda::gguf::File::parse(pagoda::MappedFile::from_memory("fuzz.gguf", std::move(bytes)), limits);
    pagoda::model::ModelConfig c = pagoda::model::config_from_gguf(file);
    (void)pagoda::model::model_config_to_json(c);
  } catch (const pagoda::Error&) {
  }
  return 0;
}
