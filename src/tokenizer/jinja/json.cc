// json.dumps as transformers' tojson filter calls it: Python's separators, indentation, key
// conversion, float repr, and ensure_ascii escaping.

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

namespace {

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    char32_t c = text::next_code_point(s, pos);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
      }
    } else {
      out.append(s.substr(start, pos - start));
    }
  }
  out += '"';
}

std::string float_json(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return format_float(d);
}

class JsonWriter {
 public:
  JsonWriter(const JsonOptions& o, size_t limit) : o_(o), limit_(limit) {}

  void write(const Value& v, int level) {
    if (out_.size() > limit_) type_error("tojson output exceeds the limit of {} bytes", limit_);
    switch (v.kind()) {
      case Value::Kind::kNone: out_ += "null"; return;
      case Value::Kind::kBool: out_ += v.as_bool() ? "true" : "false"; return;
      case Value::Kind::kInt: out_ += std::to_string(v.as_int()); return;
      case Value::Kind::kFloat: out_ += float_json(v.as_double()); return;
      case Value::Kind::kString: append_json_string(out_, v.as_string(), o_.ensure_ascii); return;
      case Value::Kind::kList: {
        const auto& items = v.as_list();
        if (items.empty()) {
          out_ += "[]";
          return;
        }
        out_ += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i > 0) out_ += o_.item_separator;
          newline(level + 1);
          write(items[i], level + 1);
        }
        newline(level);
        out_ += ']';
        return;
      }
      case Value::Kind::kDict: {
        std::vector<std::pair<std::string, const Value*>> entries;
        std::vector<std::pair<Value, const Value*>> raw;
        for (const auto& [k, x] : v.as_dict().entries())
          raw.emplace_back(k, &x);
        if (o_.sort_keys) {
          std::stable_sort(raw.begin(), raw.end(),
                           [](const auto& a, const auto& b) { return compare(a.first, b.first) == -1; });
        }
        for (const auto& [k, x] : raw)
          entries.emplace_back(key_string(k), x);
        if (entries.empty()) {
          out_ += "{}";
          return;
        }
        out_ += '{';
        for (size_t i = 0; i < entries.size(); ++i) {
          if (i > 0) out_ += o_.item_separator;
          newline(level + 1);
          append_json_string(out_, entries[i].first, o_.ensure_ascii);
          out_ += o_.key_separator;
          write(*entries[i].second, level + 1);
        }
        newline(level);
        out_ += '}';
        return;
      }
      default: type_error("Object of type {} is not JSON serializable", v.type_name());
    }
  }

  std::string take() { return std::move(out_); }

 private:
  static std::string key_string(const Value& k) {
    switch (k.kind()) {
      case Value::Kind::kString: return k.as_string();
      case Value::Kind::kNone: return "null";
      case Value::Kind::kBool: return k.as_bool() ? "true" : "false";
      case Value::Kind::kInt: return std::to_string(k.as_int());
      case Value::Kind::kFloat: return float_json(k.as_double());
      default: type_error("keys must be str, int, float, bool or None, not {}", k.type_name());
    }
  }

  void newline(int level) {
    if (!o_.indent) return;
    out_ += '\n';
    for (int i = 0; i < level; ++i) {
      out_ += *o_.indent;
      if (out_.size() > limit_) type_error("tojson output exceeds the limit of {} bytes", limit_);
    }
  }

  const JsonOptions& o_;
  size_t limit_;
  std::string out_;
};

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options, size_t limit) {
  JsonWriter w(options, limit);
  w.write(v, 0);
  std::string out = w.take();
  if (out.size() > limit) type_error("tojson output exceeds the limit of {} bytes", limit);
  return out;
}

}  // namespace pagoda::jinja
