// Conversion to MLA: the X-EcoMLA init against its definition, the activation init's
// exactness without truncation, hybrids, budgets and the errors raised before any work.
#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include "convert/mla_init.h"
#include "ecomla/convert.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

at::Tensor param(LlamaForCausalLM& m, const std::string& name) {
  for (const auto& p : m->named_parameters()) {
    if (p.key() == name) return p.value().detach();
  }
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

Calibration random_calibration(const ModelConfig& c, int64_t sequences = 6, int64_t ctx = 24) {
  return {at::randint(0, c.vocab_size, {sequences, ctx}, at::kLong)};
}

at::Tensor logits(LlamaForCausalLM& m, const at::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  return m->forward(tokens);
}

// MQA (one KV head): the shared RoPE key can hold every rotated key component, so with full
// ranks nothing is truncated and the converted model must be the original.
ModelConfig mqa_config() {
  ModelConfig c = test::tiny_config();
  c.attention.assign(2, GqaSpec{4, 1, 8});
  return c;
}

TEST(ActivationInit, FullRankReproducesTheOriginalLogits) {
  const ModelConfig config = mqa_config();
  LlamaForCausalLM source = test::random_model(config, 3);
  const Calibration calib = random_calibration(config);
  for (int64_t q_rank : {0, 32}) {
    ConvertOptions o;
    o.kv.rank = 16;  // keys (8 rows) and values (8 rows) of the one KV head
    o.q.rank = q_rank;
    o.dim_rope = 8;  // every RoPE pair keeps its own frequency
    const Conversion conv = convert_to_mla(source, o, &calib);
    ASSERT_EQ(conv.layers.size(), 2u);
    for (const LayerReport& r : conv.layers) {
      EXPECT_NEAR(r.kv_energy, 1.0, 1e-9);
      EXPECT_NEAR(r.rope_energy, 1.0, 1e-9);
      const auto& spec = std::get<MlaSpec>(r.spec);
      EXPECT_EQ(spec.rank_q, q_rank);
      EXPECT_EQ(spec.dim_nope, 8);
    }
    LlamaForCausalLM mla = conv.model;
    const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 20}, at::kLong);
    const at::Tensor want = logits(source, tokens), got = logits(mla, tokens);
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-4) << "q rank " << q_rank;
  }
}

// With the odd RoPE pairs unused (zero keys), a rope dim of half the head dim keeps exactly the
// even pairs at their frequencies (the standard DeepSeek layout): still exact.
TEST(ActivationInit, HalfRopeDimKeepsTheEvenPairsAtTheirFrequencies) {
  const ModelConfig config = mqa_config();
  LlamaForCausalLM source = test::random_model(config, 4);
  {
    torch::NoGradGuard no_grad;
    for (int64_t l = 0; l < 2; ++l) {
      at::Tensor k =
          param(source, "model.layers." + std::to_string(l) + ".self_attn.k_proj.weight");
      for (int64_t i : {1, 3}) {  // pairs (1, 5) and (3, 7) of the one 8-dim head
        k[i].zero_();
        k[i + 4].zero_();
      }
    }
  }
  ConvertOptions o;
  o.kv.rank = 16;
  o.dim_rope = 4;
  const Calibration calib = random_calibration(config);
  LlamaForCausalLM mla = convert_to_mla(source, o, &calib).model;
  const at::Tensor tokens = at::randint(0, config.vocab_size, {1, 24}, at::kLong);
  EXPECT_LE((logits(mla, tokens) - logits(source, tokens)).abs().max().item<double>(), 1e-4);
}

TEST(ActivationInit, TruncationLosesQualityGracefullyAndReportsIt) {
  const ModelConfig config = test::tiny_config();  // GQA: 4 heads over 2 KV heads
  LlamaForCausalLM source = test::random_model(config, 5);
  const Calibration calib = random_calibration(config);
  const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 20}, at::kLong);
  const at::Tensor want = logits(source, tokens);
  double previous_error = 0;
  for (int64_t rank : {32, 16, 8}) {
    ConvertOptions o;
    o.kv.rank = rank;
    o.dim_rope = 8;
    const Conversion conv = convert_to_mla(source, o, &calib);
    LlamaForCausalLM mla = conv.model;
    const double error = (logits(mla, tokens) - want).pow(2).mean().item<double>();
    EXPECT_GE(error, previous_error * 0.999) << "rank " << rank;
    previous_error = error;
    for (const LayerReport& r : conv.layers) {
      EXPECT_GT(r.rope_energy, 0.5);  // the top of two components
      EXPECT_LE(r.rope_energy, 1.0 + 1e-9);
      EXPECT_LE(r.kv_energy, 1.0 + 1e-9);
      EXPECT_EQ(std::get<MlaSpec>(r.spec).rank_kv, rank);
      EXPECT_EQ(std::get<MlaSpec>(r.spec).cache_values_per_token(), rank + 8);
    }
  }
  EXPECT_GT(previous_error, 0.0);
}

