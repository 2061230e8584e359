#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "backend/device_list.h"
#include "command.h"
#include "model/loader/model_files.h"

namespace pagoda::cli {
namespace {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string human_count(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.1f} M", static_cast<double>(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f} K", static_cast<double>(n) / 1e3);
  return fmt::format("{}", n);
}

nlohmann::json model_json(const ModelFiles& m) {
  const model::ModelConfig& c = m.config();
  nlohmann::json j;
  j["path"] = m.path();
  j["format"] = m.format() == ModelFormat::kGguf ? "gguf" : "hf";
  if (const gguf::File* g = m.gguf_file()) j["gguf_version"] = g->version();
  j["file_bytes"] = m.weight_bytes();
  j["architecture"] = std::string(model::architecture_name(c.arch));
  j["name"] = c.name;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["context_length"] = c.max_position_embeddings;
  j["sliding_window"] = c.sliding_window;
  j["num_experts"] = c.moe.num_experts;
  j["num_experts_per_tok"] = c.moe.num_experts_per_tok;
  j["rope_type"] = std::string(model::rope_type_name(c.rope.type));
  j["rope_theta"] = c.rope.theta;
  j["parameters"] = m.parameter_count();
  j["num_tensors"] = m.tensors().size();
  nlohmann::json mix = nlohmann::json::object();
  for (const auto& [dtype, usage] : m.dtype_mix()) {
    mix[std::string(dtype_name(dtype))] = {
        {"tensors", usage.tensors}, {"elements", usage.elements}, {"bytes", usage.bytes}};
  }
  j["tensor_types"] = mix;
  j["tokenizer"] = m.tokenizer_kind();
  j["chat_template"] = m.chat_template().has_value();
  j["bos_token_id"] = c.bos_token_id ? nlohmann::json(*c.bos_token_id) : nlohmann::json(nullptr);
  j["eos_token_ids"] = c.eos_token_ids;
  return j;
}

void print_model(const ModelFiles& m) {
  const model::ModelConfig& c = m.config();
  std::string format = m.format() == ModelFormat::kGguf
                           ? fmt::format("GGUF v{}", m.gguf_file()->version())
                           : fmt::format("HF folder, {} safetensors file(s)", m.checkpoint()->num_files());
  fmt::print("{:<15}{} ({}, {})\n", "model", m.path(), format, human_bytes(m.weight_bytes()));
  fmt::print("{:<15}{}{}\n", "architecture", model::architecture_name(c.arch),
             c.name.empty() ? "" : fmt::format(" ({})", c.name));
  fmt::print("{:<15}{}\n", "layers", c.num_layers);
  fmt::print("{:<15}{} query, {} key/value, head dim {}\n", "heads", c.num_heads, c.num_kv_heads, c.head_dim);
  fmt::print("{:<15}{} (feed-forward {})\n", "hidden size", c.hidden_size, c.intermediate_size);
  if (c.is_moe()) {
    fmt::print("{:<15}{} experts, {} per token\n", "experts", c.moe.num_experts, c.moe.num_experts_per_tok);
  }
  fmt::print("{:<15}{}\n", "vocab size", c.vocab_size);
  fmt::print("{:<15}{} tokens{}\n", "context", c.max_position_embeddings,
             c.sliding_window > 0 ? fmt::format(" (sliding window {})", c.sliding_window) : "");
  fmt::print("{:<15}{} theta {}\n", "rope", model::rope_type_name(c.rope.type), c.rope.theta);
  fmt::print("{:<15}{} ({} tensors)\n", "parameters", human_count(m.parameter_count()), m.tensors().size());
  bool first = true;
  for (const auto& [dtype, usage] : m.dtype_mix()) {
    fmt::print("{:<15}{:<6} {:>4} tensors {:>10} params {:>10}\n", first ? "tensor types" : "", dtype_name(dtype),
               usage.tensors, human_count(usage.elements), human_bytes(usage.bytes));
    first = false;
  }
  fmt::print("{:<15}{}\n", "tokenizer", m.tokenizer_kind());
  fmt::print("{:<15}{}\n", "chat template",
             m.chat_template() ? fmt::format("present ({} bytes)", m.chat_template()->size()) : "absent");
}

nlohmann::json devices_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const BackendReport& b : list_backends()) {
    nlohmann::json jb = {{"backend", b.name}, {"compiled", b.compiled}, {"status", b.status}};
    nlohmann::json devs = nlohmann::json::array();
    for (const DeviceReport& d : b.devices) {
      devs.push_back({{"id", d.id},
                      {"name", d.name},
                      {"vendor", d.vendor},
                      {"driver", d.driver},
                      {"global_memory", d.global_memory},
                      {"max_alloc", d.max_alloc},
                      {"local_memory", d.local_memory},
                      {"max_work_group_size", d.max_work_group_size},
                      {"fp16", d.fp16},
                      {"subgroups", d.subgroups},
                      {"subgroup_sizes", d.subgroup_sizes},
                      {"usm", d.usm},
                      {"notes", d.notes}});
    }
    jb["devices"] = devs;
    out.push_back(jb);
  }
  return out;
}

void print_devices() {
  for (const BackendReport& b : list_backends()) {
    fmt::print("{}: {}\n", b.name, b.compiled ? b.status : b.status);
    for (const DeviceReport& d : b.devices) {
      fmt::print("  {:<8} {}{}\n", d.id, d.name, d.vendor.empty() ? "" : fmt::format(" ({})", d.vendor));
      if (d.global_memory == 0) continue;
      std::string sg = d.subgroups ? "yes" : "no";
      if (!d.subgroup_sizes.empty()) sg += fmt::format(" {}", fmt::join(d.subgroup_sizes, "/"));
      fmt::print("           memory {} (max alloc {}), local {}, max work-group {}\n", human_bytes(d.global_memory),
                 human_bytes(d.max_alloc), human_bytes(d.local_memory), d.max_work_group_size);
      fmt::print("           fp16 {}, subgroups {}, usm {}, driver {}{}\n", d.fp16 ? "yes" : "no", sg,
                 d.usm ? "yes" : "no", d.driver, d.notes.empty() ? "" : ", " + d.notes);
    }
  }
}

struct InfoOptions {
  std::string model;
  bool json = false;
  bool devices = false;
};

const CommandRegistration kRegisterInfo("info", [](CLI::App& app) {
  auto opts = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Describe a model (a .gguf file or an HF folder), or list devices");
  cmd->add_option("MODEL", opts->model, "a .gguf file or an HF model folder (default: the default model)");
  cmd->add_flag("--json", opts->json, "print one JSON object");
  cmd->add_flag("--devices", opts->devices, "list the devices of every backend instead");
  return [opts]() {
    if (opts->devices) {
      if (opts->json) {
        fmt::print("{}\n", devices_json().dump(2));
      } else {
        print_devices();
      }
      return 0;
    }
    std::string path = opts->model.empty() ? default_model_path() : opts->model;
    ModelFiles m = ModelFiles::open(path);
    if (opts->json) {
      fmt::print("{}\n", model_json(m).dump(2));
    } else {
      print_model(m);
    }
    return 0;
  };
});

}  // namespace
}  // namespace pagoda::cli
