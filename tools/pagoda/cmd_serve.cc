// `pagoda serve [MODEL] --host 127.0.0.1 --port 8000`: the OpenAI-compatible server
// (/v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /version,
// /metrics). Flag names are vLLM's where they apply. Binds loopback unless --host says otherwise;
// --port 0 takes a free port. SIGTERM / SIGINT: stop accepting, let running requests finish for
// up to --shutdown-timeout seconds, exit 0.

#include <fmt/format.h>
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backends/cpu/quant/bf16dot.h"
#include "backends/cpu/quant/qdot.h"
#include "backends/cpu/vec.h"
#include "command.h"
#include "core/error.h"
#include "engine/async_engine.h"
#include "pagoda/llm.h"
#include "server/server.h"

namespace pagoda::cli {
namespace {

struct ServeArgs {
  EngineArgs engine;
  server::ServerOptions server;
  std::vector<std::string> served_model_names;
  int64_t max_waiting_requests = 4096;
  std::string kv_cache_memory = "0";
  bool prefix_caching = true;
  std::string dtype = "auto";
  size_t max_body_bytes = 8u << 20;
};

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/')
    p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// "1073741824", "512M", "1.5G", "64MiB": bytes with an optional binary suffix.
int64_t parse_bytes(const std::string& text, const char* flag) {
  size_t used = 0;
  double value = -1.0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail(ErrorCode::kInvalidArgument, "{} must be a size like 512M or 2G, got '{}'", flag, text);
  }
  std::string suffix = text.substr(used);
  for (char& c : suffix)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double scale = 1.0;
  if (suffix == "K" || suffix == "KB" || suffix == "KIB") {
    scale = 1024.0;
  } else if (suffix == "M" || suffix == "MB" || suffix == "MIB") {
    scale = 1024.0 * 1024.0;
  } else if (suffix == "G" || suffix == "GB" || suffix == "GIB") {
    scale = 1024.0 * 1024.0 * 1024.0;
  } else if (!suffix.empty() && suffix != "B") {
    fail(ErrorCode::kInvalidArgument, "{} must be a size like 512M or 2G, got '{}'", flag, text);
  }
  const double bytes = value * scale;
  if (!(bytes >= 0.0) || bytes > 9.0e18) fail(ErrorCode::kInvalidArgument, "{} out of range: '{}'", flag, text);
  return static_cast<int64_t>(bytes);
}

int run_serve(ServeArgs& a) {
  if (a.engine.model.empty()) a.engine.model = default_model_path();
  a.engine.kv_cache_memory = parse_bytes(a.kv_cache_memory, "--kv-cache-memory");
  a.engine.enable_prefix_caching = a.prefix_caching;
  a.engine.kv_cache_dtype = a.dtype;
  if (a.max_waiting_requests < 1) fail(ErrorCode::kInvalidArgument, "--max-waiting-requests must be >= 1");
  if (a.server.shutdown_timeout_s < 0.0) fail(ErrorCode::kInvalidArgument, "--shutdown-timeout must be >= 0");
  if (a.server.read_timeout_s <= 0.0) fail(ErrorCode::kInvalidArgument, "--read-timeout must be > 0");
  a.server.http.max_body_bytes = a.max_body_bytes;
  if (a.server.api_key.empty()) {
    if (const char* env = std::getenv("PAGODA_API_KEY"); env != nullptr) a.server.api_key = env;
  }
  a.server.served_model_names = a.served_model_names;
  if (a.server.served_model_names.empty()) a.server.served_model_names.push_back(base_name(a.engine.model));
  a.server.model_root = a.engine.model;

  // Block the stop signals before the engine starts its thread, so that every thread inherits
  // the mask and they reach the server's signalfd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);

  engine::AsyncEngine engine(a.engine, a.max_waiting_requests);
  server::Server srv(engine, a.server);
  fmt::print("pagoda: {}, max model length {}\n", engine.cache_summary(), engine.max_model_len());
  if (parse_device(a.engine.device).kind == DeviceKind::kCpu) {
    const bool int8 = a.engine.cpu_matmul == "int8";
    fmt::print("pagoda: CPU matmul over GGUF block weights: {} ({} kernels{})\n", a.engine.cpu_matmul,
               int8 ? cpu::qdot::packed_kernel_name() : cpu::vec::tile_kernel_name(),
               int8 && cpu::bf16dot::available() ? fmt::format("; bf16 weights: {}", cpu::bf16dot::kernel_name()) : "");
  }
  const std::string host = a.server.host.find(':') != std::string::npos ? "[" + a.server.host + "]" : a.server.host;
  fmt::print("pagoda: serving {} at http://{}:{}\n", a.server.served_model_names[0], host, srv.port());
  std::fflush(stdout);
  srv.run();
  fmt::print("pagoda: shut down\n");
  std::fflush(stdout);
  return 0;
}

const CommandRegistration kRegisterServe("serve", [](CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  sub->add_option("model", a->engine.model, "Model: a .gguf file or a Hugging Face folder (default: SmolLM2-135M)");
  sub->add_option("--host", a->server.host, "Address to bind")->capture_default_str();
  sub->add_option("--port", a->server.port, "Port to bind; 0: any free port")->capture_default_str();
  sub->add_option("--served-model-name", a->served_model_names,
                  "Model name(s) the API answers to (default: the model file's name)");
  sub->add_option("--max-model-len", a->engine.max_model_len, "Context length; 0: the model's")->capture_default_str();
  sub->add_option("--max-num-seqs", a->engine.max_num_seqs, "Most sequences per step")->capture_default_str();
  sub->add_option("--max-num-batched-tokens", a->engine.max_num_batched_tokens, "Most tokens per step")
      ->capture_default_str();
  sub->add_option("--block-size", a->engine.block_size, "Tokens per KV cache block")->capture_default_str();
  sub->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", a->prefix_caching,
                "Reuse KV blocks of shared prompt prefixes (default: on)");
  sub->add_option("--kv-cache-memory", a->kv_cache_memory, "KV cache size in bytes, or with K/M/G; 0: automatic")
      ->capture_default_str();
  sub->add_option("--api-key", a->server.api_key, "Require this Bearer key on /v1/* (default: $PAGODA_API_KEY)");
  sub->add_option("--chat-template", a->engine.chat_template, "A Jinja chat template file replacing the model's");
  sub->add_option("--device", a->engine.device, "cpu, xpu[:N] or cuda[:N]")->capture_default_str();
  sub->add_option("--cpu-matmul", a->engine.cpu_matmul,
                  "CPU matmul over GGUF and bf16 weights: float or int8 (faster: 8-bit activations for GGUF blocks, "
                  "bf16 activations for bf16 weights on AMX-BF16 / AVX512-BF16 CPUs)")
      ->capture_default_str();
  sub->add_option("--dtype,--kv-cache-dtype", a->dtype, "KV cache dtype: auto, f32, f16, bf16")->capture_default_str();
  sub->add_option("--seed", a->engine.seed, "Seed of requests without their own")->capture_default_str();
  sub->add_option("--shutdown-timeout", a->server.shutdown_timeout_s,
                  "Seconds running requests may take to finish after SIGTERM")
      ->capture_default_str();
  sub->add_option("--max-waiting-requests", a->max_waiting_requests, "Queue length beyond which requests get 503")
      ->capture_default_str();
  sub->add_option("--max-body-bytes", a->max_body_bytes, "Largest request body (413 beyond)")->capture_default_str();
  sub->add_option("--read-timeout", a->server.read_timeout_s, "Seconds a request's head and body may take to arrive")
      ->capture_default_str();
  sub->add_option("--idle-timeout", a->server.idle_timeout_s, "Seconds an idle keep-alive connection stays open")
      ->capture_default_str();
  sub->add_option("--max-connections", a->server.max_connections, "Most open connections")->capture_default_str();
  sub->add_option("--max-pending-output", a->server.max_pending_output,
                  "Bytes of output a client may leave unread before it is dropped")
      ->capture_default_str();
  return [a] { return run_serve(*a); };
});

}  // namespace
}  // namespace pagoda::cli
