#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "tokenizer/jinja/runtime.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

namespace {

[[noreturn]] void too_deep() {
  type_error("values are nested more than {} levels deep", kMaxValueDepth);
}

int depth_of_items(const std::vector<Value>& items) {
  int d = 0;
  for (const Value& v : items)
    d = std::max(d, v.depth());
  return d + 1;
}

void check_limit(const std::string& out, size_t limit) {
  if (out.size() > limit) type_error("text exceeds the output limit of {} bytes", limit);
}

}  // namespace

Value Value::undefined(std::string hint) {
  return Value(std::in_place_type<UndefinedPtr>, std::make_shared<const UndefinedData>(UndefinedData{std::move(hint)}));
}

Value Value::string(std::string s) {
  return Value(std::in_place_type<StringPtr>, std::make_shared<const std::string>(std::move(s)));
}

Value Value::list(std::vector<Value> items) {
  auto d = std::make_shared<ListData>();
  d->depth = depth_of_items(items);
  if (d->depth > kMaxValueDepth) too_deep();
  d->items = std::move(items);
  return Value(std::in_place_type<ListPtr>, ListPtr(std::move(d)));
}

Value Value::tuple(std::vector<Value> items) {
  auto d = std::make_shared<ListData>();
  d->depth = depth_of_items(items);
  if (d->depth > kMaxValueDepth) too_deep();
  d->items = std::move(items);
  d->is_tuple = true;
  return Value(std::in_place_type<ListPtr>, ListPtr(std::move(d)));
}

Value Value::dict(std::shared_ptr<const DictData> d) {
  if (d->depth() > kMaxValueDepth) too_deep();
  return Value(std::in_place_type<DictPtr>, std::move(d));
}

Value Value::ns(std::shared_ptr<NamespaceData> n) {
  return Value(std::in_place_type<NamespacePtr>, std::move(n));
}

Value Value::callable(std::shared_ptr<const CallableData> c) {
  return Value(std::in_place_type<CallablePtr>, std::move(c));
}

Value Value::loop(std::shared_ptr<LoopData> l) {
  return Value(std::in_place_type<LoopPtr>, std::move(l));
}

Value::Kind Value::kind() const {
  switch (data_.index()) {
    case 0: return Kind::kUndefined;
    case 1: return Kind::kNone;
    case 2: return Kind::kBool;
    case 3: return Kind::kInt;
    case 4: return Kind::kFloat;
    case 5: return Kind::kString;
    case 6: return Kind::kList;
    case 7: return Kind::kDict;
    case 8: return Kind::kNamespace;
    case 9: return Kind::kCallable;
    default: return Kind::kLoop;
  }
}

bool Value::is_tuple() const {
  return is_list() && list_ptr()->is_tuple;
}

int64_t Value::as_int() const {
  if (is_bool()) return as_bool() ? 1 : 0;
  return std::get<int64_t>(data_);
}

double Value::as_double() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_int());
}

const std::vector<Value>& Value::as_list() const {
  return std::get<ListPtr>(data_)->items;
}

const std::string& Value::undefined_hint() const {
  static const std::string kEmpty;
  const auto& p = std::get<UndefinedPtr>(data_);
  return p ? p->hint : kEmpty;
}

int Value::depth() const {
  if (is_list()) return list_ptr()->depth;
  if (is_dict()) return as_dict().depth();
  return 0;
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return as_bool();
    case Kind::kInt: return as_int() != 0;
    case Kind::kFloat: return as_double() != 0.0;
    case Kind::kString: return !as_string().empty();
    case Kind::kList: return !as_list().empty();
    case Kind::kDict: return !as_dict().empty();
    default: return true;
  }
}

std::string_view Value::type_name() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return is_tuple() ? "tuple" : "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return as_callable().kind == CallableKind::kMacro ? "Macro" : "builtin_function_or_method";
    case Kind::kLoop: return "LoopContext";
  }
  return "object";
}

// ---- dict ----

