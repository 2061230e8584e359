#include "tokenizer/jinja/template.h"

#include "core/error.h"

namespace pagoda::jinja {

namespace {

template <typename Json>
Value convert(const Json& j, int depth) {
  if (depth > kMaxValueDepth) {
    fail(ErrorCode::kInvalidArgument, "chat template context is nested more than {} levels deep", kMaxValueDepth);
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::floating(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j)
        items.push_back(convert(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<DictData>();
      for (auto it = j.begin(); it != j.end(); ++it)
        d->set(Value::string(it.key()), convert(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default: fail(ErrorCode::kInvalidArgument, "chat template context holds binary data, which templates cannot use");
  }
}

template <typename Json>
std::shared_ptr<const DictData> context_dict(const Json& context) {
  if (context.is_null()) return std::make_shared<DictData>();
  if (!context.is_object()) fail(ErrorCode::kInvalidArgument, "chat template context must be a JSON object");
  Value v = convert(context, 0);
  return v.dict_ptr();
}

}  // namespace

Value value_from_json(const nlohmann::ordered_json& j) {
  return convert(j, 0);
}
Value value_from_json(const nlohmann::json& j) {
  return convert(j, 0);
}

Template Template::parse(std::string_view source, const ParseLimits& limits) {
  Template t;
  t.body_ = std::make_shared<const StmtList>(parse_template(source, limits));
  return t;
}

std::string Template::render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
  Interpreter in(options);
  return in.render(*body_, context_dict(context));
}

std::string Template::render(const nlohmann::json& context, const RenderOptions& options) const {
  Interpreter in(options);
  return in.render(*body_, context_dict(context));
}

std::string render_chat(const Template& tmpl, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt, std::string_view bos_token,
                        std::string_view eos_token, const nlohmann::ordered_json& extra_context,
                        const RenderOptions& options) {
  using nlohmann::ordered_json;
  if (!messages.is_array()) fail(ErrorCode::kInvalidArgument, "chat messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array()) fail(ErrorCode::kInvalidArgument, "chat tools must be a JSON array");
  if (!extra_context.is_null() && !extra_context.is_object()) {
    fail(ErrorCode::kInvalidArgument, "extra chat template context must be a JSON object");
  }
  // transformers drops None-valued keys, then copies the reasoning under the names templates read.
  ordered_json normalized = ordered_json::array();
  for (const auto& m : messages) {
    if (!m.is_object()) fail(ErrorCode::kInvalidArgument, "every chat message must be a JSON object");
    ordered_json msg = ordered_json::object();
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it.value().is_null()) msg[it.key()] = it.value();
    }
    const ordered_json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      if (msg.contains(key)) {
        reasoning = &msg[key];
        break;
      }
    }
    if (reasoning != nullptr) {
      ordered_json aliased = ordered_json::object();
      aliased["thinking"] = *reasoning;
      for (auto it = msg.begin(); it != msg.end(); ++it)
        aliased[it.key()] = it.value();
      aliased["reasoning_content"] = *reasoning;
      msg = std::move(aliased);
    }
    normalized.push_back(std::move(msg));
  }
  ordered_json context = ordered_json::object();
  context["messages"] = std::move(normalized);
  context["tools"] = tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = std::string(bos_token);
  context["eos_token"] = std::string(eos_token);
  if (extra_context.is_object()) {
    for (auto it = extra_context.begin(); it != extra_context.end(); ++it) {
      const std::string& k = it.key();
      if (k == "messages" || k == "tools" || k == "documents" || k == "add_generation_prompt") {
        fail(ErrorCode::kInvalidArgument, "extra chat template context may not set '{}'", k);
      }
      context[k] = it.value();
    }
  }
  return tmpl.render(context, options);
}

}  // namespace pagoda::jinja
