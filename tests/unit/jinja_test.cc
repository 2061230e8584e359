// Unit tests of the Jinja2 interpreter's guarantees that a jinja2 comparison cannot show: budgets,
// errors with line numbers, the sandbox, and deep nesting that must fail cleanly instead of
// overflowing the stack.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

#include "core/error.h"
#include "tokenizer/jinja/template.h"

namespace pagoda::jinja {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& source, const ordered_json& context = ordered_json::object(),
                   const RenderOptions& options = {}) {
  return Template::parse(source).render(context, options);
}

// The message of the pagoda::Error (kInvalidArgument) that rendering `source` throws.
std::string error_of(const std::string& source, const RenderOptions& options = {},
                     const ordered_json& context = ordered_json::object()) {
  try {
    (void)render(source, context, options);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << source;
  return {};
}

TEST(JinjaTest, RendersBasicTemplate) {
  ordered_json ctx = {{"name", "World"}, {"items", {1, 2, 3}}};
  EXPECT_EQ(render("Hello {{ name }}! {% for i in items %}{{ i }}{% endfor %}", ctx), "Hello World! 123");
}

TEST(JinjaTest, ParseOnceRenderMany) {
  Template t = Template::parse("{{ x * 2 }}");
  EXPECT_EQ(t.render(ordered_json{{"x", 2}}), "4");
  EXPECT_EQ(t.render(ordered_json{{"x", "ab"}}), "abab");
  nlohmann::json unordered = {{"x", 1.5}};
  EXPECT_EQ(t.render(unordered), "3.0");
}

TEST(JinjaTest, OrderedContextKeepsKeyOrder) {
  ordered_json ctx = ordered_json::parse(R"({"d": {"zeta": 1, "alpha": 2}})");
  EXPECT_EQ(render("{{ d | tojson }}", ctx), R"({"zeta": 1, "alpha": 2})");
  EXPECT_EQ(render("{{ d | tojson(sort_keys=true) }}", ctx), R"({"alpha": 2, "zeta": 1})");
}

TEST(JinjaTest, SyntaxErrorsNameTheLine) {
  std::string msg = error_of("line one\nline two\n{% if x %}\n{{ 1 + }}\n{% endif %}");
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;
  msg = error_of("ok\n{% for x in y %}never closed");
  EXPECT_NE(msg.find("endfor"), std::string::npos) << msg;
  msg = error_of("{% frobnicate %}");
  EXPECT_NE(msg.find("unknown tag 'frobnicate'"), std::string::npos) << msg;
  msg = error_of("{{ x | no_such_filter }}");
  EXPECT_NE(msg.find("no filter named 'no_such_filter'"), std::string::npos) << msg;
  EXPECT_NE(error_of("{% break %}").find("outside loop"), std::string::npos);
  EXPECT_NE(error_of("{% include 'x' %}").find("not supported"), std::string::npos);
}

TEST(JinjaTest, RuntimeErrorsNameTheLine) {
  std::string msg = error_of("a\nb\n{{ raise_exception('roles must alternate') }}");
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("roles must alternate"), std::string::npos) << msg;
  msg = error_of("\n{{ undefined_thing.attribute }}");
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'undefined_thing' is undefined"), std::string::npos) << msg;
  EXPECT_NE(error_of("{{ 1 // 0 }}").find("by zero"), std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
}

TEST(JinjaTest, InvalidUtf8IsRejected) {
  EXPECT_NE(error_of(std::string("abc\xff\xfe")).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of(std::string("{{ '\xc0\xaf' }}")).find("UTF-8"), std::string::npos);
}

TEST(JinjaTest, StepBudget) {
  RenderOptions o;
  o.max_steps = 10'000;
  std::string msg = error_of("{% for i in range(100000) %}{{ i }}{% endfor %}", o);
  EXPECT_NE(msg.find("budget"), std::string::npos) << msg;
  // The same template fits a larger budget.
  o.max_steps = 10'000'000;
  o.max_output_bytes = 1u << 20;
  EXPECT_EQ(render("{% for i in range(100000) %}{% endfor %}done", ordered_json::object(), o), "done");
}

TEST(JinjaTest, NestedLoopsHitTheIterationBudget) {
  RenderOptions o;
  o.max_loop_iterations = 50'000;
  std::string msg = error_of("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", o);
  EXPECT_NE(msg.find("loop iterations"), std::string::npos) << msg;
}

TEST(JinjaTest, OutputBudget) {
  RenderOptions o;
  o.max_output_bytes = 1000;
  EXPECT_NE(error_of("{% for i in range(2000) %}x{% endfor %}", o).find("limit"), std::string::npos);
  // Strings that double in size hit the cap long before memory runs out.
  EXPECT_NE(error_of("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                     "{% endfor %}{{ ns.s | length }}",
                     o)
                .find("limit"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 100000 }}", o).find("limit"), std::string::npos);
  EXPECT_NE(error_of("{{ ([1] * 100) | tojson }}", RenderOptions{.max_output_bytes = 100}).find("limit"),
            std::string::npos);
}

TEST(JinjaTest, RepeatedWorkOnHugeStringsHitsTheBudget) {
  // Each of these looks like a few steps per iteration but scans 100 kB each time; the budget
  // counts the bytes, so they stop quickly instead of running for minutes.
  const char* kTemplates[] = {
      "{% set s = 'a' * 100000 %}{% for i in range(100000) %}{% if s in s %}{% endif %}{% endfor %}",
      "{% set s = 'a' * 100000 %}{% for i in range(100000) %}{% set n = s | length %}{% endfor %}",
      "{% set s = 'a' * 100000 %}{% for i in range(100000) %}{% set c = s[-1] %}{% endfor %}",
      "{% set s = 'ab' * 50000 %}{% for i in range(100000) %}{% set c = s.rfind('ba') %}{% endfor %}",
      "{% set s = 'a' * 100000 %}{% set t = 'a' * 99999 ~ 'b' %}{% for i in range(100000) %}"
      "{% if s == t ~ '' %}{% endif %}{% endfor %}",
      "{% set l = ['a' * 100000, 'b' * 100000] * 100 %}{% for i in range(100000) %}{% if 'c' in l %}{% endif %}"
      "{% endfor %}",
  };
  auto start = std::chrono::steady_clock::now();
  for (const char* t : kTemplates)
    EXPECT_NE(error_of(t).find("budget"), std::string::npos) << t;
  EXPECT_NE(error_of("{{ ('a,' * 1000000).split(',') | length }}").find("parts"), std::string::npos);
  // Sorting many references to one huge string is cheap and allowed; hashing each one is not.
  EXPECT_EQ(render("{% set s = 'a' * 100000 %}{{ ([s] * 10000) | sort(case_sensitive=true) | length }}"), "10000");
  EXPECT_NE(error_of("{% set s = 'a' * 100000 %}{{ ([s] * 10000) | unique | list | length }}").find("budget"),
            std::string::npos);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30.0);
}