std::string hash_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kNone: return "N";
    case Value::Kind::kUndefined: return "U";
    case Value::Kind::kBool:
    case Value::Kind::kInt: return "i" + std::to_string(key.as_int());
    case Value::Kind::kFloat: {
      double d = key.as_double();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
        return "i" + std::to_string(static_cast<int64_t>(d));
      }
      return "f" + format_float(d);
    }
    case Value::Kind::kString: text::add_work(key.as_string().size() / 32 + 1); return "s" + key.as_string();
    case Value::Kind::kList:
      if (key.is_tuple()) {
        std::string out = "t";
        for (const Value& v : key.as_list()) {
          std::string k = hash_key(v);
          out += std::to_string(k.size());
          out += ':';
          out += k;
        }
        return out;
      }
      break;
    default: break;
  }
  type_error("unhashable type: '{}'", key.type_name());
}

const Value* DictData::find(const Value& key) const {
  auto it = index_.find(hash_key(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Value* DictData::find(std::string_view key) const {
  std::string k = "s";
  k += key;
  auto it = index_.find(k);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void DictData::set(const Value& key, Value value) {
  depth_ = std::max({depth_, key.depth() + 1, value.depth() + 1});
  if (depth_ > kMaxValueDepth) too_deep();
  auto [it, inserted] = index_.emplace(hash_key(key), entries_.size());
  if (inserted) {
    entries_.emplace_back(key, std::move(value));
  } else {
    entries_[it->second].second = std::move(value);
  }
}

// ---- comparison ----

namespace {

bool number_equals(const Value& a, const Value& b) {
  if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
  if (a.is_float() && b.is_float()) return a.as_double() == b.as_double();
  const Value& f = a.is_float() ? a : b;
  const Value& i = a.is_float() ? b : a;
  double d = f.as_double();
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) >= 9.2e18) return false;
  return static_cast<int64_t>(d) == i.as_int();
}

int number_compare(const Value& a, const Value& b) {
  if (a.is_integral() && b.is_integral()) {
    int64_t x = a.as_int();
    int64_t y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (number_equals(a, b)) return 0;
  double x = a.as_double();
  double y = b.as_double();
  if (std::isnan(x) || std::isnan(y)) return 2;  // unordered: every comparison is false
  return x < y ? -1 : 1;
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return number_equals(a, b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString:
      if (&a.as_string() == &b.as_string()) return true;
      if (a.as_string().size() != b.as_string().size()) return false;
      text::add_work(a.as_string().size() / 32 + 1);
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple()) return false;
      if (a.list_ptr() == b.list_ptr()) return true;
      text::add_work(a.as_list().size());
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const DictData& x = a.as_dict();
      const DictData& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.entries()) {
        const Value* other = y.find(k);
        if (other == nullptr || !equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return a.namespace_ptr() == b.namespace_ptr();
    case Value::Kind::kCallable: return a.callable_ptr() == b.callable_ptr();
    case Value::Kind::kLoop: return &a.as_loop() == &b.as_loop();
    default: return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    type_error("{}", u.undefined_hint().empty() ? "value is undefined" : u.undefined_hint());
  }
  if (a.is_number() && b.is_number()) return number_compare(a, b);
  if (a.is_string() && b.is_string()) {
    if (&a.as_string() == &b.as_string()) return 0;
    text::add_work(std::min(a.as_string().size(), b.as_string().size()) / 32 + 1);
    int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.as_list();
    const auto& y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  type_error("'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name());
}

// ---- printing ----

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci looks like "-1.2345e+05": split sign, digits and exponent.
  bool neg = !sci.empty() && sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exp - 1), '0');
      out += digits;
    } else {
      auto int_len = static_cast<size_t>(exp + 1);
      if (digits.size() <= int_len) {
        out += digits;
        out.append(int_len - digits.size(), '0');
        out += ".0";
      } else {
        out += digits.substr(0, int_len);
        out += '.';
        out += digits.substr(int_len);
      }
    }
  } else {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += exp < 0 ? '-' : '+';
    int ae = exp < 0 ? -exp : exp;
    if (ae < 10) out += '0';
    out += std::to_string(ae);
  }
  return out;
}

void append_string_repr(std::string& out, std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  out += quote;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    char32_t c = text::next_code_point(s, pos);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (text::is_printable(c)) {
      out.append(s.substr(start, pos - start));
    } else if (c < 0x100) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
    } else if (c < 0x10000) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += fmt::format("\\U{:08x}", static_cast<unsigned>(c));
    }
  }
  out += quote;
}

