// The log-likelihood scorer: lm-eval's request encoding and rolling windows on hand-checked
// cases; packed prefix-tree scoring against each request run alone through forward(); and a
// bigram model with known log-probabilities through scoring and the metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ecomla/eval_metrics.h"
#include "ecomla/loglikelihood.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

using Tokens = std::vector<int32_t>;

// Token ids of the tiny tokenizer: bytes are their own ids, merges follow from 256.
constexpr int32_t kSpace = ' ', kHe = 256, kHello = 259, kSpaceWorld = 264, kEndOfText = 266;

TEST(EncodeRequest, ContinuationIsTheTailOfTheWholeEncoding) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  const TokenizedRequest plain = encode_request(tokenizer, "Answer:", " hello", kEndOfText);
  EXPECT_EQ(plain.context, tokenizer.encode("Answer:"));
  EXPECT_EQ(plain.continuation, (Tokens{kSpace, kHello}));
  // lm-eval moves the context's trailing whitespace to the continuation.
  const TokenizedRequest moved = encode_request(tokenizer, "Answer: ", "hello", kEndOfText);
  EXPECT_EQ(moved.context, plain.context);
  EXPECT_EQ(moved.continuation, plain.continuation);
  // "he" + "llo world" encodes as [hello, Ġworld]: the continuation is what follows the
  // context's one token, so "llo" is scored as part of nothing (lm-eval does the same).
  const TokenizedRequest merged = encode_request(tokenizer, "he", "llo world", kEndOfText);
  EXPECT_EQ(merged.context, (Tokens{kHe}));
  EXPECT_EQ(merged.continuation, (Tokens{kSpaceWorld}));
  // An empty context is the prefix token.
  const TokenizedRequest empty = encode_request(tokenizer, "", "hello", kEndOfText);
  EXPECT_EQ(empty.context, (Tokens{kEndOfText}));
  EXPECT_EQ(empty.continuation, (Tokens{kHello}));
  // A continuation swallowed by the context's last token cannot be scored.
  EXPECT_THROW(encode_request(tokenizer, "hel", "lo", kEndOfText), std::invalid_argument);
}

TEST(RollingWindows, DisjointWindowsWithOneTokenOfContext) {
  const Tokens tokens = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  const std::vector<TokenizedRequest> windows = rolling_windows(tokens, 99, 4);
  ASSERT_EQ(windows.size(), 3u);
  EXPECT_EQ(windows[0].context, (Tokens{99}));
  EXPECT_EQ(windows[0].continuation, (Tokens{10, 11, 12, 13}));
  EXPECT_EQ(windows[1].context, (Tokens{13}));
  EXPECT_EQ(windows[1].continuation, (Tokens{14, 15, 16, 17}));
  // The last, shorter window keeps the rest of its max_length tokens as context.
  EXPECT_EQ(windows[2].context, (Tokens{15, 16, 17}));
  EXPECT_EQ(windows[2].continuation, (Tokens{18, 19}));
  EXPECT_TRUE(rolling_windows({}, 99, 4).empty());
  EXPECT_EQ(rolling_windows({5, 6}, 99, 4).size(), 1u);
}

// log P(continuation | context) from one plain forward pass over
// (context + continuation)[-(max_length + 1):][:-1], as lm-eval's HFLM computes it.
LoglikelihoodResult run_alone(LlamaForCausalLM& model, const TokenizedRequest& r,
                              int64_t max_length) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> sequence(r.context.begin(), r.context.end());
  sequence.insert(sequence.end(), r.continuation.begin(), r.continuation.end());
  const auto excess = static_cast<int64_t>(sequence.size()) - (max_length + 1);
  if (excess > 0) sequence.erase(sequence.begin(), sequence.begin() + excess);
  sequence.pop_back();
  const at::Tensor logp = model->forward(at::tensor(sequence).unsqueeze(0))[0].log_softmax(-1);
  const auto n = static_cast<int64_t>(r.continuation.size());
  LoglikelihoodResult result{0, true};
  for (int64_t k = 0; k < n; ++k) {
    const int64_t position = static_cast<int64_t>(sequence.size()) - n + k;
    result.logprob += logp[position][r.continuation[k]].item<double>();
    result.greedy = result.greedy && logp[position].argmax().item<int64_t>() == r.continuation[k];
  }
  return result;
}

