#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace pagoda {

// Element types of tensors: plain scalars and every GGUF block-quantized type. A block type packs
// `block_size()` elements into `block_bytes()` bytes; a scalar type is a block of one element.
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF64,
  kI8,
  kI16,
  kI32,
  kI64,
  kU8,
  kBool,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ8_1,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kQ8_K,
  kIQ2_XXS,
  kIQ2_XS,
  kIQ3_XXS,
  kIQ1_S,
  kIQ4_NL,
  kIQ3_S,
  kIQ2_S,
  kIQ4_XS,
  kIQ1_M,
  kTQ1_0,
  kTQ2_0,
  kMXFP4,
  kCount,  // not a type: the number of types
};

inline constexpr int kNumDTypes = static_cast<int>(DType::kCount);

struct DTypeInfo {
  std::string_view name;  // "f32", "q4_k", ... (lower case, as pagoda prints them)
  int64_t block_size;     // elements per block (1 for scalar types)
  int64_t block_bytes;    // bytes per block
  int32_t gguf_id;        // ggml_type id in GGUF files, -1 if GGUF cannot store it
  bool is_quantized;      // a block type that needs dequantization
  bool is_float;          // f32/f16/bf16/f64
};

[[nodiscard]] const DTypeInfo& dtype_info(DType t);
[[nodiscard]] inline std::string_view dtype_name(DType t) {
  return dtype_info(t).name;
}
[[nodiscard]] inline int64_t dtype_block_size(DType t) {
  return dtype_info(t).block_size;
}
[[nodiscard]] inline int64_t dtype_block_bytes(DType t) {
  return dtype_info(t).block_bytes;
}
[[nodiscard]] inline bool dtype_is_quantized(DType t) {
  return dtype_info(t).is_quantized;
}

// Bytes taken by a row of `n` elements, or nullopt when `n` is not a whole number of blocks or the
// size overflows.
[[nodiscard]] std::optional<uint64_t> dtype_row_bytes(DType t, int64_t n);

// Lookups by external names and ids; nullopt for anything unknown.
[[nodiscard]] std::optional<DType> dtype_from_gguf_id(uint32_t id);
[[nodiscard]] std::optional<DType> dtype_from_name(std::string_view name);         // "q4_k", "Q4_K", "bf16"
[[nodiscard]] std::optional<DType> dtype_from_safetensors(std::string_view name);  // "F32", "BF16", ...

}  // namespace pagoda
