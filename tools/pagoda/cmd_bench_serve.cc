// `pagoda bench serve --base-url URL --request-rate R --num-prompts N`: drives a running
// OpenAI-compatible server (pagoda serve, or any other) the way vLLM's serving benchmark does:
// requests arrive as a Poisson process at R per second (inf: all at once), each a streaming
// /v1/completions request of --input-len random token ids asking for --output-len tokens
// (ignore_eos), and the client records when each streamed chunk arrives. Reports time to first
// token (TTFT), time per output token after the first (TPOT), inter-token latency (ITL) and
// end-to-end latency, mean / p50 / p90 / p99, and request and token throughput; progress on
// stderr; a table, or JSON with --json.

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "core/error.h"

namespace pagoda::cli::bench {
namespace {

constexpr int64_t kMaxRequests = 100000;

struct ServeArgs {
  std::string base_url = "http://127.0.0.1:8000";
  std::string model;
  double request_rate = std::numeric_limits<double>::infinity();
  int64_t num_prompts = 64;
  int64_t input_len = 128;
  int64_t output_len = 128;
  int64_t vocab = 1000;  // random prompt ids are drawn from [100, 100 + vocab)
  std::string api_key;
  uint64_t seed = 0;
  bool json = false;
};

struct Endpoint {
  std::string host;
  std::string port;
};

Endpoint parse_url(const std::string& url) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) fail(ErrorCode::kInvalidArgument, "--base-url must start with http://, got '{}'", url);
  std::string rest = url.substr(prefix.size());
  if (const size_t slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return {rest, "80"};
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

// A blocking connection; one per request.
class Connection {
 public:
  explicit Connection(const Endpoint& ep) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &res) != 0 || res == nullptr) {
      fail(ErrorCode::kIo, "cannot resolve {}:{}", ep.host, ep.port);
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd_ >= 0 && ::connect(fd_, a->ai_addr, a->ai_addrlen) == 0) break;
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
    freeaddrinfo(res);
    if (fd_ < 0) fail(ErrorCode::kIo, "cannot connect to {}:{}", ep.host, ep.port);
  }
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void send_all(const std::string& data) const {
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) fail(ErrorCode::kIo, "the server closed the connection while sending");
      off += static_cast<size_t>(n);
    }
  }
  // Appends what arrives to `buf`; false at the end of the stream.
  bool receive(std::string& buf) const {
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    return true;
  }

 private:
  int fd_ = -1;
};

std::string request_text(const Endpoint& ep, const std::string& method, const std::string& path,
                         const std::string& body, const std::string& api_key) {
  std::string r = fmt::format("{} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n", method, path, ep.host, ep.port);
  if (!api_key.empty()) r += fmt::format("Authorization: Bearer {}\r\n", api_key);
  if (!body.empty()) r += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
  return r + "\r\n" + body;
}

std::string served_model(const Endpoint& ep, const std::string& api_key) {
  Connection c(ep);
  c.send_all(request_text(ep, "GET", "/v1/models", "", api_key));
  std::string buf;
  while (c.receive(buf)) {
  }
  const size_t body = buf.find("\r\n\r\n");
  if (body == std::string::npos) fail(ErrorCode::kIo, "GET /v1/models: no HTTP response");
  // The body may be chunked; the JSON object sits between the first '{' and the last '}'.
  const size_t open = buf.find('{', body);
  const size_t close = buf.rfind('}');
  const nlohmann::json j = nlohmann::json::parse(
      open == std::string::npos ? std::string() : buf.substr(open, close - open + 1), nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) {
    fail(ErrorCode::kIo, "GET /v1/models: unexpected answer");
  }
  return j["data"][0].value("id", "");
}

struct Result {
  bool ok = false;
  std::string error;
  double start = 0;
  double ttft = 0;
  double e2e = 0;
  int64_t output_tokens = 0;
  std::vector<double> itl;
};