// Groups like an evaluation's: shared contexts with several continuations (some extending
// others), contexts that share only a prefix (WinoGrande), and requests longer than the window.
std::vector<std::vector<TokenizedRequest>> sample_groups(LlamaForCausalLM& model) {
  std::mt19937 rng(7);
  auto tokens = [&](int64_t n) {
    Tokens t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % 300);
    return t;
  };
  std::vector<std::vector<TokenizedRequest>> groups;
  for (int64_t g = 0; g < 6; ++g) {
    const Tokens context = tokens(3 + 4 * g);
    std::vector<TokenizedRequest> group;
    for (int64_t c = 0; c < 1 + g % 4; ++c) group.push_back({context, tokens(1 + (g + c) % 5)});
    if (group.size() > 1) {  // a continuation that extends another
      Tokens longer = group[0].continuation;
      longer.push_back(17);
      group.push_back({context, longer});
    }
    groups.push_back(group);
  }
  const Tokens prefix = tokens(6), shared_tail = tokens(3);
  Tokens option1 = prefix, option2 = prefix;
  option1.push_back(5);
  option2.insert(option2.end(), {8, 9});
  groups.push_back({{option1, shared_tail}, {option2, shared_tail}});
  // A continuation that is the model's own greedy choice, so greedy must come out true.
  const Tokens context = tokens(5);
  torch::NoGradGuard no_grad;
  const at::Tensor logits =
      model->forward(at::tensor(std::vector<int64_t>(context.begin(), context.end())).unsqueeze(0));
  groups.push_back({{context, {static_cast<int32_t>(logits[0][-1].argmax().item<int64_t>())}}});
  return groups;
}

class Scorer : public testing::TestWithParam<int> {};

TEST_P(Scorer, PackedTreesMatchEachRequestRunAlone) {
  const ModelConfig config =
      GetParam() == 0 ? test::tiny_config() : test::tiny_hybrid_config(GetParam() == 2);
  LlamaForCausalLM model = test::random_model(config);
  const auto groups = sample_groups(model);
  ScoreOptions options;
  options.max_length = 16;  // the longest requests lose tokens on the left
  options.batch_tokens = 48;
  options.batch_size = 3;  // several batches with padding
  ScoreStats stats;
  const auto results = score_requests(model, groups, options, &stats);
  EXPECT_GT(stats.forward_passes, 2);
  int64_t request_tokens = 0;
  ASSERT_EQ(results.size(), groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    ASSERT_EQ(results[g].size(), groups[g].size());
    for (size_t r = 0; r < groups[g].size(); ++r) {
      const LoglikelihoodResult expected = run_alone(model, groups[g][r], options.max_length);
      EXPECT_NEAR(results[g][r].logprob, expected.logprob, 1e-4 * std::max(1.0, -expected.logprob))
          << "group " << g << " request " << r;
      EXPECT_EQ(results[g][r].greedy, expected.greedy) << "group " << g << " request " << r;
      request_tokens += static_cast<int64_t>(groups[g][r].context.size());
    }
  }
  EXPECT_TRUE(results.back()[0].greedy);
  EXPECT_LT(stats.tree_tokens, request_tokens);  // shared contexts were computed once
}

INSTANTIATE_TEST_SUITE_P(GqaHybridMla, Scorer, testing::Values(0, 1, 2));

