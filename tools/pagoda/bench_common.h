#pragma once

// `pagoda bench <kind>`: the bench command group (cmd_bench.cc) and what its subcommands share.
// Each subcommand lives in its own tools/pagoda/cmd_bench_<kind>.cc and registers itself with a
// static BenchRegistration, as top-level commands do with CommandRegistration.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pagoda::cli::bench {

// `setup` adds one subcommand (and its options) to the `bench` app and returns its action.
using BenchSetup = std::function<std::function<int()>(CLI::App& bench)>;

struct BenchRegistration {
  BenchRegistration(const char* name, BenchSetup setup);
};

// The registered subcommands, in name order.
[[nodiscard]] std::vector<std::pair<std::string, BenchSetup>> registered_benches();

// Mean and sample standard deviation (0 for fewer than two samples).
struct Stats {
  double mean = 0.0;
  double stddev = 0.0;
};
[[nodiscard]] Stats stats(const std::vector<double>& samples);

// Seconds on a monotonic clock.
[[nodiscard]] double now_seconds();

// The process's peak resident set size in bytes (getrusage), 0 if unknown.
[[nodiscard]] uint64_t peak_rss_bytes();

}  // namespace pagoda::cli::bench
