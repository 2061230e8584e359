#include "worker/static_batch.h"

#include <algorithm>

#include "core/error.h"

namespace pagoda::worker {

struct StaticBatch::Seq {
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t prompt_len = 0;
  int64_t capacity = 0;  // the most tokens the sequence will hold in the cache
  int64_t computed = 0;  // tokens already in the cache
  bool active = true;
  std::vector<int32_t> blocks;
};

int64_t blocks_needed(const std::vector<int64_t>& lengths, int64_t block_size) {
  int64_t total = 0;
  for (int64_t n : lengths)
    total += (n + block_size - 1) / block_size;
  return total;
}

StaticBatch::StaticBatch(ModelRunner& runner, std::vector<int32_t> eos_ids, int64_t prefill_chunk)
    : runner_(runner), eos_ids_(std::move(eos_ids)), prefill_chunk_(prefill_chunk) {
  if (prefill_chunk < 0)
    fail(ErrorCode::kInvalidArgument, "the prefill chunk must not be negative, got {}", prefill_chunk);
}

void StaticBatch::assign_blocks(std::vector<Seq>& seqs) const {
  const int64_t bs = runner_.block_size();
  std::vector<int64_t> lengths;
  for (const Seq& s : seqs)
    lengths.push_back(s.capacity);
  const int64_t total = blocks_needed(lengths, bs);
  if (total > runner_.num_blocks()) {
    fail(ErrorCode::kInvalidArgument, "the sequences need {} cache blocks of {} tokens; the cache has {}", total, bs,
         runner_.num_blocks());
  }
  int32_t next = 0;
  for (int64_t j = 0;; ++j) {
    bool any = false;
    for (Seq& s : seqs) {
      if (j < (s.capacity + bs - 1) / bs) {
        s.blocks.push_back(next++);
        any = true;
      }
    }
    if (!any) break;
  }
}

bool StaticBatch::step(std::vector<Seq>& seqs, const std::function<void(size_t, std::span<const float>)>& on_logits) {
  const int64_t bs = runner_.block_size();
  const int64_t boundary = runner_.recompute_boundary();
  StepInput in;
  std::vector<size_t> wanted;
  in.cu_query_lens.push_back(0);
  for (const Seq& s : seqs) {
    if (s.active && s.computed < static_cast<int64_t>(s.tokens.size())) {
      in.max_blocks_per_seq = std::max<int64_t>(in.max_blocks_per_seq, static_cast<int64_t>(s.blocks.size()));
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    Seq& s = seqs[i];
    const auto held = static_cast<int64_t>(s.tokens.size());
    if (!s.active || s.computed >= held) continue;
    int64_t n = held - s.computed;
    if (prefill_chunk_ > 0 && s.computed < s.prompt_len) n = std::min(n, prefill_chunk_);
    if (boundary > 0 && s.computed > 0 && s.computed <= boundary && s.computed + n > boundary) {
      // Growing past the boundary changes every token's rotation: compute it all again, at once.
      s.computed = 0;
      n = held;
    }
    for (int64_t t = 0; t < n; ++t) {
      const int64_t pos = s.computed + t;
      in.token_ids.push_back(s.tokens[static_cast<size_t>(pos)]);
      in.positions.push_back(static_cast<int32_t>(pos));
      in.slot_mapping.push_back(static_cast<int64_t>(s.blocks.at(static_cast<size_t>(pos / bs))) * bs + pos % bs);
    }
    in.seq_lens.push_back(static_cast<int32_t>(s.computed + n));
    in.cu_query_lens.push_back(static_cast<int32_t>(in.token_ids.size()));
    for (int64_t b = 0; b < in.max_blocks_per_seq; ++b)
      in.block_tables.push_back(b < static_cast<int64_t>(s.blocks.size()) ? s.blocks[static_cast<size_t>(b)] : 0);
    if (s.computed + n == held) {
      in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size() - 1));
      wanted.push_back(i);
    }
    s.computed += n;
  }
  if (in.token_ids.empty()) return false;
  Tensor logits = runner_.execute(in);
  const int64_t vocab = runner_.config().vocab_size;
  const float* rows = logits.data<float>();
  for (size_t r = 0; r < wanted.size(); ++r)
    on_logits(wanted[r], std::span<const float>(rows + static_cast<int64_t>(r) * vocab, static_cast<size_t>(vocab)));
  return true;
}

std::vector<GenerateResult> StaticBatch::generate(const std::vector<GenerateRequest>& requests,
                                                  const std::function<void(size_t, int32_t)>& on_token) {
  const int64_t max_len = runner_.max_model_len();
  std::vector<Seq> seqs(requests.size());
  std::vector<engine::HostSampler> samplers;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerateRequest& r = requests[i];
    const auto prompt_len = static_cast<int64_t>(r.prompt.size());
    if (prompt_len == 0) fail(ErrorCode::kInvalidArgument, "prompt {} is empty", i + 1);
    if (prompt_len > max_len) {
      fail(ErrorCode::kInvalidArgument, "prompt {} has {} tokens, more than the maximum context of {} tokens", i + 1,
           prompt_len, max_len);
    }
    if (r.max_tokens < 1) fail(ErrorCode::kInvalidArgument, "max_tokens must be at least 1, got {}", r.max_tokens);
    Seq& s = seqs[i];
    s.tokens = r.prompt;
    s.prompt_len = prompt_len;
    // The last generated token is never fed back, and nothing runs past the context.
    s.capacity = std::min(prompt_len + r.max_tokens - 1, max_len);
    samplers.emplace_back(r.sampling, r.seed);
  }
  assign_blocks(seqs);

  std::vector<GenerateResult> results(requests.size());
  auto on_logits = [&](size_t i, std::span<const float> row) {
    Seq& s = seqs[i];
    const int32_t id = samplers[i].sample(row);
    s.tokens.push_back(id);
    results[i].token_ids.push_back(id);
    if (on_token) on_token(i, id);
    const bool eos = std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
    if (eos && !requests[i].ignore_eos) {
      results[i].finish_reason = "stop";
      s.active = false;
    } else if (static_cast<int64_t>(results[i].token_ids.size()) >= requests[i].max_tokens ||
               static_cast<int64_t>(s.tokens.size()) > max_len) {
      results[i].finish_reason = "length";
      s.active = false;
    }
  };
  while (step(seqs, on_logits)) {
  }
  return results;
}

std::vector<std::vector<float>> StaticBatch::prompt_logits(const std::vector<std::vector<int32_t>>& prompts) {
  const int64_t max_len = runner_.max_model_len();
  std::vector<Seq> seqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto n = static_cast<int64_t>(prompts[i].size());
    if (n == 0) fail(ErrorCode::kInvalidArgument, "prompt {} is empty", i + 1);
    if (n > max_len) {
      fail(ErrorCode::kInvalidArgument, "prompt {} has {} tokens, more than the maximum context of {} tokens", i + 1, n,
           max_len);
    }
    seqs[i].tokens = prompts[i];
    seqs[i].prompt_len = n;
    seqs[i].capacity = n;
  }
  assign_blocks(seqs);
  std::vector<std::vector<float>> out(prompts.size());
  while (step(seqs, [&](size_t i, std::span<const float> row) { out[i].assign(row.begin(), row.end()); })) {
  }
  return out;
}

}  // namespace pagoda::worker
