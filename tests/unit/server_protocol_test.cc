// The OpenAI protocol layer: JSON bodies (UTF-8, nesting cap), each request field's checks (the
// 400 names the field), prompt length against the context, error objects and the logprobs
// shapes.

#include <gtest/gtest.h>

#include <string>

#include "server/openai_format.h"
#include "server/protocol.h"

namespace pagoda::server {
namespace {

using nlohmann::json;

ProtocolLimits limits() {
  ProtocolLimits l;
  l.vocab_size = 1000;
  l.max_model_len = 100;
  return l;
}

// The ApiError a completions (or chat) body gives; fails when it is accepted.
ApiError error_of(const std::string& body, ApiKind kind = ApiKind::kCompletion) {
  try {
    const json j = parse_json_body(body);
    (void)parse_generation_request(j, kind, limits());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "");
}

void expect_bad(const std::string& body, const std::string& param, ApiKind kind = ApiKind::kCompletion) {
  const ApiError e = error_of(body, kind);
  EXPECT_EQ(e.status(), 400) << body;
  EXPECT_EQ(e.param(), param) << body << ": " << e.message();
  EXPECT_NE(e.message().find(param.substr(0, param.find('.'))), std::string::npos) << e.message();
}

TEST(ServerProtocolTest, BodyMustBeUtf8ShallowJsonObject) {
  EXPECT_EQ(error_of("").status(), 400);
  EXPECT_EQ(error_of("{\"prompt\": \"a\xff\"}").message(), "the request body is not valid UTF-8");
  EXPECT_NE(error_of("{\"prompt\": ").message().find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1]").message().find("must be a JSON object"), std::string::npos);
  EXPECT_NE(error_of(std::string(100000, '[')).message().find("deeper than"), std::string::npos);
  std::string deep = "{\"prompt\": \"x\", \"a\": " + std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_NE(error_of(deep + "}").message().find("deeper than"), std::string::npos);
  EXPECT_EQ(json_depth("{\"a\": \"[[[[\", \"b\": [{}]}", 10), 3);
  EXPECT_EQ(json_depth("\"\\\"[[\"", 10), 0);
  EXPECT_EQ(json_depth("[[[", 2), -1);
  // A number beyond double's range is refused by the JSON reader itself.
  EXPECT_EQ(error_of(R"({"prompt": "x", "temperature": 1e999})").status(), 400);
}

TEST(ServerProtocolTest, AcceptsEveryFieldOfACompletion) {
  const json body = json::parse(R"({
    "model": "m", "prompt": "Hello", "n": 2, "stop": ["\n", "end"], "stop_token_ids": [5, 6], "seed": 7,
    "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5,
    "frequency_penalty": -0.5, "repetition_penalty": 1.1, "logit_bias": {"42": -100, "7": 5.5},
    "max_tokens": 20, "min_tokens": 2, "ignore_eos": true, "logprobs": 3, "echo": true,
    "return_token_ids": true, "include_stop_str_in_output": true, "skip_special_tokens": false,
    "user": "u", "stream": true, "stream_options": {"include_usage": true}, "unknown_field": {"x": 1}})");
  const GenerationRequest r = parse_generation_request(body, ApiKind::kCompletion, limits());
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Hello");
  const SamplingParams& p = r.params;
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "end"}));
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(p.seed, 7u);
  EXPECT_DOUBLE_EQ(p.temperature, 0.5);
  EXPECT_DOUBLE_EQ(p.top_p, 0.9);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_DOUBLE_EQ(p.min_p, 0.05);
  EXPECT_DOUBLE_EQ(p.presence_penalty, 0.5);
  EXPECT_DOUBLE_EQ(p.frequency_penalty, -0.5);
  EXPECT_DOUBLE_EQ(p.repetition_penalty, 1.1);
  EXPECT_EQ(p.logit_bias.size(), 2u);
  EXPECT_DOUBLE_EQ(p.logit_bias.at(42), -100.0);
  EXPECT_EQ(p.max_tokens, 20);
  EXPECT_EQ(p.min_tokens, 2);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.logprobs, 3);
  EXPECT_EQ(p.prompt_logprobs, 3);  // echo with logprobs scores the prompt too
  EXPECT_TRUE(r.echo);
  EXPECT_TRUE(r.return_token_ids);
  EXPECT_TRUE(p.include_stop_str_in_output);
  EXPECT_FALSE(p.skip_special_tokens);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.user, "u");
}

