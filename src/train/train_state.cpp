#include "train/train_state.h"

#include <torch/serialize.h>

#include <fmt/format.h>
#include <fstream>

#include "ecomla/error.h"
#include "ecomla/hf_checkpoint.h"

namespace ecomla::train {
namespace fs = std::filesystem;

void save_checkpoint(const fs::path& output_dir, LlamaForCausalLM& model,
                     const Tokenizer& tokenizer, const torch::optim::AdamW& optimizer,
                     int64_t step) {
  const fs::path final_dir = output_dir / "checkpoint", tmp = output_dir / "checkpoint.tmp",
                 old = output_dir / "checkpoint.old";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_hf_checkpoint(tmp, *model, model->config(), tokenizer, {.dtype = "F32"});
  torch::save(optimizer, (tmp / "optimizer.pt").string());
  {
    std::ofstream state(tmp / "state.json");
    state << nlohmann::json{{"step", step}}.dump() << "\n";
    if (!state) throw std::runtime_error("cannot write " + (tmp / "state.json").string());
  }
  fs::remove_all(old);
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  fs::remove_all(old);
}

std::optional<fs::path> find_checkpoint(const fs::path& output_dir) {
  for (const char* name : {"checkpoint", "checkpoint.old"}) {  // .old: a save cut short
    if (fs::exists(output_dir / name / "state.json")) return output_dir / name;
  }
  return std::nullopt;
}

int64_t load_checkpoint_state(const fs::path& checkpoint, torch::optim::AdamW& optimizer) {
  torch::load(optimizer, (checkpoint / "optimizer.pt").string());
  std::ifstream in(checkpoint / "state.json");
  try {
    return nlohmann::json::parse(in).at("step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError((checkpoint / "state.json").string() + ": " + e.what());
  }
}

MetricsLog::MetricsLog(const fs::path& path, std::optional<int64_t> resume_step) : path_(path) {
  std::vector<nlohmann::json> kept;
  if (resume_step && fs::exists(path)) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
      if (!entry.is_discarded() && entry.value("step", int64_t{0}) <= *resume_step) {
        kept.push_back(entry);
      }
    }
  }
  std::ofstream out(path, std::ios::trunc);
  for (const nlohmann::json& entry : kept) out << entry.dump() << "\n";
  if (!out) throw std::runtime_error("cannot write " + path.string());
  entries_ = std::move(kept);
}

void MetricsLog::write(const nlohmann::json& entry) {
  std::ofstream out(path_, std::ios::app);
  out << entry.dump() << "\n";
  if (!out) throw std::runtime_error("cannot write " + path_.string());
  entries_.push_back(entry);
}

}  // namespace ecomla::train
