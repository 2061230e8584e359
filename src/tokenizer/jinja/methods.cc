// Methods of str, dict and list that templates call, the global functions of transformers'
// environment, and Python's two string-formatting languages.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <unordered_set>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

namespace {

const std::unordered_set<std::string_view> kStrMethods = {
    "capitalize", "casefold",   "center",    "count",    "endswith",   "find",      "format",       "index",
    "isalnum",    "isalpha",    "isdecimal", "isdigit",  "islower",    "isnumeric", "isspace",      "istitle",
    "isupper",    "join",       "ljust",     "lower",    "lstrip",     "partition", "removeprefix", "removesuffix",
    "replace",    "rfind",      "rindex",    "rjust",    "rpartition", "rsplit",    "rstrip",       "split",
    "splitlines", "startswith", "strip",     "swapcase", "title",      "upper",     "zfill"};
const std::unordered_set<std::string_view> kDictMethods = {"clear", "copy",    "fromkeys",   "get",    "items", "keys",
                                                           "pop",   "popitem", "setdefault", "update", "values"};
const std::unordered_set<std::string_view> kDictMutating = {"clear", "pop", "popitem", "setdefault", "update"};
const std::unordered_set<std::string_view> kListMethods = {"append", "clear", "copy",   "count",   "extend", "index",
                                                           "insert", "pop",   "remove", "reverse", "sort"};
const std::unordered_set<std::string_view> kListMutating = {"append", "clear",  "extend",  "insert",
                                                            "pop",    "remove", "reverse", "sort"};

std::optional<std::string> opt_str(const std::optional<Value>& v, std::string_view fn) {
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) type_error("{}() argument must be str or None, not {}", fn, v->type_name());
  return v->as_string();
}

const std::string& need_str(const std::optional<Value>& v, std::string_view fn) {
  if (!v || !v->is_string()) type_error("{}() argument must be str", fn);
  return v->as_string();
}

int64_t opt_int(const std::optional<Value>& v, int64_t dflt, std::string_view fn) {
  if (!v || v->is_none()) return dflt;
  if (!v->is_integral()) type_error("{}() argument must be an integer, not {}", fn, v->type_name());
  return v->as_int();
}

// Python's clamping of optional start/end arguments to [0, len].
std::pair<size_t, size_t> clamp_range(const std::optional<Value>& start, const std::optional<Value>& end, size_t len,
                                      std::string_view fn) {
  auto n = static_cast<int64_t>(len);
  auto fix = [&](int64_t x) {
    if (x < 0) x += n;
    return static_cast<size_t>(std::clamp<int64_t>(x, 0, n));
  };
  return {fix(opt_int(start, 0, fn)), fix(opt_int(end, n, fn))};
}

std::vector<Value> split_whitespace(const std::string& s, int64_t maxsplit, bool from_right) {
  std::vector<char32_t> cps = text::decode(s);
  std::vector<std::pair<size_t, size_t>> words;
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && text::is_space(cps[i]))
      ++i;
    if (i == cps.size()) break;
    size_t j = i;
    while (j < cps.size() && !text::is_space(cps[j]))
      ++j;
    words.emplace_back(i, j);
    i = j;
  }
  std::vector<Value> out;
  if (maxsplit < 0 || static_cast<size_t>(maxsplit) >= words.size()) {
    for (auto [b, e] : words)
      out.push_back(Value::string(text::encode(cps.data() + b, cps.data() + e)));
    return out;
  }
  auto m = static_cast<size_t>(maxsplit);
  if (!from_right) {
    for (size_t k = 0; k < m; ++k)
      out.push_back(Value::string(text::encode(cps.data() + words[k].first, cps.data() + words[k].second)));
    // The rest keeps its inner whitespace but loses leading whitespace (trailing stays, as Python).
    // The rest keeps its inner and trailing whitespace, as Python's does.
    out.push_back(Value::string(text::encode(cps.data() + words[m].first, cps.data() + cps.size())));
  } else {
    size_t first = words.size() - m;
    out.push_back(Value::string(text::encode(cps.data(), cps.data() + words[first - 1].second)));
    for (size_t k = first; k < words.size(); ++k) {
      out.push_back(Value::string(text::encode(cps.data() + words[k].first, cps.data() + words[k].second)));
    }
  }
  return out;
}

