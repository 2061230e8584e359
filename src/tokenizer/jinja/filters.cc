// jinja2's builtin filters and tests, with the semantics of its Python implementation.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

std::vector<std::optional<Value>> bind_args(const Args& args, std::initializer_list<std::string_view> params,
                                            std::string_view function) {
  std::vector<std::optional<Value>> out(params.size());
  if (args.positional.size() > params.size()) {
    type_error("{}() takes at most {} argument(s) ({} given)", function, params.size(), args.positional.size());
  }
  for (size_t i = 0; i < args.positional.size(); ++i)
    out[i] = args.positional[i];
  for (const auto& [key, value] : args.keywords) {
    size_t idx = 0;
    for (std::string_view p : params) {
      if (p == key) break;
      ++idx;
    }
    if (idx == params.size()) type_error("{}() got an unexpected keyword argument '{}'", function, key);
    if (out[idx]) type_error("{}() got multiple values for argument '{}'", function, key);
    out[idx] = value;
  }
  return out;
}

namespace {

using FilterFn = Value (*)(Interpreter&, const Value&, const Args&);
using TestFn = bool (*)(Interpreter&, const Value&, const Args&);

[[noreturn]] void undefined_error(const Value& v) {
  type_error("{}", v.undefined_hint().empty() ? std::string("value is undefined") : v.undefined_hint());
}

int64_t int_arg(const std::optional<Value>& v, int64_t dflt, std::string_view what) {
  if (!v) return dflt;
  if (!v->is_integral()) type_error("'{}' must be an integer, not {}", what, v->type_name());
  return v->as_int();
}

bool bool_arg(const std::optional<Value>& v, bool dflt) {
  return v ? v->truthy() : dflt;
}

std::string str_arg(Interpreter& in, const std::optional<Value>& v, std::string_view dflt) {
  return v ? in.str(*v) : std::string(dflt);
}

// Python's str(value) for filters that coerce their input ("soft_str").
std::string soft_str(Interpreter& in, const Value& v) {
  return in.str(v);
}

Value lower_if_string(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(text::lower(v.as_string()));
  return v;
}

// jinja2's attribute paths: "a.b.0" visits item "a", then "b", then index 0.
std::vector<Value> attribute_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_none()) return parts;
  if (!attribute.is_string()) {
    parts.push_back(attribute);
    return parts;
  }
  const std::string& s = attribute.as_string();
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string part = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && part.size() < 18) {
      parts.push_back(Value::integer(std::stoll(part)));
    } else {
      parts.push_back(Value::string(part));
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

Value follow_parts(Interpreter& in, Value item, const std::vector<Value>& parts) {
  in.charge(1);  // every per-item loop of a filter comes through here
  for (const Value& p : parts)
    item = in.getitem(item, p);
  return item;
}

// The sort key of jinja2's make_multi_attrgetter: one entry per comma-separated attribute.
std::vector<std::vector<Value>> multi_attribute_parts(const std::optional<Value>& attribute) {
  std::vector<std::vector<Value>> out;
  if (attribute && attribute->is_string()) {
    const std::string& s = attribute->as_string();
    size_t start = 0;
    while (true) {
      size_t comma = s.find(',', start);
      out.push_back(
          attribute_parts(Value::string(s.substr(start, comma == std::string::npos ? comma : comma - start))));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    out.push_back(attribute ? attribute_parts(*attribute) : std::vector<Value>{});
  }
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Python's float(str): optional whitespace, sign, digits with single underscores between them,
// or inf/infinity/nan.
std::optional<double> parse_python_float(std::string_view raw) {
  std::string s = text::strip(raw, true, true, nullptr);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      bool ok = i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
                std::isdigit(static_cast<unsigned char>(s[i + 1]));
      if (!ok) return std::nullopt;
      continue;
    }
    clean.push_back(s[i]);
  }
  if (clean.empty()) return std::nullopt;
  std::string low = text::lower(clean);
  std::string_view body = low;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") return neg ? -HUGE_VAL : HUGE_VAL;
  if (body == "nan") return std::nan("");
  for (char c : body) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-'))
      return std::nullopt;
  }
  if (body.empty() || body[0] == '+' || body[0] == '-') return std::nullopt;
  double d = 0;
  auto res = std::from_chars(body.data(), body.data() + body.size(), d);
  if (res.ptr != body.data() + body.size()) return std::nullopt;
  if (res.ec == std::errc::result_out_of_range) {
    d = body.find("e-") != std::string_view::npos ? 0.0 : HUGE_VAL;
  } else if (res.ec != std::errc()) {
    return std::nullopt;
  }
  return neg ? -d : d;
}

