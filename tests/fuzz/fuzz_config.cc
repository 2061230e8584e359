// libFuzzer target: arbitrary bytes as config.json text, as generation_config.json text beside a
// valid config, and split at the first NUL into both, through config_from_hf_json. Only
// pagoda::Error may escape; anything else (a crash, a sanitizer report, another exception) is a
// finding.

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/loader/model_config.h"

namespace {

const std::string kValidConfig = R"({"model_type": "llama", "vocab_size": 1000, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})";

void run(const std::string& config, const std::string* generation) {
  try {
    pagoda::model::ModelConfig c = pagoda::model::config_from_hf_json(config, generation, "fuzz/config.json");
    (void)pagoda::model::model_config_to_json(c);
  } catch (const pagoda::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  run(text, nullptr);
  run(kValidConfig, &text);
  if (size_t nul = text.find('\0'); nul != std::string::npos) {
    const std::string generation = text.substr(nul + 1);
    run(text.substr(0, nul), &generation);
  }
  return 0;
}
