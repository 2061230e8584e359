#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include <mutex>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Rewrites \s / \S so that they also cover U+0085 as Oniguruma's do. Inside a character class \s
// gains \x{85}; \S inside a class is left alone (no tokenizer we know uses it).
std::string rewrite_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else if (n == 'Q') {  // \Q...\E quotes everything up to \E: copy verbatim
        const size_t e = p.find("\\E", i + 2);
        const size_t stop = e == std::string_view::npos ? p.size() : e + 2;
        out.append(p.substr(i, stop - i));
        i = stop - 1;
        continue;
      } else {
        out.push_back(c);
        out.push_back(n);
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
      const size_t e = p.find(":]", i + 2);
      if (e != std::string_view::npos) {
        out.append(p.substr(i, e + 2 - i));
        i = e + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_context* mctx = nullptr;
  bool jit = false;
  ~Impl() {
    if (mctx != nullptr) pcre2_match_context_free(mctx);
    if (code != nullptr) pcre2_code_free(code);
  }
};

// Match data is per thread and grown on demand so matching never allocates in the steady state.
namespace {
struct MatchData {
  pcre2_match_data* data = nullptr;
  ~MatchData() {
    if (data != nullptr) pcre2_match_data_free(data);
  }
  pcre2_match_data* get() {
    if (data == nullptr) data = pcre2_match_data_create(1, nullptr);
    return data;
  }
};
thread_local MatchData tls_match_data;

// A JIT stack may serve one match at a time, and a Regex is shared by every thread that encodes,
// so each thread gets its own stack; PCRE2 asks for it through this callback at each match.
struct JitStack {
  pcre2_jit_stack* stack = nullptr;
  ~JitStack() {
    if (stack != nullptr) pcre2_jit_stack_free(stack);
  }
};
thread_local JitStack tls_jit_stack;

pcre2_jit_stack* thread_jit_stack(void*) {
  if (tls_jit_stack.stack == nullptr) tls_jit_stack.stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
  return tls_jit_stack.stack;  // null: PCRE2 falls back to its small machine stack
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return "unknown error";
  return reinterpret_cast<const char*>(buf);
}
}  // namespace

Regex::Regex(std::string_view pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  if (pattern.size() > kMaxPatternBytes) {
    fail(ErrorCode::kInvalidArgument, "regex of {} bytes exceeds the {} byte cap", pattern.size(), kMaxPatternBytes);
  }
  if (!is_valid_utf8(pattern)) fail(ErrorCode::kInvalidArgument, "regex is not valid UTF-8");
  const std::string rewritten = rewrite_pattern(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
  if (impl_->code == nullptr) {
    fail(ErrorCode::kInvalidArgument, "regex '{}' does not compile: {} at offset {}", pattern.substr(0, 200),
         pcre2_message(err), err_off);
  }
  impl_->mctx = pcre2_match_context_create(nullptr);
  if (impl_->mctx == nullptr) fail(ErrorCode::kOutOfMemory, "regex: cannot allocate a match context");
  pcre2_set_match_limit(impl_->mctx, kMatchLimit);
  pcre2_set_depth_limit(impl_->mctx, kDepthLimit);
  pcre2_set_heap_limit(impl_->mctx, 64 * 1024);  // KiB
  if (pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0) {
    pcre2_jit_stack_assign(impl_->mctx, thread_jit_stack, nullptr);
    impl_->jit = true;
  }
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view subject, std::vector<Match>& out) const {
  pcre2_match_data* md = tls_match_data.get();
  if (md == nullptr) fail(ErrorCode::kOutOfMemory, "regex: cannot allocate match data");
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos <= subject.size()) {
    const int rc = pcre2_match(impl_->code, s, subject.size(), pos, PCRE2_NO_UTF_CHECK, md, impl_->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      fail(ErrorCode::kInvalidArgument, "regex '{}' failed on input: {}", pattern_.substr(0, 200), pcre2_message(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0];
    const size_t e = ov[1];
    if (e < b || e > subject.size()) break;  // \K can produce these; treat as no further match
    out.push_back({b, e});
    if (e == b) {
      if (e >= subject.size()) break;
      pos = e + char_length(static_cast<unsigned char>(subject[e]));
    } else {
      pos = e;
    }
  }
}

bool Regex::search(std::string_view subject) const {
  pcre2_match_data* md = tls_match_data.get();
  if (md == nullptr) fail(ErrorCode::kOutOfMemory, "regex: cannot allocate match data");
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                             PCRE2_NO_UTF_CHECK, md, impl_->mctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    fail(ErrorCode::kInvalidArgument, "regex '{}' failed on input: {}", pattern_.substr(0, 200), pcre2_message(rc));
  }
  return true;
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size() + 8);
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace pagoda::tokenizer