// Python's int(str, base) for bases 2..36 (and 0: from the prefix).
std::optional<int64_t> parse_python_int(std::string_view raw, int64_t base) {
  std::string s = text::strip(raw, true, true, nullptr);
  std::string_view body = s;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  auto prefix_base = [&](std::string_view b) -> int64_t {
    if (b.size() >= 2 && b[0] == '0') {
      char k = static_cast<char>(std::tolower(b[1]));
      if (k == 'x') return 16;
      if (k == 'o') return 8;
      if (k == 'b') return 2;
    }
    return 0;
  };
  int64_t pb = prefix_base(body);
  if (base == 0) {
    base = pb != 0 ? pb : 10;
    if (pb == 0 && body.size() > 1 && body[0] == '0') {
      if (body.find_first_not_of("0_") != std::string_view::npos) return std::nullopt;
    }
  }
  if (base < 2 || base > 36) type_error("int() base must be >= 2 and <= 36, or 0");
  if (pb != 0 && pb == base) {
    body.remove_prefix(2);
    if (!body.empty() && body[0] == '_') body.remove_prefix(1);
  }
  if (body.empty()) return std::nullopt;
  std::string digits;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '_') {
      if (i == 0 || i + 1 >= body.size() || body[i + 1] == '_') return std::nullopt;
      continue;
    }
    digits.push_back(body[i]);
  }
  uint64_t v = 0;
  auto res = std::from_chars(digits.data(), digits.data() + digits.size(), v, static_cast<int>(base));
  if (res.ptr != digits.data() + digits.size()) return std::nullopt;
  if (res.ec != std::errc() || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    type_error("integer overflow (pagoda's integers are 64-bit)");
  }
  return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

std::optional<int64_t> float_to_int(double d) {
  if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return std::nullopt;
  return static_cast<int64_t>(std::trunc(d));
}

// Python's round(x, ndigits) for floats: correctly rounded, ties to even.
double python_round(double x, int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits > 330) return x;
  if (ndigits >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(ndigits), x);
    return std::strtod(buf, nullptr);
  }
  if (ndigits < -330) return 0.0 * x;
  double pow10 = std::pow(10.0, static_cast<double>(-ndigits));
  double y = x / pow10;
  double z = std::round(y);
  if (std::fabs(y - z) == 0.5) z = 2.0 * std::round(y / 2.0);
  return z * pow10;
}

// ---- filters ----

Value f_abs(Interpreter&, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "abs");
  if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
  if (v.is_integral()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) type_error("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  type_error("bad operand type for abs(): '{}'", v.type_name());
}

Value f_attr(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"name"}, "attr");
  if (!p[0] || !p[0]->is_string()) type_error("attr() needs an attribute name");
  if (v.is_undefined()) undefined_error(v);
  const std::string& name = p[0]->as_string();
  // Only real attributes: methods, namespace attributes, loop fields; never dict items.
  if (v.is_dict() && !has_method(v, name))
    return Value::undefined(fmt::format("'dict object' has no attribute '{}'", name));
  return in.getattr(v, name);
}

