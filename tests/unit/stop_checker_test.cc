// Stop strings over streamed text: matches across pieces, what is held back and when it is
// released, which of several stops wins, and a random-split property against a whole-text search.

#include "engine/stop_checker.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace pagoda::engine {
namespace {

struct Outcome {
  std::string text;
  std::optional<std::string> match;
};

// Pushes the pieces; on no match, finish() releases the rest.
Outcome run(StopChecker& checker, const std::vector<std::string>& pieces) {
  Outcome out;
  for (const std::string& piece : pieces) {
    StopChecker::Result r = checker.push(piece);
    out.text += r.text;
    if (r.match) {
      EXPECT_FALSE(out.match) << "a second match";
      out.match = r.match;
    }
  }
  out.text += checker.finish();
  return out;
}

// The reference: scan the whole text for the first position where some stop string ends; among
// those ending there, the longest, then the first listed.
Outcome whole_text(const std::string& text, const std::vector<std::string>& stops, bool include) {
  for (size_t end = 1; end <= text.size(); ++end) {
    const std::string* best = nullptr;
    for (const std::string& s : stops) {
      if (s.empty() || s.size() > end) continue;
      if (text.compare(end - s.size(), s.size(), s) == 0 && (best == nullptr || s.size() > best->size())) best = &s;
    }
    if (best != nullptr) return {text.substr(0, include ? end : end - best->size()), *best};
  }
  return {text, std::nullopt};
}

// What may be released of `text` (no match yet): all but its longest suffix that is a proper
// prefix of a stop string.
std::string releasable(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return text.substr(0, text.size() - hold);
}

TEST(StopChecker, MatchSpanningPieces) {
  StopChecker c({"STOP"}, false);
  auto r = c.push("hello ST");
  EXPECT_EQ(r.text, "hello ");
  EXPECT_FALSE(r.match);
  r = c.push("O");
  EXPECT_EQ(r.text, "");
  EXPECT_FALSE(r.match);
  r = c.push("P and more");
  EXPECT_EQ(r.text, "");
  ASSERT_TRUE(r.match);
  EXPECT_EQ(*r.match, "STOP");
  // After a match nothing more comes out.
  r = c.push("STOP again");
  EXPECT_EQ(r.text, "");
  EXPECT_FALSE(r.match);
  EXPECT_EQ(c.finish(), "");
}

TEST(StopChecker, IncludeStopString) {
  StopChecker c({"</s>"}, true);
  EXPECT_EQ(c.push("answer</").text, "answer");
  auto r = c.push("s> trailing");
  EXPECT_EQ(r.text, "</s>");
  EXPECT_EQ(r.match, std::optional<std::string>("</s>"));
}

TEST(StopChecker, ReleasesAsEarlyAsPossible) {
  StopChecker c({"abc"}, false);
  EXPECT_EQ(c.push("xxab").text, "xx");
  EXPECT_EQ(c.push("d").text, "abd");  // "abd" can no longer start "abc"
  EXPECT_EQ(c.push("a").text, "");
  EXPECT_EQ(c.push("").text, "");
  EXPECT_EQ(c.push("x").text, "ax");
  EXPECT_EQ(c.push("zzz").text, "zzz");
  EXPECT_EQ(c.push("ab").text, "");
  EXPECT_EQ(c.finish(), "ab");  // no match: what was held back
}

TEST(StopChecker, OverlappingPrefixes) {
  // "aab" in "aaab": the held-back part shifts, the match starts one byte later.
  StopChecker c({"aab"}, false);
  EXPECT_EQ(c.push("aaa").text, "a");
  auto r = c.push("b!");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.match, std::optional<std::string>("aab"));
  // A stop with a self-overlapping border: "abab" in "abababab".
  StopChecker d({"ababc"}, false);
  EXPECT_EQ(d.push("ababab").text, "ab");
  r = d.push("c");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.match, std::optional<std::string>("ababc"));
}

