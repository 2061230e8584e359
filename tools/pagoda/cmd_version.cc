#include <fmt/format.h>

#include "backend/device_list.h"
#include "command.h"
#include "pagoda/version.h"

namespace pagoda::cli {
namespace {

const CommandRegistration kRegisterVersion("version", [](CLI::App& app) {
  app.add_subcommand("version", "Print pagoda's version and the backends this build contains");
  return [] {
    fmt::print("pagoda {}\n", kVersion);
    for (const BackendReport& b : list_backends()) {
      fmt::print("  backend {:<5} {}\n", b.name, b.compiled ? "built" : "not built");
    }
    return 0;
  };
});

}  // namespace
}  // namespace pagoda::cli
