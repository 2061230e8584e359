#pragma once

// Prometheus metrics in the text exposition format (version 0.0.4), with vLLM's metric names
// under the "pagoda:" prefix. Gauges and the engine's counters come from AsyncEngine::stats() at
// scrape time; latency histograms and finished-request counts from each finished RequestOutput.
// Not thread-safe: the server's I/O thread owns it.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/async_engine.h"
#include "pagoda/outputs.h"

namespace pagoda::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // The _bucket, _sum and _count lines of `name` with `labels` ("model_name=\"x\"").
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  [[nodiscard]] uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// A label value with \, " and newline escaped.
[[nodiscard]] std::string escape_label(std::string_view value);

class ServerMetrics {
 public:
  explicit ServerMetrics(std::string model_name);

  // Called once per engine request with its final output.
  void record_finished(const RequestOutput& output);
  [[nodiscard]] std::string render(const engine::EngineStats& stats) const;

 private:
  std::string labels_;
  Histogram ttft_;
  Histogram tpot_;
  Histogram e2e_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
};

}  // namespace pagoda::server