TEST(Scorer, RejectsContinuationsLongerThanTheWindow) {
  LlamaForCausalLM model = test::random_model(test::tiny_config());
  ScoreOptions options;
  options.max_length = 4;
  EXPECT_THROW(score_requests(model, {{{{1}, {2, 3, 4, 5, 6}}}}, options), std::invalid_argument);
}

// One layer whose attention and MLP add nothing, identity embeddings and an LM head holding
// log p(next | current): a bigram model whose log-likelihoods are known in closed form.
constexpr int64_t kVocab = 8;
double bigram_logp(int64_t current, int64_t next) {
  // Row `current`: next = current + 1 has probability 1/2, the other 7 tokens 1/14 each.
  return next == (current + 1) % kVocab ? std::log(0.5) : std::log(1.0 / 14.0);
}

LlamaForCausalLM bigram_model() {
  ModelConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = kVocab;
  c.intermediate_size = 4;
  c.n_layer = 1;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-12;
  c.tie_word_embeddings = false;
  c.attention.assign(1, GqaSpec{2, 1, 4});
  LlamaForCausalLM model(c);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) p.value().zero_();
  model->model->embed_tokens->weight.copy_(at::eye(kVocab));
  // RMSNorm of a one-hot vector is sqrt(V) times it; the final norm's weight undoes that.
  model->model->norm->weight.fill_(1.0 / std::sqrt(static_cast<double>(kVocab)));
  for (int64_t current = 0; current < kVocab; ++current) {
    for (int64_t next = 0; next < kVocab; ++next) {
      model->lm_head->weight[next][current] = bigram_logp(current, next);
    }
  }
  return model;
}

