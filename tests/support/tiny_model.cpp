#include "support/tiny_model.h"

#include "ecomla/error.h"

#include <torch/nn/init.h>

#include <gtest/gtest.h>
#include <cstdio>
#include <fstream>
#include <random>

namespace ecomla::test {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 300;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.n_layer = 2;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = 10000.0;
  c.tie_word_embeddings = true;
  c.attention.assign(2, GqaSpec{4, 2, 8});
  return c;
}

ModelConfig tiny_hybrid_config(bool all_mla) {
  ModelConfig c = tiny_config();
  const MlaSpec mla{4, 16, 8, 4, 4, 8, true, 1e-6};
  c.attention.back() = mla;
  if (all_mla) c.attention.front() = mla;
  return c;
}

LlamaForCausalLM random_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM model(config);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.key().ends_with("norm.weight")) {
      p.value().uniform_(0.8, 1.2);
    } else {
      p.value().normal_(0.0, 0.5);
    }
  }
  return model;
}

TokenizerSpec tiny_tokenizer_spec(int64_t vocab_size) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(byte_level_text(static_cast<uint8_t>(b)));
  spec.types.assign(256, TokenType::Normal);
  const std::string space = byte_level_text(' ');
  // Merges by rank: "h e", "he l", "hel l", "hell o", "Ġ w", "Ġw o", "r l", "Ġwo rl", "Ġworl d",
  // and "1 2", which the smollm pre-tokenizer never lets apply (digits are split first).
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},         {"he", "l"}, {"hel", "l"},         {"hell", "o"},         {space, "w"},
      {space + "w", "o"}, {"r", "l"},  {space + "wo", "rl"}, {space + "worl", "d"}, {"1", "2"}};
  for (const auto& [l, r] : merges) {
    spec.merges.emplace_back(l, r);
    spec.tokens.push_back(l + r);
    spec.types.push_back(TokenType::Normal);
  }
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    spec.tokens.emplace_back(special);
    spec.types.push_back(TokenType::Control);
  }
  spec.bos_id = spec.eos_id = 256 + static_cast<int32_t>(merges.size());
  while (static_cast<int64_t>(spec.tokens.size()) < vocab_size) {
    spec.tokens.push_back("<unused" + std::to_string(spec.tokens.size()) + ">");
    spec.types.push_back(TokenType::Unused);
  }
  spec.pre_type = "smollm";
  spec.pre_patterns = pre_tokenizer_patterns("smollm");
  spec.chat_template =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are tiny.<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  return spec;
}

TempDir::TempDir() {
  static std::mt19937_64 rng(std::random_device{}());
  path_ = std::filesystem::temp_directory_path() / ("ecomla-test-" + std::to_string(rng()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void expect_format_error(const std::function<void()>& action,
                         const std::vector<std::string>& needles) {
  try {
    action();
    ADD_FAILURE() << "expected a FormatError containing '" << needles.front() << "'";
  } catch (const FormatError& e) {
    for (const std::string& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

std::pair<int, std::string> run_cli(const std::string& args) {
  const std::string command = std::string(ECOMLA_CLI) + " " + args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace ecomla::test
