// The server's HTTP layer without sockets: the request parser (pipelining, input split at every
// byte, every limit), response and chunk framing, SSE events, API key checks and the metrics
// text format.

#include <gtest/gtest.h>

#include <string>

#include "server/auth.h"
#include "server/http.h"
#include "server/metrics.h"

namespace pagoda::server {
namespace {

using Status = ParseResult::Status;

TEST(ServerHttpTest, ParsesAPostWithBody) {
  RequestParser p;
  HttpRequest req;
  const std::string in =
      "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
      "Content-Length: 7\r\nX-Spaces:   padded  \r\n\r\n{\"a\":1}";
  const ParseResult r = p.parse(in, req);
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/v1/completions?x=1");
  EXPECT_EQ(req.path, "/v1/completions");
  EXPECT_EQ(req.body, "{\"a\":1}");
  ASSERT_NE(req.header("content-type"), nullptr);
  EXPECT_EQ(*req.header("content-type"), "application/json");
  EXPECT_EQ(*req.header("x-spaces"), "padded");
  EXPECT_TRUE(req.keep_alive);
}

TEST(ServerHttpTest, PipelinedRequestsParseOneAfterAnother) {
  RequestParser p;
  std::string in =
      "GET /health HTTP/1.1\r\n\r\nPOST /tokenize HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
      "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
  std::vector<std::string> paths;
  while (!in.empty()) {
    HttpRequest req;
    const ParseResult r = p.parse(in, req);
    ASSERT_EQ(r.status, Status::kComplete);
    paths.push_back(req.path);
    in.erase(0, r.consumed);
    if (req.path == "/metrics") {
      EXPECT_FALSE(req.keep_alive);
    }
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/health", "/tokenize", "/metrics"}));
}

TEST(ServerHttpTest, ByteByByteGivesTheSameRequest) {
  const std::string in =
      "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 11\r\nAuthorization: Bearer k\r\n\r\nhello worldGET / "
      "HTTP/1.0\r\n\r\n";
  RequestParser p;
  std::string buf;
  std::vector<HttpRequest> got;
  for (char ch : in) {
    buf += ch;
    HttpRequest req;
    const ParseResult r = p.parse(buf, req);
    ASSERT_NE(r.status, Status::kError);
    if (r.status == Status::kComplete) {
      buf.erase(0, r.consumed);
      got.push_back(req);
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "hello world");
  EXPECT_EQ(*got[0].header("authorization"), "Bearer k");
  EXPECT_EQ(got[1].minor_version, 0);
  EXPECT_FALSE(got[1].keep_alive);  // HTTP/1.0 without keep-alive
  EXPECT_TRUE(buf.empty());
}

ParseResult parse_once(const std::string& in, HttpLimits limits = {}) {
  RequestParser p(limits);
  HttpRequest req;
  return p.parse(in, req);
}

TEST(ServerHttpTest, LimitsGiveTheirStatus) {
  HttpLimits l;
  l.max_request_line = 64;
  l.max_head_bytes = 256;
  l.max_headers = 3;
  l.max_body_bytes = 100;
  EXPECT_EQ(parse_once("GET /" + std::string(100, 'a'), l).http_status, 414);
  EXPECT_EQ(parse_once("GET / HTTP/1.1\r\nA: " + std::string(300, 'b'), l).http_status, 431);
  EXPECT_EQ(parse_once("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", l).http_status, 431);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", l).http_status, 413);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", l).http_status, 400);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", l).status, Status::kIncomplete);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", l).http_status, 411);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", l).http_status, 501);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", l).http_status, 400);
  EXPECT_EQ(parse_once("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", l).http_status, 400);
}

// A head cut anywhere gets the same answer as the whole head: a request line exactly at the limit
// followed by a cut after its CR is not yet too long, and a line over the limit inside a head
// over the limit is reported as the line, as it is when the line arrives on its own.
TEST(ServerHttpTest, LimitsDoNotDependOnWhereTheInputIsCut) {
  HttpLimits l;
  l.max_request_line = 64;
  l.max_head_bytes = 256;
  const std::string at_limit = "GET /" + std::string(64 - 14, 'a') + " HTTP/1.1";
  ASSERT_EQ(at_limit.size(), 64u);
  const std::string over = "GET /" + std::string(400, 'a') + " HTTP/1.1";
  for (const std::string& head : {at_limit + "\r\n\r\n", "GET /" + std::string(64, 'a') + "\r\n\r\n", over + "\r\n\r\n",
                                  std::string(300, 'x') + "\r\n\r\n"}) {
    const ParseResult whole = parse_once(head, l);
    for (size_t cut = 1; cut < head.size(); ++cut) {
      RequestParser p(l);
      HttpRequest req;
      ParseResult first = p.parse(std::string_view(head).substr(0, cut), req);
      if (first.status == Status::kIncomplete) first = p.parse(head, req);
      EXPECT_EQ(first.status, whole.status) << "cut at " << cut << " of " << head.size();
      EXPECT_EQ(first.http_status, whole.http_status) << "cut at " << cut << " of " << head.size();
    }
  }
  EXPECT_EQ(parse_once(at_limit + "\r\n\r\n", l).status, Status::kComplete);
  EXPECT_EQ(parse_once(over + "\r\n\r\n", l).http_status, 414);
}

