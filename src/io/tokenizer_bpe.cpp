// Byte-level BPE, following llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp) and Hugging
// Face tokenizers' ByteLevel + BPE models. Unicode classes in the pre-tokenizer regexes
// (\p{L}, \p{N}, \s) come from ICU.
#include <unicode/regex.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <climits>
#include <mutex>
#include <queue>
#include <string_view>

#include "ecomla/error.h"
#include "ecomla/tokenizer.h"

namespace ecomla {
namespace {

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 onwards,
// so that every byte sequence is a string of printable code points. Stored as UTF-8.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_text;
  std::unordered_map<uint32_t, uint8_t> codepoint_to_byte;

  ByteLevelTable() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : next++;
      icu::UnicodeString s(static_cast<UChar32>(cp));
      s.toUTF8String(byte_to_text[b]);
      codepoint_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& byte_level() {
  static const ByteLevelTable table;
  return table;
}

// Maps byte-level text back to bytes; code points outside the table pass through as UTF-8.
std::string byte_level_decode(const std::string& text) {
  const auto& table = byte_level();
  std::string out;
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
  for (int32_t i = 0; i < u.length();) {
    const UChar32 cp = u.char32At(i);
    i += U16_LENGTH(cp);
    auto it = table.codepoint_to_byte.find(static_cast<uint32_t>(cp));
    if (it != table.codepoint_to_byte.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      icu::UnicodeString(cp).toUTF8String(out);
    }
  }
  return out;
}

// Splits a UTF-8 string into its code points, each as UTF-8 (the initial BPE symbols).
std::vector<std::string> utf8_symbols(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    out.push_back(s.substr(i, std::min(n, s.size() - i)));
    i += n;
  }
  return out;
}

const std::string kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const std::string kLlama3Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A ChatML template may insert a default system message when the conversation has none
// (SmolLM2: `if loop.first and messages[0]['role'] != 'system'` followed by the literal
// message). Its text is taken from the template rather than hard-coded. Plain string search:
// templates come from model files, and std::regex recurses per character.
std::optional<std::string> default_system_prompt(const std::string& tpl) {
  const size_t condition = tpl.find("messages[0]['role'] != 'system'");
  if (condition == std::string::npos) return std::nullopt;
  const std::string open = "<|im_start|>system";
  size_t begin = tpl.find(open, condition);
  if (begin == std::string::npos) return std::nullopt;
  begin += open.size();
  if (tpl.compare(begin, 2, "\\n") == 0) {
    begin += 2;  // the newline written as an escape inside a Jinja string literal
  } else if (tpl.compare(begin, 1, "\n") == 0) {
    begin += 1;
  } else {
    return std::nullopt;
  }
  const size_t end = tpl.find("<|im_end|>", begin);
  if (end == std::string::npos) return std::nullopt;
  return tpl.substr(begin, end - begin);
}

}  // namespace

std::pair<std::string, std::string> split_merge(const std::string& merge,
                                                const std::string& origin) {
  // Byte-level symbols never contain a plain space, so the first one after position 0 splits.
  const size_t space = merge.find(' ', 1);
  if (space == std::string::npos) {
    throw FormatError(origin + ": merge '" + merge + "' is not 'left right'");
  }
  return {merge.substr(0, space), merge.substr(space + 1)};
}

std::string byte_level_text(uint8_t byte) { return byte_level().byte_to_text[byte]; }

namespace {

// Presets of llama.cpp's llama_vocab::impl::load (tokenizer.ggml.pre -> LLAMA_VOCAB_PRE_TYPE_*
// -> regex_exprs); the first name of each is the one written to GGUF files.
struct PrePreset {
  std::vector<std::string> names;
  std::vector<std::string> patterns;
  bool ignore_merges;
};

const std::vector<PrePreset>& pre_presets() {
  static const std::vector<PrePreset> presets = {
      {{"default", ""},
       {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Pattern, R"(\p{N}+)", "[0-9][0-9][0-9]"},
       false},
      {{"gpt-2", "phi-2", "gpt2"}, {kGpt2Pattern}, false},
      {{"smollm", "starcoder", "refact", "codeshell"}, {R"(\p{N})", kGpt2Pattern}, false},
      {{"llama-bpe", "llama3", "llama-v3"}, {kLlama3Pattern}, true},
  };
  return presets;
}

}  // namespace

PreTokenizerPreset pre_tokenizer_preset(const std::string& pre_type) {
  std::string known;
  for (const PrePreset& preset : pre_presets()) {
    for (const std::string& name : preset.names) {
      if (name == pre_type) return {preset.names.front(), preset.patterns, preset.ignore_merges};
      if (!name.empty()) known += (known.empty() ? "" : ", ") + name;
    }
  }
  throw FormatError("pre-tokenizer '" + pre_type + "' is not supported (" + known + ")");
}

