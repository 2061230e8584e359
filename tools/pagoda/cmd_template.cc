#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "command.h"
#include "core/error.h"
#include "tokenizer/jinja/template.h"

namespace pagoda::cli {
namespace {

constexpr size_t kMaxInputBytes = 64u << 20;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::kIo, "{}: cannot open", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.size() > kMaxInputBytes) fail(ErrorCode::kInvalidArgument, "{}: larger than {} bytes", path, kMaxInputBytes);
  return s;
}

struct TemplateArgs {
  std::string template_path;
  std::string context_path;
  bool chat = false;
};

const CommandRegistration kRegisterTemplate("template", [](CLI::App& app) {
  auto args = std::make_shared<TemplateArgs>();
  CLI::App* sub = app.add_subcommand("template", "Render a Jinja2 chat template with a JSON context");
  sub->add_option("--template", args->template_path, "Template file")->required();
  sub->add_option("--context", args->context_path, "JSON file with the template variables (an object)");
  sub->add_flag("--chat", args->chat,
                "Treat the context as chat input: messages, tools, add_generation_prompt, bos_token, eos_token "
                "and extra variables, completed the way transformers' apply_chat_template does");
  return [args] {
    using nlohmann::ordered_json;
    jinja::Template tmpl = jinja::Template::parse(read_file(args->template_path));
    ordered_json context = ordered_json::object();
    if (!args->context_path.empty()) {
      try {
        context = ordered_json::parse(read_file(args->context_path));
      } catch (const ordered_json::exception& e) {
        fail(ErrorCode::kInvalidArgument, "{}: invalid JSON: {}", args->context_path, e.what());
      }
    }
    std::string out;
    if (args->chat) {
      if (!context.is_object()) fail(ErrorCode::kInvalidArgument, "{}: must hold a JSON object", args->context_path);
      ordered_json extra = ordered_json::object();
      for (auto it = context.begin(); it != context.end(); ++it) {
        const std::string& k = it.key();
        if (k != "messages" && k != "tools" && k != "add_generation_prompt" && k != "bos_token" && k != "eos_token") {
          extra[k] = it.value();
        }
      }
      auto str = [&](const char* key) {
        return context.contains(key) && context[key].is_string() ? context[key].get<std::string>() : std::string();
      };
      out = jinja::render_chat(tmpl, context.value("messages", ordered_json::array()),
                               context.value("tools", ordered_json()), context.value("add_generation_prompt", false),
                               str("bos_token"), str("eos_token"), extra);
    } else {
      out = tmpl.render(context);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return 0;
  };
});

}  // namespace
}  // namespace pagoda::cli
