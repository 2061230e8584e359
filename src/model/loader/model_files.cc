#include "model/loader/model_files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <vector>

#include "backends/cpu/quant/float_convert.h"
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

ModelFiles ModelFiles::open_dummy(const std::string& config_path, std::optional<DType> dtype, uint64_t seed) {
  ModelFiles m;
  m.path_ = config_path;
  m.format_ = ModelFormat::kHfFolder;
  m.config_ = model::load_hf_config(config_path);
  m.dummy_ = true;
  m.dummy_seed_ = seed;
  if (dtype) {
    if (*dtype != DType::kF32 && *dtype != DType::kF16 && *dtype != DType::kBF16) {
      fail(ErrorCode::kInvalidArgument, "{}: dummy weights must be f32, f16 or bf16, not {}", config_path,
           dtype_name(*dtype));
    }
    m.dummy_dtype_ = *dtype;
  } else {
    const std::string& t = m.config_.torch_dtype;
    m.dummy_dtype_ = t == "float32" ? DType::kF32 : t == "bfloat16" ? DType::kBF16 : DType::kF16;
  }
  return m;
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr float kScale = 0.02f;

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s)
    h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

}  // namespace

Tensor ModelFiles::dummy_tensor(const std::string& name, const Shape& shape, bool f32) const {
  if (!dummy_) fail(ErrorCode::kInternal, "{}: dummy_tensor of a model with weight files", path_);
  const DType dtype = f32 ? DType::kF32 : dummy_dtype_;
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = shape.numel();
  // Element i is drawn from a counter-based generator (the seed and the name give the key, i the
  // counter), so the values do not depend on how the work is split among threads.
  const uint64_t key = splitmix64(dummy_seed_ ^ fnv1a(name));
  auto* bytes = static_cast<uint8_t*>(t.raw_data());
  auto fill = [key, dtype, bytes](int64_t begin, int64_t end) {
    auto* f = reinterpret_cast<float*>(bytes);
    auto* h = reinterpret_cast<uint16_t*>(bytes);
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t r = splitmix64(key + static_cast<uint64_t>(i));
      // 24 random bits → [-1, 1), times the scale.
      const float v = static_cast<float>(static_cast<int64_t>(r >> 40) - (int64_t{1} << 23)) *
                      (kScale / static_cast<float>(1 << 23));
      if (dtype == DType::kF32) {
        f[i] = v;
      } else if (dtype == DType::kBF16) {
        h[i] = cpu::fp32_to_bf16(v);
      } else {
        h[i] = cpu::fp32_to_fp16(v);
      }
    }
  };
  const int64_t threads =
      std::clamp<int64_t>(std::min<int64_t>(std::thread::hardware_concurrency(), n / (int64_t{1} << 20)), 1, 32);
  if (threads == 1) {
    fill(0, n);
    return t;
  }
  std::vector<std::thread> pool;
  const int64_t per = (n + threads - 1) / threads;
  for (int64_t k = 0; k < threads; ++k)
    pool.emplace_back(fill, std::min(n, k * per), std::min(n, (k + 1) * per));
  for (auto& th : pool)
    th.join();
  return t;
}

Tensor ModelFiles::tensor(std::string_view name) const {
  if (dummy_) fail(ErrorCode::kNotFound, "{}: dummy weights have no tensor named '{}' in a file", path_, name);
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
  if (dummy_) return 0;
  if (gguf_) return gguf_->file_size();
  uint64_t total = 0;
  for (size_t i = 0; i < checkpoint_->num_files(); ++i)
    total += checkpoint_->file(i).file_size();
  return total;
}

}  // namespace pagoda