// Balancing rescales the two sides of each product to equal norms and changes no logit.
TEST(BalanceFactors, EqualisesTheNormsOfBothSidesAndKeepsTheFunction) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM source = test::random_model(config, 6);
  for (const int64_t q_rank : {0, 16}) {
    ConvertOptions o;
    o.init = MlaInit::kXEcoMla;  // not balanced by the conversion
    o.kv.rank = 8;
    o.q.rank = q_rank;
    o.dim_rope = 4;
    o.dim_nope = 4;
    LlamaForCausalLM mla = convert_to_mla(source, o).model;
    const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 12}, at::kLong);
    const at::Tensor before = logits(mla, tokens);
    const MlaSpec spec = std::get<MlaSpec>(mla->config().attention[0]);
    std::map<std::string, at::Tensor> w;
    for (const auto& p : mla->named_parameters()) {
      if (p.key().starts_with("model.layers.0.mla.")) w[p.key().substr(19)] = p.value();
    }
    {
      torch::NoGradGuard no_grad;
      w.at("kv_a_proj_with_mqa.weight").narrow(0, 0, 8).mul_(40.0);  // unbalance the latent
      w.at("kv_b_proj.weight").div_(40.0);
      convert::balance_factors(w, spec);
    }
    EXPECT_LE((logits(mla, tokens) - before).abs().max().item<double>(), 1e-4) << q_rank;
    // Latent dim j: row j of kv_a and column j of kv_b have the same norm.
    const at::Tensor a = w.at("kv_a_proj_with_mqa.weight").narrow(0, 0, 8).norm(2, 1);
    const at::Tensor b = w.at("kv_b_proj.weight").norm(2, 0);
    EXPECT_TRUE(at::allclose(a, b, 1e-3, 1e-6)) << a << b;
    // Value dim 0 of head 1, its kv_b row against its out_proj column: the same kv_b entries
    // also serve the latent's balance, so the rounds settle them near, not at, equality.
    const at::Tensor v_row = w.at("kv_b_proj.weight")[1 * (4 + spec.dim_v) + 4];
    const at::Tensor o_col = w.at("out_proj.weight").select(1, spec.dim_v);
    const double ratio = v_row.norm().item<double>() / o_col.norm().item<double>();
    EXPECT_GT(ratio, 1 / 1.5);
    EXPECT_LT(ratio, 1.5);
  }
}