Value f_batch(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"linecount", "fill_with"}, "batch");
  int64_t n = int_arg(p[0], 0, "linecount");
  if (!p[0]) type_error("batch() missing required argument 'linecount'");
  if (n <= 0) type_error("batch() needs a positive linecount");
  std::vector<Value> out;
  std::vector<Value> tmp;
  for (Value& item : in.items_of(v)) {
    if (static_cast<int64_t>(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(std::move(item));
  }
  if (!tmp.empty()) {
    if (p[1] && !p[1]->is_none()) {
      while (static_cast<int64_t>(tmp.size()) < n)
        tmp.push_back(*p[1]);
    }
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

std::string capitalize(std::string_view s) {
  std::vector<char32_t> cps = text::decode(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (i == 0) {
      if (cps[0] == 0xDF) {
        out += "Ss";
      } else {
        text::append_utf8(out, text::to_upper(cps[0]));
      }
    } else {
      text::append_utf8(out, text::to_lower(cps[i]));
    }
  }
  return out;
}

Value f_capitalize(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "capitalize");
  return in.make_string(capitalize(soft_str(in, v)));
}

std::string pad_center(std::string_view s, int64_t width, char32_t fill) {
  auto len = static_cast<int64_t>(text::length(s));
  if (width <= len) return std::string(s);
  int64_t marg = width - len;
  int64_t left = marg / 2 + (marg & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i)
    text::append_utf8(out, fill);
  out += s;
  for (int64_t i = 0; i < marg - left; ++i)
    text::append_utf8(out, fill);
  return out;
}

Value f_center(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"width"}, "center");
  int64_t width = int_arg(p[0], 80, "width");
  if (width > static_cast<int64_t>(in.max_string())) type_error("center() width is too large");
  return in.make_string(pad_center(soft_str(in, v), width, ' '));
}

Value f_length(Interpreter&, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "length");
  return Value::integer(length_of(v));
}

Value f_default(Interpreter&, const Value& v, const Args& a) {
  auto p = bind_args(a, {"default_value", "boolean"}, "default");
  if (v.is_undefined() || (bool_arg(p[1], false) && !v.truthy())) return p[0] ? *p[0] : Value::string("");
  return v;
}

std::vector<std::pair<Value, Value>> dict_items(const Value& v) {
  if (!v.is_dict()) {
    if (v.is_undefined()) undefined_error(v);
    type_error("'{}' object has no attribute 'items'", v.type_name());
  }
  return v.as_dict().entries();
}

Value f_dictsort(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"case_sensitive", "by", "reverse"}, "dictsort");
  bool cs = bool_arg(p[0], false);
  std::string by = p[1] ? in.str(*p[1]) : "key";
  if (by != "key" && by != "value") type_error("you can only sort by either \"key\" or \"value\"");
  size_t pos = by == "key" ? 0 : 1;
  bool reverse = bool_arg(p[2], false);
  auto items = dict_items(v);
  in.charge(items.size());
  std::vector<Value> keys;
  for (const auto& kv : items) {
    in.charge(1);
    keys.push_back(lower_if_string(pos == 0 ? kv.first : kv.second, cs));
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return reverse ? compare(keys[y], keys[x]) == -1 : compare(keys[x], keys[y]) == -1;
  });
  std::vector<Value> out;
  for (size_t i : order)
    out.push_back(Value::tuple({items[i].first, items[i].second}));
  return Value::list(std::move(out));
}

Value f_escape(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "escape");
  return in.make_string(html_escape(soft_str(in, v)));
}

Value f_first(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "first");
  if (v.is_list()) return v.as_list().empty() ? Value::undefined("No first item, sequence was empty.") : v.as_list()[0];
  std::vector<Value> items = in.items_of(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "last");
  if (v.is_list())
    return v.as_list().empty() ? Value::undefined("No last item, sequence was empty.") : v.as_list().back();
  std::vector<Value> items = in.items_of(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_float(Interpreter&, const Value& v, const Args& a) {
  auto p = bind_args(a, {"default"}, "float");
  Value dflt = p[0] ? *p[0] : Value::floating(0.0);
  if (v.is_undefined()) undefined_error(v);
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) {
    if (auto d = parse_python_float(v.as_string())) return Value::floating(*d);
  }
  return dflt;
}

Value f_int(Interpreter&, const Value& v, const Args& a) {
  auto p = bind_args(a, {"default", "base"}, "int");
  Value dflt = p[0] ? *p[0] : Value::integer(0);
  int64_t base = int_arg(p[1], 10, "base");
  if (v.is_undefined()) undefined_error(v);
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.is_float()) {
    if (auto i = float_to_int(v.as_double())) return Value::integer(*i);
    return dflt;
  }
  if (v.is_string()) {
    if (auto i = parse_python_int(v.as_string(), base)) return Value::integer(*i);
    if (auto d = parse_python_float(v.as_string())) {
      if (auto i = float_to_int(*d)) return Value::integer(*i);
    }
  }
  return dflt;
}

