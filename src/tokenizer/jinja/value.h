#pragma once

// The values a chat template computes with: Python's data model as jinja2 exposes it (None, bool,
// int, float, str, list, tuple, dict), jinja2's Undefined and namespace, and callables (macros,
// builtin functions, bound methods). Lists, tuples and dicts are immutable once built (the sandbox
// transformers uses is jinja2's ImmutableSandboxedEnvironment), so they are shared by pointer and
// copying a Value is cheap. Only a namespace is mutable.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "core/error.h"

namespace pagoda::jinja {

class Value;
struct ListData;
class DictData;
struct NamespaceData;
struct CallableData;
struct LoopData;

// Values nested deeper than this (lists of lists of ...) are refused, so that printing, comparing
// and destroying them never recurses deeply.
inline constexpr int kMaxValueDepth = 128;

// Thrown by value operations for errors Python would raise (TypeError, ZeroDivisionError, ...); the
// interpreter adds the template line and turns it into a pagoda::Error.
class TemplateError : public std::runtime_error {
 public:
  explicit TemplateError(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void type_error(fmt::format_string<Args...> format, Args&&... args) {
  throw TemplateError(fmt::format(format, std::forward<Args>(args)...));
}

struct UndefinedData {
  std::string hint;  // what was undefined, for the error raised when it is used
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable,
    kLoop
  };

  Value() : data_(std::shared_ptr<const UndefinedData>()) {}
  static Value undefined(std::string hint);
  static Value none() { return Value(Tag::kNone); }
  static Value boolean(bool b) { return Value(b); }
  static Value integer(int64_t i) { return Value(i); }
  static Value floating(double d) { return Value(d); }
  static Value string(std::string s);
  static Value list(std::vector<Value> items);
  static Value tuple(std::vector<Value> items);
  static Value dict(std::shared_ptr<const DictData> d);
  static Value ns(std::shared_ptr<NamespaceData> n);
  static Value callable(std::shared_ptr<const CallableData> c);
  static Value loop(std::shared_ptr<LoopData> l);

  [[nodiscard]] Kind kind() const;
  [[nodiscard]] bool is_undefined() const { return kind() == Kind::kUndefined; }
  [[nodiscard]] bool is_none() const { return kind() == Kind::kNone; }
  [[nodiscard]] bool is_bool() const { return kind() == Kind::kBool; }
  [[nodiscard]] bool is_int() const { return kind() == Kind::kInt; }
  [[nodiscard]] bool is_float() const { return kind() == Kind::kFloat; }
  // Python's numbers.Number: bool, int and float.
  [[nodiscard]] bool is_number() const { return is_bool() || is_int() || is_float(); }
  // int or bool (bool is a subclass of int in Python).
  [[nodiscard]] bool is_integral() const { return is_bool() || is_int(); }
  [[nodiscard]] bool is_string() const { return kind() == Kind::kString; }
  [[nodiscard]] bool is_list() const { return kind() == Kind::kList; }  // list or tuple
  [[nodiscard]] bool is_tuple() const;
  [[nodiscard]] bool is_dict() const { return kind() == Kind::kDict; }
  [[nodiscard]] bool is_namespace() const { return kind() == Kind::kNamespace; }
  [[nodiscard]] bool is_callable() const { return kind() == Kind::kCallable; }
  [[nodiscard]] bool is_loop() const { return kind() == Kind::kLoop; }

  [[nodiscard]] bool as_bool() const { return std::get<bool>(data_); }
  [[nodiscard]] int64_t as_int() const;    // int or bool
  [[nodiscard]] double as_double() const;  // any number
  [[nodiscard]] const std::string& as_string() const { return *std::get<StringPtr>(data_); }
  [[nodiscard]] const std::vector<Value>& as_list() const;
  [[nodiscard]] const std::shared_ptr<const ListData>& list_ptr() const { return std::get<ListPtr>(data_); }
  [[nodiscard]] const DictData& as_dict() const { return *std::get<DictPtr>(data_); }
  [[nodiscard]] const std::shared_ptr<const DictData>& dict_ptr() const { return std::get<DictPtr>(data_); }
  [[nodiscard]] NamespaceData& as_namespace() const { return *std::get<NamespacePtr>(data_); }
  [[nodiscard]] const std::shared_ptr<NamespaceData>& namespace_ptr() const { return std::get<NamespacePtr>(data_); }
  [[nodiscard]] const CallableData& as_callable() const { return *std::get<CallablePtr>(data_); }
  [[nodiscard]] const std::shared_ptr<const CallableData>& callable_ptr() const { return std::get<CallablePtr>(data_); }
  [[nodiscard]] LoopData& as_loop() const { return *std::get<LoopPtr>(data_); }
  [[nodiscard]] const std::string& undefined_hint() const;

  // Nesting depth: 0 for scalars, 1 + the deepest element for containers.
  [[nodiscard]] int depth() const;

  // Python's truth value.
  [[nodiscard]] bool truthy() const;
  // Python's type name, for error messages ("str", "list", "dict", "NoneType", ...).
  [[nodiscard]] std::string_view type_name() const;

 private:
  enum class Tag : uint8_t { kNone };
  using StringPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const ListData>;
  using DictPtr = std::shared_ptr<const DictData>;
  using NamespacePtr = std::shared_ptr<NamespaceData>;
  using CallablePtr = std::shared_ptr<const CallableData>;
  using LoopPtr = std::shared_ptr<LoopData>;
  using UndefinedPtr = std::shared_ptr<const UndefinedData>;
  explicit Value(Tag) : data_(Tag::kNone) {}
  explicit Value(bool b) : data_(b) {}
  explicit Value(int64_t i) : data_(i) {}
  explicit Value(double d) : data_(d) {}
  template <typename T>
  explicit Value(std::in_place_type_t<T>, T v) : data_(std::move(v)) {}

  std::variant<UndefinedPtr, Tag, bool, int64_t, double, StringPtr, ListPtr, DictPtr, NamespacePtr, CallablePtr,
               LoopPtr>
      data_;
};

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;
};

// An insertion-ordered dict with Python's key equality (1 == 1.0 == True). Keys must be hashable:
// None, bool, int, float, str, or tuples of those.
class DictData {
 public:
  [[nodiscard]] const Value* find(const Value& key) const;
  [[nodiscard]] const Value* find(std::string_view key) const;
  // Inserts or replaces (keeping the first position, as Python does).
  void set(const Value& key, Value value);
  [[nodiscard]] size_t size() const { return entries_.size(); }
  [[nodiscard]] bool empty() const { return entries_.empty(); }
  [[nodiscard]] const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  [[nodiscard]] int depth() const { return depth_; }