TEST(ServerProtocolTest, Defaults) {
  const GenerationRequest c =
      parse_generation_request(json::parse(R"({"prompt": [1, 2]})"), ApiKind::kCompletion, limits());
  EXPECT_EQ(c.params.max_tokens, 16);  // OpenAI's completions default
  EXPECT_FALSE(c.max_tokens_given);
  EXPECT_EQ(c.prompts[0].token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_FALSE(c.params.logprobs);
  const GenerationRequest chat = parse_generation_request(
      json::parse(R"({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9, "max_tokens": 3})"),
      ApiKind::kChat, limits());
  EXPECT_EQ(chat.params.max_tokens, 9);  // max_completion_tokens wins
  const GenerationRequest chat2 = parse_generation_request(
      json::parse(R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 2})"),
      ApiKind::kChat, limits());
  EXPECT_FALSE(chat2.params.max_tokens);  // chat runs to the end of the context
  EXPECT_EQ(chat2.params.logprobs, 2);
}

TEST(ServerProtocolTest, PromptShapes) {
  auto prompts = [](const char* body) {
    return parse_generation_request(json::parse(body), ApiKind::kCompletion, limits()).prompts;
  };
  EXPECT_EQ(prompts(R"({"prompt": ["a", "b", "c"]})").size(), 3u);
  const auto ids = prompts(R"({"prompt": [[1, 2], [3]]})");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[1].token_ids, (std::vector<int32_t>{3}));
  EXPECT_FALSE(ids[1].text);
  expect_bad(R"({"prompt": ""})", "prompt");
  expect_bad(R"({"prompt": []})", "prompt");
  expect_bad(R"({"prompt": [[]]})", "prompt");
  expect_bad(R"({"prompt": [[1], 2]})", "prompt");
  expect_bad(R"({"prompt": ["a", 2]})", "prompt");
  expect_bad(R"({"prompt": [1, "a"]})", "prompt");
  expect_bad(R"({"prompt": [1000]})", "prompt");
  expect_bad(R"({"prompt": [-1]})", "prompt");
  expect_bad(R"({"prompt": [1.5]})", "prompt");
  expect_bad(R"({"prompt": 5})", "prompt");
  expect_bad(R"({"prompt": {"a": 1}})", "prompt");
  expect_bad(R"({"prompt": [true]})", "prompt");
  expect_bad(R"({"max_tokens": 5})", "prompt");
  std::string many = R"({"prompt": [)";
  for (int i = 0; i < 300; ++i)
    many += std::string(i ? "," : "") + "\"x\"";
  expect_bad(many + "]}", "prompt");
}