std::vector<std::string> pre_tokenizer_patterns(const std::string& pre_type) {
  return pre_tokenizer_preset(pre_type).patterns;
}

std::optional<std::string> pre_tokenizer_name(const std::vector<std::string>& patterns) {
  for (const PrePreset& preset : pre_presets()) {
    if (preset.patterns == patterns) return preset.names.front();
  }
  return std::nullopt;
}

// Compiled regexes; each splits every current piece into matches and the gaps between them.
struct Tokenizer::PreTokenizer {
  std::vector<std::unique_ptr<icu::RegexPattern>> patterns;

  explicit PreTokenizer(const std::vector<std::string>& sources) {
    for (const std::string& source : sources) {
      UErrorCode status = U_ZERO_ERROR;
      UParseError parse_error;
      std::unique_ptr<icu::RegexPattern> p(
          icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(source), 0, parse_error, status));
      if (U_FAILURE(status)) {
        throw FormatError("pre-tokenizer regex '" + source +
                          "' does not compile: " + u_errorName(status));
      }
      patterns.push_back(std::move(p));
    }
  }

  // [begin, end) ranges in UTF-16 units of `text`.
  std::vector<std::pair<int32_t, int32_t>> split(const icu::UnicodeString& text) const {
    std::vector<std::pair<int32_t, int32_t>> pieces{{0, text.length()}};
    for (const auto& pattern : patterns) {
      UErrorCode status = U_ZERO_ERROR;
      std::unique_ptr<icu::RegexMatcher> m(pattern->matcher(text, status));
      std::vector<std::pair<int32_t, int32_t>> next;
      for (const auto& [begin, end] : pieces) {
        // Each piece is matched on its own (opaque bounds), as llama.cpp and HF do.
        m->region(begin, end, status);
        int32_t last = begin;
        while (m->find(status) && U_SUCCESS(status)) {
          const int32_t s = m->start(status), e = m->end(status);
          if (e == s) continue;
          if (s > last) next.emplace_back(last, s);
          next.emplace_back(s, e);
          last = e;
        }
        if (last < end) next.emplace_back(last, end);
      }
      if (U_FAILURE(status))
        throw FormatError(std::string("pre-tokenizer: ") + u_errorName(status));
      pieces = std::move(next);
    }
    return pieces;
  }
};

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  const auto n = static_cast<int32_t>(spec_.tokens.size());
  if (n == 0) throw FormatError("tokenizer: empty vocabulary");
  if (spec_.types.empty()) spec_.types.assign(n, TokenType::Normal);
  if (static_cast<int32_t>(spec_.types.size()) != n) {
    throw FormatError("tokenizer: " + std::to_string(spec_.types.size()) + " token types for " +
                      std::to_string(n) + " tokens");
  }
  for (auto id : {spec_.bos_id, spec_.eos_id, spec_.unk_id, spec_.pad_id}) {
    if (id && (*id < 0 || *id >= n)) {
      throw FormatError("tokenizer: special token id " + std::to_string(*id) +
                        " outside the vocabulary of " + std::to_string(n));
    }
  }
  for (int32_t id = 0; id < n; ++id) {
    token_to_id_.emplace(spec_.tokens[id], id);  // first id wins on duplicates
    const TokenType t = spec_.types[id];
    if (t == TokenType::Control || t == TokenType::UserDefined) special_ids_.push_back(id);
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return spec_.tokens[a].size() > spec_.tokens[b].size();
  });
  for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
    const auto& [left, right] = spec_.merges[rank];
    merge_rank_.emplace(left + " " + right, static_cast<int32_t>(rank));
  }
  if (spec_.pre_patterns.empty()) {
    const PreTokenizerPreset preset = pre_tokenizer_preset(spec_.pre_type);
    spec_.pre_patterns = preset.patterns;
    spec_.ignore_merges = spec_.ignore_merges || preset.ignore_merges;
  }
  pre_ = std::make_unique<PreTokenizer>(spec_.pre_patterns);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = token_to_id_.find(std::string(token_text));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < vocab_size() && spec_.types[id] == TokenType::Control;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && spec_.add_bos && spec_.bos_id) out.push_back(*spec_.bos_id);
  // Special tokens first (llama.cpp tokenizer_st_partition): find the earliest occurrence of any
  // special token text, longest first on ties; text between them goes through BPE.
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best_at = std::string_view::npos;
    int32_t best_id = -1;
    for (int32_t id : special_ids_) {
      if (!parse_special && spec_.types[id] == TokenType::Control) continue;
      const std::string& s = spec_.tokens[id];
      if (s.empty()) continue;
      const size_t at = text.find(s, pos);
      if (at < best_at) {
        best_at = at;
        best_id = id;
      }
    }
    const size_t stop = best_id < 0 ? text.size() : best_at;
    if (stop > pos) encode_text(text.substr(pos, stop - pos), out);
    if (best_id < 0) break;
    out.push_back(best_id);
    pos = best_at + spec_.tokens[best_id].size();
  }
  if (add_special && spec_.add_eos && spec_.eos_id) out.push_back(*spec_.eos_id);
  return out;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  const auto& table = byte_level();
  for (const auto& [begin, end] : pre_->split(u)) {
    std::string utf8;
    u.tempSubStringBetween(begin, end).toUTF8String(utf8);
    std::string mapped;
    for (unsigned char c : utf8) mapped += table.byte_to_text[c];
    encode_piece(mapped, out);
  }
}

