#include "engine/llm_engine.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "backend/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "engine/stop_checker.h"
#include "model/loader/model_files.h"
#include "model/model.h"
#include "tokenizer/jinja/template.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "worker/model_runner.h"

namespace pagoda::engine {
namespace {

constexpr uint64_t kMaxChatTemplateBytes = 1ull << 20;
constexpr int64_t kDefaultCpuCacheBytes = int64_t{4} << 30;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Bytes of the weights: the file, or the files of a folder.
int64_t weights_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return static_cast<int64_t>(fs::file_size(path, ec));
  int64_t total = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") total += static_cast<int64_t>(e.file_size(ec));
  }
  return total;
}

bool contains(std::span<const int32_t> ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

DType kv_cache_dtype_for(const std::string& name, Device device) {
  if (name == "auto") return device.kind == DeviceKind::kCpu ? DType::kF32 : DType::kF16;
  if (name == "f32" || name == "float32" || name == "float") return DType::kF32;
  if (name == "f16" || name == "float16" || name == "half") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  fail(ErrorCode::kInvalidArgument, "the KV cache type must be auto, f32, f16 or bf16, got '{}'", name);
}

struct LLMEngine::Sample {
  SeqId seq = -1;  // -1: not forked yet (n > 1 before the first token)
  int64_t index = 0;
  Generator generator;
  std::vector<int32_t> output;
  std::vector<PositionLogprobs> logprobs;
  std::optional<tokenizer::StreamDecoder> decoder;
  std::optional<StopChecker> stop;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token_id;
  size_t sent_text = 0;
  size_t sent_tokens = 0;
  size_t sent_logprobs = 0;
};

struct LLMEngine::Request {
  EngineRequest req;
  std::vector<Sample> samples;
  bool forked = false;
  int64_t max_new_tokens = 0;
  RequestMetrics metrics;
  std::vector<std::optional<PositionLogprobs>> prompt_logprobs;  // filled up to prompt_lp_done
  int64_t prompt_lp_done = 1;
  bool prompt_lp_sent = false;
  int64_t num_finished = 0;
  bool touched = false;
  [[nodiscard]] bool finished() const { return num_finished == static_cast<int64_t>(samples.size()); }
};

LLMEngine::LLMEngine(const EngineArgs& args) : args_(args), epoch_(std::chrono::steady_clock::now()) {
  if (args_.model.empty()) fail(ErrorCode::kInvalidArgument, "no model given");
  if (args_.block_size < 1 || args_.block_size > 1024) {
    fail(ErrorCode::kInvalidArgument, "--block-size must be in [1, 1024], got {}", args_.block_size);
  }
  if (args_.kv_cache_memory < 0) {
    fail(ErrorCode::kInvalidArgument, "--kv-cache-memory must not be negative, got {}", args_.kv_cache_memory);
  }
  if (!(args_.gpu_memory_utilization > 0.0 && args_.gpu_memory_utilization <= 1.0)) {
    fail(ErrorCode::kInvalidArgument, "--gpu-memory-utilization must be in (0, 1], got {}",
         args_.gpu_memory_utilization);
  }
  const Device device = parse_device(args_.device);
  if (args_.cpu_matmul != "float" && args_.cpu_matmul != "int8") {
    fail(ErrorCode::kInvalidArgument, "--cpu-matmul must be float or int8, got '{}'", args_.cpu_matmul);
  }
  if (device.kind == DeviceKind::kCpu) {
    cpu::cpu_backend().set_quantized_activations(args_.cpu_matmul == "int8");
    // A batch's rows are sampled on the pool that ran the step: its threads wait idle meanwhile.
    cpu::ThreadPool& pool = cpu::cpu_backend().pool();
    sampler_ = Sampler(pool.num_threads(), [&pool](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
      pool.parallel_for(n, 1, fn);
    });
  }
  files_ = std::make_unique<ModelFiles>(ModelFiles::open(args_.model));
  const model::ModelConfig& config = files_->config();
  if (files_->tokenizer_kind() != "none") {
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(files_->path()));
  }
  std::string template_source;
  if (!args_.chat_template.empty()) {
    template_source = read_text_file(args_.chat_template, kMaxChatTemplateBytes);
  } else if (files_->chat_template()) {
    template_source = *files_->chat_template();
  } else if (tokenizer_) {
    template_source = tokenizer_->chat_template();
  }
  if (!template_source.empty()) {
    try {
      chat_template_ = std::make_unique<jinja::Template>(jinja::Template::parse(template_source));
    } catch (const Error& e) {
      // A model with a broken template still serves completions; chat requests say why not.
      if (!args_.chat_template.empty()) throw;
    }
  }

  const int64_t context = model::context_length(config);
  if (args_.max_model_len < 0) fail(ErrorCode::kInvalidArgument, "--max-model-len must not be negative");
  if (args_.max_model_len > context) {
    fail(ErrorCode::kInvalidArgument, "--max-model-len {} is longer than the model's context of {} tokens",
         args_.max_model_len, context);
  }
  max_model_len_ = args_.max_model_len > 0 ? args_.max_model_len : context;
  vocab_size_ = config.vocab_size;

  const DType kv_dtype = kv_cache_dtype_for(args_.kv_cache_dtype, device);
  const int64_t bs = args_.block_size;
  const int64_t block_bytes = worker::ModelRunner::block_bytes(config, bs, kv_dtype);
  const int64_t blocks_per_seq = (max_model_len_ + bs - 1) / bs;
  int64_t budget = args_.kv_cache_memory;
  if (budget == 0) {
    if (device.kind == DeviceKind::kCpu) {
      const int64_t seqs = std::max<int64_t>(args_.max_num_seqs, 1);
      const double want =
          static_cast<double>(blocks_per_seq) * static_cast<double>(seqs) * static_cast<double>(block_bytes);
      budget = want < static_cast<double>(kDefaultCpuCacheBytes) ? static_cast<int64_t>(want) : kDefaultCpuCacheBytes;
    } else {
      Backend& backend = backend_for(device);
      const double free_bytes = static_cast<double>(backend.free_memory()) * args_.gpu_memory_utilization;
      budget = static_cast<int64_t>(std::max(0.0, free_bytes - static_cast<double>(weights_bytes(files_->path()))));
    }
  }
  int64_t num_blocks = budget / block_bytes;
  num_blocks = std::min<int64_t>(num_blocks, std::numeric_limits<int32_t>::max() / bs);
  if (num_blocks < blocks_per_seq) {
    fail(ErrorCode::kInvalidArgument,
         "a KV cache of {} bytes holds {} tokens, fewer than one sequence of --max-model-len {} tokens needs ({} "
         "blocks of {} bytes); raise --kv-cache-memory or lower --max-model-len",
         budget, num_blocks * bs, max_model_len_, blocks_per_seq, block_bytes);
  }

  worker::RunnerOptions ro;
  ro.device = device;
  ro.block_size = bs;
  ro.num_blocks = num_blocks;
  ro.max_model_len = max_model_len_;
  ro.cache_dtype = kv_dtype;
  runner_ = std::make_unique<worker::ModelRunner>(*files_, ro);
  cache_info_ = {num_blocks, bs, num_blocks * bs, runner_->cache_bytes(), std::string(dtype_name(kv_dtype))};

  SchedulerConfig sc;
  sc.max_num_seqs = args_.max_num_seqs;
  sc.max_num_batched_tokens = args_.max_num_batched_tokens;
  sc.max_model_len = max_model_len_;
  sc.enable_chunked_prefill = args_.enable_chunked_prefill;
  sc.num_blocks = num_blocks;
  sc.block_size = bs;
  sc.enable_prefix_caching = args_.enable_prefix_caching;
  sc.recompute_boundary = runner_->recompute_boundary();
  scheduler_ = std::make_unique<Scheduler>(sc);
  for (int64_t id : config.eos_token_ids) {
    if (id >= 0 && id < vocab_size_) eos_ids_.push_back(static_cast<int32_t>(id));
  }
  seed_generator_.seed(args_.seed);
  stats_.num_blocks = num_blocks;
}

