#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "core/checked.h"

namespace pagoda {
namespace {

// Block geometry follows ggml's block structs. Q8_1 is 36 bytes (two halves + 32 int8), as in
// ggml-common.h; it is an activation format that files do not store.
constexpr std::array<DTypeInfo, kNumDTypes> kInfo = {{
    {"f32", 1, 4, 0, false, true},         {"f16", 1, 2, 1, false, true},         {"bf16", 1, 2, 30, false, true},
    {"f64", 1, 8, 28, false, true},        {"i8", 1, 1, 24, false, false},        {"i16", 1, 2, 25, false, false},
    {"i32", 1, 4, 26, false, false},       {"i64", 1, 8, 27, false, false},       {"u8", 1, 1, -1, false, false},
    {"bool", 1, 1, -1, false, false},      {"q4_0", 32, 18, 2, true, false},      {"q4_1", 32, 20, 3, true, false},
    {"q5_0", 32, 22, 6, true, false},      {"q5_1", 32, 24, 7, true, false},      {"q8_0", 32, 34, 8, true, false},
    {"q8_1", 32, 36, 9, true, false},      {"q2_k", 256, 84, 10, true, false},    {"q3_k", 256, 110, 11, true, false},
    {"q4_k", 256, 144, 12, true, false},   {"q5_k", 256, 176, 13, true, false},   {"q6_k", 256, 210, 14, true, false},
    {"q8_k", 256, 292, 15, true, false},   {"iq2_xxs", 256, 66, 16, true, false}, {"iq2_xs", 256, 74, 17, true, false},
    {"iq3_xxs", 256, 98, 18, true, false}, {"iq1_s", 256, 50, 19, true, false},   {"iq4_nl", 32, 18, 20, true, false},
    {"iq3_s", 256, 110, 21, true, false},  {"iq2_s", 256, 82, 22, true, false},   {"iq4_xs", 256, 136, 23, true, false},
    {"iq1_m", 256, 56, 29, true, false},   {"tq1_0", 256, 54, 34, true, false},   {"tq2_0", 256, 66, 35, true, false},
    {"mxfp4", 32, 17, 39, true, false},
}};

}  // namespace

const DTypeInfo& dtype_info(DType t) {
  return kInfo[static_cast<size_t>(t)];
}

std::optional<uint64_t> dtype_row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block_size != 0) return std::nullopt;
  return checked_mul(static_cast<uint64_t>(n / info.block_size), static_cast<uint64_t>(info.block_bytes));
}

std::optional<DType> dtype_from_gguf_id(uint32_t id) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (kInfo[i].gguf_id >= 0 && static_cast<uint32_t>(kInfo[i].gguf_id) == id) return static_cast<DType>(i);
  }
  return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (int i = 0; i < kNumDTypes; ++i) {
    if (kInfo[i].name == lower) return static_cast<DType>(i);
  }
  return std::nullopt;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  struct Entry {
    std::string_view name;
    DType dtype;
  };
  static constexpr Entry kNames[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"F64", DType::kF64}, {"I8", DType::kI8},
      {"I16", DType::kI16}, {"I32", DType::kI32}, {"I64", DType::kI64},   {"U8", DType::kU8},   {"BOOL", DType::kBool},
  };
  for (const Entry& e : kNames) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

}  // namespace pagoda
