#include "ecomla/synth.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <stdexcept>

#include "util/data_files.h"

namespace ecomla {
namespace fs = std::filesystem;

namespace {

// The complete prompts already in an output: its lines, cut back to whole prompts (a run
// stopped while writing may have left part of one, or part of a line).
int64_t keep_complete_prompts(const fs::path& output, int64_t samples_per_prompt) {
  const std::string text = data_files::read_text(output);
  std::vector<std::string> lines = data_files::read_lines(output);
  if (!text.empty() && text.back() != '\n' && !lines.empty()) lines.pop_back();  // cut short
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  const auto done = static_cast<int64_t>(lines.size()) / samples_per_prompt;
  lines.resize(static_cast<size_t>(done * samples_per_prompt));
  std::ofstream out(output, std::ios::trunc);
  for (const std::string& line : lines) out << line << "\n";
  if (!out) throw std::runtime_error("cannot write " + output.string());
  return done;
}

nlohmann::json chat_record(const std::vector<ChatMessage>& prompt, const std::string& response) {
  nlohmann::json messages = nlohmann::json::array();
  for (const ChatMessage& m : prompt)
    messages.push_back({{"role", m.role}, {"content", m.content}});
  messages.push_back({{"role", "assistant"}, {"content", response}});
  return {{"messages", messages}};
}

}  // namespace

SynthResult synthesize(LlamaForCausalLM model, const Tokenizer& tokenizer,
                       const std::vector<std::vector<ChatMessage>>& prompts, const fs::path& output,
                       const SynthOptions& options, const ProgressCallback& progress) {
  if (options.samples_per_prompt < 1) {
    throw std::invalid_argument("synth: samples per prompt must be positive");
  }
  if (fs::exists(output) && !options.resume) {
    throw std::invalid_argument(output.string() +
                                " exists; pass --resume to continue it, or remove it");
  }
  SynthResult result;
  if (fs::exists(output))
    result.skipped = keep_complete_prompts(output, options.samples_per_prompt);
  if (output.has_parent_path()) fs::create_directories(output.parent_path());
  std::ofstream out(output, std::ios::app);
  if (!out) throw std::runtime_error("cannot write " + output.string());

  Generator generator(std::move(model), tokenizer);
  const auto start = std::chrono::steady_clock::now();
  const auto total = static_cast<int64_t>(prompts.size());
  for (int64_t i = result.skipped; i < total; ++i) {
    const std::vector<ChatMessage>& prompt = prompts[static_cast<size_t>(i)];
    const std::vector<int32_t> ids =
        tokenizer.encode(tokenizer.apply_chat_template(prompt, /*add_generation_prompt=*/true),
                         /*add_special=*/true, /*parse_special=*/true);
    GenerateOptions generate = options.generate;
    generate.sampler.seed += static_cast<uint64_t>(i);
    for (const GenerateResult& r :
         generator.generate_samples(ids, options.samples_per_prompt, generate)) {
      // A sampled byte sequence need not be valid UTF-8: such bytes become U+FFFD.
      out << chat_record(prompt, r.text)
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          << "\n";
      result.tokens += static_cast<int64_t>(r.tokens.size());
      ++result.samples;
    }
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + output.string());
    ++result.prompts;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress &&
        !progress({"synth", i + 1, total, "prompts",
                   fmt::format("{:.0f} tok/s", double(result.tokens) / result.seconds)})) {
      break;
    }
  }
  return result;
}

}  // namespace ecomla
