#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "pagoda/version.h"

int main(int argc, char** argv) {
  CLI::App app{"pagoda: LLM inference and serving"};
  app.set_version_flag("--version", std::string(pagoda::kVersion));
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
