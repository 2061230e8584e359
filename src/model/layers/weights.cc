#include "model/layers/weights.h"

#include <cstring>

#include "backend/backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "core/checked.h"
#include "core/error.h"
#include "model/loader/model_files.h"

namespace pagoda::model {
namespace {

std::string substitute(std::string_view pattern, int64_t layer, int64_t expert) {
  std::string out(pattern);
  auto replace = [&](std::string_view key, int64_t value) {
    if (value < 0) return;
    for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at))
      out.replace(at, key.size(), std::to_string(value));
  };
  replace("{i}", layer);
  replace("{e}", expert);
  return out;
}

std::string_view op_use(OpKind op) {
  switch (op) {
    case OpKind::kEmbedding: return "as an embedding table";
    case OpKind::kMoeExperts: return "for expert layers";
    default: return "for matrix products";
  }
}

}  // namespace

WeightLoader::WeightLoader(const ModelFiles& files, const ModelConfig& config, Device device, HfNames hf_names)
    : files_(files),
      config_(config),
      device_(device),
      gguf_(files.format() == ModelFormat::kGguf),
      source_(files.path()) {
  for (auto& [gguf_name, hf_name] : hf_names)
    hf_names_.emplace(std::string(gguf_name), std::move(hf_name));
  const auto& tensors = files_.tensors();
  for (size_t i = 0; i < tensors.size(); ++i)
    index_.emplace(tensors[i].name, i);
}

const std::string& WeightLoader::hf_base(std::string_view base) const {
  auto it = hf_names_.find(std::string(base));
  if (it == hf_names_.end()) {
    fail(ErrorCode::kInternal, "{}: no Hugging Face name for weight '{}' of {}", source_, base,
         architecture_name(config_.arch));
  }
  return it->second;
}

std::string WeightLoader::name(std::string_view base, int64_t layer, std::string_view suffix, int64_t expert) const {
  std::string stem = gguf_ ? substitute(base, layer, expert) : substitute(hf_base(base), layer, expert);
  if (suffix.empty()) return stem;
  return stem + "." + std::string(suffix);
}

bool WeightLoader::has_file_tensor(const std::string& file_name) const {
  return index_.contains(file_name);
}

bool WeightLoader::has(std::string_view base, int64_t layer, std::string_view suffix) const {
  if (!gguf_ && !hf_names_.contains(std::string(base))) return false;
  return has_file_tensor(name(base, layer, suffix));
}

Tensor WeightLoader::host_tensor(const std::string& file_name, const Shape& shape) const {
  if (files_.is_dummy()) return files_.dummy_tensor(file_name, shape, shape.ndim() == 1);
  auto it = index_.find(file_name);
  if (it == index_.end()) {
    fail(ErrorCode::kInvalidFile, "{}: missing tensor '{}' ({} expects it)", source_, file_name,
         architecture_name(config_.arch));
  }
  const TensorEntry& entry = files_.tensors()[it->second];
  if (!(entry.shape == shape)) {
    fail(ErrorCode::kInvalidFile, "{}: tensor '{}' has shape {}, expected {} for this {} config", source_, file_name,
         entry.shape.str(), shape.str(), architecture_name(config_.arch));
  }
  return files_.tensor(file_name);
}

void WeightLoader::check_support(const std::string& file_name, DType dtype, OpKind op) const {
  Backend& backend = backend_for(device_);
  if (!backend.supports(op, dtype)) {
    fail(ErrorCode::kUnsupported, "{}: tensor '{}' has type {}, which the {} backend does not support {}", source_,
         file_name, dtype_name(dtype), backend.name(), op_use(op));
  }
}

Tensor WeightLoader::matrix(std::string_view base, int64_t layer, int64_t rows, int64_t cols, OpKind op) const {
  const std::string file_name = name(base, layer);
  Tensor t = host_tensor(file_name, Shape{rows, cols});
  check_support(file_name, t.dtype(), op);
  return to_device(t, device_);
}

