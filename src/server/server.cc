#include "server/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "engine/async_engine.h"
#include "pagoda/version.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/protocol.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::server {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// An output on its way from the engine thread to the I/O thread.
struct Delivery {
  uint64_t conn_id = 0;
  uint64_t serial = 0;  // which request of the connection
  size_t sub = 0;       // which prompt of the request
  RequestOutput output;
};

// Shared with the engine's callbacks, which may outlive the server's loop.
struct Mailbox {
  std::mutex mu;
  std::vector<Delivery> items;
  int event_fd = -1;

  Mailbox() : event_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (event_fd < 0) fail(ErrorCode::kIo, "eventfd: {}", std::strerror(errno));
  }
  ~Mailbox() { close(event_fd); }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  void wake() const {
    const uint64_t one = 1;
    // A full counter still leaves the fd readable, so a failed write loses no wakeup.
    [[maybe_unused]] const ssize_t n = write(event_fd, &one, sizeof one);
  }
  void push(Delivery d) {
    {
      const std::lock_guard lock(mu);
      items.push_back(std::move(d));
    }
    wake();
  }
};

// A generation request in flight on one connection.
struct Active {
  GenerationRequest req;
  std::string id;
  std::string model;
  int64_t created = 0;
  bool keep_alive = true;
  std::vector<std::string> engine_ids;
  std::vector<std::vector<int32_t>> prompt_ids;
  std::vector<std::string> prompt_texts;  // for echo
  std::vector<bool> sub_done;
  size_t remaining = 0;
  std::vector<RequestOutput> finals;  // non-streaming: the final output of each prompt
  // Prompt logprobs of each prompt, from whichever output carried them.
  std::vector<std::vector<std::optional<PositionLogprobs>>> prompt_logprobs;
  // Streaming, per choice (prompt * n + index): tokens so far, finish sent, text offset.
  std::vector<int64_t> tokens;
  std::vector<bool> finish_sent;
  std::vector<size_t> text_offset;
};

struct Conn {
  uint64_t id = 0;
  int fd = -1;
  std::string in;
  std::string out;
  size_t out_off = 0;
  RequestParser parser;
  uint64_t serial = 0;
  std::unique_ptr<Active> active;
  double request_start = 0.0;  // when the first byte of the pending request arrived; 0: none
  double last_activity = 0.0;
  double last_write = 0.0;
  bool sent_continue = false;
  bool close_after_write = false;
  bool reading = true;
  bool dead = false;
  // After an error answer the client may still be sending (a body over the limit): its input is
  // read and dropped for a while after our side is shut, so the answer is not lost to a reset.
  bool lingering = false;
  double linger_until = 0.0;
  uint32_t events = 0;

  explicit Conn(const HttpLimits& limits) : parser(limits) {}
  [[nodiscard]] size_t pending() const { return out.size() - out_off; }
};

}  // namespace

