#include "model/loader/model_files.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"

namespace pagoda {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxTokenizerJsonBytes = 256ull << 20;
constexpr uint64_t kMaxTokenizerConfigBytes = 16ull << 20;

std::string gguf_tokenizer_kind(const gguf::File& f) {
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model) return "none";
  if (*model == "gpt2") return "gpt2 (byte-level BPE)";
  if (*model == "llama") return "llama (SentencePiece BPE)";
  return *model;
}

// tokenizer.json: only "model.type" is needed here, so a SAX pass records it without building the
// (possibly 30 MB) document.
std::string tokenizer_json_kind(const std::string& path) {
  std::string text = read_text_file(path, kMaxTokenizerJsonBytes);
  struct Finder : nlohmann::json_sax<nlohmann::json> {
    int depth = 0;
    bool in_model = false;
    int model_depth = 0;
    std::string last_key;
    std::string type;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t& s) override {
      if (in_model && depth == model_depth && last_key == "type" && type.empty()) type = s;
      return true;
    }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override {
      ++depth;
      if (depth == 2 && last_key == "model") {
        in_model = true;
        model_depth = depth;
      }
      return depth < 256;
    }
    bool end_object() override {
      if (in_model && depth == model_depth) in_model = false;
      --depth;
      return true;
    }
    bool start_array(std::size_t) override { return ++depth < 256; }
    bool end_array() override {
      --depth;
      return true;
    }
    bool key(string_t& k) override {
      last_key = k;
      return true;
    }
    bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) override {
      fail(ErrorCode::kInvalidFile, "{}: invalid JSON near byte {}", "tokenizer.json", pos);
    }
  } finder;
  try {
    nlohmann::json::sax_parse(text, &finder);
  } catch (const Error&) {
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON", path);
  }
  if (finder.type.empty()) return "unknown (tokenizer.json without model.type)";
  return finder.type + " (tokenizer.json)";
}

std::optional<std::string> folder_chat_template(const fs::path& dir) {
  fs::path jinja = dir / "chat_template.jinja";
  std::error_code ec;
  if (fs::exists(jinja, ec)) return read_text_file(jinja.string(), kMaxTokenizerConfigBytes);
  fs::path cfg = dir / "tokenizer_config.json";
  if (!fs::exists(cfg, ec)) return std::nullopt;
  auto j = nlohmann::json::parse(read_text_file(cfg.string(), kMaxTokenizerConfigBytes), nullptr, false);
  if (j.is_discarded()) fail(ErrorCode::kInvalidFile, "{}: invalid JSON", cfg.string());
  if (!j.is_object() || !j.contains("chat_template")) return std::nullopt;
  const auto& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  // A list of named templates: the one named "default" is the chat template.
  if (t.is_array()) {
    for (const auto& item : t) {
      if (item.is_object() && item.value("name", "") == "default" && item.contains("template") &&
          item["template"].is_string()) {
        return item["template"].get<std::string>();
      }
    }
  }
  return std::nullopt;
}

}  // namespace

ModelFiles ModelFiles::open(const std::string& path) {
  ModelFiles m;
  m.path_ = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    m.format_ = ModelFormat::kHfFolder;
    m.open_folder();
  } else if (fs::exists(path, ec)) {
    m.format_ = ModelFormat::kGguf;
    m.open_gguf();
  } else {
    fail(ErrorCode::kNotFound, "{}: no such file or folder", path);
  }
  return m;
}

void ModelFiles::open_gguf() {
  gguf_ = std::make_shared<const gguf::File>(gguf::File::open(path_));
  config_ = model::config_from_gguf(*gguf_);
  for (const auto& t : gguf_->tensors())
    tensors_.push_back({t.name, t.shape, t.dtype, t.nbytes});
  tokenizer_kind_ = gguf_tokenizer_kind(*gguf_);
  chat_template_ = gguf_->get_string("tokenizer.chat_template");
}

void ModelFiles::open_folder() {
  fs::path dir(path_);
  config_ = model::load_hf_config(path_);
  checkpoint_ = std::make_shared<const safetensors::Checkpoint>(safetensors::Checkpoint::open_folder(path_));
  if (checkpoint_->num_tensors() == 0) fail(ErrorCode::kInvalidFile, "{}: the checkpoint holds no tensors", path_);
  for (const auto& e : checkpoint_->tensors()) {
    tensors_.push_back({e.info->name, e.info->shape, e.info->dtype, e.info->nbytes});
  }
  std::error_code ec;
  if (fs::exists(dir / "tokenizer.json", ec)) tokenizer_kind_ = tokenizer_json_kind((dir / "tokenizer.json").string());
  chat_template_ = folder_chat_template(dir);
}

Tensor ModelFiles::tensor(std::string_view name) const {
  if (gguf_) {
    const gguf::TensorInfo* info = gguf_->find_tensor(name);
    if (info == nullptr) fail(ErrorCode::kNotFound, "{}: no tensor named '{}'", path_, name);
    return gguf_->tensor(*info);
  }
  return checkpoint_->tensor(name);
}

int64_t ModelFiles::parameter_count() const {
  int64_t n = 0;
  for (const auto& t : tensors_)
    n += t.shape.numel();
  return n;
}

std::map<DType, DTypeUsage> ModelFiles::dtype_mix() const {
  std::map<DType, DTypeUsage> mix;
  for (const auto& t : tensors_) {
    DTypeUsage& u = mix[t.dtype];
    u.tensors += 1;
    u.elements += t.shape.numel();
    u.bytes += t.nbytes;
  }
  return mix;
}

uint64_t ModelFiles::weight_bytes() const {
  if (gguf_) return gguf_->file_size();
  uint64_t total = 0;
  for (size_t i = 0; i < checkpoint_->num_files(); ++i)
    total += checkpoint_->file(i).file_size();
  return total;
}

}  // namespace pagoda