TEST(ServerProtocolTest, EveryFieldRefusesWrongTypesAndRanges) {
  const std::string p = R"({"prompt": "x", )";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("n": 0)", "n"},
      {R"("n": 65)", "n"},
      {R"("n": "2")", "n"},
      {R"("n": 1.5)", "n"},
      {R"("n": 1e300)", "n"},
      {R"("temperature": -0.1)", "temperature"},
      {R"("temperature": "hot")", "temperature"},
      {R"("top_p": 0)", "top_p"},
      {R"("top_p": 1.01)", "top_p"},
      {R"("top_k": -2)", "top_k"},
      {R"("top_k": 0.5)", "top_k"},
      {R"("min_p": 2)", "min_p"},
      {R"("presence_penalty": 2.5)", "presence_penalty"},
      {R"("frequency_penalty": -3)", "frequency_penalty"},
      {R"("repetition_penalty": 0)", "repetition_penalty"},
      {R"("repetition_penalty": [])", "repetition_penalty"},
      {R"("seed": "x")", "seed"},
      {R"("seed": 0.5)", "seed"},
      {R"("stop": 5)", "stop"},
      {R"("stop": [1])", "stop"},
      {R"("stop": [""])", "stop"},
      {R"("stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"])", "stop"},
      {R"("stop_token_ids": 5)", "stop_token_ids"},
      {R"("stop_token_ids": [1000])", "stop_token_ids"},
      {R"("stop_token_ids": ["1"])", "stop_token_ids"},
      {R"("logit_bias": [1])", "logit_bias"},
      {R"("logit_bias": {"abc": 1})", "logit_bias"},
      {R"("logit_bias": {"-1": 1})", "logit_bias"},
      {R"("logit_bias": {"1000": 1})", "logit_bias"},
      {R"("logit_bias": {"5": 101})", "logit_bias"},
      {R"("logit_bias": {"5": "1"})", "logit_bias"},
      {R"("max_tokens": 0)", "max_tokens"},
      {R"("max_tokens": -5)", "max_tokens"},
      {R"("max_tokens": 99999999999999999999)", "max_tokens"},
      {R"("max_tokens": "5")", "max_tokens"},
      {R"("min_tokens": -1)", "min_tokens"},
      {R"("min_tokens": 20, "max_tokens": 10)", "min_tokens"},
      {R"("ignore_eos": 1)", "ignore_eos"},
      {R"("logprobs": 21)", "logprobs"},
      {R"("logprobs": -1)", "logprobs"},
      {R"("logprobs": true)", "logprobs"},
      {R"("echo": "yes")", "echo"},
      {R"("return_token_ids": 0)", "return_token_ids"},
      {R"("include_stop_str_in_output": "no")", "include_stop_str_in_output"},
      {R"("skip_special_tokens": null, "stream": "true")", "stream"},
      {R"("stream_options": {"include_usage": true})", "stream_options"},
      {R"("stream": true, "stream_options": 1)", "stream_options"},
      {R"("stream": true, "stream_options": {"include_usage": 1})", "stream_options.include_usage"},
      {R"("user": 5)", "user"},
      {R"("model": 5)", "model"},
      {R"("suffix": "x")", "suffix"},
  };
  for (const auto& [fields, param] : cases)
    expect_bad(p + fields + "}", param);
}

TEST(ServerProtocolTest, ChatFields) {
  const std::string user = R"("messages": [{"role": "user", "content": "hi"}])";
  expect_bad(R"({"messages": []})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": "hi"})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": [{"content": "hi"}]})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": [{"role": "king", "content": "hi"}]})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": [{"role": "user", "content": 5}]})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": [{"role": "user"}]})", "messages", ApiKind::kChat);
  expect_bad(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages", ApiKind::kChat);
  expect_bad(R"({"prompt": "x"})", "messages", ApiKind::kChat);
  expect_bad("{" + user + R"(, "logprobs": 2})", "logprobs", ApiKind::kChat);
  expect_bad("{" + user + R"(, "top_logprobs": 2})", "top_logprobs", ApiKind::kChat);
  expect_bad("{" + user + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs", ApiKind::kChat);
  expect_bad("{" + user + R"(, "max_completion_tokens": 0})", "max_completion_tokens", ApiKind::kChat);
  const GenerationRequest r = parse_generation_request(
      json::parse(R"({"messages": [{"role": "system", "content": [{"type": "text", "text": "a"},
        {"type": "text", "text": "b"}]}, {"role": "assistant", "content": null}]})"),
      ApiKind::kChat, limits());
  EXPECT_EQ(r.messages[0]["content"], "a\nb");
  EXPECT_EQ(r.messages[1]["content"], "");
}

TEST(ServerProtocolTest, PromptAgainstTheContext) {
  GenerationRequest r =
      parse_generation_request(json::parse(R"({"prompt": "x", "max_tokens": 30})"), ApiKind::kCompletion, limits());
  check_prompt(std::vector<int32_t>(70, 1), r, limits());
  try {
    check_prompt(std::vector<int32_t>(71, 1), r, limits());
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "max_tokens");
    // The numbers, as vLLM says them.
    EXPECT_NE(e.message().find("maximum context length is 100 tokens"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("you requested 101 tokens (71 in the prompt, 30 in the completion)"), std::string::npos)
        << e.message();
  }
  EXPECT_THROW(check_prompt({}, r, limits()), ApiError);
  EXPECT_THROW(check_prompt({1000}, r, limits()), ApiError);
  GenerationRequest chat = parse_generation_request(json::parse(R"({"messages": [{"role": "user", "content": "x"}]})"),
                                                    ApiKind::kChat, limits());
  check_prompt(std::vector<int32_t>(99, 1), chat, limits());
  EXPECT_THROW(check_prompt(std::vector<int32_t>(100, 1), chat, limits()), ApiError);
}

