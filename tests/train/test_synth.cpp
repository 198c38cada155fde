// Teacher-sampled training text: prompts read from each format, responses written as chat
// records the distillation data reader takes back, resume writing what an uninterrupted run
// writes.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "ecomla/error.h"
#include "ecomla/synth.h"
#include "ecomla/train_data.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;

TEST(ReadPrompts, EveryFormatEndsInAUserTurn) {
  test::TempDir dir;
  std::ofstream(dir / "p.txt") << "first prompt\n\n  \nsecond prompt\n";
  std::ofstream(dir / "p.jsonl")
      << R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, )"
      << R"({"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})"
      << "\n"
      << R"({"instruction": "Translate", "input": "hola", "output": "hello"})"
      << "\n"
      << R"({"instruction": "Say hi"})"
      << "\n"
      << R"({"question": "1+1?", "answer": "2"})"
      << "\n"
      << R"({"prompt": "Once upon", "completion": "a time"})"
      << "\n";
  const auto lines = read_prompts(dir / "p.txt");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].front().content, "second prompt");
  const auto records = read_prompts(dir / "p.jsonl");
  ASSERT_EQ(records.size(), 5u);
  ASSERT_EQ(records[0].size(), 3u);  // the last assistant turn is what the teacher will write
  EXPECT_EQ(records[0].back().role, "user");
  EXPECT_EQ(records[0].back().content, "c");
  EXPECT_EQ(records[1].front().content, "Translate\n\nhola");
  EXPECT_EQ(records[2].front().content, "Say hi");
  EXPECT_EQ(records[3].front().content, "1+1?");
  EXPECT_EQ(records[4].front().content, "Once upon");
  for (const auto& r : records) EXPECT_EQ(r.back().role, "user");

  std::ofstream(dir / "bad.jsonl") << R"({"prompt": "ok"})"
                                   << "\n"
                                   << R"({"answer": "2"})"
                                   << "\n";
  test::expect_format_error([&] { read_prompts(dir / "bad.jsonl"); }, {"bad.jsonl:2", "prompt"});
}

class Synth : public testing::Test {
protected:
  Synth() : tokenizer_(test::tiny_tokenizer_spec()) {
    for (const char* p : {"hello", "name a colour", "why", "count to three"})
      prompts_.push_back({{"user", p}});
    options_.samples_per_prompt = 3;
    options_.generate.max_tokens = 6;
    options_.generate.sampler.seed = 5;
  }
  SynthResult run(const fs::path& out, const SynthOptions& options,
                  const std::vector<std::vector<ChatMessage>>& prompts) {
    return synthesize(test::random_model(test::tiny_config()), tokenizer_, prompts, out, options);
  }

  test::TempDir dir_;
  Tokenizer tokenizer_;
  std::vector<std::vector<ChatMessage>> prompts_;
  SynthOptions options_;
};

TEST_F(Synth, WritesChatRecordsTheTrainerReads) {
  const SynthResult r = run(dir_ / "synth.jsonl", options_, prompts_);
  EXPECT_EQ(r.prompts, 4);
  EXPECT_EQ(r.samples, 12);
  EXPECT_GT(r.tokens, 0);
  const std::vector<std::string> docs = read_training_documents(dir_ / "synth.jsonl", tokenizer_);
  ASSERT_EQ(docs.size(), 12u);
  // Each document is the prompt and a response in the chat template.
  EXPECT_NE(docs[3].find("<|im_start|>user\nname a colour<|im_end|>"), std::string::npos);
  EXPECT_NE(docs[3].find("<|im_start|>assistant\n"), std::string::npos);
  // Packed for training, the chat markers are the control tokens the model knows.
  const PackedData packed = pack_training_data({{dir_ / "synth.jsonl", 1.0}}, tokenizer_, 8, 0, 1);
  const int32_t im_start = *tokenizer_.token_id("<|im_start|>");
  int64_t markers = 0;
  for (const auto& seq : packed.train) markers += std::count(seq.begin(), seq.end(), im_start);
  // system, user and assistant in each of the 12 documents; the cut-off tail (under 8 tokens)
  // can hold three at most.
  EXPECT_GE(markers, 12 * 3 - 3);
  // An existing output is kept unless the run resumes it.
  EXPECT_THROW(run(dir_ / "synth.jsonl", options_, prompts_), std::invalid_argument);
}

TEST_F(Synth, ResumeWritesWhatAnUninterruptedRunWrites) {
  run(dir_ / "whole.jsonl", options_, prompts_);
  // A run cut short in the last line of the third prompt.
  run(dir_ / "cut.jsonl", options_, {prompts_.begin(), prompts_.begin() + 3});
  std::vector<std::string> lines;
  {
    std::ifstream in(dir_ / "cut.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 9u);
  {  // eight whole lines and half of the ninth: the third prompt is not complete
    std::ofstream out(dir_ / "cut.jsonl", std::ios::trunc);
    for (size_t i = 0; i < 8; ++i) out << lines[i] << "\n";
    out << lines[8].substr(0, lines[8].size() / 2);
  }
  SynthOptions resume = options_;
  resume.resume = true;
  const SynthResult r = run(dir_ / "cut.jsonl", resume, prompts_);
  EXPECT_EQ(r.skipped, 2);
  EXPECT_EQ(r.prompts, 2);
  EXPECT_EQ(test::read_text(dir_ / "cut.jsonl"), test::read_text(dir_ / "whole.jsonl"));
}

}  // namespace
}  // namespace ecomla