class Server::Impl {
 public:
  Impl(engine::AsyncEngine& engine, ServerOptions options)
      : engine_(engine),
        options_(std::move(options)),
        metrics_(options_.served_model_names.empty() ? std::string("model") : options_.served_model_names[0]),
        mailbox_(std::make_shared<Mailbox>()),
        rng_(std::random_device{}()) {
    if (options_.served_model_names.empty()) options_.served_model_names.push_back("model");
    limits_.vocab_size = engine_.vocab_size();
    limits_.max_model_len = engine_.max_model_len();
    listen_on();
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) fail(ErrorCode::kIo, "epoll_create1: {}", std::strerror(errno));
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_fd_ < 0) fail(ErrorCode::kIo, "eventfd: {}", std::strerror(errno));
    add_fd(listen_fd_, EPOLLIN, kListenTag);
    add_fd(mailbox_->event_fd, EPOLLIN, kMailboxTag);
    add_fd(stop_fd_, EPOLLIN, kStopTag);
  }

  ~Impl() {
    for (auto& [id, c] : conns_)
      if (c->fd >= 0) close(c->fd);
    if (listen_fd_ >= 0) close(listen_fd_);
    if (signal_fd_ >= 0) close(signal_fd_);
    close(stop_fd_);
    close(epoll_fd_);
    if (shutdown_thread_.joinable()) shutdown_thread_.join();
  }

  [[nodiscard]] int port() const { return port_; }

  void stop() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = write(stop_fd_, &one, sizeof one);
  }

  void run();

 private:
  static constexpr uint64_t kListenTag = 1;
  static constexpr uint64_t kMailboxTag = 2;
  static constexpr uint64_t kStopTag = 3;
  static constexpr uint64_t kSignalTag = 4;
  static constexpr uint64_t kFirstConn = 16;

  void listen_on();
  void add_fd(int fd, uint32_t events, uint64_t tag) const {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) fail(ErrorCode::kIo, "epoll_ctl: {}", std::strerror(errno));
  }
  void update_events(Conn& c);
  void accept_all();
  void on_conn_event(uint64_t id, uint32_t events);
  void read_conn(Conn& c);
  void process_input(Conn& c);
  void flush(Conn& c);
  void send(Conn& c, std::string_view data);
  void kill(Conn& c);
  void reap();
  void sweep_timeouts();
  void drain_mailbox();
  void begin_shutdown();

  // Request handling.
  void handle(Conn& c, HttpRequest& req);
  void respond(Conn& c, int status, std::string_view content_type, std::string_view body, bool keep_alive,
               const std::vector<std::pair<std::string, std::string>>& extra = {});
  void respond_error(Conn& c, const ApiError& e, bool keep_alive);
  void start_generation(Conn& c, HttpRequest& req, ApiKind kind);
  void tokenize(Conn& c, HttpRequest& req);
  void detokenize(Conn& c, HttpRequest& req);
  void check_model(const std::optional<std::string>& model) const;
  void deliver(Conn& c, Delivery& d);
  void stream_output(Conn& c, Active& a, size_t sub, const RequestOutput& out);
  void finish_generation(Conn& c);
  [[nodiscard]] std::string complete_response(const Active& a) const;
  [[nodiscard]] std::string token_text(int32_t id) const;
  [[nodiscard]] std::string random_id(std::string_view prefix);
  [[nodiscard]] Json chunk_base(const Active& a) const;

  engine::AsyncEngine& engine_;
  ServerOptions options_;
  ProtocolLimits limits_;
  ServerMetrics metrics_;
  std::shared_ptr<Mailbox> mailbox_;
  std::mt19937_64 rng_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  int signal_fd_ = -1;
  int port_ = 0;
  uint64_t next_conn_ = kFirstConn;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<uint64_t> dead_;
  bool shutting_down_ = false;
  std::atomic<bool> engine_stopped_{false};
  std::thread shutdown_thread_;
};

void Server::Impl::listen_on() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    fail(ErrorCode::kIo, "cannot resolve host '{}': {}", options_.host, gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
      listen_fd_ = fd;
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
      break;
    }
    last_error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  if (listen_fd_ < 0) fail(ErrorCode::kIo, "cannot listen on {}:{}: {}", options_.host, options_.port, last_error);
}

void Server::Impl::run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ >= 0) add_fd(signal_fd_, EPOLLIN, kSignalTag);

  std::vector<epoll_event> events(256);
  double drain_deadline = 0.0;
  while (true) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 200);
    if (n < 0 && errno != EINTR) fail(ErrorCode::kIo, "epoll_wait: {}", std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[static_cast<size_t>(i)].data.u64;
      const uint32_t ev = events[static_cast<size_t>(i)].events;
      if (tag == kListenTag) {
        accept_all();
      } else if (tag == kMailboxTag) {
        drain_mailbox();
      } else if (tag == kStopTag || tag == kSignalTag) {
        uint64_t buf[16];
        [[maybe_unused]] const ssize_t r = read(tag == kStopTag ? stop_fd_ : signal_fd_, buf, sizeof buf);
        begin_shutdown();
      } else {
        on_conn_event(tag, ev);
      }
    }
    sweep_timeouts();
    reap();
    if (shutting_down_ && engine_stopped_.load()) {
      drain_mailbox();
      // Give clients a moment to read what is queued for them.
      if (drain_deadline == 0.0) drain_deadline = now_s() + 2.0;
      bool pending = false;
      for (const auto& [id, c] : conns_)
        pending = pending || c->pending() > 0 || c->active != nullptr;
      if (!pending || now_s() > drain_deadline) break;
    }
  }
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  for (auto& [id, c] : conns_)
    kill(*c);
  reap();
}