std::vector<Value> split_sep(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right,
                             size_t max_items) {
  if (sep.empty()) type_error("empty separator");
  // rsplit is split over the reversed text: the right-to-left scan finds the same separators.
  std::string text_buf;
  std::string sep_buf;
  if (from_right) {
    text_buf.assign(s.rbegin(), s.rend());
    sep_buf.assign(sep.rbegin(), sep.rend());
  }
  const std::string& hay = from_right ? text_buf : s;
  const std::string& needle = from_right ? sep_buf : sep;
  std::vector<std::string> parts;
  size_t pos = 0;
  int64_t n = 0;
  while (maxsplit < 0 || n < maxsplit) {
    size_t hit = text::find(hay, needle, pos);
    if (hit == std::string_view::npos) break;
    parts.push_back(hay.substr(pos, hit - pos));
    if (parts.size() >= max_items) type_error("split() gives more than {} parts", max_items);
    pos = hit + needle.size();
    ++n;
  }
  parts.push_back(hay.substr(pos));
  std::vector<Value> out;
  if (from_right) {
    for (auto it = parts.rbegin(); it != parts.rend(); ++it)
      out.push_back(Value::string(std::string(it->rbegin(), it->rend())));
  } else {
    for (auto& p : parts)
      out.push_back(Value::string(std::move(p)));
  }
  return out;
}

bool prefix_match(const std::vector<char32_t>& s, size_t b, size_t e, const std::string& p, bool suffix) {
  std::vector<char32_t> pc = text::decode(p);
  if (e < b || e - b < pc.size()) return false;
  size_t at = suffix ? e - pc.size() : b;
  return std::equal(pc.begin(), pc.end(), s.begin() + static_cast<std::ptrdiff_t>(at));
}

std::string python_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = text::next_code_point(s, pos);
    bool cased = text::is_upper(c) || text::is_lower(c);
    if (cased && !prev_cased && c == 0xDF) {
      out += "Ss";
    } else if (cased) {
      text::append_utf8(out, prev_cased ? text::to_lower(c) : text::to_upper(c));
    } else {
      text::append_utf8(out, c);
    }
    prev_cased = cased;
  }
  return out;
}

template <typename Pred>
bool all_chars(const std::string& s, Pred pred) {
  if (s.empty()) return false;
  size_t pos = 0;
  while (pos < s.size()) {
    if (!pred(text::next_code_point(s, pos))) return false;
  }
  return true;
}

std::string justify(const std::string& s, int64_t width, const std::optional<Value>& fill_v, char how) {
  char32_t fill = ' ';
  if (fill_v) {
    if (!fill_v->is_string() || text::length(fill_v->as_string()) != 1) {
      type_error("the fill character must be exactly one character long");
    }
    fill = text::decode(fill_v->as_string())[0];
  }
  if (width > (1 << 24)) type_error("width is too large");
  auto len = static_cast<int64_t>(text::length(s));
  if (width <= len) return s;
  std::string pad;
  if (how == '^') {
    int64_t marg = width - len;
    int64_t left = marg / 2 + (marg & width & 1);
    std::string l;
    std::string r;
    for (int64_t i = 0; i < left; ++i)
      text::append_utf8(l, fill);
    for (int64_t i = 0; i < marg - left; ++i)
      text::append_utf8(r, fill);
    return l + s + r;
  }
  for (int64_t i = 0; i < width - len; ++i)
    text::append_utf8(pad, fill);
  return how == '<' ? s + pad : pad + s;
}