Result run_request(const Endpoint& ep, const ServeArgs& a, const std::string& model, std::vector<int32_t> prompt) {
  Result r;
  r.start = now_seconds();
  try {
    nlohmann::json body = {{"model", model},
                           {"prompt", prompt},
                           {"max_tokens", a.output_len},
                           {"stream", true},
                           {"ignore_eos", true},
                           {"temperature", 1.0},
                           {"stream_options", {{"include_usage", true}}}};
    Connection c(ep);
    c.send_all(request_text(ep, "POST", "/v1/completions", body.dump(), a.api_key));
    std::string buf;
    size_t scanned = 0;
    double last = 0;
    bool status_checked = false;
    while (c.receive(buf)) {
      const double t = now_seconds();
      if (!status_checked && buf.find("\r\n") != std::string::npos) {
        status_checked = true;
        if (buf.compare(0, 12, "HTTP/1.1 200") != 0) {
          r.error = buf.substr(0, buf.find("\r\n"));
          while (c.receive(buf)) {
          }
          return r;
        }
      }
      // Each "data: {...}" event with text is one or more tokens; usage comes last.
      size_t pos;
      while ((pos = buf.find("data: ", scanned)) != std::string::npos) {
        const size_t end = buf.find('\n', pos);
        if (end == std::string::npos) break;
        const std::string payload = buf.substr(pos + 6, end - pos - 6);
        scanned = end;
        if (payload.rfind("[DONE]", 0) == 0) continue;
        const nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.contains("usage") && j["usage"].is_object()) r.output_tokens = j["usage"].value("completion_tokens", 0);
        if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
          if (r.ttft == 0) {
            r.ttft = t - r.start;
          } else {
            r.itl.push_back(t - last);
          }
          last = t;
        }
      }
    }
    r.e2e = now_seconds() - r.start;
    r.ok = r.ttft > 0;
    if (!r.ok) r.error = "no tokens streamed";
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

nlohmann::ordered_json summary(const std::vector<double>& v) {
  double mean = 0;
  for (double x : v)
    mean += x;
  mean = v.empty() ? 0 : mean / static_cast<double>(v.size());
  return {{"mean_ms", mean * 1e3},
          {"p50_ms", percentile(v, 50) * 1e3},
          {"p90_ms", percentile(v, 90) * 1e3},
          {"p99_ms", percentile(v, 99) * 1e3}};
}