Value f_format(Interpreter& in, const Value& v, const Args& a) {
  if (!a.positional.empty() && !a.keywords.empty()) {
    type_error("can't handle positional and keyword arguments at the same time");
  }
  Value args;
  if (!a.keywords.empty()) {
    auto d = std::make_shared<DictData>();
    for (const auto& [k, x] : a.keywords)
      d->set(Value::string(k), x);
    args = Value::dict(std::move(d));
  } else {
    args = Value::tuple(a.positional);
  }
  return in.make_string(percent_format(in, soft_str(in, v), args));
}

Value f_indent(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"width", "first", "blank"}, "indent");
  std::string indention;
  if (p[0] && p[0]->is_string()) {
    indention = p[0]->as_string();
  } else {
    int64_t w = int_arg(p[0], 4, "width");
    if (w > 4096) type_error("indent() width is too large");
    indention.assign(static_cast<size_t>(std::max<int64_t>(w, 0)), ' ');
  }
  if (!v.is_string()) {
    if (v.is_undefined()) undefined_error(v);
    type_error("unsupported operand type(s) for +=: '{}' and 'str'", v.type_name());
  }
  std::string s = v.as_string() + "\n";
  std::vector<std::string> lines = text::splitlines(s);
  std::string rv;
  if (bool_arg(p[2], false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) rv += "\n" + indention;
      rv += lines[i];
      if (rv.size() > in.max_string()) type_error("indent() result is too large");
    }
  } else {
    if (!lines.empty()) rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
      if (rv.size() > in.max_string()) type_error("indent() result is too large");
    }
  }
  if (bool_arg(p[1], false)) rv = indention + rv;
  return in.make_string(std::move(rv));
}

Value f_items(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "items");
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  in.charge(v.as_dict().size());
  std::vector<Value> out;
  for (const auto& [k, x] : v.as_dict().entries())
    out.push_back(Value::tuple({k, x}));
  return Value::list(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"d", "attribute"}, "join");
  std::string sep = str_arg(in, p[0], "");
  std::vector<Value> parts = p[1] ? attribute_parts(*p[1]) : std::vector<Value>{};
  std::string out;
  bool first = true;
  for (const Value& item : in.items_of(v)) {
    if (!first) out += sep;
    first = false;
    append_str(out, p[1] ? follow_parts(in, item, parts) : item, in.max_string());
  }
  return in.make_string(std::move(out));
}

Value f_list(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "list");
  return Value::list(in.items_of(v));
}

Value f_lower(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "lower");
  return in.make_string(text::lower(soft_str(in, v)));
}

Value f_upper(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "upper");
  return in.make_string(text::upper(soft_str(in, v)));
}

Value f_map(Interpreter& in, const Value& v, const Args& a) {
  std::vector<Value> items = in.items_of(v);
  std::vector<Value> out;
  out.reserve(items.size());
  bool by_attribute = a.positional.empty() && std::any_of(a.keywords.begin(), a.keywords.end(),
                                                          [](const auto& kv) { return kv.first == "attribute"; });
  if (by_attribute) {
    auto p = bind_args(a, {"attribute", "default"}, "map");
    std::vector<Value> parts = attribute_parts(*p[0]);
    for (const Value& item : items) {
      Value x = item;
      for (const Value& part : parts) {
        x = in.getitem(x, part);
        if (p[1] && !p[1]->is_none() && x.is_undefined()) x = *p[1];
      }
      out.push_back(std::move(x));
    }
    return Value::list(std::move(out));
  }
  if (a.positional.empty()) type_error("map requires a filter argument");
  const Value& name = a.positional[0];
  if (!name.is_string() || !has_filter(name.as_string())) {
    type_error("no filter named {}", to_repr(name, 256));
  }
  Args rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keywords = a.keywords;
  for (const Value& item : items) {
    in.charge(1);
    out.push_back(apply_filter(in, name.as_string(), item, rest));
  }
  return Value::list(std::move(out));
}