// The X-EcoMLA init, checked against its definition (docs/x-ecomla-reference.md, section 2).
TEST(XEcoMlaInit, FactorsTheWeightsAsTheReferenceDoes) {
  const ModelConfig config = test::tiny_config();  // H 4, Hkv 2, Dh 8, D 32
  LlamaForCausalLM source = test::random_model(config, 6);
  ConvertOptions o;
  o.init = MlaInit::kXEcoMla;
  o.q.rank = 30;   // rounded up to 32 = full rank
  o.kv.rank = 32;  // [K; V] repeated is 64 x 32: full rank
  o.dim_rope = 4;
  const Conversion conv = convert_to_mla(source, o);
  LlamaForCausalLM mla = conv.model;
  const auto& spec = std::get<MlaSpec>(conv.layers[0].spec);
  EXPECT_EQ(spec.rank_q, 32);
  EXPECT_EQ(spec.dim_nope, 4);
  EXPECT_EQ(spec.dim_v, 8);
  EXPECT_EQ(conv.layers[0].rope_energy, 0.0);

  const std::string a = "model.layers.0.self_attn.", m = "model.layers.0.mla.";
  const at::Tensor wq = param(source, a + "q_proj.weight"), wk = param(source, a + "k_proj.weight");
  const at::Tensor wv = param(source, a + "v_proj.weight");
  // Query: q_b q_a = W_q (nope + rope = the head dim, so no rows are re-arranged); Sigma is
  // in q_a: q_b is orthonormal.
  const at::Tensor qa = param(mla, m + "q_a_proj.weight"), qb = param(mla, m + "q_b_proj.weight");
  EXPECT_TRUE(at::allclose(at::matmul(qb, qa), wq, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(at::matmul(qb.t(), qb), at::eye(32), 1e-4, 1e-4));
  // The RoPE key: the last 4 rows of the mean over the two KV heads.
  const at::Tensor kva = param(mla, m + "kv_a_proj_with_mqa.weight");
  ASSERT_EQ(kva.size(0), 32 + 4);
  const at::Tensor k_mean = wk.reshape({2, 8, 32}).mean(0);
  EXPECT_TRUE(at::allclose(kva.narrow(0, 32, 4), k_mean.narrow(0, 4, 4)));
  // Values: kv_b's value rows times the latent rows give the repeated W_v (GQA -> MHA);
  // keys: its nope rows give the first 4 rows of every repeated key head.
  const at::Tensor kvb = param(mla, m + "kv_b_proj.weight").reshape({4, 4 + 8, 32});
  const at::Tensor latent = kva.narrow(0, 0, 32);
  const at::Tensor v = at::matmul(kvb.narrow(1, 4, 8), latent);  // [4, 8, 32]
  const at::Tensor k = at::matmul(kvb.narrow(1, 0, 4), latent);
  const at::Tensor v_rep = wv.reshape({2, 8, 32}).repeat_interleave(2, 0);
  const at::Tensor k_rep = wk.reshape({2, 8, 32}).repeat_interleave(2, 0);
  EXPECT_TRUE(at::allclose(v, v_rep, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(k, k_rep.narrow(1, 0, 4), 1e-4, 1e-4));
  EXPECT_TRUE(at::equal(param(mla, m + "out_proj.weight"), param(source, a + "o_proj.weight")));
}

TEST(XEcoMlaInit, TruncatesToTheLeadingSingularVectors) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM source = test::random_model(config, 7);
  ConvertOptions o;
  o.init = MlaInit::kXEcoMla;
  o.kv.rank = 8;
  LlamaForCausalLM mla = convert_to_mla(source, o).model;
  // Eckart-Young: the latent rows span the top-8 right singular vectors of [K; V] repeated,
  // scaled by their singular values.
  const at::Tensor wk = param(source, "model.layers.1.self_attn.k_proj.weight");
  const at::Tensor wv = param(source, "model.layers.1.self_attn.v_proj.weight");
  const at::Tensor joint =
      at::cat({wk.reshape({2, 8, 32}).repeat_interleave(2, 0).reshape({32, 32}),
               wv.reshape({2, 8, 32}).repeat_interleave(2, 0).reshape({32, 32})});
  const at::Tensor s = at::linalg_svdvals(joint.to(at::kDouble));
  const at::Tensor latent =
      param(mla, "model.layers.1.mla.kv_a_proj_with_mqa.weight").narrow(0, 0, 8);
  const at::Tensor latent_norms = latent.to(at::kDouble).norm(2, 1);
  EXPECT_TRUE(at::allclose(latent_norms, s.narrow(0, 0, 8), 1e-4, 1e-4));
}

TEST(RankChoice, EnergyRuleCountsValuesWithinTheRatioThenRoundsUp) {
  const at::Tensor s = at::tensor({3.0, 2.0, 1.0, 0.5}, at::kDouble);  // shares .70 .93 .98 1
  EXPECT_EQ(convert::choose_rank(s, {0, 0.9}, true, 1, "kv"), 1);
  EXPECT_EQ(convert::choose_rank(s, {0, 0.95}, true, 1, "kv"), 2);
  EXPECT_EQ(convert::choose_rank(s, {0, 0.5}, true, 1, "kv"), 1);  // at least one
  EXPECT_EQ(convert::choose_rank(s, {0, 0.95}, true, 2, "kv"), 2);
  EXPECT_EQ(convert::choose_rank(s, {0, 0.95}, true, 8, "kv"), 4);  // rounded, then clamped
  EXPECT_EQ(convert::choose_rank(s, {3, 0.5}, false, 1, "kv"), 3);  // fixed: energy ignored
  EXPECT_EQ(convert::choose_rank(s, {3, std::nullopt}, true, 2, "kv"), 4);
  EXPECT_THROW(convert::choose_rank(s, {5, std::nullopt}, true, 1, "kv"), std::invalid_argument);
}

TEST(Convert, FirstAndLastLayersKeepTheFixedRankUnderAnEnergyRatio) {
  ModelConfig config = test::tiny_config();
  config.n_layer = 3;
  config.attention.assign(3, GqaSpec{4, 2, 8});
  LlamaForCausalLM source = test::random_model(config, 8);
  ConvertOptions o;
  o.init = MlaInit::kXEcoMla;
  o.kv = {24, 0.5};
  o.rank_multiple = 1;
  const Conversion conv = convert_to_mla(source, o);
  EXPECT_EQ(std::get<MlaSpec>(conv.layers[0].spec).rank_kv, 24);
  EXPECT_LT(std::get<MlaSpec>(conv.layers[1].spec).rank_kv, 24);
  EXPECT_EQ(std::get<MlaSpec>(conv.layers[2].spec).rank_kv, 24);
  o.fixed_rank_first_last = false;
  EXPECT_LT(std::get<MlaSpec>(convert_to_mla(source, o).layers[0].spec).rank_kv, 24);
}

TEST(Convert, HybridKeepsTheOtherLayersAndBudgetSetsTheRank) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM source = test::random_model(config, 9);
  ConvertOptions o;
  o.mla_layers = {1};
  o.kv_budget = 0.5;  // 32 values per token -> 16 = 8 latent + 8 rope (every pair kept)
  const Calibration calib = random_calibration(config);
  const Conversion conv = convert_to_mla(source, o, &calib);
  LlamaForCausalLM mla = conv.model;
  const ModelConfig& c = mla->config();
  EXPECT_TRUE(std::holds_alternative<GqaSpec>(c.attention[0]));
  const auto& spec = std::get<MlaSpec>(c.attention[1]);
  EXPECT_EQ(spec.rank_kv, 8);
  EXPECT_EQ(spec.dim_rope, 8);
  EXPECT_EQ(c.kv_values_per_token(), 32 + 16);
  EXPECT_EQ(c.source_kv_values_per_token(), 32 + 32);
  o.kv_budget = 0.25;  // 8 values: a full-head RoPE key would leave no latent, so half of it
  const Conversion quarter_conv = convert_to_mla(source, o, &calib);
  const auto& quarter = std::get<MlaSpec>(quarter_conv.layers[0].spec);
  EXPECT_EQ(quarter.dim_rope, 4);
  EXPECT_EQ(quarter.rank_kv, 4);
  for (const auto& p : source->named_parameters()) {
    if (p.key().find("layers.1.self_attn") != std::string::npos) continue;
    EXPECT_TRUE(at::equal(param(mla, p.key()), p.value())) << p.key();
  }
  const at::Tensor tokens = at::randint(0, config.vocab_size, {1, 10}, at::kLong);
  EXPECT_TRUE(logits(mla, tokens).isfinite().all().item<bool>());
}