LLMEngine::~LLMEngine() = default;

const model::ModelConfig& LLMEngine::model_config() const {
  return files_->config();
}

double LLMEngine::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count();
}

std::vector<int32_t> LLMEngine::encode(const std::string& text, bool add_special_tokens) const {
  if (!tokenizer_) fail(ErrorCode::kInvalidArgument, "{}: the model has no tokenizer; give token ids", args_.model);
  const std::vector<uint32_t> ids = tokenizer_->encode(text, add_special_tokens);
  return {ids.begin(), ids.end()};
}

std::string LLMEngine::apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  if (!chat_template_) {
    fail(ErrorCode::kInvalidArgument, "the model has no usable chat template; give one with --chat-template");
  }
  if (!messages.is_array()) fail(ErrorCode::kInvalidArgument, "messages must be an array");
  return jinja::render_chat(*chat_template_, messages, nullptr, add_generation_prompt,
                            tokenizer_ ? tokenizer_->bos_token().value_or("") : "",
                            tokenizer_ ? tokenizer_->eos_token().value_or("") : "");
}

void LLMEngine::check_request(const EngineRequest& r) const {
  r.params.validate(vocab_size_);
  const auto prompt_len = static_cast<int64_t>(r.prompt_token_ids.size());
  if (prompt_len == 0) fail(ErrorCode::kInvalidArgument, "the prompt is empty");
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    const int32_t id = r.prompt_token_ids[i];
    if (id < 0 || id >= vocab_size_) {
      fail(ErrorCode::kInvalidArgument, "prompt token {} (at index {}) is outside the vocabulary [0, {})", id, i,
           vocab_size_);
    }
  }
  const int64_t max_tokens = r.params.max_tokens.value_or(0);
  if (prompt_len + max_tokens > max_model_len_ || prompt_len >= max_model_len_) {
    fail(ErrorCode::kInvalidArgument,
         "this model's maximum context length is {} tokens, but {} tokens were requested ({} in the prompt, {} to "
         "generate); shorten the prompt or lower max_tokens",
         max_model_len_, prompt_len + std::max<int64_t>(max_tokens, 1), prompt_len, std::max<int64_t>(max_tokens, 1));
  }
  if (!tokenizer_ && !r.params.stop.empty()) {
    fail(ErrorCode::kInvalidArgument, "stop strings need a tokenizer, and the model has none");
  }
}