Value min_max(Interpreter& in, const Value& v, const Args& a, bool want_max, std::string_view fname) {
  auto p = bind_args(a, {"case_sensitive", "attribute"}, fname);
  bool cs = bool_arg(p[0], false);
  std::vector<Value> parts = p[1] ? attribute_parts(*p[1]) : std::vector<Value>{};
  std::vector<Value> items = in.items_of(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = lower_if_string(follow_parts(in, items[0], parts), cs);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = lower_if_string(follow_parts(in, items[i], parts), cs);
    if (compare(key, best_key) == (want_max ? 1 : -1)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value f_max(Interpreter& in, const Value& v, const Args& a) {
  return min_max(in, v, a, true, "max");
}
Value f_min(Interpreter& in, const Value& v, const Args& a) {
  return min_max(in, v, a, false, "min");
}

Value select_or_reject(Interpreter& in, const Value& v, const Args& a, bool select, bool by_attr) {
  if (!v.truthy()) return Value::list({});
  size_t off = 0;
  std::vector<Value> parts;
  if (by_attr) {
    if (a.positional.empty()) type_error("Missing parameter for attribute name");
    parts = attribute_parts(a.positional[0]);
    off = 1;
  }
  std::optional<std::string> test;
  Args rest;
  if (a.positional.size() > off) {
    if (!a.positional[off].is_string()) type_error("test name must be a string");
    test = a.positional[off].as_string();
    if (!has_test(*test)) type_error("no test named '{}'", *test);
    rest.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(off) + 1, a.positional.end());
    rest.keywords = a.keywords;
  }
  std::vector<Value> out;
  for (const Value& item : in.items_of(v)) {
    in.charge(1);
    Value x = by_attr ? follow_parts(in, item, parts) : item;
    bool r = test ? apply_test(in, *test, x, rest) : x.truthy();
    if (r == select) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, const Args& a) {
  return select_or_reject(in, v, a, true, false);
}
Value f_reject(Interpreter& in, const Value& v, const Args& a) {
  return select_or_reject(in, v, a, false, false);
}
Value f_selectattr(Interpreter& in, const Value& v, const Args& a) {
  return select_or_reject(in, v, a, true, true);
}
Value f_rejectattr(Interpreter& in, const Value& v, const Args& a) {
  return select_or_reject(in, v, a, false, true);
}

std::string str_replace(Interpreter& in, const std::string& s, const std::string& old, const std::string& repl,
                        int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement before every character and at the end.
    std::vector<char32_t> cps = text::decode(s);
    int64_t done = 0;
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      text::append_utf8(out, c);
      if (out.size() > in.max_string()) type_error("replace() result is too large");
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = text::find(s, old, pos);
    if (hit == std::string_view::npos) break;
    out.append(s, pos, hit - pos);
    out += repl;
    if (out.size() > in.max_string()) type_error("replace() result is too large");
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Value f_replace(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"old", "new", "count"}, "replace");
  if (!p[0] || !p[1]) type_error("replace() missing required arguments");
  int64_t count = (p[2] && !p[2]->is_none()) ? int_arg(p[2], -1, "count") : -1;
  return in.make_string(str_replace(in, soft_str(in, v), in.str(*p[0]), in.str(*p[1]), count));
}

Value f_reverse(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "reverse");
  if (v.is_string()) {
    std::vector<char32_t> cps = text::decode(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value::string(text::encode(cps));
  }
  std::vector<Value> items = in.items_of(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_round(Interpreter&, const Value& v, const Args& a) {
  auto p = bind_args(a, {"precision", "method"}, "round");
  int64_t precision = int_arg(p[0], 0, "precision");
  std::string method = p[1] ? (p[1]->is_string() ? p[1]->as_string() : "?") : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    type_error("method must be common, ceil or floor");
  }
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_number()) type_error("type {} doesn't define __round__ method", v.type_name());
  if (method == "common") {
    if (v.is_integral()) {
      if (precision >= 0) return Value::integer(v.as_int());
      double r = python_round(static_cast<double>(v.as_int()), precision);
      return Value::integer(static_cast<int64_t>(r));
    }
    return Value::floating(python_round(v.as_double(), precision));
  }
  if (precision > 308 || precision < -308) type_error("round() precision is out of range");
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_double() * scale;
  x = method == "ceil" ? std::ceil(x) : std::floor(x);
  if (!std::isfinite(x)) type_error("cannot convert float infinity to integer");
  return Value::floating(x / scale);
}

Value f_safe(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "safe");
  return v.is_string() ? v : in.make_string(soft_str(in, v));
}

Value f_sort(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"reverse", "case_sensitive", "attribute"}, "sort");
  bool reverse = bool_arg(p[0], false);
  bool cs = bool_arg(p[1], false);
  auto attrs = multi_attribute_parts(p[2]);
  std::vector<Value> items = in.items_of(v);
  std::vector<Value> keys;
  keys.reserve(items.size());
  for (const Value& item : items) {
    std::vector<Value> key;
    for (const auto& parts : attrs)
      key.push_back(lower_if_string(follow_parts(in, item, parts), cs));
    keys.push_back(Value::list(std::move(key)));
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    in.charge(1);
    return reverse ? compare(keys[y], keys[x]) == -1 : compare(keys[x], keys[y]) == -1;
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (size_t i : order)
    out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value f_string(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "string");
  return v.is_string() ? v : in.make_string(soft_str(in, v));
}