Value str_method(Interpreter& in, const std::string& s, std::string_view name, const Args& a) {
  if (name == "upper") return (void)bind_args(a, {}, name), in.make_string(text::upper(s));
  if (name == "lower" || name == "casefold") return (void)bind_args(a, {}, name), in.make_string(text::lower(s));
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    auto p = bind_args(a, {"chars"}, name);
    auto chars = opt_str(p[0], name);
    return in.make_string(text::strip(s, name != "rstrip", name != "lstrip", chars ? &*chars : nullptr));
  }
  if (name == "split" || name == "rsplit") {
    auto p = bind_args(a, {"sep", "maxsplit"}, name);
    auto sep = opt_str(p[0], name);
    int64_t maxsplit = opt_int(p[1], -1, name);
    in.charge(s.size() / 16);
    std::vector<Value> parts = sep ? split_sep(s, *sep, maxsplit, name == "rsplit", in.max_items())
                                   : split_whitespace(s, maxsplit, name == "rsplit");
    if (parts.size() > in.max_items()) type_error("split() gives more than {} parts", in.max_items());
    return Value::list(std::move(parts));
  }
  if (name == "splitlines") {
    auto p = bind_args(a, {"keepends"}, name);
    if (p[0] && p[0]->truthy()) type_error("splitlines(keepends=True) is not supported");
    std::vector<Value> out;
    for (auto& l : text::splitlines(s))
      out.push_back(Value::string(std::move(l)));
    return Value::list(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    auto p = bind_args(a, {"prefix", "start", "end"}, name);
    if (!p[0]) type_error("{}() takes at least 1 argument", name);
    std::vector<char32_t> cps = text::decode(s);
    auto [b, e] = clamp_range(p[1], p[2], cps.size(), name);
    bool suffix = name == "endswith";
    if (p[0]->is_tuple()) {
      for (const Value& x : p[0]->as_list()) {
        if (!x.is_string()) type_error("tuple for {} must only contain str", name);
        if (prefix_match(cps, b, e, x.as_string(), suffix)) return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (!p[0]->is_string()) type_error("{} first arg must be str or a tuple of str", name);
    return Value::boolean(prefix_match(cps, b, e, p[0]->as_string(), suffix));
  }
  if (name == "replace") {
    auto p = bind_args(a, {"old", "new", "count"}, name);
    const std::string& old = need_str(p[0], name);
    const std::string& repl = need_str(p[1], name);
    Args fa;
    fa.positional = {Value::string(old), Value::string(repl), Value::integer(opt_int(p[2], -1, name))};
    if (opt_int(p[2], -1, name) < 0) fa.positional.pop_back();
    return apply_filter(in, "replace", Value::string(s), fa);
  }
  if (name == "title") return (void)bind_args(a, {}, name), in.make_string(python_title(s));
  if (name == "capitalize") return apply_filter(in, "capitalize", Value::string(s), a);
  if (name == "swapcase") {
    (void)bind_args(a, {}, name);
    std::string out;
    size_t pos = 0;
    while (pos < s.size()) {
      char32_t c = text::next_code_point(s, pos);
      text::append_utf8(out, text::is_upper(c) ? text::to_lower(c) : text::to_upper(c));
    }
    return in.make_string(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    auto p = bind_args(a, {"sub", "start", "end"}, name);
    const std::string& sub = need_str(p[0], name);
    // Code point positions map to byte offsets; UTF-8 matches never straddle a code point.
    std::vector<size_t> offsets;
    offsets.reserve(s.size() + 1);
    text::add_work(s.size() / 32);
    for (size_t pos = 0; pos < s.size();) {
      offsets.push_back(pos);
      (void)text::next_code_point(s, pos);
    }
    offsets.push_back(s.size());
    auto [b, e] = clamp_range(p[1], p[2], offsets.size() - 1, name);
    auto to_cp = [&](size_t byte) {
      return static_cast<int64_t>(std::lower_bound(offsets.begin(), offsets.end(), byte) - offsets.begin());
    };
    if (e < b) return Value::integer(name == "count" ? 0 : -1);
    std::string_view window = std::string_view(s).substr(offsets[b], offsets[e] - offsets[b]);
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(e - b + 1));
      int64_t n = 0;
      for (size_t pos = text::find(window, sub); pos != std::string_view::npos;
           pos = text::find(window, sub, pos + sub.size()))
        ++n;
      return Value::integer(n);
    }
    size_t hit = name[0] == 'r' ? text::rfind(window, sub) : text::find(window, sub);
    if (hit == std::string_view::npos) {
      if (name == "index" || name == "rindex") type_error("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(to_cp(offsets[b] + hit));
  }
  if (name == "join") {
    auto p = bind_args(a, {"iterable"}, name);
    if (!p[0]) type_error("join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& item : in.items_of(*p[0])) {
      if (!item.is_string()) type_error("sequence item: expected str instance, {} found", item.type_name());
      if (!first) out += s;
      first = false;
      out += item.as_string();
      if (out.size() > in.max_string()) type_error("join() result is too large");
    }
    return in.make_string(std::move(out));
  }
  if (name == "format") return in.make_string(brace_format(in, s, a));
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") {
    return (void)bind_args(a, {}, name), Value::boolean(all_chars(s, text::is_digit));
  }
  if (name == "isalpha") return (void)bind_args(a, {}, name), Value::boolean(all_chars(s, text::is_alpha));
  if (name == "isalnum") return (void)bind_args(a, {}, name), Value::boolean(all_chars(s, text::is_alnum));
  if (name == "isspace") return (void)bind_args(a, {}, name), Value::boolean(all_chars(s, text::is_space));
  if (name == "isupper" || name == "islower") {
    (void)bind_args(a, {}, name);
    Args none;
    return Value::boolean(apply_test(in, name == "isupper" ? "upper" : "lower", Value::string(s), none));
  }
  if (name == "istitle") {
    (void)bind_args(a, {}, name);
    return Value::boolean(python_title(s) == s && s != text::lower(s));
  }
  if (name == "zfill") {
    auto p = bind_args(a, {"width"}, name);
    int64_t w = opt_int(p[0], 0, name);
    if (w > (1 << 24)) type_error("width is too large");
    auto len = static_cast<int64_t>(text::length(s));
    if (w <= len) return Value::string(s);
    std::string zeros(static_cast<size_t>(w - len), '0');
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) return in.make_string(s.substr(0, 1) + zeros + s.substr(1));
    return in.make_string(zeros + s);
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    auto p = bind_args(a, {"width", "fillchar"}, name);
    if (!p[0]) type_error("{}() takes at least 1 argument", name);
    char how = name == "center" ? '^' : name == "ljust" ? '<' : '>';
    return in.make_string(justify(s, opt_int(p[0], 0, name), p[1], how));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    auto p = bind_args(a, {"affix"}, name);
    const std::string& x = need_str(p[0], name);
    if (name == "removeprefix" && s.starts_with(x)) return Value::string(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.ends_with(x)) return Value::string(s.substr(0, s.size() - x.size()));
    return Value::string(s);
  }
  if (name == "partition" || name == "rpartition") {
    auto p = bind_args(a, {"sep"}, name);
    const std::string& sep = need_str(p[0], name);
    if (sep.empty()) type_error("empty separator");
    size_t hit = name == "partition" ? text::find(s, sep) : text::rfind(s, sep);
    if (hit == std::string_view::npos) {
      if (name == "partition") return Value::tuple({Value::string(s), Value::string(""), Value::string("")});
      return Value::tuple({Value::string(""), Value::string(""), Value::string(s)});
    }
    return Value::tuple(
        {Value::string(s.substr(0, hit)), Value::string(sep), Value::string(s.substr(hit + sep.size()))});
  }
  type_error("'str' object has no attribute '{}'", name);
}

Value dict_method(Interpreter& in, const Value& self, std::string_view name, const Args& a) {
  if (kDictMutating.count(name) > 0) type_error("access to attribute '{}' of 'dict' object is unsafe", name);
  const DictData& d = self.as_dict();
  in.charge(d.size());
  if (name == "keys" || name == "values" || name == "items") {
    (void)bind_args(a, {}, name);
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries()) {
      out.push_back(name == "keys" ? k : name == "values" ? v : Value::tuple({k, v}));
    }
    return Value::list(std::move(out));
  }
  if (name == "get") {
    auto p = bind_args(a, {"key", "default"}, name);
    if (!p[0]) type_error("get expected at least 1 argument");
    const Value* v = d.find(*p[0]);
    return v != nullptr ? *v : (p[1] ? *p[1] : Value::none());
  }
  if (name == "copy") return (void)bind_args(a, {}, name), self;
  type_error("'dict' object has no attribute '{}'", name);
}