void LLMEngine::add_request(EngineRequest request) {
  if (requests_.count(request.request_id) != 0) {
    fail(ErrorCode::kInvalidArgument, "request id '{}' is already in use", request.request_id);
  }
  check_request(request);
  auto r = std::make_unique<Request>();
  r->req = std::move(request);
  const SamplingParams& p = r->req.params;
  const auto prompt_len = static_cast<int64_t>(r->req.prompt_token_ids.size());
  r->max_new_tokens = p.max_tokens.value_or(max_model_len_ - prompt_len);
  r->metrics.arrival_time = now();
  const uint64_t base = p.seed ? *p.seed : seed_generator_();
  for (int64_t i = 0; i < p.n; ++i) {
    Sample s;
    s.index = i;
    s.generator.seed(i == 0 ? base : splitmix64(base + static_cast<uint64_t>(i)));
    if (p.detokenize && tokenizer_) s.decoder.emplace(*tokenizer_, p.skip_special_tokens);
    if (!p.stop.empty() && p.min_tokens == 0) s.stop.emplace(p.stop, p.include_stop_str_in_output);
    r->samples.push_back(std::move(s));
  }
  r->forked = p.n == 1;
  if (p.prompt_logprobs) r->prompt_logprobs.assign(static_cast<size_t>(prompt_len), std::nullopt);
  const SeqId seq = next_seq_++;
  scheduler_->add(seq, r->req.prompt_token_ids, r->max_new_tokens, !p.prompt_logprobs.has_value(), p.n);
  r->samples[0].seq = seq;
  seq_owner_[seq] = {r.get(), 0};
  requests_.emplace(r->req.request_id, std::move(r));
}