Tensor WeightLoader::vector_f32(std::string_view base, int64_t layer, int64_t n, std::string_view suffix) const {
  const std::string file_name = name(base, layer, suffix);
  Tensor t = host_tensor(file_name, Shape{n});
  if (t.dtype() != DType::kF32) {
    if (t.dtype() != DType::kF16 && t.dtype() != DType::kBF16) {
      fail(ErrorCode::kUnsupported, "{}: tensor '{}' has type {}; a norm weight or bias must be f32, f16 or bf16",
           source_, file_name, dtype_name(t.dtype()));
    }
    Tensor f = Tensor::empty(Shape{n}, DType::kF32);
    cpu::dequantize_row(t.dtype(), t.raw_data(), f.data<float>(), n);
    t = f;
  } else if (reinterpret_cast<uintptr_t>(t.raw_data()) % alignof(float) != 0) {
    // A mapped f32 vector need not be aligned in a safetensors file; kernels may assume it is.
    Tensor f = Tensor::empty(Shape{n}, DType::kF32);
    std::memcpy(f.raw_data(), t.raw_data(), static_cast<size_t>(n) * sizeof(float));
    t = f;
  }
  return to_device(t, device_);
}

Linear WeightLoader::linear(std::string_view base, int64_t layer, int64_t out, int64_t in, bool bias) const {
  Linear l;
  l.weight = matrix(base, layer, out, in);
  if (bias) l.bias = vector_f32(base, layer, out, "bias");
  return l;
}

Norm WeightLoader::norm(std::string_view base, int64_t layer, int64_t n, bool bias) const {
  Norm m;
  m.weight = vector_f32(base, layer, n);
  if (bias) m.bias = vector_f32(base, layer, n, "bias");
  return m;
}

Tensor WeightLoader::concat_experts(const std::vector<std::vector<Tensor>>& parts, const Shape& out_shape,
                                    const std::string& what) const {
  const DType dtype = parts.at(0).at(0).dtype();
  for (const auto& expert : parts) {
    for (const Tensor& p : expert) {
      if (p.dtype() != dtype) {
        fail(ErrorCode::kUnsupported, "{}: the expert tensors of {} mix types {} and {}, which pagoda cannot stack",
             source_, what, dtype_name(dtype), dtype_name(p.dtype()));
      }
    }
  }
  check_support(what, dtype, OpKind::kMoeExperts);
  Tensor out = Tensor::empty(out_shape, dtype);
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  uint64_t written = 0;
  for (const auto& expert : parts) {
    for (const Tensor& p : expert) {
      const uint64_t n = p.nbytes();
      std::memcpy(dst + written, p.raw_data(), n);
      written += n;
    }
  }
  if (written != out.nbytes()) {
    fail(ErrorCode::kInternal, "{}: stacked {} bytes of experts for {}, expected {}", source_, written, what,
         out.nbytes());
  }
  return to_device(out, device_);
}