TEST(StopChecker, SeveralStops) {
  // The first to complete wins, even if another would have started earlier.
  StopChecker a({"abcd", "bc"}, false);
  const Outcome oa = run(a, {"abcd"});
  EXPECT_EQ(oa.text, "a");
  EXPECT_EQ(oa.match, std::optional<std::string>("bc"));
  // Completing at the same byte: the longer (earlier start).
  StopChecker b({"bc", "abc"}, false);
  const Outcome ob = run(b, {"xab", "c"});
  EXPECT_EQ(ob.text, "x");
  EXPECT_EQ(ob.match, std::optional<std::string>("abc"));
  // Held back: the longest suffix that begins any stop.
  StopChecker c({"xyz", "yw"}, false);
  EXPECT_EQ(c.push("axy").text, "a");
  EXPECT_EQ(c.push("q").text, "xyq");
  StopChecker d({"hello", "lo"}, true);
  const Outcome od = run(d, {"he", "l", "lo world"});
  EXPECT_EQ(od.text, "hello");
  EXPECT_EQ(od.match, std::optional<std::string>("hello"));
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

TEST(StopChecker, MultiByteStops) {
  // "日本" is e6 97 a5 e6 9c ac; "日" alone is a prefix of it, held back until "本" or not.
  StopChecker c({"日本", "é!"}, false);
  auto r = c.push("今日");
  EXPECT_EQ(r.text, "今");
  r = c.push("は");
  EXPECT_EQ(r.text, "日は");
  r = c.push("café");
  EXPECT_EQ(r.text, "caf");
  r = c.push("?日");
  EXPECT_EQ(r.text, "é?");
  r = c.push("本語");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.match, std::optional<std::string>("日本"));

  // Byte-by-byte pieces (a streaming decoder never splits characters, but the checker must not
  // care) and character pieces: released text always ends on a character boundary when the
  // pieces do.
  const std::string text = "naïve café! — 日本語 ok";
  const std::vector<std::string> stops = {"café!", "日本語", "ïvx"};
  std::vector<std::string> chars;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (i + len < text.size() && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
      ++len;
    chars.push_back(text.substr(i, len));
    i += len;
  }
  StopChecker by_char(stops, false);
  std::string released;
  for (const std::string& ch : chars) {
    const auto res = by_char.push(ch);
    EXPECT_TRUE(valid_utf8(res.text)) << res.text;
    released += res.text;
    if (res.match) {
      EXPECT_EQ(*res.match, "café!");
      break;
    }
  }
  EXPECT_EQ(released, "naïve ");
  StopChecker by_byte(stops, true);
  std::vector<std::string> bytes;
  for (char ch : text)
    bytes.emplace_back(1, ch);
  const Outcome ob = run(by_byte, bytes);
  EXPECT_EQ(ob.text, "naïve café!");
}

TEST(StopChecker, NoStopsAndEmptyStops) {
  StopChecker c({}, false);
  EXPECT_EQ(c.push("abc").text, "abc");
  EXPECT_EQ(c.push("").text, "");
  EXPECT_EQ(c.finish(), "");
  StopChecker d({"", "z"}, false);  // the empty string is ignored
  EXPECT_EQ(d.push("abc").text, "abc");
  EXPECT_EQ(d.push("yz").text, "y");
}

TEST(StopChecker, RandomSplitsAgreeWithWholeTextSearch) {
  std::mt19937_64 rng(2024);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::string alphabet = "aab\xc3\xa9";  // 'a' twice: long runs; é as two bytes
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops(1 + pick(4));
    for (std::string& s : stops) {
      const size_t len = 1 + pick(5);
      for (size_t k = 0; k < len; ++k)
        s += alphabet[pick(alphabet.size())];
    }
    std::string text;
    const size_t len = pick(40);
    for (size_t k = 0; k < len; ++k)
      text += alphabet[pick(alphabet.size())];
    const bool include = pick(2) == 1;
    const Outcome expected = whole_text(text, stops, include);

    StopChecker checker(stops, include);
    Outcome got;
    std::string fed;
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t n = std::min(text.size() - pos, pick(7));  // 0: an empty piece
      const std::string piece = text.substr(pos, n);
      pos += n;
      fed += piece;
      const auto r = checker.push(piece);
      got.text += r.text;
      if (r.match) {
        got.match = r.match;
        break;
      }
      // Released as early as possible, and no earlier.
      ASSERT_EQ(got.text, releasable(fed, stops)) << "trial " << trial;
    }
    got.text += checker.finish();
    ASSERT_EQ(got.match, expected.match) << "trial " << trial << " text " << text;
    ASSERT_EQ(got.text, expected.text) << "trial " << trial << " text " << text;
  }
}

TEST(StopChecker, LongStreamAgainstManyLongStops) {
  // The per-byte work is bounded by the number of stops (no rescans of held-back text): 64 stops
  // of 1024 bytes that almost match a text of repeated 'a', fed one byte at a time.
  std::vector<std::string> stops;
  for (int i = 0; i < 64; ++i)
    stops.push_back(std::string(1023, 'a') + static_cast<char>('b' + i % 20));
  StopChecker c(stops, false);
  size_t released = 0;
  for (int i = 0; i < 100000; ++i)
    released += c.push("a").text.size();
  EXPECT_EQ(released, 100000u - 1023u);
  const auto r = c.push("c");
  EXPECT_EQ(r.match, std::optional<std::string>(std::string(1023, 'a') + "c"));
  EXPECT_EQ(r.text, "");
}

}  // namespace
}  // namespace pagoda::engine