Value list_method(Interpreter& in, const Value& self, std::string_view name, const Args& a) {
  const char* type = self.is_tuple() ? "tuple" : "list";
  if (kListMutating.count(name) > 0) type_error("access to attribute '{}' of '{}' object is unsafe", name, type);
  const auto& items = self.as_list();
  in.charge(items.size());
  if (name == "count") {
    auto p = bind_args(a, {"value"}, name);
    if (!p[0]) type_error("count() takes exactly one argument");
    return Value::integer(std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, *p[0]); }));
  }
  if (name == "index") {
    auto p = bind_args(a, {"value"}, name);
    if (!p[0]) type_error("index() takes at least 1 argument");
    for (size_t i = 0; i < items.size(); ++i) {
      if (equals(items[i], *p[0])) return Value::integer(static_cast<int64_t>(i));
    }
    type_error("{} is not in {}", to_repr(*p[0], 256), type);
  }
  if (name == "copy") return (void)bind_args(a, {}, name), self;
  type_error("'{}' object has no attribute '{}'", type, name);
}

Value loop_method(Interpreter&, const Value& self, std::string_view name, const Args& a) {
  LoopData& loop = self.as_loop();
  if (!a.keywords.empty()) type_error("loop.{}() takes no keyword arguments", name);
  if (name == "cycle") {
    if (a.positional.empty()) type_error("no items for cycling given");
    return a.positional[loop.index0 % a.positional.size()];
  }
  // changed(*values): whether the values differ from the previous call's.
  Value current = Value::tuple(a.positional);
  bool changed = !loop.changed_called || !equals(loop.last_changed, current);
  loop.changed_called = true;
  loop.last_changed = current;
  return Value::boolean(changed);
}

}  // namespace

bool has_method(const Value& self, std::string_view name) {
  switch (self.kind()) {
    case Value::Kind::kString: return kStrMethods.count(name) > 0;
    case Value::Kind::kDict: return kDictMethods.count(name) > 0;
    case Value::Kind::kList:
      if (self.is_tuple()) return name == "count" || name == "index";
      return kListMethods.count(name) > 0;
    case Value::Kind::kLoop: return name == "cycle" || name == "changed";
    default: return false;
  }
}

bool is_mutating_method(const Value& self, std::string_view name) {
  if (self.is_dict()) return kDictMutating.count(name) > 0;
  if (self.is_list() && !self.is_tuple()) return kListMutating.count(name) > 0;
  return false;
}

Value call_method(Interpreter& in, const Value& self, std::string_view name, const Args& args) {
  switch (self.kind()) {
    case Value::Kind::kString: return str_method(in, self.as_string(), name, args);
    case Value::Kind::kDict: return dict_method(in, self, name, args);
    case Value::Kind::kList: return list_method(in, self, name, args);
    case Value::Kind::kLoop: return loop_method(in, self, name, args);
    default: type_error("'{}' object has no attribute '{}'", self.type_name(), name);
  }
}

// ---- globals ----

