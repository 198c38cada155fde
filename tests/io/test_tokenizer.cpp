// Byte-level BPE rules on a tiny hand-made vocabulary: pre-tokenizer splits, merge order,
// special tokens, round trips, chat template. The real model's ids are checked against
// llama.cpp in tests/integration/test_real_model.cpp.
#include <gtest/gtest.h>

#include "ecomla/error.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/tokenizer.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

class TinyTokenizer : public testing::Test {
protected:
  Tokenizer tok_{test::tiny_tokenizer_spec()};
  int32_t id(const std::string& text) const { return tok_.token_id(text).value(); }
};

TEST_F(TinyTokenizer, MergesByRank) {
  // "hello" merges h+e, he+l, hel+l, hell+o; " world" merges Ġ+w, Ġw+o, r+l, Ġwo+rl, Ġworl+d.
  const auto ids = tok_.encode("hello world");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], id("hello"));
  EXPECT_EQ(ids[1], id(byte_level_text(' ') + "world"));
  // "help" stops after "hel" (no "hel p" merge).
  EXPECT_EQ(tok_.encode("help"), (std::vector<int32_t>{id("hel"), 'p'}));
}

TEST_F(TinyTokenizer, DigitsAreSplitOneByOne) {
  // smollm pre-tokenizer: \p{N} first, so the "1 2" merge never sees both digits.
  ASSERT_TRUE(tok_.token_id("12").has_value());
  EXPECT_EQ(tok_.encode(" 12"), (std::vector<int32_t>{' ', '1', '2'}));
  // With the plain GPT-2 pre-tokenizer " 12" is one piece and the merge applies.
  TokenizerSpec gpt2 = test::tiny_tokenizer_spec();
  gpt2.pre_type = "gpt-2";
  gpt2.pre_patterns.clear();
  EXPECT_EQ(Tokenizer(gpt2).encode(" 12"), (std::vector<int32_t>{' ', id("12")}));
}

TEST(PreTokenizers, PresetsFollowLlamaCpp) {
  EXPECT_EQ(pre_tokenizer_preset("gpt2").name, "gpt-2");  // llama.cpp's name for it
  EXPECT_EQ(pre_tokenizer_preset("starcoder").name, "smollm");
  EXPECT_EQ(pre_tokenizer_preset("").name, "default");
  EXPECT_EQ(pre_tokenizer_preset("default").patterns.size(), 4u);
  EXPECT_TRUE(pre_tokenizer_preset("llama3").ignore_merges);
  EXPECT_EQ(pre_tokenizer_name(pre_tokenizer_patterns("refact")), "smollm");
  EXPECT_FALSE(pre_tokenizer_name({"x+"}).has_value());
}

TEST(PreTokenizers, IgnoreMergesKeepsVocabularyPiecesWhole) {
  // "hel" + "p" is not a merge, but with ignore_merges a vocabulary entry "help" stays whole.
  TokenizerSpec spec = test::tiny_tokenizer_spec();
  spec.tokens.back() = "help";
  spec.types.back() = TokenType::Normal;
  const int32_t help = static_cast<int32_t>(spec.tokens.size()) - 1;
  EXPECT_NE(Tokenizer(spec).encode("help"), (std::vector<int32_t>{help}));
  spec.ignore_merges = true;
  EXPECT_EQ(Tokenizer(spec).encode("help"), (std::vector<int32_t>{help}));
}

TEST_F(TinyTokenizer, LongTemplatesAndPiecesStayLinearEnough) {
  // Untrusted chat templates are searched, not regex-matched (std::regex recursion).
  TokenizerSpec spec = test::tiny_tokenizer_spec();
  spec.chat_template = "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" +
                       std::string(200000, 'x') + "<|im_end|>";
  const std::string out = Tokenizer(spec).apply_chat_template({{"user", "hi"}});
  EXPECT_NE(out.find(std::string(200000, 'x')), std::string::npos);
}

TEST_F(TinyTokenizer, WhitespaceRunsKeepTheLastSpaceWithTheWord) {
  // GPT-2 regex: "\s+(?!\S)" takes all spaces but the one before the word.
  const auto ids = tok_.encode("a   world");
  const std::vector<int32_t> expected = {'a', ' ', ' ', id(byte_level_text(' ') + "world")};
  EXPECT_EQ(ids, expected);
}

TEST_F(TinyTokenizer, RoundTripsArbitraryUtf8) {
  for (const std::string text : {"hello world", "café ñ 日本語 🙂",
                                 "tabs\tand\nnewlines\r\n", "  spaced  ", "x", ""}) {
    EXPECT_EQ(tok_.decode(tok_.encode(text)), text) << text;
  }
}

TEST_F(TinyTokenizer, ControlTokensOnlyWhenParsingSpecial) {
  const std::string text = "<|im_start|>hello<|im_end|>";
  const auto plain = tok_.encode(text, false, false);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(tok_.decode(plain), text);
  const auto special = tok_.encode(text, false, true);
  EXPECT_EQ(special, (std::vector<int32_t>{id("<|im_start|>"), id("hello"), id("<|im_end|>")}));
  EXPECT_EQ(tok_.decode(special, true), text);
  EXPECT_EQ(tok_.decode(special, false), "hello");
}

