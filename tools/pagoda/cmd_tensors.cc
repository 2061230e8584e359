// `pagoda tensors PATH`: lists the tensors of a .safetensors file or a Hugging Face checkpoint
// folder with name, dtype, shape, location and an XXH64 checksum of each tensor's bytes, so
// that a file's contents can be compared with what another tool wrote or read.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <string>

#include "command.h"
#include "core/tensor.h"
#include "model/loader/safetensors.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace pagoda::cli {
namespace {

struct TensorsOptions {
  std::string path;
  bool json = false;
  bool no_hash = false;
};

std::string xxh64_hex(const void* data, uint64_t nbytes) {
  return fmt::format("{:016x}", XXH64(data, nbytes, 0));
}

// Names are valid UTF-8 (the JSON parser checks) but may hold control characters.
std::string printable(std::string_view text) {
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

nlohmann::ordered_json metadata_json(const safetensors::File& f) {
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : f.metadata())
    m[k] = v;
  return m;
}

int run_tensors(const TensorsOptions& opt) {
  safetensors::Checkpoint ckpt = safetensors::Checkpoint::open(opt.path);
  std::vector<safetensors::Checkpoint::Entry> entries = ckpt.tensors();

  if (opt.json) {
    nlohmann::ordered_json out;
    out["path"] = opt.path;
    out["format"] = "safetensors";
    if (!ckpt.index_path().empty()) {
      out["index"] = ckpt.index_path();
      out["index_metadata"] = nlohmann::ordered_json::parse(ckpt.index_metadata_json());
    }
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    for (size_t i = 0; i < ckpt.num_files(); ++i) {
      const safetensors::File& f = ckpt.file(i);
      files.push_back({{"path", f.path()},
                       {"size", f.file_size()},
                       {"data_offset", f.data_offset()},
                       {"tensors", f.tensors().size()},
                       {"metadata", metadata_json(f)}});
    }
    out["files"] = std::move(files);
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& e : entries) {
      const safetensors::TensorInfo& t = *e.info;
      nlohmann::ordered_json item = {{"name", t.name},
                                     {"dtype", std::string(dtype_name(t.dtype))},
                                     {"shape", std::vector<int64_t>(t.shape.dims().begin(), t.shape.dims().end())},
                                     {"file", e.file->path()},
                                     {"offset", t.offset},
                                     {"nbytes", t.nbytes}};
      if (!opt.no_hash) item["xxh64"] = xxh64_hex(e.file->tensor(t).raw_data(), t.nbytes);
      list.push_back(std::move(item));
    }
    out["tensors"] = std::move(list);
    fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return 0;
  }

  fmt::print("{}: safetensors, {} file{}, {} tensor{}\n", opt.path, ckpt.num_files(), ckpt.num_files() == 1 ? "" : "s",
             entries.size(), entries.size() == 1 ? "" : "s");
  for (size_t i = 0; i < ckpt.num_files(); ++i) {
    const safetensors::File& f = ckpt.file(i);
    for (const auto& [k, v] : f.metadata())
      fmt::print("  metadata {}: {} = {}\n", f.path(), printable(k), printable(v));
  }
  const safetensors::File* current = nullptr;
  for (const auto& e : entries) {
    if (ckpt.num_files() > 1 && e.file != current) {
      current = e.file;
      fmt::print("{}:\n", current->path());
    }
    const safetensors::TensorInfo& t = *e.info;
    std::string hash = opt.no_hash ? "" : "  xxh64=" + xxh64_hex(e.file->tensor(t).raw_data(), t.nbytes);
    fmt::print("  {:<40} {:<5} {:<20} offset={} nbytes={}{}\n", printable(t.name), dtype_name(t.dtype), t.shape.str(),
               t.offset, t.nbytes, hash);
  }
  return 0;
}

const CommandRegistration kRegisterTensors("tensors", [](CLI::App& app) {
  auto opt = std::make_shared<TensorsOptions>();
  CLI::App* sub = app.add_subcommand("tensors", "List the tensors of a .safetensors file or checkpoint folder");
  sub->add_option("path", opt->path, "a .safetensors file, a model.safetensors.index.json, or a model folder")
      ->required();
  sub->add_flag("--json", opt->json, "print JSON instead of text");
  sub->add_flag("--no-hash", opt->no_hash, "skip the XXH64 checksum of each tensor (reads no tensor data)");
  return [opt] { return run_tensors(*opt); };
});

}  // namespace
}  // namespace pagoda::cli