std::optional<Value> global_function(std::string_view name) {
  static const std::unordered_set<std::string_view> kGlobals = {"range",           "namespace",    "dict",
                                                                "raise_exception", "strftime_now", "joiner"};
  if (kGlobals.count(name) == 0) return std::nullopt;
  auto fn = std::make_shared<CallableData>();
  fn->kind = CallableKind::kBuiltin;
  fn->name = std::string(name);
  return Value::callable(std::move(fn));
}

namespace {

// dict(*args, **kwargs) as Python builds it: from a mapping or an iterable of pairs, then keywords.
std::shared_ptr<DictData> build_dict(Interpreter& in, const Args& a, std::string_view fn) {
  if (a.positional.size() > 1) type_error("{} expected at most 1 argument, got {}", fn, a.positional.size());
  auto d = std::make_shared<DictData>();
  if (!a.positional.empty()) {
    const Value& src = a.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.as_dict().entries())
        d->set(k, v);
    } else {
      for (const Value& pair : in.items_of(src)) {
        std::vector<Value> kv = in.items_of(pair);
        if (kv.size() != 2) type_error("dictionary update sequence element has length {}; 2 is required", kv.size());
        d->set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : a.keywords)
    d->set(Value::string(k), v);
  return d;
}

}  // namespace

Value call_builtin(Interpreter& in, const CallableData& fn, const Args& a) {
  if (fn.kind == CallableKind::kJoiner) {
    if (!a.positional.empty() || !a.keywords.empty()) type_error("joiner takes no arguments");
    if (!*fn.joiner_used) {
      *fn.joiner_used = true;
      return Value::string("");
    }
    return fn.self;
  }
  const std::string& name = fn.name;
  if (name == "range") {
    if (!a.keywords.empty()) type_error("range() takes no keyword arguments");
    if (a.positional.empty() || a.positional.size() > 3) type_error("range expected 1 to 3 arguments");
    for (const Value& v : a.positional) {
      if (!v.is_integral()) type_error("'{}' object cannot be interpreted as an integer", v.type_name());
    }
    int64_t start = 0;
    int64_t stop = 0;
    int64_t step = 1;
    if (a.positional.size() == 1) {
      stop = a.positional[0].as_int();
    } else {
      start = a.positional[0].as_int();
      stop = a.positional[1].as_int();
      if (a.positional.size() == 3) step = a.positional[2].as_int();
    }
    if (step == 0) type_error("range() arg 3 must not be zero");
    // jinja2's sandbox refuses ranges longer than 100000 (MAX_RANGE).
    uint64_t count = 0;
    if (step > 0 && stop > start) {
      uint64_t diff = static_cast<uint64_t>(stop) - static_cast<uint64_t>(start);
      auto st = static_cast<uint64_t>(step);
      count = diff / st + (diff % st != 0 ? 1 : 0);
    }
    if (step < 0 && stop < start) {
      uint64_t diff = static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
      uint64_t st = 0 - static_cast<uint64_t>(step);
      count = diff / st + (diff % st != 0 ? 1 : 0);
    }
    if (count > 100000) type_error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    in.charge(count);
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < static_cast<int64_t>(count); ++i)
      out.push_back(Value::integer(start + i * step));
    return Value::list(std::move(out));
  }
  if (name == "namespace") {
    auto d = build_dict(in, a, "namespace");
    auto ns = std::make_shared<NamespaceData>();
    for (const auto& [k, v] : d->entries()) {
      if (k.is_string() && !k.as_string().empty() && k.as_string()[0] == '_') {
        type_error("chat templates cannot store underscore-prefixed attributes on a namespace ('{}')", k.as_string());
      }
      check_storable_in_namespace(v);
      ns->attrs.set(k, v);
    }
    return Value::ns(std::move(ns));
  }
  if (name == "dict") return Value::dict(build_dict(in, a, "dict"));
  if (name == "raise_exception") {
    auto p = bind_args(a, {"message"}, name);
    type_error("raise_exception: {}", p[0] ? in.str(*p[0]) : std::string());
  }
  if (name == "strftime_now") {
    auto p = bind_args(a, {"format"}, name);
    if (!p[0] || !p[0]->is_string()) type_error("strftime_now() needs a format string");
    const std::string& format = p[0]->as_string();
    if (format.size() > 256) type_error("strftime_now() format is too long");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::string buf(1024, '\0');
    size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
    buf.resize(n);
    return in.make_string(std::move(buf));
  }
  if (name == "joiner") {
    auto p = bind_args(a, {"sep"}, name);
    auto j = std::make_shared<CallableData>();
    j->kind = CallableKind::kJoiner;
    j->name = "joiner";
    j->self = Value::string(p[0] ? in.str(*p[0]) : ", ");
    j->joiner_used = std::make_shared<bool>(false);
    return Value::callable(std::move(j));
  }
  type_error("'{}' is not callable", name);
}

// ---- formatting ----