TEST_F(TinyTokenizer, AddsBosOnlyWhenDeclared) {
  EXPECT_EQ(tok_.encode("hello", true).size(), 1u);  // add_bos false in the spec
  TokenizerSpec spec = test::tiny_tokenizer_spec();
  spec.add_bos = true;
  const Tokenizer with_bos(spec);
  const auto ids = with_bos.encode("hello", true);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], *spec.bos_id);
}

TEST_F(TinyTokenizer, ChatTemplateInsertsTheTemplatesDefaultSystemPrompt) {
  EXPECT_EQ(tok_.apply_chat_template({{"user", "Hi"}}),
            "<|im_start|>system\nYou are tiny.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(tok_.apply_chat_template({{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(TokenizerErrors, BadSpecs) {
  TokenizerSpec empty;
  EXPECT_THROW(Tokenizer{empty}, FormatError);
  TokenizerSpec bad_bos = test::tiny_tokenizer_spec();
  bad_bos.bos_id = 100000;
  EXPECT_THROW(Tokenizer{bad_bos}, FormatError);
  EXPECT_THROW(pre_tokenizer_patterns("no-such-pre"), FormatError);
  Tokenizer tok(test::tiny_tokenizer_spec());
  EXPECT_THROW(tok.piece(-1), std::out_of_range);
  TokenizerSpec not_chatml = test::tiny_tokenizer_spec();
  not_chatml.chat_template = "{{ messages }}";
  EXPECT_THROW(Tokenizer(not_chatml).apply_chat_template({{"user", "x"}}), std::invalid_argument);
}

TEST(TokenizerJson, WriteThenReadGivesTheSameTokenizer) {
  test::TempDir dir;
  const Tokenizer original(test::tiny_tokenizer_spec());
  write_hf_tokenizer(dir.path(), original);
  const Tokenizer loaded(read_hf_tokenizer(dir.path()));
  EXPECT_EQ(loaded.vocab_size(), original.vocab_size());
  EXPECT_EQ(loaded.spec().merges, original.spec().merges);
  EXPECT_EQ(loaded.spec().bos_id, original.spec().bos_id);
  EXPECT_EQ(loaded.spec().chat_template, original.spec().chat_template);
  for (const std::string text : {"hello world 123", "<|im_start|>hello", "a   world  "}) {
    EXPECT_EQ(loaded.encode(text, true, true), original.encode(text, true, true)) << text;
  }
}

TEST(TokenizerJson, ReadsTheHuggingFacePreTokenizerSequence) {
  // SmolLM2's tokenizer.json declares Digits(individual) + ByteLevel(use_regex).
  test::TempDir dir;
  const Tokenizer original(test::tiny_tokenizer_spec());
  write_hf_tokenizer(dir.path(), original);
  auto text = test::read_file(dir / "tokenizer.json");
  std::string json(text.begin(), text.end());
  const size_t at = json.find("\"pre_tokenizer\"");
  const size_t end = json.find("\"post_processor\"");
  ASSERT_NE(at, std::string::npos);
  json =
      json.substr(0, at) +
      R"("pre_tokenizer": {"type": "Sequence", "pretokenizers": [)"
      R"({"type": "Digits", "individual_digits": true},)"
      R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},)" +
      json.substr(end);
  test::write_file(dir / "tokenizer.json", {json.begin(), json.end()});
  const Tokenizer loaded(read_hf_tokenizer(dir.path()));
  EXPECT_EQ(loaded.spec().pre_patterns, pre_tokenizer_patterns("smollm"));
}

}  // namespace
}  // namespace ecomla

namespace ecomla {
namespace {

TEST(TokenizerJson, TemplateProcessingAddsBosAsLlama3Does) {
  test::TempDir dir;
  write_hf_tokenizer(dir.path(), Tokenizer(test::tiny_tokenizer_spec()));
  std::filesystem::remove(dir / "tokenizer_config.json");
  auto bytes = test::read_file(dir / "tokenizer.json");
  std::string json(bytes.begin(), bytes.end());
  const std::string from = "\"post_processor\": null";
  ASSERT_NE(json.find(from), std::string::npos);
  json.replace(json.find(from), from.size(),
               R"("post_processor": {"type": "Sequence", "processors": [)"
               R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false},)"
               R"({"type": "TemplateProcessing", "single": [)"
               R"({"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},)"
               R"({"Sequence": {"id": "A", "type_id": 0}}]}]})");
  test::write_file(dir / "tokenizer.json", {json.begin(), json.end()});
  const Tokenizer tok(read_hf_tokenizer(dir.path()));
  const int32_t im_start = *tok.token_id("<|im_start|>");
  EXPECT_EQ(tok.bos_id(), im_start);
  EXPECT_EQ(tok.encode("hello", true), (std::vector<int32_t>{im_start, *tok.token_id("hello")}));
  EXPECT_EQ(tok.encode("hello", false).size(), 1u);
}

}  // namespace
}  // namespace ecomla