WeightLoader::Experts WeightLoader::experts(int64_t layer, int64_t num_experts, int64_t inter, int64_t hidden,
                                            const std::string& hf_fused_gate_up,
                                            const std::string& hf_fused_down) const {
  Experts x;
  const Shape gate_up_shape{num_experts, 2 * inter, hidden};
  const Shape down_shape{num_experts, hidden, inter};
  const std::string where = fmt::format("layer {}", layer);

  if (gguf_ && has("blk.{i}.ffn_gate_exps", layer)) {
    Tensor gate = host_tensor(name("blk.{i}.ffn_gate_exps", layer), Shape{num_experts, inter, hidden});
    Tensor up = host_tensor(name("blk.{i}.ffn_up_exps", layer), Shape{num_experts, inter, hidden});
    std::vector<std::vector<Tensor>> parts(static_cast<size_t>(num_experts));
    for (int64_t e = 0; e < num_experts; ++e)
      parts[static_cast<size_t>(e)] = {gate.slice(0, e, e + 1), up.slice(0, e, e + 1)};
    x.gate_up = concat_experts(parts, gate_up_shape, name("blk.{i}.ffn_gate_exps", layer) + " + ffn_up_exps");
    const std::string down_name = name("blk.{i}.ffn_down_exps", layer);
    Tensor down = host_tensor(down_name, down_shape);
    check_support(down_name, down.dtype(), OpKind::kMoeExperts);
    x.down = to_device(down, device_);
    return x;
  }

  if (!gguf_) {
    const std::string fused_gate_up = substitute(hf_fused_gate_up, layer, -1);
    const std::string fused_down = substitute(hf_fused_down, layer, -1);
    if (has_file_tensor(fused_gate_up)) {
      Tensor gu = host_tensor(fused_gate_up, gate_up_shape);
      check_support(fused_gate_up, gu.dtype(), OpKind::kMoeExperts);
      Tensor down = host_tensor(fused_down, down_shape);
      check_support(fused_down, down.dtype(), OpKind::kMoeExperts);
      x.gate_up = to_device(gu, device_);
      x.down = to_device(down, device_);
      return x;
    }
  }

  // One tensor per expert: "blk.{i}.ffn_gate.{e}" (older GGUF files) or the family's HF names.
  std::vector<std::vector<Tensor>> gate_up(static_cast<size_t>(num_experts));
  std::vector<std::vector<Tensor>> down(static_cast<size_t>(num_experts));
  const Shape in_shape{inter, hidden};
  const Shape out_shape{hidden, inter};
  for (int64_t e = 0; e < num_experts; ++e) {
    const auto ue = static_cast<size_t>(e);
    gate_up[ue] = {host_tensor(name("blk.{i}.ffn_gate.{e}", layer, "weight", e), in_shape),
                   host_tensor(name("blk.{i}.ffn_up.{e}", layer, "weight", e), in_shape)};
    down[ue] = {host_tensor(name("blk.{i}.ffn_down.{e}", layer, "weight", e), out_shape)};
  }
  x.gate_up = concat_experts(gate_up, gate_up_shape, fmt::format("the gate and up experts of {}", where));
  x.down = concat_experts(down, down_shape, fmt::format("the down experts of {}", where));
  return x;
}

Linear WeightLoader::neox_qkv(std::string_view base, int64_t layer, int64_t num_heads, int64_t head_dim, int64_t hidden,
                              bool bias) const {
  const int64_t rows = 3 * num_heads * head_dim;
  if (gguf_) return linear(base, layer, rows, hidden, bias);  // the converter already regrouped them

  const std::string weight_name = name(base, layer);
  Tensor w = host_tensor(weight_name, Shape{rows, hidden});
  check_support(weight_name, w.dtype(), OpKind::kMatmul);
  const auto row_bytes = dtype_row_bytes(w.dtype(), hidden);
  if (!row_bytes) fail(ErrorCode::kInvalidFile, "{}: tensor '{}' has rows of a broken size", source_, weight_name);
  Tensor reordered = Tensor::empty(Shape{rows, hidden}, w.dtype());
  Tensor bias_host = bias ? to_host(vector_f32(base, layer, rows, "bias")) : Tensor();
  Tensor bias_out = bias ? Tensor::empty(Shape{rows}, DType::kF32) : Tensor();
  const auto* src = static_cast<const uint8_t*>(w.raw_data());
  auto* dst = static_cast<uint8_t*>(reordered.raw_data());
  // HF row (head h, part p, dim d) = h * 3 * head_dim + p * head_dim + d; pagoda's row
  // p * num_heads * head_dim + h * head_dim + d.
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t p = 0; p < 3; ++p) {
      const int64_t from = (h * 3 + p) * head_dim;
      const int64_t to = (p * num_heads + h) * head_dim;
      std::memcpy(dst + static_cast<uint64_t>(to) * *row_bytes, src + static_cast<uint64_t>(from) * *row_bytes,
                  static_cast<size_t>(head_dim) * *row_bytes);
      if (bias) {
        std::memcpy(bias_out.data<float>() + to, bias_host.data<float>() + from,
                    static_cast<size_t>(head_dim) * sizeof(float));
      }
    }
  }
  return Linear{to_device(reordered, device_), bias ? to_device(bias_out, device_) : Tensor()};
}

}  // namespace pagoda::model