void LLMEngine::abort(const std::string& request_id) {
  if (requests_.count(request_id) != 0) to_abort_.push_back(request_id);
}

void LLMEngine::finish_sample(Request& r, Sample& s, FinishReason reason) {
  if (s.finish != FinishReason::kNone) return;
  // Release text held back for a possible multi-byte character or stop string.
  if (!s.stop_string && s.decoder) {
    std::string rest = s.decoder->finish();
    if (s.stop) {
      StopChecker::Result res = s.stop->push(rest);
      s.text += res.text;
      if (res.match) {
        s.stop_string = res.match;
        reason = FinishReason::kStop;
      } else {
        s.text += s.stop->finish();
      }
    } else {
      s.text += rest;
    }
  }
  s.finish = reason;
  if (s.seq >= 0) {
    scheduler_->remove(s.seq);
    seq_owner_.erase(s.seq);
  }
  ++r.num_finished;
  r.touched = true;
  if (r.finished()) r.metrics.finished_time = now();
}

void LLMEngine::process_token(Request& r, Sample& s, int32_t token, const SampleResult& result, double t) {
  const SamplingParams& p = r.req.params;
  s.output.push_back(token);
  ++stats_.generation_tokens;
  if (p.logprobs) s.logprobs.push_back(result.logprobs);
  if (r.metrics.first_token_time == 0.0) r.metrics.first_token_time = t;
  r.metrics.last_token_time = t;
  r.touched = true;
  scheduler_->append_token(s.seq, token);

  const auto generated = static_cast<int64_t>(s.output.size());
  if (s.decoder) {
    const std::string piece = s.decoder->push(static_cast<uint32_t>(token));
    if (s.stop) {
      StopChecker::Result res = s.stop->push(piece);
      s.text += res.text;
      if (res.match) {
        s.stop_string = res.match;
        finish_sample(r, s, FinishReason::kStop);
        return;
      }
    } else {
      s.text += piece;
    }
    // Stop strings are looked for in the text after the first min_tokens tokens.
    if (!s.stop && !p.stop.empty() && generated >= p.min_tokens) s.stop.emplace(p.stop, p.include_stop_str_in_output);
  }
  if (!p.ignore_eos && contains(eos_ids_, token)) {
    finish_sample(r, s, FinishReason::kStop);
  } else if (contains(p.stop_token_ids, token)) {
    s.stop_token_id = token;
    finish_sample(r, s, FinishReason::kStop);
  } else if (generated >= r.max_new_tokens ||
             static_cast<int64_t>(r.req.prompt_token_ids.size()) + generated >= max_model_len_) {
    finish_sample(r, s, FinishReason::kLength);
  }
}