Value f_sum(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"attribute", "start"}, "sum");
  std::vector<Value> parts = p[0] ? attribute_parts(*p[0]) : std::vector<Value>{};
  Value total = p[1] ? *p[1] : Value::integer(0);
  for (const Value& item : in.items_of(v)) {
    total = binary_op(BinaryOp::kAdd, total, p[0] ? follow_parts(in, item, parts) : item, in);
  }
  return total;
}

Value f_title(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "title");
  // jinja2 splits on runs of '-', whitespace and opening brackets and capitalises each piece.
  std::vector<char32_t> cps = text::decode(soft_str(in, v));
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || text::is_space(c);
  };
  std::string out;
  bool at_start = true;
  for (char32_t c : cps) {
    if (is_sep(c)) {
      text::append_utf8(out, c);
      at_start = true;
    } else if (at_start) {
      if (c == 0xDF) {
        out += "SS";
      } else {
        text::append_utf8(out, text::to_upper(c));
      }
      at_start = false;
    } else {
      text::append_utf8(out, text::to_lower(c));
    }
  }
  return in.make_string(std::move(out));
}

Value f_tojson(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonOptions o;
  o.ensure_ascii = bool_arg(p[0], false);
  if (p[1] && !p[1]->is_none()) {
    if (p[1]->is_string()) {
      o.indent = p[1]->as_string();
    } else if (p[1]->is_integral()) {
      int64_t n = p[1]->as_int();
      if (n > 4096) type_error("tojson() indent is too large");
      o.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    } else {
      type_error("tojson() indent must be an int or a str");
    }
    o.item_separator = ",";
  }
  if (p[2] && !p[2]->is_none()) {
    const Value& s = *p[2];
    if (!s.is_list() || s.as_list().size() != 2 || !s.as_list()[0].is_string() || !s.as_list()[1].is_string()) {
      type_error("tojson() separators must be a pair of strings");
    }
    o.item_separator = s.as_list()[0].as_string();
    o.key_separator = s.as_list()[1].as_string();
  }
  o.sort_keys = bool_arg(p[3], false);
  return in.make_string(to_json(v, o, in.max_string()));
}

Value f_trim(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"chars"}, "trim");
  std::optional<std::string> chars;
  if (p[0] && !p[0]->is_none()) {
    if (!p[0]->is_string()) type_error("strip arg must be None or str");
    chars = p[0]->as_string();
  }
  return in.make_string(text::strip(soft_str(in, v), true, true, chars ? &*chars : nullptr));
}