namespace {

void append_value(std::string& out, const Value& v, size_t limit, bool repr);

void append_dict_body(std::string& out, const DictData& d, size_t limit) {
  out += '{';
  bool first = true;
  for (const auto& [k, val] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    append_value(out, k, limit, true);
    out += ": ";
    append_value(out, val, limit, true);
    check_limit(out, limit);
  }
  out += '}';
}

void append_value(std::string& out, const Value& v, size_t limit, bool repr) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      if (repr) out += "Undefined";
      break;
    case Value::Kind::kNone: out += "None"; break;
    case Value::Kind::kBool: out += v.as_bool() ? "True" : "False"; break;
    case Value::Kind::kInt: out += std::to_string(v.as_int()); break;
    case Value::Kind::kFloat: out += format_float(v.as_double()); break;
    case Value::Kind::kString:
      if (repr) {
        append_string_repr(out, v.as_string());
      } else {
        out += v.as_string();
      }
      break;
    case Value::Kind::kList: {
      bool tuple = v.is_tuple();
      const auto& items = v.as_list();
      out += tuple ? '(' : '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        append_value(out, items[i], limit, true);
        check_limit(out, limit);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      break;
    }
    case Value::Kind::kDict: append_dict_body(out, v.as_dict(), limit); break;
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      append_dict_body(out, v.as_namespace().attrs, limit);
      out += '>';
      break;
    case Value::Kind::kCallable: {
      const CallableData& c = v.as_callable();
      if (c.kind == CallableKind::kMacro) {
        out += "<Macro ";
        append_string_repr(out, c.name);
        out += '>';
      } else {
        out += "<built-in function " + c.name + ">";
      }
      break;
    }
    case Value::Kind::kLoop: {
      const LoopData& l = v.as_loop();
      out += fmt::format("<LoopContext {}/{}>", l.index0 + 1, l.items.size());
      break;
    }
  }
  check_limit(out, limit);
}

}  // namespace

void append_str(std::string& out, const Value& v, size_t limit) {
  append_value(out, v, limit, false);
}
void append_repr(std::string& out, const Value& v, size_t limit) {
  append_value(out, v, limit, true);
}

std::string to_str(const Value& v, size_t limit) {
  if (v.is_string()) {
    if (v.as_string().size() > limit) type_error("text exceeds the output limit of {} bytes", limit);
    return v.as_string();
  }
  std::string out;
  append_value(out, v, limit, false);
  return out;
}

std::string to_repr(const Value& v, size_t limit) {
  std::string out;
  append_value(out, v, limit, true);
  return out;
}

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(text::length(v.as_string()));
    case Value::Kind::kList: return static_cast<int64_t>(v.as_list().size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.as_dict().size());
    case Value::Kind::kLoop: return static_cast<int64_t>(v.as_loop().items.size());
    default: type_error("object of type '{}' has no len()", v.type_name());
  }
}

std::vector<Value> iterate(const Value& v, size_t max_items) {
  std::vector<Value> out;
  auto check = [&](size_t n) {
    if (n > max_items) type_error("iterable has more than {} items", max_items);
  };
  switch (v.kind()) {
    case Value::Kind::kUndefined: return out;
    case Value::Kind::kList: check(v.as_list().size()); return v.as_list();
    case Value::Kind::kDict:
      check(v.as_dict().size());
      out.reserve(v.as_dict().size());
      for (const auto& [k, val] : v.as_dict().entries())
        out.push_back(k);
      return out;
    case Value::Kind::kString: {
      const std::string& s = v.as_string();
      size_t pos = 0;
      while (pos < s.size()) {
        size_t start = pos;
        (void)text::next_code_point(s, pos);
        out.push_back(Value::string(s.substr(start, pos - start)));
        check(out.size());
      }
      return out;
    }
    default: type_error("'{}' object is not iterable", v.type_name());
  }
}

void check_storable_in_namespace(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNamespace:
    case Value::Kind::kCallable:
    case Value::Kind::kLoop: type_error("a namespace attribute cannot hold a {} (only data)", v.type_name());
    case Value::Kind::kList:
      for (const Value& x : v.as_list())
        check_storable_in_namespace(x);
      break;
    case Value::Kind::kDict:
      for (const auto& [k, x] : v.as_dict().entries())
        check_storable_in_namespace(x);
      break;
    default: break;
  }
}

}  // namespace pagoda::jinja
