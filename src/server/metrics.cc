#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace pagoda::server {
namespace {

const char* reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return "none";
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

std::string number(double v) {
  return fmt::format("{}", v);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, number(bounds_[i]), cumulative);
  }
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, count_);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, number(sum_));
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

std::string escape_label(std::string_view value) {
  std::string r;
  for (char c : value) {
    if (c == '\\') {
      r += "\\\\";
    } else if (c == '"') {
      r += "\\\"";
    } else if (c == '\n') {
      r += "\\n";
    } else {
      r += c;
    }
  }
  return r;
}

// Buckets as vLLM's.
ServerMetrics::ServerMetrics(std::string model_name)
    : labels_(fmt::format("model_name=\"{}\"", escape_label(model_name))),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
             1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      tpot_(
          {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      e2e_({0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
            30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}) {
  for (const char* r : {"stop", "length", "abort"})
    finished_[r] = 0;
}

void ServerMetrics::record_finished(const RequestOutput& output) {
  const RequestMetrics& m = output.metrics;
  FinishReason reason = FinishReason::kNone;
  size_t generated = 0;
  for (const CompletionOutput& c : output.outputs) {
    if (reason == FinishReason::kNone || c.finish_reason == FinishReason::kAbort) reason = c.finish_reason;
    generated = std::max(generated, c.token_ids.size());
  }
  ++finished_[reason_name(reason)];
  if (m.first_token_time > 0.0 && m.arrival_time > 0.0 && m.first_token_time >= m.arrival_time) {
    ttft_.observe(m.first_token_time - m.arrival_time);
    if (generated > 1 && m.last_token_time >= m.first_token_time) {
      tpot_.observe((m.last_token_time - m.first_token_time) / static_cast<double>(generated - 1));
    }
  }
  if (m.finished_time > 0.0 && m.arrival_time > 0.0 && m.finished_time >= m.arrival_time) {
    e2e_.observe(m.finished_time - m.arrival_time);
  }
}

std::string ServerMetrics::render(const engine::EngineStats& s) const {
  std::string out;
  auto gauge = [&](std::string_view name, std::string_view help, double v) {
    header(out, name, "gauge", help);
    out += fmt::format("{}{{{}}} {}\n", name, labels_, number(v));
  };
  auto counter = [&](std::string_view name, std::string_view help, int64_t v) {
    header(out, name, "counter", help);
    out += fmt::format("{}{{{}}} {}\n", name, labels_, v);
  };
  gauge("pagoda:num_requests_running", "Number of requests in model execution batches.",
        static_cast<double>(s.num_running));
  gauge("pagoda:num_requests_waiting", "Number of requests waiting to be processed.",
        static_cast<double>(s.num_waiting));
  gauge("pagoda:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", s.kv_cache_usage);
  gauge("pagoda:num_kv_cache_blocks", "Number of KV cache blocks.", static_cast<double>(s.num_blocks));
  counter("pagoda:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
          s.prefix_cache_queries);
  counter("pagoda:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.",
          s.prefix_cache_hits);
  counter("pagoda:num_preemptions_total", "Cumulative number of preemption from the engine.", s.num_preemptions);
  counter("pagoda:prompt_tokens_total", "Number of prefill tokens processed.", s.prompt_tokens);
  counter("pagoda:generation_tokens_total", "Number of generation tokens processed.", s.generation_tokens);

  header(out, "pagoda:request_success_total", "counter", "Count of successfully processed requests.");
  for (const auto& [reason, n] : finished_)
    out += fmt::format("pagoda:request_success_total{{{},finished_reason=\"{}\"}} {}\n", labels_, reason, n);
  header(out, "pagoda:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.");
  ttft_.render(out, "pagoda:time_to_first_token_seconds", labels_);
  header(out, "pagoda:time_per_output_token_seconds", "histogram", "Histogram of time per output token in seconds.");
  tpot_.render(out, "pagoda:time_per_output_token_seconds", labels_);
  header(out, "pagoda:e2e_request_latency_seconds", "histogram", "Histogram of end to end request latency in seconds.");
  e2e_.render(out, "pagoda:e2e_request_latency_seconds", labels_);
  return out;
}

}  // namespace pagoda::server