TEST(JinjaTest, ListSizeBudget) {
  RenderOptions o;
  o.max_items = 1000;
  EXPECT_NE(error_of("{{ ([1, 2] * 1000) | length }}", o).find("1000 items"), std::string::npos);
  EXPECT_NE(error_of("{{ range(100001) | length }}").find("Range too big"), std::string::npos);
}

TEST(JinjaTest, RunawayMacroRecursionIsStopped) {
  std::string msg = error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(msg.find("nested"), std::string::npos) << msg;
}

TEST(JinjaTest, DeepNestingIsRejectedNotOverflowed) {
  // Parser: brackets, parentheses, unary operators, `not`, statements, long operator chains.
  const std::pair<std::string, std::string> kNests[] = {{"(", ")"},   {"[", "]"},   {"{'k': ", "}"}, {"-", ""},
                                                        {"not ", ""}, {"[(", ")]"}, {"x[", "]"},     {"f(", ")"}};
  for (const auto& [open, close] : kNests) {
    std::string src = "{{ ";
    for (int i = 0; i < 20000; ++i)
      src += open;
    src += "1";
    for (int i = 0; i < 20000; ++i)
      src += close;
    std::string msg = error_of(src + " }}");
    EXPECT_NE(msg.find("nested"), std::string::npos) << open << ": " << msg;
  }
  std::string ifs;
  for (int i = 0; i < 50000; ++i)
    ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nested"), std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 50000; ++i)
    chain += " + 1";
  EXPECT_NE(error_of(chain + " }}").find("nested"), std::string::npos);
  std::string attrs = "{{ x";
  for (int i = 0; i < 50000; ++i)
    attrs += ".a";
  EXPECT_NE(error_of(attrs + " }}").find("nested"), std::string::npos);
  std::string filters = "{{ x";
  for (int i = 0; i < 50000; ++i)
    filters += "|trim";
  EXPECT_NE(error_of(filters + " }}").find("nested"), std::string::npos);
  // Values built at run time: a list wrapped in itself again and again.
  std::string msg = error_of(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}"
      "{% endfor %}{{ ns.l }}");
  EXPECT_NE(msg.find("nested"), std::string::npos) << msg;
  // Deep JSON context.
  ordered_json deep = 1;
  for (int i = 0; i < 1000; ++i)
    deep = ordered_json::array({deep});
  try {
    (void)render("{{ x }}", ordered_json{{"x", deep}});
    ADD_FAILURE() << "deep context accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested"), std::string::npos) << e.what();
  }
}

