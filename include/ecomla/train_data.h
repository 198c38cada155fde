// Training text for distillation: local files rendered to documents, tokenized, shuffled by
// seed and packed into fixed-length sequences, as X-EcoMLA's trainer packs its dataset_mixer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ecomla/tokenizer.h"

namespace ecomla {

// One entry of a dataset_mixer: a local file and the share of its documents to use (as the
// alignment handbook's mixer: 0.5 takes a seeded half; above 1 repeats documents).
struct DataSource {
  std::filesystem::path path;
  double ratio = 1.0;
};

// The items of `source` a dataset_mixer takes: those read(source.path) returns, shuffled by
// `rng`, then the first round(ratio * n) of them, repeating items when the ratio is above 1.
// Throws std::invalid_argument for a ratio that is not positive, before reading.
template <typename Read>
auto mixer_share(const DataSource& source, std::mt19937_64& rng, const Read& read) {
  if (source.ratio <= 0) {
    throw std::invalid_argument("dataset_mixer: the ratio of " + source.path.string() +
                                " must be positive");
  }
  auto items = read(source.path);
  std::shuffle(items.begin(), items.end(), rng);
  const auto wanted = static_cast<size_t>(std::llround(source.ratio * double(items.size())));
  decltype(items) share;
  for (size_t i = 0; i < wanted && !items.empty(); ++i) share.push_back(items[i % items.size()]);
  return share;
}

// The documents of one file, as text:
// - .txt: the whole file is one document;
// - .jsonl / .json records: "text"; "messages" (chat, rendered with the model's chat template);
//   "instruction" (+ "input") and "output" (Alpaca); "question" and "answer" (GSM8K);
//   "prompt" and "completion" — the last three rendered as a user/assistant chat.
// Throws FormatError naming the file and line for a record with none of these.
std::vector<std::string> read_training_documents(const std::filesystem::path& path,
                                                 const Tokenizer& tokenizer);

// The prompts of a file, for sampling responses from a teacher (ecomla synth): conversations
// that end in a user turn.
// - .txt: one prompt per non-empty line;
// - .jsonl / .json records: "messages" (up to its last user turn), "instruction" (+ "input"),
//   "question" or "prompt"; any answer the record holds is left out.
// Throws FormatError naming the file and line for a record with none of these.
std::vector<std::vector<ChatMessage>> read_prompts(const std::filesystem::path& path);

struct PackedData {
  std::vector<std::vector<int32_t>> train, held_out;  // sequences of `length` tokens
  int64_t documents = 0;
  int64_t tokens = 0;  // in the packed stream, before the tail is dropped
};

// Every source's documents (its ratio of them, chosen by `seed`), each tokenized with EOS
// after it, in a seeded shuffled order, concatenated and cut into sequences of `length`
// tokens; the last `held_out` sequences are kept apart for evaluation.
PackedData pack_training_data(const std::vector<DataSource>& sources, const Tokenizer& tokenizer,
                              int64_t length, int64_t held_out, uint64_t seed);

}  // namespace ecomla