namespace {

struct Spec {
  char32_t fill = ' ';
  char align = 0;
  char sign = '-';
  bool alternate = false;
  bool zero = false;
  int64_t width = -1;
  char grouping = 0;
  int64_t precision = -1;
  char type = 0;
};

void add_grouping(std::string& digits, char sep) {
  if (sep == 0) return;
  std::string out;
  int count = 0;
  for (size_t i = digits.size(); i-- > 0;) {
    out.push_back(digits[i]);
    if (++count % 3 == 0 && i > 0) out.push_back(sep);
  }
  digits.assign(out.rbegin(), out.rend());
}

std::string pad(const std::string& sign, const std::string& body, const Spec& spec, char default_align) {
  char align = spec.align != 0 ? spec.align : (spec.zero ? '=' : default_align);
  char32_t fill = (spec.align == 0 && spec.zero) ? U'0' : spec.fill;
  auto len = static_cast<int64_t>(text::length(sign) + text::length(body));
  if (spec.width > (1 << 20)) type_error("format width is too large");
  std::string fills;
  for (int64_t i = len; i < spec.width; ++i)
    text::append_utf8(fills, fill);
  if (align == '<') return sign + body + fills;
  if (align == '>') return fills + sign + body;
  if (align == '=') return sign + fills + body;
  std::string left;
  std::string right;
  int64_t total = spec.width - len;
  for (int64_t i = 0; i < total / 2; ++i)
    text::append_utf8(left, fill);
  for (int64_t i = total / 2; i < total; ++i)
    text::append_utf8(right, fill);
  return left + sign + body + right;
}

std::string c_format(char type, int64_t precision, double x, bool alternate) {
  if (precision > 500) type_error("format precision is too large");
  char f[16];
  std::snprintf(f, sizeof(f), "%%%s.*%c", alternate ? "#" : "", type);
  char buf[1024];
  std::snprintf(buf, sizeof(buf), f, static_cast<int>(precision), x);
  return buf;
}

std::string format_number(const Value& v, Spec spec) {
  char type = spec.type;
  bool is_int = v.is_integral() && !(type == 'e' || type == 'E' || type == 'f' || type == 'F' || type == 'g' ||
                                     type == 'G' || type == '%');
  std::string body;
  bool negative = false;
  if (is_int) {
    int64_t i = v.as_int();
    negative = i < 0;
    uint64_t mag = negative ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
    switch (type) {
      case 0:
      case 'd':
      case 'n': body = std::to_string(mag); break;
      case 'x': body = fmt::format("{:x}", mag); break;
      case 'X': body = fmt::format("{:X}", mag); break;
      case 'o': body = fmt::format("{:o}", mag); break;
      case 'b': body = fmt::format("{:b}", mag); break;
      case 'c': {
        std::string c;
        if (i < 0 || i > 0x10FFFF) type_error("%c arg not in range(0x110000)");
        text::append_utf8(c, static_cast<char32_t>(i));
        return pad("", c, spec, '<');
      }
      default: type_error("unknown format code '{}' for int", type);
    }
    add_grouping(body, spec.grouping);
    if (spec.alternate && (type == 'x' || type == 'X' || type == 'o' || type == 'b')) {
      body = std::string("0") + (type == 'X' ? 'X' : type) + body;
    }
  } else {
    if (!v.is_number()) type_error("unknown format code for {}", v.type_name());
    double x = v.as_double();
    negative = std::signbit(x) && !std::isnan(x);
    double mag = std::fabs(x);
    int64_t prec = spec.precision < 0 ? 6 : spec.precision;
    if (type == 0 && spec.precision < 0) {
      body = format_float(mag);
    } else if (type == 0) {
      body = c_format('g', std::max<int64_t>(prec, 1), mag, spec.alternate);
      if (body.find_first_of(".e") == std::string::npos && std::isfinite(mag)) body += ".0";
    } else if (type == '%') {
      body = c_format('f', prec, mag * 100, spec.alternate) + "%";
    } else if (type == 'e' || type == 'E' || type == 'f' || type == 'F' || type == 'g' || type == 'G' || type == 'n') {
      body = c_format(type == 'n' ? 'g' : type, prec, mag, spec.alternate);
    } else {
      type_error("unknown format code '{}' for float", type);
    }
    if (spec.grouping != 0) {
      size_t end = body.find_first_not_of("0123456789");
      std::string int_part = body.substr(0, end);
      add_grouping(int_part, spec.grouping);
      body = int_part + (end == std::string::npos ? "" : body.substr(end));
    }
  }
  std::string sign = negative ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
  return pad(sign, body, spec, '>');
}

Spec parse_spec(const std::string& s) {
  Spec spec;
  std::vector<char32_t> c = text::decode(s);
  size_t i = 0;
  auto is_align = [](char32_t x) { return x == '<' || x == '>' || x == '=' || x == '^'; };
  if (c.size() >= 2 && is_align(c[1])) {
    spec.fill = c[0];
    spec.align = static_cast<char>(c[1]);
    i = 2;
  } else if (!c.empty() && is_align(c[0])) {
    spec.align = static_cast<char>(c[0]);
    i = 1;
  }
  if (i < c.size() && (c[i] == '+' || c[i] == '-' || c[i] == ' ')) spec.sign = static_cast<char>(c[i++]);
  if (i < c.size() && c[i] == '#') {
    spec.alternate = true;
    ++i;
  }
  if (i < c.size() && c[i] == '0') {
    spec.zero = true;
    ++i;
  }
  auto number = [&]() {
    int64_t n = 0;
    bool any = false;
    while (i < c.size() && c[i] >= '0' && c[i] <= '9') {
      n = std::min<int64_t>(n * 10 + (c[i] - '0'), 1 << 30);
      ++i;
      any = true;
    }
    return any ? n : -1;
  };
  spec.width = number();
  if (i < c.size() && (c[i] == ',' || c[i] == '_')) spec.grouping = static_cast<char>(c[i++]);
  if (i < c.size() && c[i] == '.') {
    ++i;
    spec.precision = number();
    if (spec.precision < 0) type_error("format specifier missing precision");
  }
  if (i < c.size()) spec.type = static_cast<char>(c[i++]);
  if (i != c.size()) type_error("invalid format specifier '{}'", s);
  return spec;
}

std::string apply_spec(Interpreter& in, const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return in.str(v);
  Spec spec = parse_spec(spec_text);
  if (v.is_string()) {
    if (spec.type != 0 && spec.type != 's') type_error("unknown format code '{}' for str", spec.type);
    std::string s = v.as_string();
    if (spec.precision >= 0) {
      std::vector<char32_t> cps = text::decode(s);
      if (static_cast<size_t>(spec.precision) < cps.size()) s = text::encode(cps.data(), cps.data() + spec.precision);
    }
    return pad("", s, spec, '<');
  }
  if (v.is_bool() && spec.type == 0) return pad("", in.str(v), spec, '<');
  if (v.is_number()) return format_number(v, spec);
  type_error("unsupported format string passed to {}.__format__", v.type_name());
}

}  // namespace

