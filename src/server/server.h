#pragma once

// The OpenAI-compatible HTTP server: one I/O thread runs an epoll loop over non-blocking sockets
// (no thread per connection); the engine runs on its own thread and hands each output to the I/O
// thread through a mutex-protected queue and an eventfd, so it never waits on a socket.
//
// Connections are HTTP/1.1 with keep-alive and pipelining (one request at a time per
// connection). Every connection has caps and clocks: the head and body must arrive within
// read_timeout_s, an idle keep-alive connection is closed after idle_timeout_s, and output the
// client does not read piles up to max_pending_output bytes at most, after which the connection
// is dropped. A dropped or closed connection aborts its engine requests at once.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/http.h"

namespace pagoda::engine {
class AsyncEngine;
}

namespace pagoda::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                              // 0: any free port (port() tells which)
  std::vector<std::string> served_model_names;  // the first one is reported; requests may use any
  std::string model_root;                       // the model path, for /v1/models
  std::string api_key;                          // empty: no authentication
  HttpLimits http;
  double read_timeout_s = 30.0;   // a request's head and body must arrive within this
  double idle_timeout_s = 120.0;  // an idle keep-alive connection is closed after this
  double write_timeout_s = 60.0;  // pending output that makes no progress for this long: drop
  size_t max_pending_output = 16u << 20;
  int max_connections = 4096;
  double shutdown_timeout_s = 30.0;
};

class Server {
 public:
  // Binds and listens (throws pagoda::Error kIo when it cannot). The engine must outlive run().
  Server(engine::AsyncEngine& engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] int port() const;

  // Serves until SIGTERM or SIGINT (the caller blocks both in every thread before starting the
  // engine, so that they arrive here through a signalfd) or stop(). Then it stops accepting, lets
  // running requests finish for up to shutdown_timeout_s (AsyncEngine::shutdown), flushes what
  // it can and returns.
  void run();
  // Thread-safe: makes run() begin its shutdown.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::server