int run_serve_bench(const ServeArgs& a) {
  if (a.num_prompts < 1 || a.num_prompts > kMaxRequests) {
    fail(ErrorCode::kInvalidArgument, "--num-prompts must be in [1, {}]", kMaxRequests);
  }
  if (!(a.request_rate > 0)) fail(ErrorCode::kInvalidArgument, "--request-rate must be > 0 (inf: all at once)");
  if (a.input_len < 1 || a.output_len < 1 || a.vocab < 1) {
    fail(ErrorCode::kInvalidArgument, "--input-len, --output-len and --vocab must be >= 1");
  }
  const Endpoint ep = parse_url(a.base_url);
  const std::string model = a.model.empty() ? served_model(ep, a.api_key) : a.model;
  std::mt19937_64 rng(a.seed);
  std::exponential_distribution<double> gap(std::isinf(a.request_rate) ? 1.0 : a.request_rate);
  std::vector<Result> results(static_cast<size_t>(a.num_prompts));
  std::vector<std::thread> threads;
  std::atomic<int64_t> done{0};
  fmt::print(stderr, "bench serve: {} requests to {} ({}), rate {}/s, {} in, {} out\n", a.num_prompts, a.base_url,
             model, a.request_rate, a.input_len, a.output_len);
  const double start = now_seconds();
  double next = start;
  for (int64_t i = 0; i < a.num_prompts; ++i) {
    std::vector<int32_t> prompt(static_cast<size_t>(a.input_len));
    for (int32_t& t : prompt)
      t = static_cast<int32_t>(100 + rng() % static_cast<uint64_t>(a.vocab));
    if (!std::isinf(a.request_rate)) {
      next += gap(rng);
      const double wait = next - now_seconds();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    threads.emplace_back([&, i, prompt = std::move(prompt)]() mutable {
      results[static_cast<size_t>(i)] = run_request(ep, a, model, std::move(prompt));
      const int64_t n = ++done;
      if (n % std::max<int64_t>(1, a.num_prompts / 10) == 0) {
        fmt::print(stderr, "  {}/{} requests done\n", n, a.num_prompts);
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  const double duration = now_seconds() - start;

  std::vector<double> ttft, tpot, itl, e2e;
  int64_t ok = 0;
  int64_t output_tokens = 0;
  std::string first_error;
  for (const Result& r : results) {
    if (!r.ok) {
      if (first_error.empty()) first_error = r.error;
      continue;
    }
    ++ok;
    output_tokens += r.output_tokens;
    ttft.push_back(r.ttft);
    e2e.push_back(r.e2e);
    if (r.output_tokens > 1) tpot.push_back((r.e2e - r.ttft) / static_cast<double>(r.output_tokens - 1));
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
  }
  nlohmann::ordered_json j;
  j["base_url"] = a.base_url;
  j["model"] = model;
  j["request_rate"] =
      std::isinf(a.request_rate) ? nlohmann::ordered_json("inf") : nlohmann::ordered_json(a.request_rate);
  j["completed"] = ok;
  j["failed"] = a.num_prompts - ok;
  j["duration_s"] = duration;
  j["input_tokens"] = ok * a.input_len;
  j["output_tokens"] = output_tokens;
  j["request_throughput"] = static_cast<double>(ok) / duration;
  j["output_throughput"] = static_cast<double>(output_tokens) / duration;
  j["total_token_throughput"] = static_cast<double>(output_tokens + ok * a.input_len) / duration;
  j["ttft"] = summary(ttft);
  j["tpot"] = summary(tpot);
  j["itl"] = summary(itl);
  j["e2e_latency"] = summary(e2e);
  if (!first_error.empty()) j["first_error"] = first_error;
  if (a.json) {
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("completed {} of {} in {:.2f} s: {:.2f} req/s, {:.1f} output tok/s, {:.1f} total tok/s\n", ok,
               a.num_prompts, duration, j["request_throughput"].get<double>(), j["output_throughput"].get<double>(),
               j["total_token_throughput"].get<double>());
    fmt::print("| metric | mean (ms) | p50 (ms) | p90 (ms) | p99 (ms) |\n|---|---:|---:|---:|---:|\n");
    for (const char* k : {"ttft", "tpot", "itl", "e2e_latency"}) {
      const auto& s = j[k];
      fmt::print("| {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |\n", k, s["mean_ms"].get<double>(),
                 s["p50_ms"].get<double>(), s["p90_ms"].get<double>(), s["p99_ms"].get<double>());
    }
    if (!first_error.empty()) fmt::print("first error: {}\n", first_error);
  }
  return ok == a.num_prompts ? 0 : 1;
}

const BenchRegistration kRegisterServe("serve", [](CLI::App& bench) -> std::function<int()> {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = bench.add_subcommand("serve", "Drive a running OpenAI-compatible server; latency percentiles");
  sub->add_option("--base-url", a->base_url, "The server")->capture_default_str();
  sub->add_option("--model", a->model, "Model name (default: the first of /v1/models)");
  sub->add_option("--request-rate", a->request_rate,
                  "Requests per second, Poisson arrivals (default inf: all at once)");
  sub->add_option("--num-prompts", a->num_prompts, "Requests")->capture_default_str();
  sub->add_option("--input-len", a->input_len, "Prompt tokens (random ids)")->capture_default_str();
  sub->add_option("--output-len", a->output_len, "Tokens to generate")->capture_default_str();
  sub->add_option("--vocab", a->vocab, "Random prompt ids come from [100, 100 + vocab)")->capture_default_str();
  sub->add_option("--api-key", a->api_key, "Bearer key");
  sub->add_option("--seed", a->seed, "Seed for prompts and arrivals")->capture_default_str();
  sub->add_flag("--json", a->json, "Print one JSON object");
  return [a] { return run_serve_bench(*a); };
});

}  // namespace
}  // namespace pagoda::cli::bench
