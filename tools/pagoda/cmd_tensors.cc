// `pagoda tensors PATH`: lists the tensors of a GGUF file, a .safetensors file or a Hugging Face
// checkpoint folder with name, dtype, shape, location and an XXH64 checksum of each tensor's
// bytes, so that a file's contents can be compared with what another tool wrote or reads.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "command.h"
#include "core/tensor.h"
#include "model/loader/gguf.h"
#include "model/loader/safetensors.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace pagoda::cli {
namespace {

using OrderedJson = nlohmann::ordered_json;

struct TensorsOptions {
  std::string path;
  bool json = false;
  bool no_hash = false;
};

// One listed tensor, whatever the format.
struct Row {
  std::string name;
  DType dtype;
  Shape shape;
  const std::string* file;
  uint64_t offset;
  uint64_t nbytes;
  std::string xxh64;  // empty with --no-hash
};

// What was opened: a header for the listing, the files, and the rows.
struct Listing {
  OrderedJson summary = OrderedJson::object();  // format-specific fields of the JSON output
  std::string description;                      // the text output's first line
  std::vector<std::pair<std::string, std::string>> text_metadata;
  std::vector<Row> rows;
};

std::string xxh64_hex(const Tensor& t, uint64_t nbytes) {
  return fmt::format("{:016x}", XXH64(t.raw_data(), nbytes, 0));
}

// Names are valid UTF-8 (both readers check) but may hold control characters.
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

bool is_gguf_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, sizeof magic);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

void list_gguf(const gguf::File& f, bool hash, Listing& out) {
  out.summary["format"] = "gguf";
  out.summary["version"] = f.version();
  out.summary["alignment"] = f.alignment();
  out.summary["data_offset"] = f.data_offset();
  out.summary["metadata_keys"] = f.metadata().size();
  out.description = fmt::format("gguf v{}, {} metadata keys", f.version(), f.metadata().size());
  for (const gguf::TensorInfo& t : f.tensors()) {
    out.rows.push_back(
        Row{t.name, t.dtype, t.shape, &f.path(), t.offset, t.nbytes, hash ? xxh64_hex(f.tensor(t), t.nbytes) : ""});
  }
}

void list_safetensors(const safetensors::Checkpoint& ckpt, bool hash, Listing& out) {
  out.summary["format"] = "safetensors";
  if (!ckpt.index_path().empty()) {
    out.summary["index"] = ckpt.index_path();
    out.summary["index_metadata"] = OrderedJson::parse(ckpt.index_metadata_json());
  }
  OrderedJson files = OrderedJson::array();
  for (size_t i = 0; i < ckpt.num_files(); ++i) {
    const safetensors::File& f = ckpt.file(i);
    OrderedJson metadata = OrderedJson::object();
    for (const auto& [k, v] : f.metadata()) {
      metadata[k] = v;
      out.text_metadata.emplace_back(k, v);
    }
    files.push_back({{"path", f.path()},
                     {"size", f.file_size()},
                     {"data_offset", f.data_offset()},
                     {"tensors", f.tensors().size()},
                     {"metadata", std::move(metadata)}});
  }
  out.summary["files"] = std::move(files);
  out.description = fmt::format("safetensors, {} file{}", ckpt.num_files(), ckpt.num_files() == 1 ? "" : "s");
  for (const auto& e : ckpt.tensors()) {
    const safetensors::TensorInfo& t = *e.info;
    out.rows.push_back(Row{t.name, t.dtype, t.shape, &e.file->path(), t.offset, t.nbytes,
                           hash ? xxh64_hex(e.file->tensor(t), t.nbytes) : ""});
  }
}

void print_json(const TensorsOptions& opt, Listing& listing) {
  OrderedJson out;
  out["path"] = opt.path;
  for (auto& [k, v] : listing.summary.items())
    out[k] = std::move(v);
  OrderedJson list = OrderedJson::array();
  for (const Row& r : listing.rows) {
    OrderedJson item = {{"name", r.name},
                        {"dtype", std::string(dtype_name(r.dtype))},
                        {"shape", std::vector<int64_t>(r.shape.dims().begin(), r.shape.dims().end())},
                        {"file", *r.file},
                        {"offset", r.offset},
                        {"nbytes", r.nbytes}};
    if (!r.xxh64.empty()) item["xxh64"] = r.xxh64;
    list.push_back(std::move(item));
  }
  out["tensors"] = std::move(list);
  fmt::print("{}\n", out.dump(2, ' ', false, OrderedJson::error_handler_t::replace));
}

void print_text(const TensorsOptions& opt, const Listing& listing) {
  fmt::print("{}: {}, {} tensor{}\n", opt.path, listing.description, listing.rows.size(),
             listing.rows.size() == 1 ? "" : "s");
  for (const auto& [k, v] : listing.text_metadata)
    fmt::print("  metadata {} = {}\n", printable(k), printable(v));
  const std::string* current = nullptr;
  bool several_files = false;
  for (const Row& r : listing.rows)
    several_files |= r.file != listing.rows.front().file;
  for (const Row& r : listing.rows) {
    if (several_files && r.file != current) {
      current = r.file;
      fmt::print("{}:\n", *current);
    }
    std::string hash = r.xxh64.empty() ? "" : "  xxh64=" + r.xxh64;
    fmt::print("  {:<40} {:<7} {:<20} offset={} nbytes={}{}\n", printable(r.name), dtype_name(r.dtype), r.shape.str(),
               r.offset, r.nbytes, hash);
  }
}

int run_tensors(const TensorsOptions& opt) {
  Listing listing;
  // The readers own the mappings the rows point into, so they live until the output is printed.
  std::optional<gguf::File> gguf_file;
  std::optional<safetensors::Checkpoint> checkpoint;
  if (is_gguf_file(opt.path)) {
    gguf_file.emplace(gguf::File::open(opt.path));
    list_gguf(*gguf_file, !opt.no_hash, listing);
  } else {
    checkpoint.emplace(safetensors::Checkpoint::open(opt.path));
    list_safetensors(*checkpoint, !opt.no_hash, listing);
  }
  if (opt.json) {
    print_json(opt, listing);
  } else {
    print_text(opt, listing);
  }
  return 0;
}

const CommandRegistration kRegisterTensors("tensors", [](CLI::App& app) {
  auto opt = std::make_shared<TensorsOptions>();
  CLI::App* sub =
      app.add_subcommand("tensors", "List the tensors of a GGUF or .safetensors file or a checkpoint folder");
  sub->add_option("path", opt->path,
                  "a .gguf or .safetensors file, a model.safetensors.index.json, or a Hugging Face model folder")
      ->required();
  sub->add_flag("--json", opt->json, "print JSON instead of text");
  sub->add_flag("--no-hash", opt->no_hash, "skip the XXH64 checksum of each tensor (reads no tensor data)");
  return [opt] { return run_tensors(*opt); };
});

}  // namespace
}  // namespace pagoda::cli
