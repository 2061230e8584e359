#include "tokenizer/jinja/lexer.h"

#include <charconv>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

namespace {

bool is_ascii_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_ascii_digit(c);
}

// jinja2 normalises every newline to "\n" and drops one trailing newline.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string src, size_t max_tokens) : src_(std::move(src)), max_tokens_(max_tokens) {}

  std::vector<Token> run() {
    size_t pos = 0;
    const size_t n = src_.size();
    while (pos < n) {
      size_t tag = find_tag(pos);
      if (tag == std::string::npos) {
        emit_data(pos, src_.substr(pos));
        break;
      }
      char kind = src_[tag + 1];
      size_t after = tag + 2;
      char sign = 0;
      if (after < n && (src_[after] == '-' || src_[after] == '+')) {
        sign = src_[after];
        ++after;
      }
      std::string text = src_.substr(pos, tag - pos);
      size_t raw_end = kind == '%' ? match_raw_begin(after) : std::string::npos;
      strip_before_tag(text, sign, kind != '{');
      emit_data(pos, std::move(text));
      if (raw_end != std::string::npos) {
        line_starting_ = src_[raw_end - 1] == '\n';
        pos = lex_raw(raw_end);
      } else if (kind == '#') {
        pos = lex_comment(after, tag);
      } else {
        pos = lex_tag(kind == '{', after, tag);
      }
    }
    push(TokenKind::kEof, n);
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t pos, std::string_view what) {
    fail(ErrorCode::kInvalidArgument, "chat template syntax error at line {}: {}", line_at(pos), what);
  }

  int line_at(size_t pos) {
    if (pos > src_.size()) pos = src_.size();
    if (pos < line_pos_) {  // only while reporting an earlier position
      int line = 1;
      for (size_t i = 0; i < pos; ++i)
        line += src_[i] == '\n';
      return line;
    }
    for (; line_pos_ < pos; ++line_pos_)
      line_ += src_[line_pos_] == '\n';
    return line_;
  }

  Token& push(TokenKind kind, size_t pos) {
    if (tokens_.size() >= max_tokens_) error(pos, fmt::format("template has more than {} tokens", max_tokens_));
    Token t;
    t.kind = kind;
    t.line = line_at(pos);
    tokens_.push_back(std::move(t));
    return tokens_.back();
  }

  void emit_data(size_t pos, std::string text) {
    if (text.empty()) return;
    push(TokenKind::kData, pos).text = std::move(text);
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos && i + 1 < src_.size(); i = src_.find('{', i + 1)) {
      char c = src_[i + 1];
      if (c == '{' || c == '%' || c == '#') return i;
    }
    return std::string::npos;
  }

  // Length of Python whitespace (\s) starting at pos.
  size_t skip_space(size_t pos) const {
    while (pos < src_.size()) {
      size_t next = pos;
      char32_t c = text::next_code_point(src_, next);
      if (!text::is_space(c)) break;
      pos = next;
    }
    return pos;
  }

  static bool all_space(std::string_view s) {
    if (s.empty()) return false;
    size_t pos = 0;
    while (pos < s.size()) {
      if (!text::is_space(text::next_code_point(s, pos))) return false;
    }
    return true;
  }

  // What jinja2 does to the text before a tag: '-' strips all trailing whitespace; otherwise
  // lstrip_blocks removes spaces between the start of the line and a block or comment tag.
  void strip_before_tag(std::string& text, char sign, bool is_block) {
    if (sign == '-') {
      text = text::strip(text, false, true, nullptr);
    } else if (sign != '+' && is_block) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && all_space(std::string_view(text).substr(l_pos))) text.resize(l_pos);
    }
  }

  bool starts_with(size_t pos, std::string_view s) const {
    return pos <= src_.size() && std::string_view(src_).substr(pos).starts_with(s);
  }

  // `{% raw %}` (the part after "{%" and its sign): returns the position after the tag or npos.
  size_t match_raw_begin(size_t pos) const {
    pos = skip_space(pos);
    if (!starts_with(pos, "raw")) return std::string::npos;
    pos = skip_space(pos + 3);
    if (starts_with(pos, "-%}")) return skip_space(pos + 3);
    if (starts_with(pos, "%}")) return pos + 2;
    return std::string::npos;
  }

  size_t lex_raw(size_t pos) {
    for (size_t i = src_.find("{%", pos); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = skip_space(p);
      if (!starts_with(p, "endraw")) continue;
      p = skip_space(p + 6);
      size_t end = std::string::npos;
      if (starts_with(p, "+%}")) {
        end = p + 3;
      } else if (starts_with(p, "-%}")) {
        end = skip_space(p + 3);
      } else if (starts_with(p, "%}")) {
        end = p + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      }
      if (end == std::string::npos) continue;
      std::string text = src_.substr(pos, i - pos);
      strip_before_tag(text, sign, true);
      emit_data(pos, std::move(text));
      line_starting_ = src_[end - 1] == '\n';
      return end;
    }
    error(pos, "missing end of raw directive");
  }

  size_t lex_comment(size_t pos, size_t tag) {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      size_t end = std::string::npos;
      if (starts_with(i, "+#}")) {
        end = i + 3;
      } else if (starts_with(i, "-#}")) {
        end = skip_space(i + 3);
      } else if (starts_with(i, "#}")) {
        end = i + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      }
      if (end != std::string::npos) {
        line_starting_ = src_[end - 1] == '\n';
        return end;
      }
    }
    error(tag, "missing end of comment tag");
  }

  // Lexes the inside of {{ }} or {% %} from pos; returns the position after the closing tag.
  size_t lex_tag(bool variable, size_t pos, size_t tag) {
    push(variable ? TokenKind::kVarBegin : TokenKind::kBlockBegin, tag);
    std::vector<char> balance;
    const size_t n = src_.size();
    while (true) {
      if (pos >= n) error(pos, "unexpected end of template inside a tag");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (variable) {
          if (starts_with(pos, "-}}")) {
            end = skip_space(pos + 3);
          } else if (starts_with(pos, "}}")) {
            end = pos + 2;
          }
        } else {
          if (starts_with(pos, "+%}")) {
            end = pos + 3;
          } else if (starts_with(pos, "-%}")) {
            end = skip_space(pos + 3);
          } else if (starts_with(pos, "%}")) {
            end = pos + 2;
            if (end < n && src_[end] == '\n') ++end;
          }
        }
        if (end != std::string::npos) {
          push(variable ? TokenKind::kVarEnd : TokenKind::kBlockEnd, pos);
          line_starting_ = src_[end - 1] == '\n';
          return end;
        }
      }
      size_t ws = skip_space(pos);
      if (ws != pos) {
        pos = ws;
        continue;
      }
      char c = src_[pos];
      size_t end = match_float(pos);
      if (end != std::string::npos) {
        std::string digits = without_underscores(pos, end);
        double d = 0;
        auto res = std::from_chars(digits.data(), digits.data() + digits.size(), d);
        if (res.ec == std::errc::result_out_of_range) {
          d = digits.find_first_of("eE") != std::string::npos && digits.find("e-") == std::string::npos &&
                      digits.find("E-") == std::string::npos
                  ? HUGE_VAL
                  : 0.0;
        }
        push(TokenKind::kFloat, pos).float_value = d;
        pos = end;
        continue;
      }
      end = match_integer(pos);
      if (end != std::string::npos) {
        push(TokenKind::kInteger, pos).int_value = parse_integer(pos, end);
        pos = end;
        continue;
      }
      if (is_name_start(c)) {
        end = pos;
        while (end < n && is_name_char(src_[end]))
          ++end;
        push(TokenKind::kName, pos).text = src_.substr(pos, end - pos);
        pos = end;
        continue;
      }
      if (c == '\'' || c == '"') {
        pos = lex_string(pos);
        continue;
      }
      std::string op = match_operator(pos);
      if (op.empty()) {
        size_t next = pos;
        char32_t cp = text::next_code_point(src_, next);
        std::string shown;
        text::append_utf8(shown, cp);
        error(pos, fmt::format("unexpected character '{}'", shown));
      }
      if (op == "{" || op == "(" || op == "[") {
        balance.push_back(op == "{" ? '}' : op == "(" ? ')' : ']');
      } else if (op == "}" || op == ")" || op == "]") {
        if (balance.empty()) error(pos, fmt::format("unexpected '{}'", op));
        if (balance.back() != op[0]) error(pos, fmt::format("unexpected '{}', expected '{}'", op, balance.back()));
        balance.pop_back();
      }
      push(TokenKind::kOperator, pos).text = op;
      pos += op.size();
    }
  }

  std::string match_operator(size_t pos) const {
    static constexpr std::string_view kTwo[] = {"**", "//", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwo) {
      if (starts_with(pos, op)) return std::string(op);
    }
    static constexpr std::string_view kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(src_[pos]) != std::string_view::npos) return std::string(1, src_[pos]);
    return {};
  }

  // `\d+(_\d+)*` from pos: the end, or npos.
  size_t match_digits(size_t pos) const {
    if (pos >= src_.size() || !is_ascii_digit(src_[pos])) return std::string::npos;
    while (pos < src_.size() && is_ascii_digit(src_[pos]))
      ++pos;
    while (pos + 1 < src_.size() && src_[pos] == '_' && is_ascii_digit(src_[pos + 1])) {
      ++pos;
      while (pos < src_.size() && is_ascii_digit(src_[pos]))
        ++pos;
    }
    return pos;
  }

  size_t match_float(size_t pos) const {
    if (pos > 0 && src_[pos - 1] == '.') return std::string::npos;
    size_t int_end = match_digits(pos);
    if (int_end == std::string::npos) return std::string::npos;
    size_t frac_end = std::string::npos;
    if (int_end < src_.size() && src_[int_end] == '.') frac_end = match_digits(int_end + 1);
    size_t exp_start = frac_end != std::string::npos ? frac_end : int_end;
    if (exp_start < src_.size() && (src_[exp_start] == 'e' || src_[exp_start] == 'E')) {
      size_t p = exp_start + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      size_t exp_end = match_digits(p);
      if (exp_end != std::string::npos) return exp_end;
    }
    return frac_end;
  }

  size_t match_integer(size_t pos) const {
    auto lower = [&](size_t i) { return i < src_.size() ? static_cast<char>(std::tolower(src_[i])) : '\0'; };
    if (src_[pos] == '0') {
      char b = lower(pos + 1);
      auto digit_ok = [&](char c) {
        c = static_cast<char>(std::tolower(c));
        if (b == 'b') return c == '0' || c == '1';
        if (b == 'o') return c >= '0' && c <= '7';
        return is_ascii_digit(c) || (c >= 'a' && c <= 'f');
      };
      if (b == 'b' || b == 'o' || b == 'x') {
        size_t p = pos + 2;
        size_t end = std::string::npos;
        while (true) {
          size_t q = p;
          if (q < src_.size() && src_[q] == '_') ++q;
          if (q < src_.size() && digit_ok(src_[q])) {
            p = q + 1;
            end = p;
          } else {
            break;
          }
        }
        if (end != std::string::npos) return end;
      }
      size_t p = pos + 1;
      while (true) {
        size_t q = p;
        if (q < src_.size() && src_[q] == '_') ++q;
        if (q < src_.size() && src_[q] == '0') {
          p = q + 1;
        } else {
          break;
        }
      }
      return p;
    }
    if (!is_ascii_digit(src_[pos])) return std::string::npos;
    size_t p = pos + 1;
    while (true) {
      size_t q = p;
      if (q < src_.size() && src_[q] == '_') ++q;
      if (q < src_.size() && is_ascii_digit(src_[q])) {
        p = q + 1;
      } else {
        break;
      }
    }
    return p;
  }

  std::string without_underscores(size_t b, size_t e) const {
    std::string out;
    for (size_t i = b; i < e; ++i) {
      if (src_[i] != '_') out.push_back(src_[i]);
    }
    return out;
  }

  int64_t parse_integer(size_t b, size_t e) {
    std::string s = without_underscores(b, e);
    int base = 10;
    size_t skip = 0;
    if (s.size() > 1 && s[0] == '0') {
      char k = static_cast<char>(std::tolower(s[1]));
      base = k == 'b' ? 2 : k == 'o' ? 8 : k == 'x' ? 16 : 10;
      if (base != 10) skip = 2;
    }
    int64_t v = 0;
    auto res = std::from_chars(s.data() + skip, s.data() + s.size(), v, base);
    if (res.ec != std::errc()) error(b, "integer literal is too large");
    return v;
  }

  // A Python string literal with the escapes unicode-escape knows.
  size_t lex_string(size_t pos) {
    const char quote = src_[pos];
    std::string out;
    size_t i = pos + 1;
    const size_t n = src_.size();
    auto hex = [&](size_t at, int count) -> int64_t {
      if (at + static_cast<size_t>(count) > n) return -1;
      int64_t v = 0;
      for (int k = 0; k < count; ++k) {
        char c = src_[at + static_cast<size_t>(k)];
        int d = is_ascii_digit(c)        ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
      }
      return v;
    };
    while (true) {
      if (i >= n) error(pos, "unexpected character: unterminated string literal");
      char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= n) error(pos, "unterminated string literal");
      char e = src_[i + 1];
      i += 2;
      int64_t cp = -1;
      switch (e) {
        case '\n': break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          int count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          cp = hex(i, count);
          if (cp < 0) error(pos, fmt::format("truncated \\{} escape in string literal", e));
          i += static_cast<size_t>(count);
          if (cp > 0x10FFFF) error(pos, "illegal Unicode character in string literal");
          break;
        }
        case 'N': error(pos, "named Unicode escapes (\\N{...}) are not supported");
        default:
          if (e >= '0' && e <= '7') {
            cp = e - '0';
            for (int k = 0; k < 2 && i < n && src_[i] >= '0' && src_[i] <= '7'; ++k)
              cp = cp * 8 + (src_[i++] - '0');
          } else {
            out.push_back('\\');
            out.push_back(e);
          }
      }
      if (cp >= 0) {
        if (cp >= 0xD800 && cp <= 0xDFFF) error(pos, "surrogate code point in string literal");
        text::append_utf8(out, static_cast<char32_t>(cp));
      }
    }
    push(TokenKind::kString, pos).text = std::move(out);
    return i + 1;
  }

  std::string src_;
  size_t max_tokens_;
  std::vector<Token> tokens_;
  bool line_starting_ = true;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, size_t max_tokens) {
  if (!text::valid_utf8(source)) fail(ErrorCode::kInvalidArgument, "chat template is not valid UTF-8");
  return Lexer(normalize_newlines(source), max_tokens).run();
}

}  // namespace pagoda::jinja
