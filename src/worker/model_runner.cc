#include "worker/model_runner.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "backend/backend.h"
#include "core/checked.h"
#include "core/error.h"
#include "model/loader/model_files.h"
#include "ops/cache.h"

namespace pagoda::worker {
namespace {

// Caps on one step, far above any real batch, so that hostile sizes fail cleanly.
constexpr size_t kMaxStepTokens = size_t{1} << 24;
constexpr size_t kMaxStepSeqs = size_t{1} << 20;

template <typename T>
Tensor host_copy(const std::vector<T>& values, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

// PAGODA_CPU_MICRO_BATCH as a token count, or -1 where it is unset. Anything but a whole number
// in [0, kMaxStepTokens] is an error naming the variable.
int64_t micro_batch_from_env() {
  const char* env = std::getenv("PAGODA_CPU_MICRO_BATCH");
  if (env == nullptr || *env == '\0') return -1;
  int64_t value = 0;
  const char* end = env + std::strlen(env);
  const auto [ptr, ec] = std::from_chars(env, end, value);
  if (ec != std::errc() || ptr != end || value < 0 || static_cast<size_t>(value) > kMaxStepTokens) {
    fail(ErrorCode::kInvalidArgument, "PAGODA_CPU_MICRO_BATCH must be a token count from 0 to {}, got '{}'",
         kMaxStepTokens, env);
  }
  return value;
}

}  // namespace

int64_t micro_batch_tokens(const model::ModelConfig& c, int64_t recompute_boundary) {
  if (c.moe.num_experts > 0 || recompute_boundary != 0) return 0;
  const int64_t width =
      std::max({int64_t{1}, 2 * c.intermediate_size, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size});
  const int64_t rows = (int64_t{3} << 20) / (width * static_cast<int64_t>(sizeof(float)));
  return std::clamp<int64_t>(rows / 16 * 16, 64, 1024);
}

ModelRunner::ModelRunner(const ModelFiles& files, const RunnerOptions& options) {
  if (options.block_size < 1 || options.block_size > 1024) {
    fail(ErrorCode::kInvalidArgument, "the cache block size must be in [1, 1024], got {}", options.block_size);
  }
  if (options.num_blocks < 0) {
    fail(ErrorCode::kInvalidArgument, "the number of cache blocks must not be negative, got {}", options.num_blocks);
  }
  if (options.cache_dtype != DType::kF32 && options.cache_dtype != DType::kF16 && options.cache_dtype != DType::kBF16) {
    fail(ErrorCode::kInvalidArgument, "the KV cache type must be f32, f16 or bf16, got {}",
         dtype_name(options.cache_dtype));
  }
  const bool cpu = options.device.kind == DeviceKind::kCpu;
  const int64_t wanted = !cpu ? 0 : options.micro_batch >= 0 ? options.micro_batch : micro_batch_from_env();
  model::ModelOptions mo;
  mo.device = options.device;
  mo.max_model_len = options.max_model_len;
  model_ = model::load_model(files, mo);

  const model::ModelConfig& c = model_->config();
  const int64_t bs = options.block_size;
  const int64_t blocks = options.num_blocks > 0 ? options.num_blocks : (model_->max_model_len() + bs - 1) / bs;
  if (blocks > std::numeric_limits<int32_t>::max() / bs) {
    fail(ErrorCode::kInvalidArgument, "{} cache blocks of {} tokens are more slots than pagoda addresses", blocks, bs);
  }
  const Shape shape{blocks, c.num_kv_heads, bs, c.head_dim};
  const auto bytes = checked_product(shape.dims());
  const uint64_t elem = static_cast<uint64_t>(dtype_block_bytes(options.cache_dtype));
  const auto layer_bytes = bytes ? checked_mul(*bytes, elem * 2) : std::nullopt;
  const auto total = layer_bytes ? checked_mul(*layer_bytes, static_cast<uint64_t>(c.num_layers)) : std::nullopt;
  Backend& backend = backend_for(options.device);
  if (!total || *total > backend.free_memory()) {
    fail(ErrorCode::kOutOfMemory, "a KV cache of {} blocks x {} tokens x {} layers needs {} bytes; {} has {} free",
         blocks, bs, c.num_layers, total ? std::to_string(*total) : "too many", backend.name(), backend.free_memory());
  }
  if (cpu) micro_batch_ = wanted >= 0 ? wanted : micro_batch_tokens(c, model_->recompute_boundary());
  cache_.block_size = bs;
  cache_.num_blocks = blocks;
  cache_bytes_ = static_cast<int64_t>(*total);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    cache_.keys.push_back(empty_on(options.device, shape, options.cache_dtype));
    cache_.values.push_back(empty_on(options.device, shape, options.cache_dtype));
  }
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::validate(const StepInput& s) const {
  const size_t tokens = s.token_ids.size();
  const size_t seqs = s.seq_lens.size();
  if (tokens == 0) fail(ErrorCode::kInvalidArgument, "a step needs at least one token");
  if (tokens > kMaxStepTokens)
    fail(ErrorCode::kInvalidArgument, "{} tokens in one step (at most {})", tokens, kMaxStepTokens);
  if (seqs == 0 || seqs > kMaxStepSeqs) {
    fail(ErrorCode::kInvalidArgument, "a step needs 1 to {} sequences, got {}", kMaxStepSeqs, seqs);
  }
  if (s.positions.size() != tokens || s.slot_mapping.size() != tokens) {
    fail(ErrorCode::kInvalidArgument, "{} token ids but {} positions and {} slots", tokens, s.positions.size(),
         s.slot_mapping.size());
  }
  if (s.cu_query_lens.size() != seqs + 1) {
    fail(ErrorCode::kInvalidArgument, "{} sequences need {} query offsets, got {}", seqs, seqs + 1,
         s.cu_query_lens.size());
  }
  const int64_t bs = cache_.block_size;
  const int64_t max_blocks = s.max_blocks_per_seq;
  if (max_blocks < 1 || max_blocks > cache_.num_blocks ||
      s.block_tables.size() != seqs * static_cast<size_t>(max_blocks)) {
    fail(ErrorCode::kInvalidArgument,
         "block tables must be {} sequences x max_blocks_per_seq (1 to {} blocks), got {} entries for {} per sequence",
         seqs, cache_.num_blocks, s.block_tables.size(), max_blocks);
  }
  const int64_t vocab = config().vocab_size;
  const int64_t max_len = max_model_len();
  const int64_t slots = cache_.num_blocks * bs;
  for (size_t i = 0; i < tokens; ++i) {
    if (s.token_ids[i] < 0 || s.token_ids[i] >= vocab) {
      fail(ErrorCode::kInvalidArgument, "token id {} (at index {} of the step) is outside the vocabulary [0, {})",
           s.token_ids[i], i, vocab);
    }
    if (s.positions[i] < 0 || s.positions[i] >= max_len) {
      fail(ErrorCode::kInvalidArgument,
           "position {} (at index {} of the step) is beyond the maximum context of {} tokens", s.positions[i], i,
           max_len);
    }
    if (s.slot_mapping[i] >= slots) {
      fail(ErrorCode::kInvalidArgument, "cache slot {} (at index {} of the step) is past the cache's {} slots",
           s.slot_mapping[i], i, slots);
    }
  }
  if (s.cu_query_lens[0] != 0 || static_cast<size_t>(s.cu_query_lens[seqs]) != tokens) {
    fail(ErrorCode::kInvalidArgument, "query offsets must run from 0 to the {} tokens of the step", tokens);
  }
  for (size_t q = 0; q < seqs; ++q) {
    const int64_t begin = s.cu_query_lens[q];
    const int64_t end = s.cu_query_lens[q + 1];
    const int64_t len = s.seq_lens[q];
    if (end < begin) fail(ErrorCode::kInvalidArgument, "query offsets decrease at sequence {}", q);
    if (end == begin) fail(ErrorCode::kInvalidArgument, "sequence {} has no tokens in the step", q);
    if (len < end - begin || len > max_len) {
      fail(ErrorCode::kInvalidArgument,
           "sequence {} has {} tokens in the cache after the step, which must be between its {} new tokens and the "
           "maximum context of {}",
           q, len, end - begin, max_len);
    }
    if ((len + bs - 1) / bs > max_blocks) {
      fail(ErrorCode::kInvalidArgument, "sequence {} of {} tokens needs {} blocks; the block table has {}", q, len,
           (len + bs - 1) / bs, max_blocks);
    }
    const int32_t* table = s.block_tables.data() + q * static_cast<size_t>(max_blocks);
    for (int64_t b = 0; b < (len + bs - 1) / bs; ++b) {
      if (table[b] < 0 || table[b] >= cache_.num_blocks) {
        fail(ErrorCode::kInvalidArgument, "block {} of sequence {} is {}, outside the cache's {} blocks", b, q,
             table[b], cache_.num_blocks);
      }
    }
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pos = len - (end - begin) + (t - begin);
      const auto ut = static_cast<size_t>(t);
      if (s.positions[ut] != pos) {
        fail(ErrorCode::kInvalidArgument, "token {} of the step (sequence {}) has position {}, expected {}", t, q,
             s.positions[ut], pos);
      }
      const int64_t slot = s.slot_mapping[ut];
      const int64_t expected = static_cast<int64_t>(table[pos / bs]) * bs + pos % bs;
      if (slot >= 0 && slot != expected) {
        fail(ErrorCode::kInvalidArgument,
             "token {} of the step (sequence {}, position {}) maps to slot {}, but its block table says {}", t, q, pos,
             slot, expected);
      }
    }
  }
  for (int32_t i : s.logits_indices) {
    if (i < 0 || static_cast<size_t>(i) >= tokens) {
      fail(ErrorCode::kInvalidArgument, "logits requested for token {} of a step of {} tokens", i, tokens);
    }
  }
}

int64_t ModelRunner::block_bytes(const model::ModelConfig& c, int64_t block_size, DType cache_dtype) {
  const int64_t dims[] = {c.num_layers, 2, c.num_kv_heads, block_size, c.head_dim};
  const auto elems = checked_product(dims);
  const auto bytes = elems ? checked_mul(*elems, static_cast<uint64_t>(dtype_block_bytes(cache_dtype))) : std::nullopt;
  if (!bytes || *bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    fail(ErrorCode::kInvalidArgument, "a cache block of {} tokens is too large for this model", block_size);
  }
  return static_cast<int64_t>(*bytes);
}

void ModelRunner::copy_blocks(std::span<const std::pair<int32_t, int32_t>> pairs) {
  if (pairs.empty()) return;
  std::vector<int64_t> flat;
  flat.reserve(pairs.size() * 2);
  for (const auto& [src, dst] : pairs) {
    if (src < 0 || src >= cache_.num_blocks || dst < 0 || dst >= cache_.num_blocks) {
      fail(ErrorCode::kInvalidArgument, "block copy {} -> {} is outside the cache's {} blocks", src, dst,
           cache_.num_blocks);
    }
    flat.push_back(src);
    flat.push_back(dst);
  }
  const Tensor host = host_copy(flat, Shape{static_cast<int64_t>(pairs.size()), 2}, DType::kI64);
  const Tensor mapping = to_device(host, model_->device());
  ops::copy_blocks(cache_.keys, cache_.values, mapping);
  backend_for(model_->device()).synchronize();
}

Tensor ModelRunner::execute(const StepInput& s) {
  validate(s);
  const bool split = micro_batch_ > 0 && static_cast<int64_t>(s.token_ids.size()) > micro_batch_ &&
                     std::ranges::none_of(s.slot_mapping, [](int64_t slot) { return slot < 0; });
  return split ? forward_in_parts(s) : forward(s, false);
}

// Passes of micro_batch_ consecutive tokens. A sequence's part in a pass is a step of its own
// tokens there, with the cache length it has at that part's end; its earlier parts' keys and
// values are in the cache by then (every slot is one: execute splits no step with an uncached
// token). Each pass returns the hidden states of its logits tokens, which go to their places in
// the step's rows; the logits of all of them are computed once, at the end (a pass's two or
// three rows would each have read the whole output projection).
Tensor ModelRunner::forward_in_parts(const StepInput& s) {
  const auto tokens = static_cast<int64_t>(s.token_ids.size());
  const size_t seqs = s.seq_lens.size();
  const auto row = static_cast<size_t>(s.max_blocks_per_seq);
  const int64_t hidden = config().hidden_size;
  Tensor states = Tensor::empty(Shape{static_cast<int64_t>(s.logits_indices.size()), hidden}, DType::kF32);
  size_t first_seq = 0;  // the first sequence that ends after the pass's start
  for (int64_t t0 = 0; t0 < tokens; t0 += micro_batch_) {
    const int64_t t1 = std::min(tokens, t0 + micro_batch_);
    StepInput p;
    p.token_ids.assign(s.token_ids.begin() + t0, s.token_ids.begin() + t1);
    p.positions.assign(s.positions.begin() + t0, s.positions.begin() + t1);
    p.slot_mapping.assign(s.slot_mapping.begin() + t0, s.slot_mapping.begin() + t1);
    p.max_blocks_per_seq = s.max_blocks_per_seq;
    p.cu_query_lens.push_back(0);
    while (s.cu_query_lens[first_seq + 1] <= t0)
      ++first_seq;
    for (size_t q = first_seq; q < seqs && s.cu_query_lens[q] < t1; ++q) {
      const int64_t begin = std::max<int64_t>(s.cu_query_lens[q], t0);
      const int64_t end = std::min<int64_t>(s.cu_query_lens[q + 1], t1);
      p.seq_lens.push_back(static_cast<int32_t>(s.seq_lens[q] - (s.cu_query_lens[q + 1] - end)));
      p.cu_query_lens.push_back(static_cast<int32_t>(p.cu_query_lens.back() + (end - begin)));
      p.block_tables.insert(p.block_tables.end(), s.block_tables.begin() + static_cast<std::ptrdiff_t>(q * row),
                            s.block_tables.begin() + static_cast<std::ptrdiff_t>((q + 1) * row));
    }
    std::vector<size_t> rows;  // the step's logits row of each of the pass's
    for (size_t k = 0; k < s.logits_indices.size(); ++k) {
      const int32_t i = s.logits_indices[k];
      if (i >= t0 && i < t1) {
        p.logits_indices.push_back(static_cast<int32_t>(i - t0));
        rows.push_back(k);
      }
    }
    const Tensor part = forward(p, true);
    for (size_t r = 0; r < rows.size(); ++r) {
      std::memcpy(states.data<float>() + rows[r] * static_cast<size_t>(hidden),
                  part.data<float>() + r * static_cast<size_t>(hidden), static_cast<size_t>(hidden) * sizeof(float));
    }
  }
  return to_host(model_->logits(to_device(states, model_->device())));
}

Tensor ModelRunner::forward(const StepInput& s, bool hidden_rows) {
  const auto tokens = static_cast<int64_t>(s.token_ids.size());
  const auto seqs = static_cast<int64_t>(s.seq_lens.size());
  const Device device = model_->device();

  // Host sources stay alive until the logits are read back (device copies are asynchronous).
  std::vector<Tensor> host = {
      host_copy(s.token_ids, Shape{tokens}, DType::kI32),
      host_copy(s.positions, Shape{tokens}, DType::kI32),
      host_copy(s.slot_mapping, Shape{tokens}, DType::kI64),
      host_copy(s.block_tables, Shape{seqs, s.max_blocks_per_seq}, DType::kI32),
      host_copy(s.seq_lens, Shape{seqs}, DType::kI32),
      host_copy(s.cu_query_lens, Shape{seqs + 1}, DType::kI32),
      host_copy(s.logits_indices, Shape{static_cast<int64_t>(s.logits_indices.size())}, DType::kI32),
  };
  model::BatchInput b;
  b.token_ids = to_device(host[0], device);
  b.positions = to_device(host[1], device);
  b.slot_mapping = to_device(host[2], device);
  b.block_tables = to_device(host[3], device);
  b.seq_lens = to_device(host[4], device);
  b.cu_query_lens = to_device(host[5], device);
  b.logits_indices = to_device(host[6], device);
  b.num_tokens = tokens;
  b.num_seqs = seqs;
  for (int64_t q = 0; q < seqs; ++q) {
    const auto uq = static_cast<size_t>(q);
    b.max_query_len = std::max<int64_t>(b.max_query_len, s.cu_query_lens[uq + 1] - s.cu_query_lens[uq]);
    b.max_seq_len = std::max<int64_t>(b.max_seq_len, s.seq_lens[uq]);
  }
  b.host_positions = s.positions;
  b.host_seq_lens = s.seq_lens;
  b.host_cu_query_lens = s.cu_query_lens;
  b.hidden_rows = hidden_rows;

  Tensor logits = model_->forward(b, cache_);
  return to_host(logits);
}

}  // namespace pagoda::worker
