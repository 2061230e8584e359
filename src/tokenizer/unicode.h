#pragma once

// Unicode operations the normalizers need, on valid UTF-8: normalization forms (NFC, NFD, NFKC,
// NFKD), per-character lowercase mapping (as Rust's char::to_lowercase), and the White_Space
// property (Rust's char::is_whitespace).

#include <string>
#include <string_view>

namespace pagoda::tokenizer {

enum class UnicodeForm;

void unicode_normalize(std::string_view s, UnicodeForm form, std::string& out);
void unicode_lowercase(std::string_view s, std::string& out);
[[nodiscard]] bool is_white_space(char32_t cp);

}  // namespace pagoda::tokenizer
