// Sampling: greedy is argmax, the same seed gives the same tokens, top-k/top-p restrict the
// support, and the empirical distribution follows softmax(logits / T).
#include <gtest/gtest.h>

#include <map>

#include "ecomla/sampler.h"

namespace ecomla {
namespace {

TEST(Sampler, GreedyIsArgmax) {
  Sampler s({0.0, 0, 1.0, 1});
  EXPECT_EQ(s.sample(at::tensor({0.1f, 3.0f, -1.0f, 2.9f})), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  const at::Tensor logits = at::randn({50});
  Sampler a({1.0, 0, 1.0, 42}), b({1.0, 0, 1.0, 42}), c({1.0, 0, 1.0, 43});
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 50; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, TopKAndTopPRestrictTheSupport) {
  const at::Tensor logits = at::tensor({5.0f, 4.0f, 3.0f, 2.0f, 1.0f});
  Sampler top2({1.0, 2, 1.0, 3});
  for (int i = 0; i < 200; ++i) EXPECT_LT(top2.sample(logits), 2);
  // softmax of these logits: p0 = 0.636, p0 + p1 = 0.870: top_p 0.8 keeps two tokens.
  Sampler nucleus({1.0, 0, 0.8, 3});
  for (int i = 0; i < 200; ++i) EXPECT_LT(nucleus.sample(logits), 2);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  const at::Tensor logits = at::tensor({1.0f, 0.0f, -1.0f});
  Sampler s({2.0, 0, 1.0, 5});
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits)];
  const at::Tensor p = (logits / 2.0).softmax(0);
  for (int32_t t = 0; t < 3; ++t) {
    EXPECT_NEAR(counts[t] / static_cast<double>(n), p[t].item<double>(), 0.015) << t;
  }
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(Sampler({-1.0, 0, 1.0, 0}), std::invalid_argument);
  EXPECT_THROW(Sampler({1.0, 0, 0.0, 0}), std::invalid_argument);
  EXPECT_THROW(Sampler({1.0, -2, 1.0, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace ecomla