TEST(JinjaTest, ModerateNestingStillWorks) {
  std::string src = "{{ ";
  for (int i = 0; i < 40; ++i)
    src += "(";
  src += "1";
  for (int i = 0; i < 40; ++i)
    src += ")";
  EXPECT_EQ(render(src + " }}"), "1");
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}bottom{% endif %}{% endmacro %}{{ f(30) }}"),
            "bottom");
}

TEST(JinjaTest, SandboxExposesNoPythonInternals) {
  // jinja2's sandbox answers these with Undefined; in pagoda there is nothing behind them at all.
  EXPECT_EQ(render("{{ ''.__class__ }}|{{ ''.__class__ is defined }}"), "|False");
  EXPECT_EQ(render("{{ messages.__class__ }}{{ range.__globals__ }}{{ namespace.__init__ }}",
                   ordered_json{{"messages", ordered_json::array()}}),
            "");
  EXPECT_NE(error_of("{{ ''.__class__.__mro__[1].__subclasses__() }}").find("has no attribute '__class__'"),
            std::string::npos);
  EXPECT_NE(error_of("{{ cycler.__init__.__globals__.os }}").find("undefined"), std::string::npos);
  // Mutating methods are hidden (immutable sandbox) and cannot be called.
  ordered_json ctx = {{"items", {1, 2}}, {"d", {{"a", 1}}}};
  EXPECT_EQ(render("{{ items.append is defined }}{{ d.update is defined }}", ctx), "FalseFalse");
  EXPECT_NE(error_of("{{ items.append(3) }}", {}, ctx).find("unsafe"), std::string::npos);
  EXPECT_NE(error_of("{{ d.clear() }}", {}, ctx).find("unsafe"), std::string::npos);
  // The context is data: rendering never changes it, and one render does not leak into the next.
  Template t = Template::parse("{% set items = [9] %}{{ items }}");
  EXPECT_EQ(t.render(ctx), "[9]");
  EXPECT_EQ(Template::parse("{{ items }}").render(ctx), "[1, 2]");
}

TEST(JinjaTest, NamespacesHoldDataOnly) {
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.self = ns %}").find("namespace attribute"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% macro m() %}{% endmacro %}{% set ns.m = [m] %}")
                .find("namespace attribute"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(_x=1) %}").find("underscore"), std::string::npos);
  EXPECT_EQ(render("{% set ns = namespace(a=[1]) %}{% set ns.b = {'k': ns.a} %}{{ ns.b }}"), "{'k': [1]}");
}

TEST(JinjaTest, RenderChatBuildsTransformersContext) {
  Template t = Template::parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ m.thinking | default('') }}"
      "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{{ eos_token }}"
      "{{ tools | length if tools else 'no tools' }}|{{ documents }}|{{ extra }}");
  ordered_json messages = ordered_json::parse(
      R"([{"role": "user", "content": "hi", "name": null},
          {"role": "assistant", "content": "ok", "reasoning_content": "thought"}])");
  EXPECT_EQ(render_chat(t, messages, nullptr, true, "<s>", "</s>", ordered_json{{"extra", 5}}),
            "<s><user>hi<assistant>okthought<assistant></s>no tools|None|5");
  ordered_json tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(render_chat(t, ordered_json::array(), tools, false, "", "", nullptr), "1|None|");
  EXPECT_THROW((void)render_chat(t, ordered_json::object(), nullptr, false, "", ""), Error);
  EXPECT_THROW((void)render_chat(t, messages, nullptr, false, "", "", ordered_json{{"messages", 1}}), Error);
}

TEST(JinjaTest, UndefinedBehavesLikeJinja2Default) {
  EXPECT_EQ(render("[{{ x }}][{{ x | length }}][{{ x | default('d') }}][{% for i in x %}i{% endfor %}]"
                   "[{{ x is defined }}][{{ 'a' ~ x }}][{{ x == none }}][{{ not x }}]"),
            "[][0][d][][False][a][False][True]");
  EXPECT_NE(error_of("{{ x + 1 }}").find("'x' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ x() }}").find("'x' is undefined"), std::string::npos);
  EXPECT_EQ(render("{{ d.missing }}|{{ d['missing'] }}|{{ none.x }}", ordered_json{{"d", ordered_json::object()}}),
            "||");
}

}  // namespace
}  // namespace pagoda::jinja