 private:
  std::vector<std::pair<Value, Value>> entries_;
  std::unordered_map<std::string, size_t> index_;
  int depth_ = 1;
};

// jinja2's namespace(): the one mutable object a template can make, for state that must survive a
// loop iteration. Its attributes never hold a namespace, macro or loop (see checked_namespace_value),
// so no reference cycle can form.
struct NamespaceData {
  DictData attrs;
};

// The key under which a hashable value is indexed in a dict; throws TemplateError when unhashable.
[[nodiscard]] std::string hash_key(const Value& key);

// Python's ==.
[[nodiscard]] bool equals(const Value& a, const Value& b);
// Python's <, > etc. as a three-way comparison; throws TypeError-like TemplateError for unorderable
// operands (e.g. str < int, None < None).
[[nodiscard]] int compare(const Value& a, const Value& b);

// Python's str() and repr() appended to `out`; fails once `out` grows past `limit` bytes.
void append_str(std::string& out, const Value& v, size_t limit);
void append_repr(std::string& out, const Value& v, size_t limit);
[[nodiscard]] std::string to_str(const Value& v, size_t limit);
[[nodiscard]] std::string to_repr(const Value& v, size_t limit);

// Python's repr() of a float (shortest round-trip digits, '1.0', '1e+16', 'inf', 'nan').
[[nodiscard]] std::string format_float(double d);
// Python's repr() of a str (quotes chosen as Python does, escapes for non-printable characters).
void append_string_repr(std::string& out, std::string_view s);

// The length Python's len() gives, or throws for values without a length.
[[nodiscard]] int64_t length_of(const Value& v);

// The items a `for` loop over `v` visits (a dict yields its keys, a str its characters, Undefined
// nothing); throws for values that are not iterable. `max_items` caps the result.
[[nodiscard]] std::vector<Value> iterate(const Value& v, size_t max_items);

// A namespace attribute must not hold anything that could refer back to a namespace or a scope.
void check_storable_in_namespace(const Value& v);

}  // namespace pagoda::jinja