TEST(ServerHttpTest, MalformedHeadsAreRefused) {
  EXPECT_EQ(parse_once("GET /\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET  / HTTP/1.1\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET http://x/ HTTP/1.1\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET / HTTP/2.0\r\n\r\n").http_status, 505);
  EXPECT_EQ(parse_once("GET / FTP/1.0\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("G(T / HTTP/1.1\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET / HTTP/1.1\r\nNoColon\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").http_status, 400);
  EXPECT_EQ(parse_once("GET / HTTP/1.1\r\n folded: x\r\n\r\n").http_status, 400);
  static constexpr char kNulInHeader[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
  EXPECT_EQ(parse_once(std::string(kNulInHeader, sizeof kNulInHeader - 1)).http_status, 400);
}

TEST(ServerHttpTest, ExpectContinueIsReported) {
  RequestParser p;
  HttpRequest req;
  const std::string head = "POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
  ParseResult r = p.parse(head, req);
  EXPECT_EQ(r.status, Status::kIncomplete);
  EXPECT_TRUE(r.expects_continue);
  r = p.parse(head + "abc", req);
  EXPECT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(req.body, "abc");
}

TEST(ServerHttpTest, ResponseAndChunkFraming) {
  const std::string r = format_response(404, "application/json", "{}", true);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_NE(r.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(r.find("Connection: keep-alive\r\n"), std::string::npos);
  EXPECT_TRUE(r.ends_with("\r\n\r\n{}"));
  EXPECT_EQ(format_chunk("hello"), "5\r\nhello\r\n");
  EXPECT_EQ(format_chunk(std::string(26, 'x')).substr(0, 4), "1a\r\n");
  EXPECT_EQ(format_chunk(""), "");  // never the terminating empty chunk by accident
  EXPECT_EQ(format_last_chunk(), "0\r\n\r\n");
  const std::string head = format_stream_head(200, "text/event-stream", false);
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos);
}

TEST(ServerHttpTest, SseEvents) {
  EXPECT_EQ(sse_event("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
}

TEST(ServerAuthTest, ConstantTimeCompare) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secreT", "secret"));
  EXPECT_FALSE(constant_time_equal("secret1", "secret"));
  EXPECT_FALSE(constant_time_equal("secre", "secret"));
  EXPECT_FALSE(constant_time_equal("", "secret"));
  EXPECT_TRUE(constant_time_equal("", ""));
  const std::string good = "Bearer sk-123";
  const std::string lower = "bearer sk-123";
  const std::string wrong = "Bearer sk-124";
  const std::string basic = "Basic sk-123";
  EXPECT_TRUE(authorized(&good, "sk-123"));
  EXPECT_TRUE(authorized(&lower, "sk-123"));
  EXPECT_FALSE(authorized(&wrong, "sk-123"));
  EXPECT_FALSE(authorized(&basic, "sk-123"));
  EXPECT_FALSE(authorized(nullptr, "sk-123"));
}

TEST(ServerMetricsTest, HistogramIsCumulative) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.1);  // le is inclusive
  h.observe(0.5);
  h.observe(7.0);
  std::string out;
  h.render(out, "m", "a=\"b\"");
  EXPECT_NE(out.find("m_bucket{a=\"b\",le=\"0.1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("m_bucket{a=\"b\",le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("m_bucket{a=\"b\",le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("m_sum{a=\"b\"} 7.65\n"), std::string::npos) << out;
  EXPECT_NE(out.find("m_count{a=\"b\"} 4\n"), std::string::npos) << out;
}

TEST(ServerMetricsTest, RendersEngineStatsAndFinishedRequests) {
  ServerMetrics m("smol\"lm");
  RequestOutput out;
  out.finished = true;
  out.outputs.resize(1);
  out.outputs[0].finish_reason = FinishReason::kLength;
  out.outputs[0].token_ids = {1, 2, 3, 4, 5};
  out.metrics.arrival_time = 10.0;
  out.metrics.first_token_time = 10.5;
  out.metrics.last_token_time = 11.5;
  out.metrics.finished_time = 11.5;
  m.record_finished(out);
  engine::EngineStats s;
  s.num_running = 3;
  s.num_waiting = 2;
  s.kv_cache_usage = 0.25;
  s.prompt_tokens = 123;
  s.generation_tokens = 45;
  s.prefix_cache_queries = 7;
  s.prefix_cache_hits = 5;
  s.num_preemptions = 1;
  const std::string text = m.render(s);
  const std::string l = "{model_name=\"smol\\\"lm\"}";
  for (const std::string& line :
       {"pagoda:num_requests_running" + l + " 3", "pagoda:num_requests_waiting" + l + " 2",
        "pagoda:kv_cache_usage_perc" + l + " 0.25", "pagoda:prompt_tokens_total" + l + " 123",
        "pagoda:generation_tokens_total" + l + " 45", "pagoda:prefix_cache_queries_total" + l + " 7",
        "pagoda:prefix_cache_hits_total" + l + " 5", "pagoda:num_preemptions_total" + l + " 1",
        std::string("pagoda:request_success_total{model_name=\"smol\\\"lm\",finished_reason=\"length\"} 1"),
        std::string("pagoda:request_success_total{model_name=\"smol\\\"lm\",finished_reason=\"stop\"} 0"),
        std::string("pagoda:time_to_first_token_seconds_bucket{model_name=\"smol\\\"lm\",le=\"0.5\"} 1"),
        std::string("pagoda:time_to_first_token_seconds_bucket{model_name=\"smol\\\"lm\",le=\"0.25\"} 0"),
        std::string("pagoda:time_per_output_token_seconds_sum{model_name=\"smol\\\"lm\"} 0.25"),
        std::string("pagoda:e2e_request_latency_seconds_count{model_name=\"smol\\\"lm\"} 1"),
        std::string("# TYPE pagoda:prompt_tokens_total counter"),
        std::string("# TYPE pagoda:e2e_request_latency_seconds histogram")}) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n" << text;
  }
  // Every sample line is "name{labels} value".
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    ASSERT_NE(end, std::string::npos);
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.starts_with("#")) continue;
    EXPECT_TRUE(line.starts_with("pagoda:")) << line;
    EXPECT_NE(line.find("} "), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace pagoda::server