void Server::Impl::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  close(listen_fd_);
  listen_fd_ = -1;
  // The engine lets running requests finish; their outputs keep flowing through the mailbox
  // while this thread waits.
  shutdown_thread_ = std::thread([this] {
    try {
      engine_.shutdown(options_.shutdown_timeout_s);
    } catch (...) {  // NOLINT(bugprone-empty-catch): shutting down regardless
    }
    engine_stopped_.store(true);
    mailbox_->wake();
  });
}

void Server::Impl::accept_all() {
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error (EMFILE...): try on the next event
    if (static_cast<int>(conns_.size()) >= options_.max_connections) {
      close(fd);
      continue;
    }
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    auto c = std::make_unique<Conn>(options_.http);
    c->id = next_conn_++;
    c->fd = fd;
    c->last_activity = now_s();
    c->events = EPOLLIN | EPOLLRDHUP;
    epoll_event ev{};
    ev.events = c->events;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    conns_.emplace(c->id, std::move(c));
  }
}

void Server::Impl::update_events(Conn& c) {
  uint32_t want = EPOLLRDHUP;
  if (c.reading) want |= EPOLLIN;
  if (c.pending() > 0) want |= EPOLLOUT;
  if (want == c.events) return;
  c.events = want;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

// Aborts the connection's engine requests at once and closes its socket; the Conn object stays
// (marked dead, so callers up the stack can tell) until reap() at the end of the loop iteration.
void Server::Impl::kill(Conn& c) {
  if (c.dead) return;
  c.dead = true;
  if (c.active) {
    for (size_t i = 0; i < c.active->engine_ids.size(); ++i) {
      if (!c.active->sub_done[i]) engine_.abort(c.active->engine_ids[i]);
    }
    c.active.reset();
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  close(c.fd);
  c.fd = -1;
  dead_.push_back(c.id);
}

void Server::Impl::reap() {
  for (uint64_t id : dead_)
    conns_.erase(id);
  dead_.clear();
}

void Server::Impl::on_conn_event(uint64_t id, uint32_t events) {
  auto it = conns_.find(id);
  if (it == conns_.end() || it->second->dead) return;
  Conn& c = *it->second;
  if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
    kill(c);
    return;
  }
  if ((events & EPOLLOUT) != 0) {
    flush(c);
    if (c.dead) return;
  }
  if ((events & EPOLLRDHUP) != 0 && !c.reading) {
    // Not reading (input capped behind a running request) but the peer has gone.
    kill(c);
    return;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP)) != 0) read_conn(c);
}

void Server::Impl::read_conn(Conn& c) {
  char buf[65536];
  if (c.lingering) {
    const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) kill(c);
    return;
  }
  bool peer_closed = false;
  // Take at most a few reads per event so one fast client cannot starve the others.
  for (int round = 0; round < 4 && c.reading; ++round) {
    const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (c.in.empty() && c.request_start == 0.0) c.request_start = now_s();
      c.in.append(buf, static_cast<size_t>(n));
      c.last_activity = now_s();
      // Input piling up behind a running request: stop reading until it is done.
      if (c.in.size() > options_.http.max_head_bytes + options_.http.max_body_bytes) c.reading = false;
      if (static_cast<size_t>(n) < sizeof buf) break;
      continue;
    }
    if (n == 0) {
      peer_closed = true;
      break;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EINTR) continue;
    kill(c);
    return;
  }
  if (peer_closed) {
    // The client went away (or half-closed): abort whatever it asked for.
    kill(c);
    return;
  }
  process_input(c);
  if (!c.dead) update_events(c);
}

void Server::Impl::process_input(Conn& c) {
  while (!c.active && !c.close_after_write && !c.in.empty()) {
    if (c.request_start == 0.0) c.request_start = now_s();
    HttpRequest req;
    const ParseResult r = c.parser.parse(c.in, req);
    if (r.status == ParseResult::Status::kIncomplete) {
      if (r.expects_continue && !c.sent_continue) {
        c.sent_continue = true;
        send(c, "HTTP/1.1 100 Continue\r\n\r\n");
      }
      return;
    }
    if (r.status == ParseResult::Status::kError) {
      c.reading = false;
      respond_error(c, ApiError(r.http_status, r.message), false);
      return;
    }
    c.in.erase(0, r.consumed);
    c.request_start = c.in.empty() ? 0.0 : now_s();
    c.sent_continue = false;
    ++c.serial;
    handle(c, req);
    if (c.dead) return;
  }
}

