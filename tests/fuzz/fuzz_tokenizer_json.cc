// libFuzzer target: arbitrary bytes as tokenizer.json (and, after a NUL byte, as
// tokenizer_config.json). Only pagoda::Error may escape loading; a tokenizer that loads is then
// used to encode and decode a few strings, so hostile regexes and vocabularies get exercised.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view json = input.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  try {
    const pagoda::tokenizer::Tokenizer tok = pagoda::tokenizer::Tokenizer::from_json(json, config, "fuzz.json");
    for (std::string_view text : {"Hello world", " a  b\n\n12345 <s> \xE4\xBD\xA0\xFF", ""}) {
      const auto ids = tok.encode(text);
      const std::string back = tok.decode(ids);
      if (!pagoda::tokenizer::is_valid_utf8(back)) __builtin_trap();
      pagoda::tokenizer::StreamDecoder stream(tok, false);
      std::string joined;
      for (uint32_t id : ids)
        joined += stream.push(id);
      joined += stream.finish();
      if (joined != tok.decode(ids, false, false)) __builtin_trap();
    }
    std::vector<uint32_t> ids;
    for (uint32_t i = 0; i < 64 && i < tok.vocab_size(); ++i)
      ids.push_back(i);
    (void)tok.decode(ids, true);
  } catch (const pagoda::Error&) {
  }
  return 0;
}
