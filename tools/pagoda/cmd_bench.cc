// `pagoda bench`: the group of benchmarks (`latency`, and whatever other cmd_bench_*.cc files
// register). This file owns the group and the helpers of bench_common.h; each benchmark is its own
// file.

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "bench_common.h"
#include "command.h"

namespace pagoda::cli::bench {
namespace {

std::map<std::string, BenchSetup>& registry() {
  static std::map<std::string, BenchSetup> r;
  return r;
}

}  // namespace

BenchRegistration::BenchRegistration(const char* name, BenchSetup setup) {
  registry().emplace(name, std::move(setup));
}

std::vector<std::pair<std::string, BenchSetup>> registered_benches() {
  return {registry().begin(), registry().end()};
}

Stats stats(const std::vector<double>& samples) {
  Stats s;
  if (samples.empty()) return s;
  double sum = 0.0;
  for (double v : samples)
    sum += v;
  s.mean = sum / static_cast<double>(samples.size());
  if (samples.size() > 1) {
    double sq = 0.0;
    for (double v : samples)
      sq += (v - s.mean) * (v - s.mean);
    s.stddev = std::sqrt(sq / static_cast<double>(samples.size() - 1));
  }
  return s;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0 || usage.ru_maxrss < 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

namespace {

const CommandRegistration kRegisterBench("bench", [](CLI::App& app) {
  CLI::App* group = app.add_subcommand("bench", "Benchmarks: latency, throughput, serve, decode");
  group->require_subcommand(1);
  auto actions = std::make_shared<std::vector<std::pair<CLI::App*, std::function<int()>>>>();
  for (auto& [name, setup] : registered_benches()) {
    auto action = setup(*group);
    actions->emplace_back(group->get_subcommand(name), std::move(action));
  }
  return [actions] {
    for (auto& [sub, action] : *actions) {
      if (sub->parsed()) return action();
    }
    return 1;
  };
});

}  // namespace
}  // namespace pagoda::cli::bench