Value f_truncate(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"length", "killwords", "end", "leeway"}, "truncate");
  int64_t length = int_arg(p[0], 255, "length");
  bool killwords = bool_arg(p[1], false);
  std::string end = str_arg(in, p[2], "...");
  int64_t leeway = (p[3] && !p[3]->is_none()) ? int_arg(p[3], 5, "leeway") : 5;
  auto end_len = static_cast<int64_t>(text::length(end));
  if (length < end_len) type_error("expected length >= {}, got {}", end_len, length);
  if (leeway < 0) type_error("expected leeway >= 0, got {}", leeway);
  std::vector<char32_t> cps = text::decode(soft_str(in, v));
  if (static_cast<int64_t>(cps.size()) <= length + leeway) return in.make_string(text::encode(cps));
  std::string head = text::encode(cps.data(), cps.data() + (length - end_len));
  if (killwords) return in.make_string(head + end);
  size_t sp = head.rfind(' ');
  if (sp != std::string::npos) head.resize(sp);
  return in.make_string(head + end);
}

Value f_unique(Interpreter& in, const Value& v, const Args& a) {
  auto p = bind_args(a, {"case_sensitive", "attribute"}, "unique");
  bool cs = bool_arg(p[0], false);
  std::vector<Value> parts = p[1] ? attribute_parts(*p[1]) : std::vector<Value>{};
  std::unordered_set<std::string> seen;
  std::vector<Value> out;
  for (const Value& item : in.items_of(v)) {
    Value key = lower_if_string(follow_parts(in, item, parts), cs);
    if (seen.insert(hash_key(key)).second) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_wordcount(Interpreter& in, const Value& v, const Args& a) {
  (void)bind_args(a, {}, "wordcount");
  std::string s = soft_str(in, v);
  int64_t n = 0;
  bool in_word = false;
  size_t pos = 0;
  while (pos < s.size()) {
    bool w = text::is_word(text::next_code_point(s, pos));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> kFilters = {
      {"abs", f_abs},           {"attr", f_attr},
      {"batch", f_batch},       {"capitalize", f_capitalize},
      {"center", f_center},     {"count", f_length},
      {"d", f_default},         {"default", f_default},
      {"dictsort", f_dictsort}, {"e", f_escape},
      {"escape", f_escape},     {"first", f_first},
      {"float", f_float},       {"forceescape", f_escape},
      {"format", f_format},     {"indent", f_indent},
      {"int", f_int},           {"items", f_items},
      {"join", f_join},         {"last", f_last},
      {"length", f_length},     {"list", f_list},
      {"lower", f_lower},       {"map", f_map},
      {"max", f_max},           {"min", f_min},
      {"reject", f_reject},     {"rejectattr", f_rejectattr},
      {"replace", f_replace},   {"reverse", f_reverse},
      {"round", f_round},       {"safe", f_safe},
      {"select", f_select},     {"selectattr", f_selectattr},
      {"sort", f_sort},         {"string", f_string},
      {"sum", f_sum},           {"title", f_title},
      {"tojson", f_tojson},     {"trim", f_trim},
      {"truncate", f_truncate}, {"unique", f_unique},
      {"upper", f_upper},       {"wordcount", f_wordcount},
  };
  return kFilters;
}

// ---- tests ----

Value test_arg(const Args& a, std::string_view name) {
  auto p = bind_args(a, {"other"}, name);
  if (!p[0]) type_error("test '{}' needs an argument", name);
  return *p[0];
}

void no_args(const Args& a, std::string_view name) {
  (void)bind_args(a, {}, name);
}

bool cased_check(const std::string& s, bool want_upper) {
  bool any_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = text::next_code_point(s, pos);
    bool up = text::is_upper(c);
    bool lo = text::is_lower(c);
    if (up || lo) {
      any_cased = true;
      if (want_upper ? lo : up) return false;
    }
  }
  return any_cased;
}

bool sameas(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined: return a.is_none();
    case Value::Kind::kBool: return a.as_bool() == b.as_bool();
    case Value::Kind::kInt: return a.as_int() == b.as_int() && a.as_int() >= -5 && a.as_int() <= 256;
    case Value::Kind::kString: return &a.as_string() == &b.as_string();
    case Value::Kind::kList: return a.list_ptr() == b.list_ptr();
    case Value::Kind::kDict: return a.dict_ptr() == b.dict_ptr();
    case Value::Kind::kNamespace: return a.namespace_ptr() == b.namespace_ptr();
    case Value::Kind::kCallable: return a.callable_ptr() == b.callable_ptr();
    case Value::Kind::kLoop: return &a.as_loop() == &b.as_loop();
    default: return false;
  }
}

bool run_test(Interpreter& in, std::string_view name, const Value& v, const Args& a) {
  if (name == "defined") return no_args(a, name), !v.is_undefined();
  if (name == "undefined") return no_args(a, name), v.is_undefined();
  if (name == "none") return no_args(a, name), v.is_none();
  if (name == "boolean") return no_args(a, name), v.is_bool();
  if (name == "true") return no_args(a, name), v.is_bool() && v.as_bool();
  if (name == "false") return no_args(a, name), v.is_bool() && !v.as_bool();
  if (name == "integer") return no_args(a, name), v.is_int();
  if (name == "float") return no_args(a, name), v.is_float();
  if (name == "number") return no_args(a, name), v.is_number();
  if (name == "string") return no_args(a, name), v.is_string();
  if (name == "mapping") return no_args(a, name), v.is_dict();
  if (name == "iterable") {
    no_args(a, name);
    return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict() || v.is_loop();
  }
  if (name == "sequence") {
    no_args(a, name);
    return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  }
  if (name == "callable") return no_args(a, name), v.is_callable() || v.is_loop() || v.is_undefined();
  if (name == "escaped") return no_args(a, name), false;
  if (name == "lower" || name == "upper") return no_args(a, name), cased_check(in.str(v), name == "upper");
  if (name == "odd" || name == "even") {
    no_args(a, name);
    Value r = binary_op(BinaryOp::kMod, v, Value::integer(2), in);
    return equals(r, Value::integer(name == "odd" ? 1 : 0));
  }
  if (name == "divisibleby") {
    auto p = bind_args(a, {"num"}, name);
    if (!p[0]) type_error("divisibleby needs a number");
    return equals(binary_op(BinaryOp::kMod, v, *p[0], in), Value::integer(0));
  }
  if (name == "in") {
    auto p = bind_args(a, {"seq"}, name);
    if (!p[0]) type_error("test 'in' needs a sequence");
    return contains(*p[0], v);
  }
  if (name == "sameas") return sameas(v, test_arg(a, name));
  if (name == "filter") return no_args(a, name), v.is_string() && has_filter(v.as_string());
  if (name == "test") return no_args(a, name), v.is_string() && has_test(v.as_string());
  if (name == "==" || name == "eq" || name == "equalto") return equals(v, test_arg(a, name));
  if (name == "!=" || name == "ne") return !equals(v, test_arg(a, name));
  Value other = test_arg(a, name);
  int c = compare(v, other);
  if (name == "<" || name == "lt" || name == "lessthan") return c == -1;
  if (name == "<=" || name == "le") return c == -1 || c == 0;
  if (name == ">" || name == "gt" || name == "greaterthan") return c == 1;
  if (name == ">=" || name == "ge") return c == 1 || c == 0;
  type_error("no test named '{}'", name);
}

const std::unordered_set<std::string_view>& test_names() {
  static const std::unordered_set<std::string_view> kTests = {
      "defined", "undefined", "none",    "boolean",     "true",        "false",    "integer", "float",
      "number",  "string",    "mapping", "iterable",    "sequence",    "callable", "escaped", "lower",
      "upper",   "odd",       "even",    "divisibleby", "in",          "sameas",   "filter",  "test",
      "==",      "eq",        "equalto", "!=",          "ne",          "<",        "lt",      "lessthan",
      "<=",      "le",        ">",       "gt",          "greaterthan", ">=",       "ge"};
  return kTests;
}

}  // namespace

bool has_filter(std::string_view name) {
  return filters().count(name) > 0;
}
bool has_test(std::string_view name) {
  return test_names().count(name) > 0;
}

Value apply_filter(Interpreter& in, std::string_view name, const Value& input, const Args& args) {
  auto it = filters().find(name);
  if (it == filters().end()) type_error("no filter named '{}'", name);
  in.charge(1);
  return it->second(in, input, args);
}

bool apply_test(Interpreter& in, std::string_view name, const Value& input, const Args& args) {
  if (!has_test(name)) type_error("no test named '{}'", name);
  in.charge(1);
  return run_test(in, name, input, args);
}

}  // namespace pagoda::jinja
