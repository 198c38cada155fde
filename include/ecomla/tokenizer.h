// Byte-level BPE tokenizer (GPT-2 family), as declared by a model's GGUF metadata or
// tokenizer.json: vocabulary, merges, special tokens, the pre-tokenizer and the chat template.
//
// Encoding follows llama.cpp's llm_tokenizer_bpe: split on special tokens, pre-tokenize with the
// model's regex sequence, map bytes to GPT-2's printable code points, apply merges by rank.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ecomla {

// Values of GGUF tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct TokenizerSpec {
  std::vector<std::string> tokens;                          // byte-level strings, by id
  std::vector<TokenType> types;                             // empty = all Normal
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  // Pre-tokenizer: regexes applied in sequence, each splitting the pieces of the previous one
  // (llama.cpp's regex_exprs). pre_type names the preset they came from, for display.
  std::string pre_type;
  std::vector<std::string> pre_patterns;
  // A pre-token that is itself in the vocabulary is not split by merges (Llama 3 presets;
  // tokenizer.json's model.ignore_merges).
  bool ignore_merges = false;
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;  // Jinja source as the model ships it
};

// A llama.cpp pre-tokenizer (tokenizer.ggml.pre): its canonical name, regex sequence and
// merge rule. Throws FormatError for names not supported here.
struct PreTokenizerPreset {
  std::string name;
  std::vector<std::string> patterns;
  bool ignore_merges;
};
PreTokenizerPreset pre_tokenizer_preset(const std::string& pre_type);
std::vector<std::string> pre_tokenizer_patterns(const std::string& pre_type);
// The canonical llama.cpp name of a regex sequence, if it is one of the presets.
std::optional<std::string> pre_tokenizer_name(const std::vector<std::string>& patterns);

// GPT-2's printable stand-in for a byte (bytes_to_unicode), as UTF-8: the text of the
// byte-level vocabulary entry for that byte.
std::string byte_level_text(uint8_t byte);

// "left right" -> {left, right}, as merges are stored in GGUF and older tokenizer.json files;
// throws FormatError naming `origin` when there is no separating space.
std::pair<std::string, std::string> split_merge(const std::string& merge,
                                                const std::string& origin);

struct ChatMessage {
  std::string role;
  std::string content;
};

class Tokenizer {
public:
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Token ids of `text`. add_special adds BOS/EOS as the model declares; parse_special lets
  // control tokens written in the text (e.g. "<|im_start|>") become their ids. User-defined
  // tokens always match, as in llama.cpp and Hugging Face tokenizers.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                              bool parse_special = false) const;
  // Text of token ids; control tokens are rendered only when render_special is true.
  std::string decode(std::span<const int32_t> ids, bool render_special = true) const;
  // The bytes one token stands for (control tokens as their text).
  std::string piece(int32_t id) const;

  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  const TokenizerSpec& spec() const { return spec_; }
  std::optional<int32_t> bos_id() const { return spec_.bos_id; }
  std::optional<int32_t> eos_id() const { return spec_.eos_id; }
  std::optional<int32_t> token_id(std::string_view token_text) const;
  bool is_control(int32_t id) const;

  // Renders a conversation with the model's chat template. Supports ChatML templates (SmolLM2,
  // Qwen, ...), including a default system prompt the template inserts; throws
  // std::invalid_argument for other templates.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true) const;

private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(const std::string& piece, std::vector<int32_t>& out) const;
  std::vector<std::string> merge_symbols(const std::string& piece) const;

  struct PreTokenizer;
  TokenizerSpec spec_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
  std::vector<int32_t> special_ids_;                     // longest text first
  std::unique_ptr<PreTokenizer> pre_;
};

}  // namespace ecomla
