// The 4-bit decode path of Projection: exact on weights that lie on a 4-bit grid (as GGUF
// Q4_1 weights do), used only where it is valid (no gradients, few rows, unchanged weight).
#include <gtest/gtest.h>

#include "ecomla/kv_cache.h"
#include "ecomla/model.h"
#include "ecomla/projection.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

// Puts w on an asymmetric 4-bit grid per group of 32 inputs: w = lo + scale * q, q in 0..15,
// with q = 0 and q = 15 present in every group (as ggml's Q4_1 quantiser produces).
void snap_to_int4_grid(torch::Tensor& w) {
  torch::NoGradGuard no_grad;
  const int64_t out = w.size(0), in = w.size(1);
  torch::Tensor q = torch::randint(0, 16, {out, in / 32, 32});
  q.select(-1, 0).fill_(0);
  q.select(-1, 1).fill_(15);
  const torch::Tensor scale = torch::rand({out, in / 32, 1}) * 0.05 + 0.01;
  const torch::Tensor lo = torch::randn({out, in / 32, 1}) * 0.1;
  w.copy_((lo + scale * q).view({out, in}));
}

TEST(ProjectionInt4, MatchesDenseOnGridWeights) {
  Projection p(64, 96);
  snap_to_int4_grid(p->weight);
  p->to(at::kBFloat16);
  ASSERT_TRUE(p->pack_int4());
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({1, 3, 64}).to(at::kBFloat16);
  const at::Tensor dense = at::linear(x, p->weight).to(at::kFloat);
  const at::Tensor packed = p->forward(x).to(at::kFloat);
  EXPECT_EQ(packed.sizes(), dense.sizes());
  // bf16 rounding of scales and activations only: ~1% of the output's scale.
  EXPECT_LT(((packed - dense).norm() / dense.norm()).item<float>(), 0.01);
  EXPECT_FALSE(at::equal(packed, dense));  // the 4-bit kernel really ran
}

TEST(ProjectionInt4, DenseWhereTheCopyIsNotValid) {
  Projection p(64, 32);
  snap_to_int4_grid(p->weight);
  p->to(at::kBFloat16);
  ASSERT_TRUE(p->pack_int4());
  const at::Tensor x = at::randn({2, 64}).to(at::kBFloat16);
  {  // gradients on: dense, so that training sees the real weight
    const at::Tensor y = p->forward(x);
    EXPECT_TRUE(at::equal(y, at::linear(x, p->weight)));
  }
  torch::NoGradGuard no_grad;
  const at::Tensor many = at::randn({ProjectionImpl::kMaxInt4Rows + 1, 64}).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(p->forward(many), at::linear(many, p->weight)));
  p->weight.mul_(2);  // an in-place update retires the copy
  EXPECT_TRUE(at::equal(p->forward(x), at::linear(x, p->weight)));
  EXPECT_FALSE(Projection(30, 8)->pack_int4());  // 30 inputs: no whole group of 32
}

TEST(ProjectionInt4, PackedDecodingFollowsDenseDecoding) {
  ModelConfig config = test::tiny_config();
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.attention.assign(2, GqaSpec{4, 2, 16});
  LlamaForCausalLM model = test::random_model(config);
  for (auto& param : model->named_parameters()) {
    if (param.key().find("_proj.") != std::string::npos) snap_to_int4_grid(param.value());
  }
  model->to(at::kBFloat16);
  torch::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, config.vocab_size, {1, 6}, at::kLong);
  auto decode = [&] {
    KvCache cache(config, 1, 8, at::kBFloat16);
    std::vector<at::Tensor> steps;
    for (int64_t i = 0; i < 6; ++i) steps.push_back(model->forward(tokens.narrow(1, i, 1), &cache));
    return at::cat(steps, 1).to(at::kFloat).softmax(-1);
  };
  const at::Tensor dense = decode();
  EXPECT_EQ(model->pack_int4(), 2 * 7);  // q, k, v, o, gate, up, down in each layer
  const at::Tensor packed = decode();
  EXPECT_LT((packed - dense).abs().max().item<float>(), 0.05);
}

}  // namespace
}  // namespace ecomla
