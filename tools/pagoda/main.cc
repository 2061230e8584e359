#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "command.h"
#include "core/error.h"
#include "pagoda/version.h"

namespace pagoda::cli {
namespace {

std::map<std::string, CommandSetup>& registry() {
  static std::map<std::string, CommandSetup> commands;
  return commands;
}

}  // namespace

CommandRegistration::CommandRegistration(const char* name, CommandSetup setup) {
  registry().emplace(name, std::move(setup));
}

std::string default_model_path() {
  namespace fs = std::filesystem;
  const char* env = std::getenv("PAGODA_MODEL_CACHE");
  std::vector<fs::path> candidates;
  if (env != nullptr && *env != '\0') candidates.emplace_back(env);
  // The cache beside the source tree (scripts/fetch_models.py's default), found from the binary's
  // location in build/<preset>/tools/pagoda/, then the current directory.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
      if (fs::exists(p / "scripts" / "fetch_models.py", ec)) {
        candidates.push_back(p / "models");
        break;
      }
    }
  }
  candidates.emplace_back("models");
  for (const fs::path& dir : candidates) {
    fs::path file = dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (fs::exists(file, ec)) return file.string();
  }
  fail(ErrorCode::kNotFound,
       "no model given and the default model is not in the cache; run scripts/fetch_models.py or pass MODEL");
}

}  // namespace pagoda::cli

int main(int argc, char** argv) {
  CLI::App app{"pagoda: LLM inference and serving with PagedAttention on CPU, Intel GPUs (XPU) and CUDA"};
  app.set_version_flag("--version", std::string(pagoda::kVersion));
  app.require_subcommand(1);
  std::map<CLI::App*, std::function<int()>> actions;
  for (auto& [name, setup] : pagoda::cli::registry()) {
    auto action = setup(app);
    actions[app.get_subcommand(name)] = std::move(action);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, action] : actions) {
    if (sub->parsed()) {
      try {
        return action();
      } catch (const pagoda::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
      } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
      }
    }
  }
  return 1;
}
