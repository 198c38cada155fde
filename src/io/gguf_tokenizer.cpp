// The tokenizer a GGUF declares (tokenizer.ggml.* keys, llama.cpp's LLM_KV_TOKENIZER_*).
#include "ecomla/gguf_tokenizer.h"

#include <climits>

#include "ecomla/error.h"

namespace ecomla {
namespace {

std::optional<int32_t> optional_id(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (!v) return std::nullopt;
  const int64_t id = v->as_int(key);
  if (id < 0 || id > INT32_MAX) {
    throw FormatError(f.origin() + ": " + key + " " + std::to_string(id) + " is not a token id");
  }
  return static_cast<int32_t>(id);
}

bool bool_or(const GgufFile& f, const std::string& key, bool fallback) {
  const GgufValue* v = f.find(key);
  return v ? v->as_bool(key) : fallback;
}

}  // namespace

TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& f) {
  const std::string model = f.at("tokenizer.ggml.model").as_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    throw FormatError(f.origin() + ": tokenizer model '" + model +
                      "' is not supported (byte-level BPE, 'gpt2', is)");
  }
  TokenizerSpec spec;
  for (const GgufValue& v :
       f.at("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens").values) {
    spec.tokens.push_back(v.as_string("tokenizer.ggml.tokens"));
  }
  if (const GgufValue* types = f.find("tokenizer.ggml.token_type")) {
    for (const GgufValue& v : types->as_array("tokenizer.ggml.token_type").values) {
      const int64_t type = v.as_int("tokenizer.ggml.token_type");
      if (type < 0 || type > static_cast<int64_t>(TokenType::Byte)) {
        throw FormatError(f.origin() + ": unknown token type " + std::to_string(type));
      }
      spec.types.push_back(static_cast<TokenType>(type));
    }
  }
  for (const GgufValue& v :
       f.at("tokenizer.ggml.merges").as_array("tokenizer.ggml.merges").values) {
    spec.merges.push_back(split_merge(v.as_string("tokenizer.ggml.merges"), f.origin()));
  }
  if (const GgufValue* pre = f.find("tokenizer.ggml.pre")) {
    spec.pre_type = pre->as_string("tokenizer.ggml.pre");
  }
  try {
    const PreTokenizerPreset preset = pre_tokenizer_preset(spec.pre_type);
    spec.pre_patterns = preset.patterns;
    spec.ignore_merges = preset.ignore_merges;
  } catch (const FormatError& e) {
    throw FormatError(f.origin() + ": " + e.what());
  }
  spec.bos_id = optional_id(f, "tokenizer.ggml.bos_token_id");
  spec.eos_id = optional_id(f, "tokenizer.ggml.eos_token_id");
  spec.unk_id = optional_id(f, "tokenizer.ggml.unknown_token_id");
  spec.pad_id = optional_id(f, "tokenizer.ggml.padding_token_id");
  spec.add_bos = bool_or(f, "tokenizer.ggml.add_bos_token", false);
  spec.add_eos = bool_or(f, "tokenizer.ggml.add_eos_token", false);
  if (const GgufValue* tpl = f.find("tokenizer.chat_template")) {
    spec.chat_template = tpl->as_string("tokenizer.chat_template");
  }
  return spec;
}

}  // namespace ecomla