TEST(ServerProtocolTest, ErrorObjects) {
  const json e = json::parse(ApiError(400, "temperature must be in [0, 2]", "temperature").body());
  EXPECT_EQ(e["error"]["message"], "temperature must be in [0, 2]");
  EXPECT_EQ(e["error"]["type"], "BadRequestError");
  EXPECT_EQ(e["error"]["param"], "temperature");
  EXPECT_EQ(e["error"]["code"], 400);
  const json nf = json::parse(ApiError(404, "no such model", "model", "model_not_found").body());
  EXPECT_EQ(nf["error"]["code"], "model_not_found");
  EXPECT_EQ(nf["error"]["type"], "NotFoundError");
  EXPECT_TRUE(json::parse(error_body(405, "no"))["error"]["param"].is_null());
}

TEST(ServerProtocolTest, TokenizeAndDetokenizeRequests) {
  const TokenizeRequest t = parse_tokenize_request(json::parse(R"({"prompt": "hi"})"), limits());
  EXPECT_EQ(t.prompt, "hi");
  EXPECT_TRUE(t.add_special_tokens);
  const TokenizeRequest m =
      parse_tokenize_request(json::parse(R"({"messages": [{"role": "user", "content": "x"}]})"), limits());
  EXPECT_FALSE(m.add_special_tokens);
  EXPECT_THROW((void)parse_tokenize_request(json::parse(R"({"prompt": 5})"), limits()), ApiError);
  EXPECT_THROW((void)parse_tokenize_request(json::parse(R"({})"), limits()), ApiError);
  EXPECT_EQ(parse_detokenize_request(json::parse(R"({"tokens": [1, 2]})"), limits()).tokens,
            (std::vector<int32_t>{1, 2}));
  EXPECT_THROW((void)parse_detokenize_request(json::parse(R"({"tokens": [1000]})"), limits()), ApiError);
  EXPECT_THROW((void)parse_detokenize_request(json::parse(R"({"tokens": "1"})"), limits()), ApiError);
}

TEST(ServerFormatTest, CompletionLogprobs) {
  const TokenText text = [](int32_t id) { return id == 1 ? std::string("h\xC3\xA9") : std::string("x"); };
  PositionLogprobs p;
  p.chosen = {1, -0.5f, 1};
  p.top = {{1, -0.5f, 1}, {2, -1.5f, 2}};
  PositionLogprobs q;
  q.chosen = {2, -std::numeric_limits<float>::infinity(), 9};
  Json lp;
  size_t offset = 3;
  append_completion_logprobs(lp, {1, 2}, {p, q}, text, offset);
  EXPECT_EQ(lp["tokens"], Json::array({"h\xC3\xA9", "x"}));
  EXPECT_EQ(lp["text_offset"], Json::array({3, 5}));  // code points, as Python counts
  EXPECT_EQ(offset, 6u);
  EXPECT_DOUBLE_EQ(lp["token_logprobs"][0].get<double>(), -0.5);
  EXPECT_DOUBLE_EQ(lp["token_logprobs"][1].get<double>(), kMinLogprob);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][1].size(), 1u);  // the chosen token is always there
  Json echo;
  size_t o2 = 0;
  append_completion_logprobs(echo, {2, 1}, {std::nullopt, p}, text, o2);
  EXPECT_TRUE(echo["token_logprobs"][0].is_null());
  EXPECT_TRUE(echo["top_logprobs"][0].is_null());

  const Json chat = chat_logprobs({p}, text, 1);
  EXPECT_EQ(chat["content"][0]["token"], "h\xC3\xA9");
  EXPECT_EQ(chat["content"][0]["bytes"], Json::array({104, 195, 169}));
  EXPECT_EQ(chat["content"][0]["top_logprobs"].size(), 1u);
}

}  // namespace
}  // namespace pagoda::server