void Server::Impl::send(Conn& c, std::string_view data) {
  if (c.dead) return;
  // A client that does not read its stream: drop it rather than buffer without bound. What it
  // left unread counts our buffer and the socket's (SIOCOUTQ), so the cap holds however large
  // the kernel lets the send buffer grow. A single large answer to a reading client passes.
  int in_kernel = 0;
  if (ioctl(c.fd, SIOCOUTQ, &in_kernel) != 0) in_kernel = 0;
  if (c.pending() + static_cast<size_t>(std::max(in_kernel, 0)) > options_.max_pending_output) {
    kill(c);
    return;
  }
  if (c.pending() == 0) {
    c.out.clear();
    c.out_off = 0;
    c.last_write = now_s();
  }
  c.out.append(data);
  flush(c);
}

void Server::Impl::flush(Conn& c) {
  if (c.dead) return;
  while (c.pending() > 0) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.pending(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      c.last_write = now_s();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    kill(c);
    return;
  }
  if (c.pending() == 0) {
    c.out.clear();
    c.out_off = 0;
    if (c.close_after_write && !c.active && !c.lingering) {
      ::shutdown(c.fd, SHUT_WR);
      c.lingering = true;
      c.reading = true;
      c.linger_until = now_s() + 2.0;
    }
  } else if (c.out_off > (1u << 20) && c.out_off > c.out.size() / 2) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  update_events(c);
}

void Server::Impl::sweep_timeouts() {
  const double now = now_s();
  std::vector<Conn*> drop;
  std::vector<Conn*> late;
  for (auto& [id, cp] : conns_) {
    Conn& c = *cp;
    if (c.dead) continue;
    if (c.lingering) {
      if (now > c.linger_until) drop.push_back(&c);
    } else if (c.pending() > 0 && now - c.last_write > options_.write_timeout_s) {
      drop.push_back(&c);
    } else if (!c.active && c.request_start > 0.0 && !c.close_after_write &&
               now - c.request_start > options_.read_timeout_s) {
      late.push_back(&c);
    } else if (!c.active && c.in.empty() && c.pending() == 0 && now - c.last_activity > options_.idle_timeout_s) {
      drop.push_back(&c);
    } else if (shutting_down_ && !c.active && c.pending() == 0 && c.in.empty()) {
      drop.push_back(&c);
    }
  }
  // Acting after the walk: answering or closing never changes the map under it (reap() erases).
  for (Conn* c : late) {
    c->reading = false;
    respond_error(*c, ApiError(408, "the request did not arrive in time"), false);
  }
  for (Conn* c : drop)
    kill(*c);
}

void Server::Impl::drain_mailbox() {
  uint64_t count = 0;
  [[maybe_unused]] const ssize_t r = read(mailbox_->event_fd, &count, sizeof count);
  std::vector<Delivery> items;
  {
    const std::lock_guard lock(mailbox_->mu);
    items.swap(mailbox_->items);
  }
  for (Delivery& d : items) {
    if (d.output.finished) metrics_.record_finished(d.output);
    auto it = conns_.find(d.conn_id);
    if (it == conns_.end()) continue;
    Conn& c = *it->second;
    if (c.dead || c.serial != d.serial || !c.active) continue;
    try {
      deliver(c, d);
    } catch (const std::exception&) {
      kill(c);
    }
  }
}

// ---- Requests ----

void Server::Impl::respond(Conn& c, int status, std::string_view content_type, std::string_view body, bool keep_alive,
                           const std::vector<std::pair<std::string, std::string>>& extra) {
  keep_alive = keep_alive && !shutting_down_;
  if (!keep_alive) c.close_after_write = true;
  send(c, format_response(status, content_type, body, keep_alive, extra));
}

