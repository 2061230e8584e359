#include <algorithm>

#include "tokenizer/byte_level.h"
#include "tokenizer/pipeline.h"

namespace pagoda::tokenizer {
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Segment {
  uint32_t begin;
  uint32_t end;
  bool flag;  // is_match on input; "remove" on output
};

// HF's NormalizedString::split: turns the (offsets, is_match) list of one piece into the pieces
// the behavior keeps.
void apply_behavior(std::vector<Segment>& segs, SplitBehavior behavior, std::vector<Segment>& out) {
  out.clear();
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Segment& s : segs)
        out.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segs)
        out.push_back({s.begin, s.end, s.flag});
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.flag == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.flag && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t i = segs.size(); i-- > 0;) {
        const Segment& s = segs[i];
        if (s.flag && !previous_match && !out.empty()) {
          out.back().begin = s.begin;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
}

}  // namespace

void split_pieces(PreTokenized& pt, PreTokenizeScratch& scratch, SplitBehavior behavior, bool invert,
                  const Regex* regex, std::string_view literal) {
  thread_local std::vector<Segment> segs;
  thread_local std::vector<Segment> kept;
  scratch.pieces.clear();
  for (const Piece& p : pt.pieces) {
    const std::string_view sv = pt.view(p);
    scratch.matches.clear();
    if (regex != nullptr) {
      regex->find_all(sv, scratch.matches);
    } else if (!literal.empty()) {
      size_t at = 0;
      while ((at = sv.find(literal, at)) != std::string_view::npos) {
        scratch.matches.push_back({at, at + literal.size()});
        at += literal.size();
      }
    }
    segs.clear();
    uint32_t prev = 0;
    for (const Match& m : scratch.matches) {
      const auto b = static_cast<uint32_t>(m.begin);
      const auto e = static_cast<uint32_t>(m.end);
      if (prev != b) segs.push_back({prev, b, invert});
      segs.push_back({b, e, !invert});
      prev = e;
    }
    if (prev != sv.size()) segs.push_back({prev, static_cast<uint32_t>(sv.size()), invert});
    apply_behavior(segs, behavior, kept);
    for (const Segment& s : kept) {
      if (s.flag || s.begin >= s.end) continue;
      scratch.pieces.push_back({p.begin + s.begin, p.begin + s.end, p.first && s.begin == 0});
    }
  }
  pt.pieces.swap(scratch.pieces);
}

void SequencePreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  for (const auto& item : items_)
    item->apply(pt, scratch);
}

void SplitPreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  split_pieces(pt, scratch, behavior_, invert_, regex_.get(), literal_);
}

ByteLevelPreTokenizer::ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
    : add_prefix_space_(add_prefix_space) {
  if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern);
}

void ByteLevelPreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  if (add_prefix_space_) {
    bool needed = false;
    for (const Piece& p : pt.pieces)
      needed = needed || pt.text[p.begin] != ' ';
    if (needed) {
      scratch.text.clear();
      scratch.pieces.clear();
      for (const Piece& p : pt.pieces) {
        const auto begin = static_cast<uint32_t>(scratch.text.size());
        if (pt.text[p.begin] != ' ') scratch.text.push_back(' ');
        scratch.text.append(pt.view(p));
        scratch.pieces.push_back({begin, static_cast<uint32_t>(scratch.text.size()), p.first});
      }
      pt.text.swap(scratch.text);
      pt.pieces.swap(scratch.pieces);
    }
  }
  if (regex_ != nullptr) split_pieces(pt, scratch, SplitBehavior::kIsolated, false, regex_.get(), {});
  const ByteLevelMap& map = ByteLevelMap::get();
  scratch.text.clear();
  scratch.pieces.clear();
  for (const Piece& p : pt.pieces) {
    const auto begin = static_cast<uint32_t>(scratch.text.size());
    map.encode(pt.view(p), scratch.text);
    scratch.pieces.push_back({begin, static_cast<uint32_t>(scratch.text.size()), p.first});
  }
  pt.text.swap(scratch.text);
  pt.pieces.swap(scratch.pieces);
}

void MetaspacePreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  scratch.text.clear();
  scratch.pieces.clear();
  for (const Piece& p : pt.pieces) {
    const std::string_view sv = pt.view(p);
    const auto begin = static_cast<uint32_t>(scratch.text.size());
    const bool starts_with_rep = sv.front() == ' ' || sv.substr(0, replacement_.size()) == replacement_;
    const bool prepend =
        !starts_with_rep && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.first));
    if (prepend) scratch.text.append(replacement_);
    for (char c : sv) {
      if (c == ' ') {
        scratch.text.append(replacement_);
      } else {
        scratch.text.push_back(c);
      }
    }
    scratch.pieces.push_back({begin, static_cast<uint32_t>(scratch.text.size()), p.first});
  }
  pt.text.swap(scratch.text);
  pt.pieces.swap(scratch.pieces);
  if (split_) split_pieces(pt, scratch, SplitBehavior::kMergedWithNext, false, nullptr, replacement_);
}

DigitsPreTokenizer::DigitsPreTokenizer(bool individual) : individual_(individual), regex_(R"(\p{N})") {}

void DigitsPreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  split_pieces(pt, scratch, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, &regex_, {});
}

void RegexKeepPreTokenizer::apply(PreTokenized& pt, PreTokenizeScratch& scratch) const {
  split_pieces(pt, scratch, behavior_, invert_, &regex_, {});
}

}  // namespace pagoda::tokenizer