TEST(Metrics, BigramModelGivesTheClosedFormScores) {
  LlamaForCausalLM model = bigram_model();
  // Three questions on context [0, 1]: the likely path is 2, 3, 4, ...
  Task task;
  task.type = OutputType::kMultipleChoice;
  task.metrics = {"acc", "acc_norm"};
  const std::vector<std::vector<TokenizedRequest>> groups = {
      {{{0, 1}, {2, 3}}, {{0, 1}, {5}}},     // likely pair vs one unlikely token
      {{{0, 1}, {2, 3, 4}}, {{0, 1}, {6}}},  // three likely tokens vs one unlikely
      {{{0, 1}, {2}}, {{0, 1}, {2, 3}}},     // a prefix of the other
  };
  const double half = std::log(0.5), rare = std::log(1.0 / 14.0);
  const std::vector<std::vector<double>> expected = {
      {2 * half, rare}, {3 * half, rare}, {half, 2 * half}};
  const auto results = score_requests(model, groups, ScoreOptions{});
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t r = 0; r < groups[g].size(); ++r) {
      EXPECT_NEAR(results[g][r].logprob, expected[g][r], 1e-5) << g << " " << r;
    }
  }
  EXPECT_TRUE(results[0][0].greedy);
  EXPECT_FALSE(results[0][1].greedy);
  EXPECT_EQ(results[2][0].greedy, true);

  // Choice strings set the acc_norm divisors; gold answers make acc and acc_norm differ.
  // Doc 0: ll -1.386 (len 1) vs -2.639 (len 10): acc -> 0, norm -> 1 (-0.264 > -1.386).
  // Doc 1: ll -2.079 (len 3) vs -2.639 (len 3): both pick 0, the gold one.
  // Doc 2: ll -0.693 (len 2) vs -1.386 (len 2): both pick 0, gold is 1.
  task.docs.resize(3);
  task.docs[0].choices = {"a", "bbbbbbbbbb"};
  task.docs[0].gold = 1;
  task.docs[1].choices = {"abc", "def"};
  task.docs[1].gold = 0;
  task.docs[2].choices = {"xy", "zw"};
  task.docs[2].gold = 1;
  const auto metrics = task_metrics(task, results);
  EXPECT_NEAR(metrics.at("acc").value, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(metrics.at("acc_norm").value, 2.0 / 3.0, 1e-12);
  // mean_stderr of {0, 1, 0}: sqrt(((1/3)^2 * 2 + (2/3)^2) / 2) / sqrt(3) = 1/3.
  EXPECT_NEAR(*metrics.at("acc").stderr_value, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(*metrics.at("acc_norm").stderr_value, 1.0 / 3.0, 1e-12);
}

TEST(Metrics, ChoicesNormaliseByCharactersAndTiesGoToTheFirst) {
  const ChoiceOutcome tie =
      score_choices({{-6, false}, {-6, false}, {-9, false}}, {"a", "b", "c"}, 1);
  EXPECT_EQ(tie.pred, 0);  // numpy.argmax: the first of equal values
  EXPECT_EQ(tie.pred_norm, 0);
  EXPECT_FALSE(tie.acc);
  // "é" is one character (two UTF-8 bytes): -2/1 < -5/3, so acc_norm picks "abc" (by bytes,
  // -2/2 would have won).
  const ChoiceOutcome utf8 = score_choices({{-2, false}, {-5, false}}, {"é", "abc"}, 1);
  EXPECT_EQ(utf8.pred, 0);
  EXPECT_EQ(utf8.pred_norm, 1);
  EXPECT_FALSE(utf8.acc);
  EXPECT_TRUE(utf8.acc_norm);
}

TEST(Metrics, LoglikelihoodAndRollingTasks) {
  Task lambada;
  lambada.type = OutputType::kLoglikelihood;
  lambada.metrics = {"perplexity", "acc"};
  lambada.docs.resize(3);
  const auto m = task_metrics(lambada, {{{-1, true}}, {{-2, false}}, {{-3, true}}});
  EXPECT_NEAR(m.at("perplexity").value, std::exp(2.0), 1e-9);  // exp(-mean ll)
  // Delta method: ppl * stderr(ll) = e^2 * sqrt(((1 + 0 + 1) / 2) / 3).
  EXPECT_NEAR(*m.at("perplexity").stderr_value, std::exp(2.0) * std::sqrt(1.0 / 3.0), 1e-9);
  EXPECT_NEAR(m.at("acc").value, 2.0 / 3.0, 1e-12);

  Task wikitext;
  wikitext.type = OutputType::kLoglikelihoodRolling;
  wikitext.metrics = {"word_perplexity", "byte_perplexity", "bits_per_byte"};
  wikitext.docs.resize(2);
  wikitext.docs[0].words = 3;
  wikitext.docs[0].bytes = 10;
  wikitext.docs[1].words = 5;
  wikitext.docs[1].bytes = 30;
  // Windows of one document add up: total ll = -4 - 6 - 10 = -20 over 8 words and 40 bytes.
  const auto w = task_metrics(wikitext, {{{-4, false}, {-6, false}}, {{-10, false}}});
  EXPECT_NEAR(w.at("word_perplexity").value, std::exp(20.0 / 8.0), 1e-9);
  EXPECT_NEAR(w.at("byte_perplexity").value, std::exp(0.5), 1e-12);
  EXPECT_NEAR(w.at("bits_per_byte").value, 0.5 / std::log(2.0), 1e-12);
  EXPECT_FALSE(w.at("bits_per_byte").stderr_value.has_value());  // "N/A", as lm-eval
}

TEST(Metrics, GroupsWeightBySizeAndPoolTheStderr) {
  const MetricValue pooled = pooled_metric({{0.5, 0.1}, {0.7, 0.05}}, {10, 30});
  EXPECT_NEAR(pooled.value, (0.5 * 10 + 0.7 * 30) / 40, 1e-12);
  // sqrt((9 * 0.1^2 * 10 + 29 * 0.05^2 * 30) / (40 - 2) / 40), metrics.py pooled_sample_stderr
  EXPECT_NEAR(*pooled.stderr_value, std::sqrt((0.9 + 2.175) / 38.0 / 40.0), 1e-12);
}

}  // namespace
}  // namespace ecomla
