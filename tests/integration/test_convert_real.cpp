// Conversion of the real default model (SmolLM2-135M-Instruct): the X-EcoMLA init against an
// independent implementation, and the activation init end to end through the CLI.
//
// Reference: an independent implementation of the X-EcoMLA init (all 30 layers, q rank 400,
// kv rank 160, rope 32, nope 32, v 64) gives perplexity 10,771 on the first 20 chunks of
// wikitext-2 test at ctx 512 (issue 4); the original model gives 23.0.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ecomla/convert.h"
#include "ecomla/model_loader.h"
#include "ecomla/perplexity.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

constexpr double kXEcoMlaReferencePpl = 10771.0;

std::vector<int32_t> test_tokens(const Tokenizer& tokenizer) {
  return tokenizer.encode(
      test::read_text(std::string(ECOMLA_SHARED_DATA) + "/wikitext2/test/wiki.test.tokens"), true);
}

double ppl(LlamaForCausalLM model, const std::vector<int32_t>& tokens, int64_t chunks) {
  PerplexityOptions options;
  options.ctx = 512;
  options.max_chunks = chunks;
  return perplexity(model, tokens, options).ppl;
}

TEST(ConvertRealModel, XEcoMlaInitMatchesAnIndependentImplementation) {
  LoadedModel loaded = load_model(ECOMLA_TEST_MODEL);
  ConvertOptions o;
  o.init = MlaInit::kXEcoMla;
  o.q.rank = 400;
  o.kv.rank = 160;
  o.dim_rope = 32;
  o.dim_nope = 32;
  const Conversion conv = convert_to_mla(loaded.model, o);
  EXPECT_EQ(conv.model->config().kv_values_per_token(), 30 * (160 + 32));
  const double p = ppl(conv.model, test_tokens(loaded.tokenizer), 20);
  EXPECT_NEAR(p, kXEcoMlaReferencePpl, 0.01 * kXEcoMlaReferencePpl);
}

// One conversion through the CLI (64k tokens by default; 8k here to keep the test short),
// then its report, the saved folder, quality and generation.
TEST(ConvertCli, ConvertsReportsSavesKeepsQualityAndGenerates) {
  const test::TempDir dir;
  const std::string folder = (dir / "mla").string();
  const auto [status, report] = test::run_cli(
      std::string("convert ") + ECOMLA_TEST_MODEL + " -o " + folder + " --kv-budget 0.5 --calib " +
      ECOMLA_SHARED_DATA + "/wikitext2/validation/wiki.valid.tokens" +
      " --calib-tokens 8192 --save-dtype BF16 --json");
  ASSERT_EQ(status, 0);
  const auto j = nlohmann::json::parse(report);
  EXPECT_EQ(j["kv_values_per_token_before"], 30 * 384);
  EXPECT_EQ(j["kv_values_per_token"], 30 * 192);
  EXPECT_DOUBLE_EQ(j["kv_ratio"].get<double>(), 0.5);
  EXPECT_EQ(j["calibration_tokens"], 8192);
  ASSERT_EQ(j["layers"].size(), 30u);
  EXPECT_EQ(nlohmann::json::parse(test::read_text(dir / "mla/conversion.json")), j);

  const auto [inspect_status, out] = test::run_cli("inspect --json " + folder);
  ASSERT_EQ(inspect_status, 0);
  const auto inspect = nlohmann::json::parse(out);
  EXPECT_EQ(inspect["kv_values_per_token"], 30 * 192);
  EXPECT_EQ(inspect["kv_values_per_token_source"], 30 * 384);
  EXPECT_DOUBLE_EQ(inspect["kv_ratio_to_source"].get<double>(), 0.5);
  EXPECT_EQ(inspect["layers"][7]["kind"], "mla");

  LoadedModel original = load_model(ECOMLA_TEST_MODEL);
  LoadedModel converted = load_model(folder);
  const std::vector<int32_t> tokens = test_tokens(original.tokenizer);
  EXPECT_EQ(test_tokens(converted.tokenizer), tokens);  // the tokenizer travelled along
  const double before = ppl(original.model, tokens, 4), after = ppl(converted.model, tokens, 4);
  // A guard, not the measurement (README): the X-EcoMLA init is ~500x worse than the original
  // at this size; this init, with 8k calibration tokens, stays within 2x on these 4 chunks.
  EXPECT_LT(after, 2.0 * before) << "original " << before << ", converted " << after;
  EXPECT_GT(after, before * 0.95);

  const auto [generate_status, text] = test::run_cli(
      "generate " + folder + " --chat --prompt 'Name a colour.' --temperature 0 --max-tokens 8");
  EXPECT_EQ(generate_status, 0);
  EXPECT_FALSE(text.empty());

  // The converted model evaluates like any other: its piqa accuracy on 50 documents is above
  // chance (the original scores acc 0.68 on them).
  const auto [eval_status, results] = test::run_cli(
      "eval " + folder + " --tasks piqa --limit 50 --json --data-dir " + ECOMLA_SHARED_DATA);
  ASSERT_EQ(eval_status, 0);
  const double acc = nlohmann::json::parse(results)["results"]["piqa"]["acc,none"].get<double>();
  EXPECT_GT(acc, 0.55);
}

TEST(ConvertRealModelCli, BadOptionsFailBeforeLoading) {
  const std::string model = ECOMLA_TEST_MODEL;
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --kv-rank 9999").first, 1);
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --kv-rank 64 --mla-layers 30").first,
            1);
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --kv-rank 64 --rope-dim 48").first,
            1);
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --init magic").first, 1);
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --kv-budget 0.5").first, 1);
  EXPECT_EQ(test::run_cli("convert " + model + " -o /tmp/never --calib " + ECOMLA_TEST_DATA +
                          "/tokenizer_texts.txt --calib-ctx 100000")
                .first,
            1);  // calibration text too short
  EXPECT_FALSE(std::filesystem::exists("/tmp/never"));
}

}  // namespace
}  // namespace ecomla
