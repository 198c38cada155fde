// Tiny random models and tokenizers built inside the tests.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "ecomla/config.h"
#include "ecomla/model.h"
#include "ecomla/tokenizer.h"

namespace ecomla::test {

// 2 layers, hidden 32, 4 query heads over 2 KV heads of dim 8, vocab 300.
ModelConfig tiny_config();
// tiny_config with its last layer (or every layer) turned into MLA (q rank 16, kv rank 8).
ModelConfig tiny_hybrid_config(bool all_mla);
// Parameters drawn from N(0, 0.5^2) with a fixed seed; norms near 1.
LlamaForCausalLM random_model(const ModelConfig& config, uint64_t seed = 1);
// Byte-level vocabulary: 256 byte tokens, a few merges, <|im_start|>/<|im_end|> (control) and
// <|endoftext|> (control, BOS/EOS), padded to `vocab_size` with unused tokens.
TokenizerSpec tiny_tokenizer_spec(int64_t vocab_size = 300);

// A fresh empty folder under the system temp dir, removed at destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

// Runs `action`, which must throw ecomla::FormatError with a message containing every one of
// `needles` (what went wrong, and the file it names); records a test failure otherwise.
void expect_format_error(const std::function<void()>& action,
                         const std::vector<std::string>& needles);

// Runs the ecomla CLI with `args` (stderr discarded); returns its exit status and stdout.
std::pair<int, std::string> run_cli(const std::string& args);
std::string read_text(const std::filesystem::path& path);

std::vector<uint8_t> read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes);

}  // namespace ecomla::test
