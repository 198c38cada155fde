// The perplexity definition (llama-perplexity's) against a direct computation on a tiny model:
// independent chunks, only the second half scored, BOS replacing each chunk's first token.
#include <gtest/gtest.h>

#include <cmath>

#include "ecomla/perplexity.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

// exp(mean NLL) of tokens [ctx/2 + 1, ctx) of each chunk, each chunk run on its own.
double direct_ppl(LlamaForCausalLM& model, const std::vector<int32_t>& tokens, int64_t ctx,
                  int64_t chunks, std::optional<int32_t> bos) {
  torch::NoGradGuard no_grad;
  double nll = 0;
  int64_t n = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int64_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos) chunk[0] = *bos;
    const at::Tensor logp = model->forward(at::tensor(chunk).unsqueeze(0))[0].log_softmax(-1);
    for (int64_t j = ctx / 2; j < ctx - 1; ++j) {
      nll -= logp[j][chunk[j + 1]].item<double>();
      ++n;
    }
  }
  return std::exp(nll / static_cast<double>(n));
}

class Perplexity : public testing::Test {
protected:
  void SetUp() override {
    for (int i = 0; i < 70; ++i) tokens_.push_back((i * 37 + 11) % 300);
  }
  LlamaForCausalLM model_ = test::random_model(test::tiny_config());
  std::vector<int32_t> tokens_;
};

TEST_F(Perplexity, MatchesTheDefinition) {
  PerplexityOptions options;
  options.ctx = 16;
  options.batch_chunks = 3;  // 4 chunks: batches of 3 and 1
  const PerplexityResult r = perplexity(model_, tokens_, options);
  EXPECT_EQ(r.chunks, 4);  // 70 / 16, the tail is dropped
  EXPECT_EQ(r.tokens_scored, 4 * 7);
  EXPECT_NEAR(r.ppl, direct_ppl(model_, tokens_, 16, 4, std::nullopt), 1e-4 * r.ppl);
  ASSERT_EQ(r.running_ppl.size(), 4u);
  EXPECT_DOUBLE_EQ(r.running_ppl.back(), r.ppl);
}

TEST_F(Perplexity, BosReplacesTheFirstTokenOfEveryChunk) {
  PerplexityOptions options;
  options.ctx = 16;
  options.max_chunks = 2;
  options.bos_id = 299;
  const PerplexityResult r = perplexity(model_, tokens_, options);
  EXPECT_NEAR(r.ppl, direct_ppl(model_, tokens_, 16, 2, 299), 1e-4 * r.ppl);
  EXPECT_GT(std::abs(r.ppl - direct_ppl(model_, tokens_, 16, 2, std::nullopt)), 1e-6);
}

TEST_F(Perplexity, RejectsShortTextsAndBadOptions) {
  PerplexityOptions options;
  options.ctx = 64;  // 70 tokens < 2 * 64
  EXPECT_THROW(perplexity(model_, tokens_, options), std::invalid_argument);
  options.ctx = 16;
  options.batch_chunks = 0;
  EXPECT_THROW(perplexity(model_, tokens_, options), std::invalid_argument);
  options.batch_chunks = 1;
  options.max_chunks = 0;
  EXPECT_THROW(perplexity(model_, tokens_, options), std::invalid_argument);
}

}  // namespace
}  // namespace ecomla
