// `pagoda config PATH [--json]`: the ModelConfig pagoda derives from a Hugging Face folder (or its
// config.json) or a .gguf file, printed for inspection and for tests that compare it with
// transformers and with the gguf package.

#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <string>

#include "command.h"
#include "model/loader/gguf.h"
#include "model/loader/model_config.h"

namespace pagoda::cli {
namespace {

struct ConfigOptions {
  std::string path;
  bool json = false;
};

model::ModelConfig load_config(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".gguf") return model::config_from_gguf(gguf::File::open(path));
  return model::load_hf_config(path);
}

void print_summary(const model::ModelConfig& c) {
  fmt::print("architecture   {} ({})\n", model::architecture_name(c.arch), c.hf_architecture);
  fmt::print("name           {}\n", c.name);
  fmt::print("layers         {}  hidden {}  ffn {}  vocab {}\n", c.num_layers, c.hidden_size, c.intermediate_size,
             c.vocab_size);
  fmt::print("attention      {} heads, {} kv heads, head_dim {}, scale {:.6g}\n", c.num_heads, c.num_kv_heads,
             c.head_dim, c.attention_scale);
  fmt::print("rope           {} theta {:g} dim {} ({})\n", model::rope_type_name(c.rope.type), c.rope.theta,
             c.rope.rotary_dim, model::rope_style_name(c.rope.style));
  if (c.rope_local)
    fmt::print("local rope     {} theta {:g}\n", model::rope_type_name(c.rope_local->type), c.rope_local->theta);
  if (c.has_sliding_layers()) fmt::print("sliding window {}\n", c.sliding_window);
  if (c.is_moe()) {
    fmt::print("experts        {} (top {}), expert ffn {}\n", c.moe.num_experts, c.moe.num_experts_per_tok,
               c.moe.expert_intermediate_size);
  }
  fmt::print("context        {}\n", c.max_position_embeddings);
}

const CommandRegistration kRegisterConfig("config", [](CLI::App& app) {
  auto opts = std::make_shared<ConfigOptions>();
  CLI::App* cmd = app.add_subcommand("config", "Print the model configuration pagoda derives from a model");
  cmd->add_option("PATH", opts->path, "Hugging Face model folder, its config.json, or a .gguf file")->required();
  cmd->add_flag("--json", opts->json, "Print the whole configuration as JSON");
  return [opts] {
    model::ModelConfig c = load_config(opts->path);
    if (opts->json) {
      fmt::print("{}\n", model::model_config_to_json(c));
    } else {
      print_summary(c);
    }
    return 0;
  };
});

}  // namespace
}  // namespace pagoda::cli