std::vector<RequestOutput> LLMEngine::step() {
  const double t0 = now();
  for (const std::string& id : to_abort_) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    for (Sample& s : it->second->samples)
      finish_sample(*it->second, s, FinishReason::kAbort);
  }
  to_abort_.clear();

  const SchedulerOutput so = scheduler_->schedule();
  stats_.num_preemptions += static_cast<int64_t>(so.preempted.size());
  if (!so.empty()) {
    if (!so.copies.empty()) {
      std::vector<std::pair<int32_t, int32_t>> pairs;
      for (const BlockCopy& c : so.copies)
        pairs.emplace_back(c.src, c.dst);
      runner_->copy_blocks(pairs);
    }
    worker::StepInput in;
    const int64_t bs = cache_info_.block_size;
    for (const ScheduledSeq& ss : so.seqs) {
      in.max_blocks_per_seq =
          std::max<int64_t>(in.max_blocks_per_seq, static_cast<int64_t>(scheduler_->block_table(ss.seq).size()));
    }
    struct Row {
      Request* r;
      size_t sample;
      bool prompt;  // a prompt-logprob row for position `pos`
      int64_t pos = 0;
    };
    std::vector<Row> rows;
    in.cu_query_lens.push_back(0);
    for (const ScheduledSeq& ss : so.seqs) {
      const Sequence& seq = scheduler_->sequence(ss.seq);
      const std::span<const int32_t> table = scheduler_->block_table(ss.seq);
      auto& [r, sample] = seq_owner_.at(ss.seq);
      if (r->metrics.first_scheduled_time == 0.0) {
        r->metrics.first_scheduled_time = t0;
        r->metrics.num_cached_prompt_tokens = seq.num_cached_prompt_tokens;
      }
      const auto base = static_cast<int32_t>(in.token_ids.size());
      for (int64_t t = 0; t < ss.num_tokens; ++t) {
        const int64_t pos = ss.start + t;
        in.token_ids.push_back(seq.tokens[static_cast<size_t>(pos)]);
        in.positions.push_back(static_cast<int32_t>(pos));
        in.slot_mapping.push_back(static_cast<int64_t>(table[static_cast<size_t>(pos / bs)]) * bs + pos % bs);
        if (pos < seq.prompt_len) ++stats_.prompt_tokens;
      }
      in.seq_lens.push_back(static_cast<int32_t>(ss.start + ss.num_tokens));
      in.cu_query_lens.push_back(static_cast<int32_t>(in.token_ids.size()));
      for (int64_t b = 0; b < in.max_blocks_per_seq; ++b)
        in.block_tables.push_back(b < static_cast<int64_t>(table.size()) ? table[static_cast<size_t>(b)] : 0);
      if (r->req.params.prompt_logprobs && sample == 0 && ss.start < seq.prompt_len) {
        const int64_t from = std::max(ss.start, r->prompt_lp_done - 1);
        const int64_t to = std::min(ss.start + ss.num_tokens, seq.prompt_len - 1);
        for (int64_t pos = from; pos < to; ++pos) {
          in.logits_indices.push_back(base + static_cast<int32_t>(pos - ss.start));
          rows.push_back({r, sample, true, pos});
        }
      }
      if (ss.sample) {
        in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size()) - 1);
        rows.push_back({r, sample, false, 0});
      }
    }
    const Tensor logits = runner_->execute(in);
    scheduler_->step_done(so);
    ++stats_.num_steps;

    const auto vocab = static_cast<size_t>(vocab_size_);
    const float* data = logits.data<float>();
    // Prompt logprobs first; then one sampling row per sample (n rows for a request's first token).
    std::vector<SampleRow> sample_rows;
    std::vector<std::pair<Request*, size_t>> targets;
    std::vector<const float*> sources;
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& row = rows[i];
      const std::span<const float> values(data + i * vocab, vocab);
      Request& r = *row.r;
      if (row.prompt) {
        const auto next = static_cast<size_t>(row.pos + 1);
        r.prompt_logprobs[next] = row_logprobs(values, r.req.prompt_token_ids[next], *r.req.params.prompt_logprobs);
        r.prompt_lp_done = row.pos + 2;
        continue;
      }
      const size_t first = r.forked ? row.sample : 0;
      const size_t last = r.forked ? row.sample + 1 : r.samples.size();
      for (size_t k = first; k < last; ++k) {
        Sample& s = r.samples[k];
        sample_rows.push_back({&r.req.params, r.req.prompt_token_ids, s.output, eos_ids_, &s.generator});
        targets.emplace_back(&r, k);
        sources.push_back(values.data());
      }
    }
    if (!sample_rows.empty()) {
      // The logits' own rows where they are the samples' in order (every row sampled once, the
      // common case), else a copy gathering them.
      bool in_place = true;
      for (size_t i = 0; i < sources.size() && in_place; ++i)
        in_place = sources[i] == data + i * vocab;
      const auto n = static_cast<int64_t>(sample_rows.size());
      Tensor batch = in_place ? logits.slice(0, 0, n) : Tensor::empty(Shape{n, vocab_size_}, DType::kF32);
      if (!in_place) {
        for (size_t i = 0; i < sources.size(); ++i)
          std::memcpy(batch.data<float>() + i * vocab, sources[i], vocab * sizeof(float));
      }
      const std::vector<SampleResult> results = sampler_.sample(batch, sample_rows);
      const double t = now();
      // Fork every request's other samples before any token is appended.
      for (const auto& [r, k] : targets) {
        if (r->forked || k == 0) continue;
        Sample& s = r->samples[k];
        s.seq = next_seq_++;
        scheduler_->fork(r->samples[0].seq, s.seq);
        seq_owner_[s.seq] = {r, k};
      }
      for (const auto& [r, k] : targets)
        r->forked = true;
      for (size_t i = 0; i < targets.size(); ++i) {
        auto [r, k] = targets[i];
        process_token(*r, r->samples[k], results[i].token_id, results[i], t);
      }
    }
  }
  std::vector<RequestOutput> outs;
  build_outputs(outs);
  return outs;
}

