#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/quant/dequantize.h"
#include "command.h"
#include "core/error.h"
#include "model/loader/gguf.h"

// `pagoda dequant FILE TENSOR... --out OUT.f32`: tensors of a GGUF file, dequantized on the CPU and
// written as raw little-endian float32 (each in its row order, one after another), so that they
// can be compared with another implementation byte for byte.

namespace pagoda::cli {
namespace {

static_assert(std::endian::native == std::endian::little, "the output format is little-endian float32");

struct DequantOptions {
  std::string file;
  std::vector<std::string> tensors;
  std::string out;
  bool scalar = false;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Writes one tensor's elements to `out`, a bounded number of rows at a time.
void write_tensor(const gguf::File& file, const gguf::TensorInfo& info, bool scalar, std::FILE* out,
                  const std::string& out_path) {
  const Tensor tensor = file.tensor(info);
  const int64_t numel = tensor.numel();
  const int64_t row_len = info.shape.ndim() == 0 ? 1 : info.shape[info.shape.ndim() - 1];
  const auto row_bytes = dtype_row_bytes(info.dtype, row_len);
  if (!row_bytes || row_len <= 0) {
    fail(ErrorCode::kInvalidFile, "{}: tensor '{}' has rows of {} elements, not whole {} blocks", file.path(),
         info.name, row_len, dtype_name(info.dtype));
  }
  const int64_t rows = numel / row_len;
  constexpr int64_t kChunkElements = int64_t{1} << 20;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElements / row_len);
  std::vector<float> buffer(static_cast<size_t>(std::min(rows, rows_per_chunk) * row_len));
  const auto* src = static_cast<const uint8_t*>(tensor.raw_data());
  for (int64_t row = 0; row < rows; row += rows_per_chunk) {
    const int64_t count = std::min(rows_per_chunk, rows - row);
    for (int64_t r = 0; r < count; ++r) {
      const uint8_t* row_src = src + static_cast<uint64_t>(row + r) * *row_bytes;
      float* row_dst = buffer.data() + r * row_len;
      if (scalar) {
        cpu::dequantize_row_scalar(info.dtype, row_src, row_dst, row_len);
      } else {
        cpu::dequantize_row(info.dtype, row_src, row_dst, row_len);
      }
    }
    const auto elements = static_cast<size_t>(count * row_len);
    if (std::fwrite(buffer.data(), sizeof(float), elements, out) != elements) {
      fail(ErrorCode::kIo, "{}: write failed: {}", out_path, std::strerror(errno));
    }
  }
}

int run_dequant(const DequantOptions& opts) {
  const gguf::File file = gguf::File::open(opts.file);
  // Check every name before writing anything.
  std::vector<const gguf::TensorInfo*> infos;
  for (const std::string& name : opts.tensors) {
    const gguf::TensorInfo* info = file.find_tensor(name);
    if (info == nullptr) fail(ErrorCode::kNotFound, "{}: no tensor named '{}'", opts.file, name);
    if (!cpu::can_dequantize(info->dtype)) {
      fail(ErrorCode::kUnsupported, "{}: tensor '{}' is {}, which pagoda cannot dequantize", opts.file, info->name,
           dtype_name(info->dtype));
    }
    infos.push_back(info);
  }
  std::unique_ptr<std::FILE, FileCloser> out(std::fopen(opts.out.c_str(), "wb"));
  if (!out) fail(ErrorCode::kIo, "{}: cannot open for writing: {}", opts.out, std::strerror(errno));
  for (const gguf::TensorInfo* info : infos)
    write_tensor(file, *info, opts.scalar, out.get(), opts.out);
  if (std::fclose(out.release()) != 0) fail(ErrorCode::kIo, "{}: write failed: {}", opts.out, std::strerror(errno));
  return 0;
}

const CommandRegistration kRegisterDequant("dequant", [](CLI::App& app) {
  auto opts = std::make_shared<DequantOptions>();
  CLI::App* cmd =
      app.add_subcommand("dequant", "Write tensors of a GGUF file, dequantized, as raw little-endian float32");
  cmd->add_option("file", opts->file, "GGUF model file")->required();
  cmd->add_option("tensors", opts->tensors, "Names of the tensors, written one after another")->required();
  cmd->add_option("--out,-o", opts->out, "Output file (float32, row-major, outermost dimension first)")->required();
  cmd->add_flag("--scalar", opts->scalar, "Use the portable scalar kernels instead of the fastest for this CPU");
  return [opts] { return run_dequant(*opts); };
});

}  // namespace
}  // namespace pagoda::cli
