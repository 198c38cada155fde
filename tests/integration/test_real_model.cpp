// The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against llama.cpp.
//
// Reference values: llama.cpp through the registry's llama-cpp-python, run by hand with
// tests/reference/llama_cpp_reference.py (which says how to reproduce them):
//  - perplexity of the first 20 chunks of wikitext-2 test at ctx 512, no BOS (the GGUF sets
//    add_bos_token false): llama.cpp's llama-perplexity gives 23.04; an independent PyTorch
//    implementation gives 23.01.
//  - token ids of tests/data/tokenizer_golden.jsonl: llama.cpp's tokenizer on each text.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ecomla/gguf.h"
#include "ecomla/gguf_tokenizer.h"
#include "ecomla/model_loader.h"
#include "ecomla/perplexity.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

constexpr double kLlamaCppPpl20Chunks = 23.04;

TEST(RealModel, TokenIdsMatchLlamaCpp) {
  const Tokenizer tok(tokenizer_spec_from_gguf(GgufFile::open(ECOMLA_TEST_MODEL)));
  std::ifstream in(std::string(ECOMLA_TEST_DATA) + "/tokenizer_golden.jsonl");
  ASSERT_TRUE(in);
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j["text"];
    const auto expected = j["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text, false, j["special"].get<bool>()), expected) << text;
    if (!j["special"].get<bool>()) {
      EXPECT_EQ(tok.decode(expected), text);
    }
    ++checked;
  }
  EXPECT_GE(checked, 40);
}

TEST(RealModel, PerplexityMatchesLlamaCpp) {
  LoadedModel loaded = load_model(ECOMLA_TEST_MODEL);
  ASSERT_FALSE(loaded.tokenizer.spec().add_bos);  // as llama.cpp reads it from the GGUF
  const std::string text =
      test::read_text(std::string(ECOMLA_SHARED_DATA) + "/wikitext2/test/wiki.test.tokens");
  ASSERT_GT(text.size(), 1000000u);
  PerplexityOptions options;
  options.ctx = 512;
  options.max_chunks = 20;
  const PerplexityResult r = perplexity(loaded.model, loaded.tokenizer.encode(text, true), options);
  EXPECT_EQ(r.chunks, 20);
  EXPECT_EQ(r.tokens_scored, 20 * 255);
  EXPECT_NEAR(r.ppl, kLlamaCppPpl20Chunks, 0.005 * kLlamaCppPpl20Chunks);
}

TEST(RealModel, CliInspectReportsKvSize) {
  const auto [status, out] = test::run_cli(std::string("inspect --json ") + ECOMLA_TEST_MODEL);
  ASSERT_EQ(status, 0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["n_layer"], 30);
  EXPECT_EQ(j["kv_values_per_token"], 30 * 2 * 3 * 64);  // 3 KV heads of 64, K and V
  EXPECT_EQ(j["kv_bytes_per_token_16bit"], 30 * 2 * 3 * 64 * 2);
  EXPECT_EQ(j["layers"][0]["kind"], "gqa");
}

TEST(RealModel, CliGreedyChatAnswers) {
  const auto [status, out] = test::run_cli(std::string("generate ") + ECOMLA_TEST_MODEL +
                                           " --chat --prompt 'What is the capital of France?'"
                                           " --temperature 0 --max-tokens 24");
  ASSERT_EQ(status, 0);
  EXPECT_NE(out.find("Paris"), std::string::npos) << out;
}

TEST(RealModel, CliErrorsAreClear) {
  EXPECT_EQ(test::run_cli("inspect /nonexistent.gguf").first, 1);
  EXPECT_EQ(test::run_cli("perplexity").first, 106);  // CLI11 usage error: missing arguments
  EXPECT_EQ(test::run_cli(std::string("perplexity ") + ECOMLA_TEST_MODEL + " --text " +
                          ECOMLA_TEST_DATA + "/tokenizer_texts.txt --ctx 4096")
                .first,
            1);  // text shorter than two chunks
}

}  // namespace
}  // namespace ecomla
