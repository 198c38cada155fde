// Generation on a tiny random model: the streamed text is the decoded tokens, split only at
// UTF-8 boundaries; the same seed gives the same tokens; limits are enforced.
#include <gtest/gtest.h>

#include "ecomla/generator.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

bool ends_inside_utf8_sequence(const std::string& s) {
  // Walk back over continuation bytes to the lead byte and compare the sequence length.
  size_t back = 0;
  while (back < s.size() && (static_cast<unsigned char>(s[s.size() - 1 - back]) & 0xC0) == 0x80) {
    ++back;
  }
  if (back == s.size()) return back > 0;
  const auto lead = static_cast<unsigned char>(s[s.size() - 1 - back]);
  const size_t need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
  return back + 1 < need;
}

TEST(Generator, StreamsCompleteUtf8AndIsSeeded) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  LlamaForCausalLM model = test::random_model(test::tiny_config());
  Generator generator(model, tokenizer);
  GenerateOptions options;
  options.max_tokens = 40;
  options.stop_at_eos = false;
  options.sampler = {1.0, 0, 1.0, 7};
  std::vector<std::string> pieces;
  const auto prompt = tokenizer.encode("hello");
  const GenerateResult r = generator.generate(prompt, options, [&](const std::string& p) {
    pieces.push_back(p);
    return true;
  });
  EXPECT_EQ(r.tokens.size(), 40u);
  EXPECT_EQ(r.stop_reason, "max_tokens");
  EXPECT_EQ(r.text, tokenizer.decode(r.tokens));
  // A random model emits arbitrary bytes, so a piece may end in a sequence that can never be
  // completed; what must not happen is a split of one that the next piece continues.
  std::string streamed;
  for (size_t i = 0; i < pieces.size(); ++i) {
    ASSERT_FALSE(pieces[i].empty());
    if (i > 0 && ends_inside_utf8_sequence(streamed)) {
      EXPECT_NE(static_cast<unsigned char>(pieces[i][0]) & 0xC0, 0x80) << "split at piece " << i;
    }
    streamed += pieces[i];
  }
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(generator.generate(prompt, options).tokens, r.tokens);  // same seed, same tokens
}

// A batch of samples decodes each row as a batch of one would: greedy rows equal the single
// greedy sequence (GQA and MLA caches alike); sampled rows differ and repeat with the seed.
TEST(Generator, SamplesOfOnePromptDecodeAsOneBatch) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  for (const ModelConfig& config : {test::tiny_config(), test::tiny_hybrid_config(true)}) {
    Generator generator(test::random_model(config), tokenizer);
    GenerateOptions options;
    options.max_tokens = 12;
    options.stop_at_eos = false;
    options.sampler = {0.0, 0, 1.0, 0};
    const auto prompt = tokenizer.encode("hello");
    const GenerateResult single = generator.generate(prompt, options);
    const std::vector<GenerateResult> greedy = generator.generate_samples(prompt, 3, options);
    ASSERT_EQ(greedy.size(), 3u);
    for (const GenerateResult& r : greedy) {
      EXPECT_EQ(r.tokens, single.tokens);
      EXPECT_EQ(r.text, single.text);
      EXPECT_EQ(r.stop_reason, "max_tokens");
    }
    options.sampler = {1.0, 0, 1.0, 11};
    const std::vector<GenerateResult> sampled = generator.generate_samples(prompt, 3, options);
    EXPECT_NE(sampled[0].tokens, sampled[1].tokens);
    EXPECT_EQ(generator.generate_samples(prompt, 3, options)[2].tokens, sampled[2].tokens);
  }
}

TEST(Generator, StopsWhenTheCallbackSaysSoAndRejectsBadLimits) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  Generator generator(test::random_model(test::tiny_config()), tokenizer);
  GenerateOptions options;
  options.stop_at_eos = false;
  int calls = 0;
  const GenerateResult r =
      generator.generate(tokenizer.encode("hi"), options, [&](const auto&) { return ++calls < 3; });
  EXPECT_EQ(r.stop_reason, "cancelled");
  EXPECT_EQ(calls, 3);
  options.max_tokens = 0;
  EXPECT_THROW(generator.generate(tokenizer.encode("hi"), options), std::invalid_argument);
  options.max_tokens = 10;
  EXPECT_THROW(generator.generate({}, options), std::invalid_argument);
  // The tiny model's context is 128 positions.
  EXPECT_THROW(generator.generate(std::vector<int32_t>(128, 'a'), options), std::invalid_argument);
}

}  // namespace
}  // namespace ecomla