// Merges the adjacent pair of lowest rank (leftmost on ties) until none is left, as
// llm_tokenizer_bpe_session: symbols in a linked list, candidate pairs in a priority queue,
// stale candidates skipped when popped. O(n log n) in the piece length.
std::vector<std::string> Tokenizer::merge_symbols(const std::string& piece) const {
  struct Symbol {
    size_t begin, size;  // bytes of `piece`; size 0 once merged into its left neighbour
    int prev, next;      // -1 at the ends
  };
  struct Pair {
    int32_t rank;
    int left;
    size_t size;  // bytes of the merged pair when queued; a mismatch marks it stale
    bool operator>(const Pair& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < piece.size();) {
    const auto c = static_cast<unsigned char>(piece[i]);
    const size_t n = std::min<size_t>(c < 0x80   ? 1
                                      : c < 0xE0 ? 2
                                      : c < 0xF0 ? 3
                                                 : 4,
                                      piece.size() - i);
    const int index = static_cast<int>(sym.size());
    sym.push_back({i, n, index - 1, -1});
    if (index > 0) sym[index - 1].next = index;
    i += n;
  }
  std::priority_queue<Pair, std::vector<Pair>, std::greater<>> queue;
  auto text = [&](int i) { return std::string_view(piece).substr(sym[i].begin, sym[i].size); };
  auto push = [&](int left) {
    const int right = left < 0 ? -1 : sym[left].next;
    if (left < 0 || right < 0) return;
    std::string key;
    key.append(text(left)).append(" ").append(text(right));
    if (auto it = merge_rank_.find(key); it != merge_rank_.end()) {
      queue.push({it->second, left, sym[left].size + sym[right].size});
    }
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) push(i);
  while (!queue.empty()) {
    const Pair top = queue.top();
    queue.pop();
    Symbol& left = sym[top.left];
    if (left.size == 0 || left.next < 0 || left.size + sym[left.next].size != top.size) continue;
    Symbol& right = sym[left.next];
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.left;
    push(left.prev);
    push(top.left);
  }
  std::vector<std::string> out;
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) out.emplace_back(text(i));
  return out;
}

void Tokenizer::encode_piece(const std::string& piece, std::vector<int32_t>& out) const {
  if (spec_.ignore_merges) {  // Llama 3: a piece that is a token stays whole
    if (auto it = token_to_id_.find(piece); it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const std::vector<std::string> symbols = merge_symbols(piece);
  for (const std::string& s : symbols) {
    if (auto it = token_to_id_.find(s); it != token_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Not in the vocabulary (incomplete vocabularies only): fall back to single bytes.
    for (const std::string& sym : utf8_symbols(s)) {
      auto it = token_to_id_.find(sym);
      if (it != token_to_id_.end()) {
        out.push_back(it->second);
      } else if (spec_.unk_id) {
        out.push_back(*spec_.unk_id);
      } else {
        throw FormatError("tokenizer: no token for symbol '" + sym + "' and no unknown token");
      }
    }
  }
}

std::string Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary of " +
                            std::to_string(vocab_size()));
  }
  switch (spec_.types[id]) {
    case TokenType::Normal: return byte_level_decode(spec_.tokens[id]);
    default: return spec_.tokens[id];  // control, user-defined and unknown tokens are raw text
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (!render_special && is_control(id)) continue;
    out += piece(id);
  }
  return out;
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  const std::string& tpl = spec_.chat_template;
  if (tpl.find("<|im_start|>") == std::string::npos) {
    throw std::invalid_argument(
        "chat template: only ChatML templates (<|im_start|>role ... <|im_end|>) are supported");
  }
  std::string out;
  if (messages.empty() || messages.front().role != "system") {
    if (auto system = default_system_prompt(tpl))
      out += "<|im_start|>system\n" + *system + "<|im_end|>\n";
  }
  for (const ChatMessage& msg : messages) {
    out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace ecomla