void Server::Impl::respond_error(Conn& c, const ApiError& e, bool keep_alive) {
  respond(c, e.status(), "application/json", e.body(), keep_alive);
}

void Server::Impl::check_model(const std::optional<std::string>& model) const {
  if (!model) return;
  for (const std::string& name : options_.served_model_names)
    if (name == *model) return;
  throw ApiError(404, fmt::format("The model `{}` does not exist.", *model), "model", "model_not_found");
}

std::string Server::Impl::random_id(std::string_view prefix) {
  return fmt::format("{}{:016x}{:016x}", prefix, rng_(), rng_());
}

std::string Server::Impl::token_text(int32_t id) const {
  const uint32_t u = static_cast<uint32_t>(id);
  return engine_.tokenizer().decode(std::span<const uint32_t>(&u, 1), false);
}

void Server::Impl::handle(Conn& c, HttpRequest& req) {
  const bool keep_alive = req.keep_alive;
  struct Route {
    const char* path;
    const char* method;
  };
  static constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                                      {"/v1/models", "GET"},       {"/health", "GET"},
                                      {"/version", "GET"},         {"/tokenize", "POST"},
                                      {"/detokenize", "POST"},     {"/metrics", "GET"}};
  try {
    const Route* route = nullptr;
    for (const Route& r : kRoutes)
      if (req.path == r.path) route = &r;
    if (route == nullptr) throw ApiError(404, fmt::format("no route for {}", req.path));
    if (req.method != route->method) {
      respond(c, 405, "application/json",
              error_body(405, fmt::format("{} does not allow {}; use {}", req.path, req.method, route->method)),
              keep_alive, {{"Allow", route->method}});
      return;
    }
    if (!options_.api_key.empty() && req.path.starts_with("/v1/") &&
        !authorized(req.header("authorization"), options_.api_key)) {
      throw ApiError(401, "Incorrect or missing API key: send \"Authorization: Bearer <key>\"", {}, "invalid_api_key");
    }
    const std::string_view path = req.path;
    if (path == "/v1/completions") {
      start_generation(c, req, ApiKind::kCompletion);
    } else if (path == "/v1/chat/completions") {
      start_generation(c, req, ApiKind::kChat);
    } else if (path == "/v1/models") {
      Json data = Json::array();
      for (const std::string& name : options_.served_model_names) {
        Json m;
        m["id"] = name;
        m["object"] = "model";
        m["created"] = static_cast<int64_t>(std::time(nullptr));
        m["owned_by"] = "pagoda";
        m["root"] = options_.model_root;
        m["parent"] = nullptr;
        m["max_model_len"] = limits_.max_model_len;
        data.push_back(std::move(m));
      }
      respond(c, 200, "application/json", dump(Json{{"object", "list"}, {"data", std::move(data)}}), keep_alive);
    } else if (path == "/health") {
      respond(c, 200, "", "", keep_alive);
    } else if (path == "/version") {
      respond(c, 200, "application/json", dump(Json{{"version", kVersion}}), keep_alive);
    } else if (path == "/tokenize") {
      tokenize(c, req);
    } else if (path == "/detokenize") {
      detokenize(c, req);
    } else if (path == "/metrics") {
      // The engine queues a request's last output before it updates its stats, so draining the
      // queue after reading them makes the finished counts agree with the gauges.
      const engine::EngineStats stats = engine_.stats();
      drain_mailbox();
      if (c.dead) return;
      respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render(stats), keep_alive);
    }
  } catch (const ApiError& e) {
    respond_error(c, e, keep_alive);
  } catch (const Error& e) {
    const int status = e.code() == ErrorCode::kOutOfMemory ? 503 : e.code() == ErrorCode::kInvalidArgument ? 400 : 500;
    respond_error(c, ApiError(status, e.what()), keep_alive);
  } catch (const std::exception& e) {
    respond_error(c, ApiError(500, fmt::format("internal error: {}", e.what())), keep_alive);
  }
}