TEST(Convert, RejectsBadOptionsBeforeAnyWork) {
  const ModelConfig config = test::tiny_config();
  auto expect_error = [&](const std::function<void(ConvertOptions&)>& edit,
                          const std::string& needle) {
    ConvertOptions o;
    o.kv.rank = 8;
    edit(o);
    try {
      validate_conversion(config, o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([](ConvertOptions& o) { o.mla_layers = {2}; }, "out of range");
  expect_error([](ConvertOptions& o) { o.mla_layers = {1, 1}; }, "twice");
  expect_error([](ConvertOptions& o) { o.kv.rank = 40; }, "exceeds the rank");
  expect_error([](ConvertOptions& o) { o.q.rank = 40; }, "exceeds the rank of W_q");
  expect_error([](ConvertOptions& o) { o.dim_rope = 3; }, "must be even");
  expect_error([](ConvertOptions& o) { o.dim_rope = 10; }, "at most the head dim");
  expect_error([](ConvertOptions& o) { o.dim_rope = 6; }, "must divide the head dim");
  expect_error([](ConvertOptions& o) { o.dim_nope = 9; }, "nope dim");
  expect_error([](ConvertOptions& o) { o.dim_v = 4; }, "v dim");
  expect_error([](ConvertOptions& o) { o.kv_budget = 0.5; }, "exactly one");
  expect_error([](ConvertOptions& o) { o.kv = {0, 1.5}; }, "--kv-energy");
  expect_error([](ConvertOptions& o) { o.kv.rank = 0, o.kv_budget = 0.05; }, "leaves no latent");
  expect_error([](ConvertOptions& o) { o.init = MlaInit::kXEcoMla, o.dim_nope = 6; }, "exceed");
  ModelConfig other = config;
  other.architecture = "gpt2";
  ConvertOptions fine;
  fine.kv.rank = 8;
  EXPECT_NO_THROW(validate_conversion(config, fine));
  EXPECT_THROW(validate_conversion(other, fine), std::invalid_argument);
  EXPECT_THROW(make_calibration(std::vector<int32_t>(10, 1), 24, 1000), std::invalid_argument);
  EXPECT_THROW(parse_mla_init("svd++"), std::invalid_argument);
}

TEST(ActivationInit, RejectsRopeDimsThatMissTheModelsFrequencies) {
  ModelConfig config = test::tiny_config();
  config.attention.assign(2, GqaSpec{4, 2, 12});
  config.hidden_size = 48;
  LlamaForCausalLM source = test::random_model(config);
  ConvertOptions o;
  o.kv.rank = 8;
  o.dim_rope = 8;  // theta^(-2j/8) is not among theta^(-2i/12)
  EXPECT_THROW(convert_to_mla(source, o), std::invalid_argument);
}

}  // namespace
}  // namespace ecomla