std::string brace_format(Interpreter& in, const std::string& format, const Args& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false;
  bool used_manual = false;
  size_t i = 0;
  const size_t n = format.size();
  while (i < n) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < n && format[i + 1] == '}') {
        out += '}';
        i += 2;
        continue;
      }
      type_error("Single '}}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < n && format[i + 1] == '{') {
      out += '{';
      i += 2;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) type_error("Single '{{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    if (field.find('{') != std::string::npos) type_error("nested format fields are not supported");
    i = close + 1;
    std::string spec;
    char conversion = 0;
    size_t colon = field.find(':');
    if (colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    size_t bang = field.find('!');
    if (bang != std::string::npos) {
      if (bang + 2 != field.size()) type_error("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string head = field.substr(0, name_end);
    Value v;
    if (head.empty()) {
      if (used_manual) type_error("cannot switch from manual field specification to automatic field numbering");
      used_auto = true;
      if (auto_index >= args.positional.size()) type_error("Replacement index {} out of range", auto_index);
      v = args.positional[auto_index++];
    } else if (std::all_of(head.begin(), head.end(), [](char x) { return x >= '0' && x <= '9'; })) {
      if (used_auto) type_error("cannot switch from automatic field numbering to manual field specification");
      used_manual = true;
      size_t idx = head.size() > 9 ? args.positional.size() : std::stoul(head);
      if (idx >= args.positional.size()) type_error("Replacement index {} out of range", head);
      v = args.positional[idx];
    } else {
      auto it =
          std::find_if(args.keywords.begin(), args.keywords.end(), [&](const auto& kv) { return kv.first == head; });
      if (it == args.keywords.end()) type_error("KeyError: '{}'", head);
      v = it->second;
    }
    // .attr and [key] lookups, through the sandbox.
    size_t p = name_end == std::string::npos ? field.size() : name_end;
    while (p < field.size()) {
      if (field[p] == '.') {
        size_t e = field.find_first_of(".[", p + 1);
        std::string attr = field.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1);
        v = in.getattr(v, attr);
        p = e == std::string::npos ? field.size() : e;
      } else {
        size_t e = field.find(']', p);
        if (e == std::string::npos) type_error("Missing ']' in format string");
        std::string key = field.substr(p + 1, e - p - 1);
        bool digits = !key.empty() && key.size() < 18 &&
                      std::all_of(key.begin(), key.end(), [](char x) { return x >= '0' && x <= '9'; });
        v = in.getitem(v, digits ? Value::integer(std::stoll(key)) : Value::string(key));
        p = e + 1;
      }
      if (v.is_undefined()) type_error("{}", v.undefined_hint());
    }
    if (conversion == 'r' || conversion == 'a') {
      v = Value::string(to_repr(v, in.max_string()));
    } else if (conversion == 's') {
      v = Value::string(in.str(v));
    } else if (conversion != 0) {
      type_error("Unknown conversion specifier {}", conversion);
    }
    out += apply_spec(in, v, spec);
    if (out.size() > in.max_string()) type_error("format() result is too large");
  }
  return out;
}

std::string percent_format(Interpreter& in, const std::string& format, const Value& args) {
  std::vector<Value> values;
  const DictData* mapping = nullptr;
  if (args.is_tuple()) {
    values = args.as_list();
  } else {
    if (args.is_dict()) mapping = &args.as_dict();
    values.push_back(args);
  }
  size_t next = 0;
  std::string out;
  size_t i = 0;
  const size_t n = format.size();
  auto take = [&]() -> Value {
    if (next >= values.size()) type_error("not enough arguments for format string");
    return values[next++];
  };
  while (i < n) {
    char c = format[i++];
    if (c != '%') {
      out += c;
      continue;
    }
    if (i >= n) type_error("incomplete format");
    Value key_value;
    bool keyed = false;
    if (format[i] == '(') {
      if (mapping == nullptr) type_error("format requires a mapping");
      size_t close = format.find(')', i);
      if (close == std::string::npos) type_error("incomplete format key");
      const Value* v = mapping->find(std::string_view(format).substr(i + 1, close - i - 1));
      if (v == nullptr) type_error("KeyError: '{}'", format.substr(i + 1, close - i - 1));
      key_value = *v;
      keyed = true;
      i = close + 1;
    }
    Spec spec;
    spec.align = '>';
    while (i < n && std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      switch (format[i]) {
        case '-': spec.align = '<'; break;
        case '+': spec.sign = '+'; break;
        case ' ':
          if (spec.sign != '+') spec.sign = ' ';
          break;
        case '#': spec.alternate = true; break;
        case '0': spec.zero = true; break;
      }
      ++i;
    }
    auto number = [&]() {
      int64_t v = -1;
      while (i < n && format[i] >= '0' && format[i] <= '9')
        v = std::min<int64_t>(std::max<int64_t>(v, 0) * 10 + (format[i++] - '0'), 1 << 20);
      return v;
    };
    if (i < n && format[i] == '*') type_error("'*' in format strings is not supported");
    spec.width = number();
    if (i < n && format[i] == '.') {
      ++i;
      spec.precision = std::max<int64_t>(number(), 0);
    }
    while (i < n && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L'))
      ++i;
    if (i >= n) type_error("incomplete format");
    char type = format[i++];
    if (type == '%') {
      out += '%';
      continue;
    }
    Value v = keyed ? key_value : take();
    if (spec.zero && spec.align != '<') spec.align = '=';
    if (spec.zero) spec.fill = '0';
    std::string piece;
    switch (type) {
      case 's':
      case 'r':
      case 'a': {
        std::string s = type == 's' ? in.str(v) : to_repr(v, in.max_string());
        if (spec.precision >= 0) {
          std::vector<char32_t> cps = text::decode(s);
          if (static_cast<size_t>(spec.precision) < cps.size())
            s = text::encode(cps.data(), cps.data() + spec.precision);
        }
        Spec plain = spec;
        plain.fill = ' ';
        if (plain.align == '=') plain.align = '>';
        piece = pad("", s, plain, '>');
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (!v.is_number()) type_error("%{} format: a real number is required, not {}", type, v.type_name());
        Value iv = v;
        if (v.is_float()) {
          double d = v.as_double();
          if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) type_error("cannot convert float to integer");
          iv = Value::integer(static_cast<int64_t>(std::trunc(d)));
        }
        spec.type = (type == 'i' || type == 'u') ? 'd' : type;
        spec.precision = -1;
        piece = format_number(Value::integer(iv.as_int()), spec);
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        if (!v.is_number()) type_error("must be real number, not {}", v.type_name());
        spec.type = type;
        piece = format_number(Value::floating(v.as_double()), spec);
        break;
      }
      case 'c': {
        std::string s;
        if (v.is_integral()) {
          if (v.as_int() < 0 || v.as_int() > 0x10FFFF) type_error("%c arg not in range(0x110000)");
          text::append_utf8(s, static_cast<char32_t>(v.as_int()));
        } else if (v.is_string() && text::length(v.as_string()) == 1) {
          s = v.as_string();
        } else {
          type_error("%c requires an int or a unicode character");
        }
        Spec plain = spec;
        plain.fill = ' ';
        piece = pad("", s, plain, '>');
        break;
      }
      default: type_error("unsupported format character '{}'", type);
    }
    out += piece;
    if (out.size() > in.max_string()) type_error("formatted string is too large");
  }
  if (mapping == nullptr && next < values.size()) type_error("not all arguments converted during string formatting");
  return out;
}

}  // namespace pagoda::jinja