RequestOutput LLMEngine::make_output(Request& r) {
  RequestOutput out;
  out.request_id = r.req.request_id;
  out.finished = r.finished();
  out.metrics = r.metrics;
  const bool delta = r.req.delta;
  if (!delta || !r.prompt_lp_sent) {
    out.prompt_token_ids = r.req.prompt_token_ids;
    out.prompt = r.req.prompt;
    if (r.req.params.prompt_logprobs && r.prompt_lp_done >= static_cast<int64_t>(r.prompt_logprobs.size())) {
      out.prompt_logprobs = r.prompt_logprobs;
      r.prompt_lp_sent = true;
    }
  }
  for (Sample& s : r.samples) {
    CompletionOutput c;
    c.index = s.index;
    c.finish_reason = s.finish;
    c.stop_string = s.stop_string;
    c.stop_token_id = s.stop_token_id;
    if (delta) {
      c.text = s.text.substr(s.sent_text);
      c.token_ids.assign(s.output.begin() + static_cast<std::ptrdiff_t>(s.sent_tokens), s.output.end());
      c.logprobs.assign(s.logprobs.begin() + static_cast<std::ptrdiff_t>(s.sent_logprobs), s.logprobs.end());
    } else {
      c.text = s.text;
      c.token_ids = s.output;
      c.logprobs = s.logprobs;
    }
    s.sent_text = s.text.size();
    s.sent_tokens = s.output.size();
    s.sent_logprobs = s.logprobs.size();
    out.outputs.push_back(std::move(c));
  }
  return out;
}

void LLMEngine::build_outputs(std::vector<RequestOutput>& outs) {
  std::vector<std::string> done;
  for (auto& [id, r] : requests_) {
    if (!r->touched) continue;
    r->touched = false;
    outs.push_back(make_output(*r));
    if (r->finished()) done.push_back(id);
  }
  for (const std::string& id : done)
    requests_.erase(id);
}

EngineStats LLMEngine::stats() const {
  EngineStats s = stats_;
  s.num_running = scheduler_->num_running();
  s.num_waiting = scheduler_->num_waiting();
  const BlockManager& bm = scheduler_->block_manager();
  s.num_blocks = bm.num_blocks();
  s.num_free_blocks = bm.num_free_blocks();
  s.kv_cache_usage = bm.usage();
  s.prefix_cache_queries = bm.prefix_cache_stats().queries;
  s.prefix_cache_hits = bm.prefix_cache_stats().hits;
  s.num_preemptions = scheduler_->num_preemptions();
  return s;
}

}  // namespace pagoda::engine