void Server::Impl::tokenize(Conn& c, HttpRequest& req) {
  const nlohmann::json body = parse_json_body(req.body);
  const TokenizeRequest t = parse_tokenize_request(body, limits_);
  check_model(t.model);
  std::string text;
  if (t.prompt) {
    text = *t.prompt;
  } else {
    try {
      text = engine_.apply_chat_template(t.messages, t.add_generation_prompt);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
  }
  const std::vector<uint32_t> ids = engine_.tokenizer().encode(text, t.add_special_tokens);
  Json r;
  r["count"] = ids.size();
  r["max_model_len"] = limits_.max_model_len;
  r["tokens"] = ids;
  r["token_strs"] = nullptr;
  respond(c, 200, "application/json", dump(r), req.keep_alive);
}

void Server::Impl::detokenize(Conn& c, HttpRequest& req) {
  const nlohmann::json body = parse_json_body(req.body);
  const DetokenizeRequest d = parse_detokenize_request(body, limits_);
  check_model(d.model);
  const std::vector<uint32_t> ids(d.tokens.begin(), d.tokens.end());
  respond(c, 200, "application/json", dump(Json{{"prompt", engine_.tokenizer().decode(ids, false)}}), req.keep_alive);
}

void Server::Impl::start_generation(Conn& c, HttpRequest& req, ApiKind kind) {
  const nlohmann::json body = parse_json_body(req.body);
  GenerationRequest g = parse_generation_request(body, kind, limits_);
  check_model(g.model);
  const tokenizer::Tokenizer& tok = engine_.tokenizer();

  auto a = std::make_unique<Active>();
  a->keep_alive = req.keep_alive && !shutting_down_;
  a->model = g.model ? *g.model : options_.served_model_names[0];
  a->created = static_cast<int64_t>(std::time(nullptr));
  a->id = random_id(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-");
  if (kind == ApiKind::kChat) {
    std::string text;
    try {
      text = engine_.apply_chat_template(g.messages, g.add_generation_prompt);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
    const std::vector<uint32_t> ids = tok.encode(text, false);
    a->prompt_ids.emplace_back(ids.begin(), ids.end());
    a->prompt_texts.push_back(std::move(text));
  } else {
    for (const PromptSpec& p : g.prompts) {
      if (p.text) {
        const std::vector<uint32_t> ids = tok.encode(*p.text, true);
        a->prompt_ids.emplace_back(ids.begin(), ids.end());
        a->prompt_texts.push_back(*p.text);
      } else {
        a->prompt_ids.push_back(p.token_ids);
        std::string text;
        if (g.echo) {
          const std::vector<uint32_t> ids(p.token_ids.begin(), p.token_ids.end());
          text = tok.decode(ids, false);
        }
        a->prompt_texts.push_back(std::move(text));
      }
    }
  }
  for (const std::vector<int32_t>& ids : a->prompt_ids)
    check_prompt(ids, g, limits_);

  const size_t subs = a->prompt_ids.size();
  const auto n = static_cast<size_t>(g.params.n);
  a->sub_done.assign(subs, false);
  a->finals.resize(subs);
  a->prompt_logprobs.resize(subs);
  a->remaining = subs;
  a->tokens.assign(subs * n, 0);
  a->finish_sent.assign(subs * n, false);
  a->text_offset.assign(subs * n, 0);
  a->req = std::move(g);
  Active& act = *a;
  c.active = std::move(a);

  for (size_t i = 0; i < subs; ++i) {
    engine::EngineRequest er;
    er.request_id = subs == 1 ? act.id : fmt::format("{}-{}", act.id, i);
    er.prompt_token_ids = act.prompt_ids[i];
    if (kind == ApiKind::kCompletion && act.req.prompts[i].text) er.prompt = act.req.prompts[i].text;
    er.params = act.req.params;
    er.delta = act.req.stream;
    std::weak_ptr<Mailbox> box = mailbox_;
    const uint64_t conn_id = c.id;
    const uint64_t serial = c.serial;
    try {
      engine_.add_request(std::move(er), [box, conn_id, serial, i](RequestOutput out) {
        if (auto m = box.lock()) m->push(Delivery{conn_id, serial, i, std::move(out)});
      });
    } catch (...) {
      for (size_t j = 0; j < i; ++j)
        engine_.abort(act.engine_ids[j]);
      c.active.reset();
      throw;
    }
    act.engine_ids.push_back(subs == 1 ? act.id : fmt::format("{}-{}", act.id, i));
  }

  if (!act.req.stream) return;
  send(c, format_stream_head(200, "text/event-stream; charset=utf-8", act.keep_alive));
  // First chunks: the assistant role (chat), the prompt (completions with echo).
  for (size_t i = 0; i < subs; ++i) {
    for (size_t k = 0; k < n; ++k) {
      const size_t index = i * n + k;
      Json choice;
      choice["index"] = index;
      if (kind == ApiKind::kChat) {
        choice["delta"] = Json{{"role", "assistant"}, {"content", ""}};
      } else if (act.req.echo) {
        choice["text"] = act.prompt_texts[i];
        act.text_offset[index] = code_points(act.prompt_texts[i]);
      } else {
        continue;
      }
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = nullptr;
      Json chunk = chunk_base(act);
      chunk["choices"] = Json::array({std::move(choice)});
      if (act.req.return_token_ids) chunk["prompt_token_ids"] = act.prompt_ids[i];
      send(c, format_chunk(sse_event(dump(chunk))));
    }
  }
}

Json Server::Impl::chunk_base(const Active& a) const {
  Json j;
  j["id"] = a.id;
  j["object"] = a.req.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
  j["created"] = a.created;
  j["model"] = a.model;
  return j;
}

void Server::Impl::deliver(Conn& c, Delivery& d) {
  Active& a = *c.active;
  if (d.sub >= a.sub_done.size() || a.sub_done[d.sub]) return;
  if (!d.output.prompt_logprobs.empty()) a.prompt_logprobs[d.sub] = d.output.prompt_logprobs;
  if (a.req.stream) {
    stream_output(c, a, d.sub, d.output);
    if (c.dead) return;
  }
  if (!d.output.finished) return;
  a.sub_done[d.sub] = true;
  a.finals[d.sub] = std::move(d.output);
  if (--a.remaining == 0) finish_generation(c);
}

void Server::Impl::stream_output(Conn& c, Active& a, size_t sub, const RequestOutput& out) {
  const auto n = static_cast<size_t>(a.req.params.n);
  const bool chat = a.req.kind == ApiKind::kChat;
  for (const CompletionOutput& o : out.outputs) {
    if (o.index < 0 || static_cast<size_t>(o.index) >= n) continue;
    const size_t index = sub * n + static_cast<size_t>(o.index);
    const bool finishing = o.finished() && !a.finish_sent[index];
    if (o.text.empty() && o.token_ids.empty() && !finishing) continue;
    a.tokens[index] += static_cast<int64_t>(o.token_ids.size());
    Json choice;
    choice["index"] = index;
    if (chat) {
      choice["delta"] = o.text.empty() && finishing ? Json::object() : Json{{"content", o.text}};
    } else {
      choice["text"] = o.text;
    }
    if (a.req.logprobs && !o.logprobs.empty()) {
      const TokenText text = [this](int32_t id) { return token_text(id); };
      if (chat) {
        choice["logprobs"] = chat_logprobs(o.logprobs, text, *a.req.logprobs);
      } else {
        Json lp;
        std::vector<std::optional<PositionLogprobs>> positions(o.logprobs.begin(), o.logprobs.end());
        std::vector<int32_t> ids;
        for (const PositionLogprobs& p : o.logprobs)
          ids.push_back(p.chosen.token_id);
        append_completion_logprobs(lp, ids, positions, text, a.text_offset[index]);
        choice["logprobs"] = std::move(lp);
      }
    } else {
      choice["logprobs"] = nullptr;
    }
    choice["finish_reason"] = finishing ? finish_reason_json(o.finish_reason) : Json(nullptr);
    choice["stop_reason"] = finishing ? stop_reason_json(o) : Json(nullptr);
    if (a.req.return_token_ids) choice["token_ids"] = o.token_ids;
    if (finishing) a.finish_sent[index] = true;
    Json chunk = chunk_base(a);
    chunk["choices"] = Json::array({std::move(choice)});
    if (a.req.include_usage) chunk["usage"] = nullptr;
    send(c, format_chunk(sse_event(dump(chunk))));
    if (c.dead) return;
  }
}

void Server::Impl::finish_generation(Conn& c) {
  std::unique_ptr<Active> a = std::move(c.active);
  const bool keep_alive = a->keep_alive && !shutting_down_;
  if (!keep_alive) c.close_after_write = true;
  if (a->req.stream) {
    std::string tail;
    if (a->req.include_usage) {
      int64_t prompt = 0;
      int64_t completion = 0;
      for (const auto& ids : a->prompt_ids)
        prompt += static_cast<int64_t>(ids.size());
      for (int64_t t : a->tokens)
        completion += t;
      Json chunk = chunk_base(*a);
      chunk["choices"] = Json::array();
      chunk["usage"] = usage_json(prompt, completion);
      tail += format_chunk(sse_event(dump(chunk)));
    }
    tail += format_chunk(kSseDone);
    tail += format_last_chunk();
    send(c, tail);
  } else {
    send(c, format_response(200, "application/json", complete_response(*a), keep_alive));
  }
  // The next pipelined request, if any.
  if (c.dead) return;
  if (!c.close_after_write) {
    c.reading = true;
    process_input(c);
  }
  if (!c.dead) update_events(c);
}

std::string Server::Impl::complete_response(const Active& a) const {
  const bool chat = a.req.kind == ApiKind::kChat;
  const auto n = static_cast<size_t>(a.req.params.n);
  const TokenText text = [this](int32_t id) { return token_text(id); };
  Json choices = Json::array();
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  for (size_t sub = 0; sub < a.finals.size(); ++sub) {
    const RequestOutput& out = a.finals[sub];
    prompt_tokens += static_cast<int64_t>(a.prompt_ids[sub].size());
    std::vector<const CompletionOutput*> by_index(n, nullptr);
    for (const CompletionOutput& o : out.outputs)
      if (o.index >= 0 && static_cast<size_t>(o.index) < n) by_index[static_cast<size_t>(o.index)] = &o;
    for (size_t k = 0; k < n; ++k) {
      const CompletionOutput empty;
      const CompletionOutput& o = by_index[k] != nullptr ? *by_index[k] : empty;
      completion_tokens += static_cast<int64_t>(o.token_ids.size());
      Json choice;
      choice["index"] = sub * n + k;
      if (chat) {
        choice["message"] = Json{{"role", "assistant"}, {"content", o.text}};
        choice["logprobs"] = a.req.logprobs ? chat_logprobs(o.logprobs, text, *a.req.logprobs) : Json(nullptr);
      } else {
        const std::string& prompt_text = a.prompt_texts[sub];
        choice["text"] = a.req.echo ? prompt_text + o.text : o.text;
        if (a.req.logprobs) {
          Json lp = empty_completion_logprobs();
          size_t offset = 0;
          if (a.req.echo) {
            append_completion_logprobs(lp, a.prompt_ids[sub], a.prompt_logprobs[sub], text, offset);
            offset = code_points(prompt_text);
          }
          std::vector<std::optional<PositionLogprobs>> positions(o.logprobs.begin(), o.logprobs.end());
          append_completion_logprobs(lp, o.token_ids, positions, text, offset);
          choice["logprobs"] = std::move(lp);
        } else {
          choice["logprobs"] = nullptr;
        }
      }
      choice["finish_reason"] = finish_reason_json(o.finish_reason);
      choice["stop_reason"] = stop_reason_json(o);
      if (a.req.return_token_ids) {
        if (!chat) choice["prompt_token_ids"] = a.prompt_ids[sub];
        choice["token_ids"] = o.token_ids;
      }
      choices.push_back(std::move(choice));
    }
  }
  Json r;
  r["id"] = a.id;
  r["object"] = chat ? "chat.completion" : "text_completion";
  r["created"] = a.created;
  r["model"] = a.model;
  r["choices"] = std::move(choices);
  r["usage"] = usage_json(prompt_tokens, completion_tokens);
  r["system_fingerprint"] = nullptr;
  if (chat && a.req.return_token_ids) r["prompt_token_ids"] = a.prompt_ids[0];
  return dump(r);
}

Server::Server(engine::AsyncEngine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {}
Server::~Server() = default;
int Server::port() const {
  return impl_->port();
}
void Server::run() {
  impl_->run();
}
void Server::stop() {
  impl_->stop();
}

}  // namespace pagoda::server
