#pragma once

// Subcommands register themselves: each tools/pagoda/cmd_<name>.cc defines one static
// CommandRegistration, so adding a command touches no shared file.

#include <CLI/CLI.hpp>

#include <functional>

namespace pagoda::cli {

// `setup` adds the subcommand and its options to `app` and returns the action to run when it is
// chosen. The action returns the process exit status; it may throw pagoda::Error, which main()
// prints as one line and turns into exit status 1.
using CommandSetup = std::function<std::function<int()>(CLI::App& app)>;

struct CommandRegistration {
  CommandRegistration(const char* name, CommandSetup setup);
};

// Path of the default model (SmolLM2-135M-Instruct Q4_1) in the model cache, as
// scripts/fetch_models.py places it; PAGODA_MODEL_CACHE overrides the cache folder.
[[nodiscard]] std::string default_model_path();

}  // namespace pagoda::cli
