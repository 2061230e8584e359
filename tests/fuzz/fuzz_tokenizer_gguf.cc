// libFuzzer target: arbitrary bytes as a GGUF file whose metadata holds a tokenizer. Only
// pagoda::Error may escape; a tokenizer that loads must encode and decode, and stream to the same
// text as its full decode.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loader/gguf.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  pagoda::gguf::Limits limits;
  limits.max_header_bytes = 1 << 20;
  try {
    const auto file = pagoda::gguf::File::parse(pagoda::MappedFile::from_memory("fuzz.gguf", std::move(bytes)), limits);
    const auto tok = pagoda::tokenizer::Tokenizer::from_gguf(file);
    for (std::string_view text : {"Hello world", " ab  a\n\n12 <s> \xE4\xBD\xA0\xFF<|im_end|>"}) {
      const auto ids = tok.encode(text);
      const std::string full = tok.decode(ids, false, false);
      if (!pagoda::tokenizer::is_valid_utf8(full)) __builtin_trap();
      pagoda::tokenizer::StreamDecoder stream(tok, false);
      std::string joined;
      for (uint32_t id : ids)
        joined += stream.push(id);
      joined += stream.finish();
      if (joined != full) __builtin_trap();
    }
  } catch (const pagoda::Error&) {
  }
  return 0;
}
