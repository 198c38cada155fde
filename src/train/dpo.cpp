// The DPO stage on the shared training loop; see include/ecomla/dpo.h.
#include "ecomla/dpo.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <utility>

#include "ecomla/model_loader.h"
#include "ecomla/preference_data.h"
#include "ecomla/train_data.h"
#include "io/atomic_file.h"
#include "train/autocast.h"
#include "train/data_parallel.h"
#include "train/losses.h"
#include "train/train_state.h"
#include "train/trainer.h"
#include "util/fingerprint.h"

namespace ecomla {
namespace fs = std::filesystem;

namespace {

struct PreferenceData {
  std::vector<TokenizedPair> train, held_out;
  int64_t skipped = 0;  // malformed records left out
};

// Every source's pairs (its ratio of them, chosen by the seed, as the distillation mixer),
// tokenized, in a seeded order, the first max_pairs of them kept; the last eval_fraction of
// those held out.
PreferenceData load_pairs(const DpoConfig& c, const Tokenizer& tokenizer) {
  std::mt19937_64 rng(static_cast<uint64_t>(c.seed));
  std::vector<TokenizedPair> pairs;
  PreferenceData data;
  for (const DataSource& source : c.dataset_mixer) {
    int64_t skipped = 0;
    const std::vector<PreferencePair> share = mixer_share(source, rng, [&](const fs::path& path) {
      return read_preference_pairs(path, c.skip_malformed_records, &skipped);
    });
    data.skipped += skipped;
    for (const PreferencePair& pair : share) {
      pairs.push_back(tokenize_pair(pair, tokenizer, c.max_length, c.max_prompt_length));
    }
  }
  std::shuffle(pairs.begin(), pairs.end(), rng);
  if (c.max_pairs > 0 && std::cmp_less(c.max_pairs, pairs.size())) {
    pairs.resize(static_cast<size_t>(c.max_pairs));
  }
  const auto held_out =
      static_cast<size_t>(std::llround(c.eval_fraction * static_cast<double>(pairs.size())));
  if (pairs.size() < held_out + 1) {
    throw std::invalid_argument("dataset_mixer: no preference pairs left to train on");
  }
  data.train.assign(pairs.begin(), pairs.end() - static_cast<std::ptrdiff_t>(held_out));
  data.held_out.assign(pairs.end() - static_cast<std::ptrdiff_t>(held_out), pairs.end());
  return data;
}

// The pairs `ids` as one batch: their chosen sequences (prompt + chosen) in rows 0..B-1 and
// their rejected ones in rows B..2B-1, padded at the end (TRL's concatenated forward).
train::ResponseBatch pair_batch(const std::vector<TokenizedPair>& pairs,
                                const std::vector<int64_t>& ids, int32_t pad) {
  std::vector<std::vector<int32_t>> rows;
  train::ResponseBatch batch;
  for (const bool chosen : {true, false}) {
    for (const int64_t id : ids) {
      const TokenizedPair& p = pairs[id];
      std::vector<int32_t> row = p.prompt;
      const std::vector<int32_t>& response = chosen ? p.chosen : p.rejected;
      row.insert(row.end(), response.begin(), response.end());
      batch.begin.push_back(static_cast<int64_t>(p.prompt.size()));
      batch.end.push_back(static_cast<int64_t>(row.size()));
      rows.push_back(std::move(row));
    }
  }
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.size());
  std::vector<int64_t> tokens;
  for (const auto& row : rows) {
    tokens.insert(tokens.end(), row.begin(), row.end());
    tokens.insert(tokens.end(), width - row.size(), pad);
  }
  batch.tokens = at::tensor(tokens, at::kLong)
                     .view({static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)});
  return batch;
}

// The reference model (its path, and the size and time of each file), the compute dtype and
// every token of the data: the cache of reference log-probabilities belongs to exactly these.
std::string fingerprint(const DpoConfig& c, const PreferenceData& data, bool bf16) {
  Fingerprint f;
  f.add_file_stamps(c.model_name_or_path).add(bf16);
  for (const auto* set : {&data.train, &data.held_out}) {
    for (const TokenizedPair& p : *set) {
      for (const auto* part : {&p.prompt, &p.chosen, &p.rejected}) {
        f.add(part->size());
        for (const int32_t id : *part) f.add(static_cast<uint32_t>(id));
      }
    }
  }
  return f.hex();
}

// log pi_ref of the chosen and rejected response of every pair, training pairs then held-out
// ones, summed over response tokens: [P, 2].
struct ReferenceLogps {
  at::Tensor train, held_out;
};

// Calls fn(ids) for this process's batches of `batch` consecutive indices below n: process r
// of W takes batches r, r + W, ... (the others' results are pooled by the caller).
void for_each_own_batch(int64_t n, int64_t batch, const train::DataParallel& dp,
                        const std::function<void(const std::vector<int64_t>&)>& fn) {
  for (int64_t first = batch * dp.rank(); first < n; first += batch * dp.world_size()) {
    std::vector<int64_t> ids;
    for (int64_t i = first; i < std::min(n, first + batch); ++i) ids.push_back(i);
    fn(ids);
  }
}

// The policy's summed log-probabilities [B] of the chosen and rejected responses of `ids`.
std::pair<at::Tensor, at::Tensor> policy_logps(LlamaForCausalLM& model,
                                               const std::vector<TokenizedPair>& pairs,
                                               const std::vector<int64_t>& ids, int32_t pad,
                                               bool bf16) {
  const train::ResponseBatch batch = pair_batch(pairs, ids, pad);
  train::AutocastScope autocast(bf16);
  const at::Tensor logps = train::response_logps(model, batch, /*average=*/false);
  const auto b = static_cast<int64_t>(ids.size());
  return {logps.slice(0, 0, b), logps.slice(0, b, 2 * b)};
}

// Read back from output_dir/reference_logps.json when it was computed for the same model,
// dtype and data; else computed with the model `reference` returns (the policy before its
// first step), each process a share of the pairs.
ReferenceLogps reference_logps(const DpoConfig& c, const PreferenceData& data,
                               const std::function<LlamaForCausalLM()>& reference, int32_t pad,
                               bool bf16, const train::DataParallel& dp,
                               const std::function<void(const std::string&)>& log,
                               const ProgressCallback& progress) {
  const fs::path cache = c.output_dir / "reference_logps.json";
  const std::string key = fingerprint(c, data, bf16);
  if (fs::exists(cache)) {
    std::ifstream in(cache);
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("fingerprint", "") == key) {
      log("reference log-probabilities: read from " + cache.string());
      auto tensor = [&](const char* name) {
        return at::tensor(j.at(name).get<std::vector<double>>(), at::kDouble).view({-1, 2});
      };
      return {tensor("train"), tensor("held_out")};
    }
  }
  log(fmt::format("reference log-probabilities: computing for {} pairs",
                  data.train.size() + data.held_out.size()));
  LlamaForCausalLM model = reference();
  at::NoGradGuard no_grad;
  model->eval();
  const int64_t batch = c.per_device_train_batch_size;
  const auto all = static_cast<int64_t>(data.train.size() + data.held_out.size());
  int64_t done = 0;
  auto compute = [&](const std::vector<TokenizedPair>& pairs) {
    const auto n = static_cast<int64_t>(pairs.size());
    at::Tensor out = at::zeros({n, 2}, at::kDouble);
    // The other processes' rows stay zero until the sum.
    for_each_own_batch(n, batch, dp, [&](const std::vector<int64_t>& ids) {
      const auto [chosen, rejected] = policy_logps(model, pairs, ids, pad, bf16);
      out.slice(0, ids.front(), ids.back() + 1) = at::stack({chosen, rejected}, 1).to(at::kDouble);
      done += static_cast<int64_t>(ids.size()) * dp.world_size();
      if (progress && dp.is_main()) progress({"reference", std::min(done, all), all, "pairs", ""});
    });
    dp.all_reduce_sum(out);
    return out;
  };
  ReferenceLogps ref{compute(data.train), compute(data.held_out)};
  model->train();
  if (dp.is_main()) {
    fs::create_directories(c.output_dir);
    auto values = [](const at::Tensor& t) {
      const at::Tensor flat = t.contiguous().view({-1});
      return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
    };
    const nlohmann::json j = {{"fingerprint", key},
                              {"reference", c.model_name_or_path},
                              {"train", values(ref.train)},
                              {"held_out", values(ref.held_out)}};
    io::write_atomically(cache, [&](std::ostream& out) { out << j.dump(); });
  }
  return ref;
}

// The DPO loss and its metrics on the pairs `ids` of `pairs`, as TRL's DPOTrainer reports them.
struct PairLoss {
  at::Tensor loss;
  std::vector<double> metrics;  // in the order of kMetricNames
  int64_t tokens = 0;
};

const std::vector<std::string> kMetricNames = {"rewards/chosen",     "rewards/rejected",
                                               "rewards/accuracies", "rewards/margins",
                                               "logps/chosen",       "logps/rejected"};

PairLoss pair_loss(const DpoConfig& c, LlamaForCausalLM& model,
                   const std::vector<TokenizedPair>& pairs, const at::Tensor& reference,
                   const std::vector<int64_t>& ids, int32_t pad, bool bf16) {
  auto [chosen, rejected] = policy_logps(model, pairs, ids, pad, bf16);
  const at::Tensor ref = reference.index_select(0, at::tensor(ids, at::kLong)).to(at::kFloat);
  at::Tensor ref_chosen = ref.select(1, 0), ref_rejected = ref.select(1, 1);
  int64_t tokens = 0;
  if (c.loss_type == DpoLossType::kIpo) {  // IPO compares length-averaged log-probabilities
    std::vector<float> chosen_len, rejected_len;
    for (const int64_t id : ids) {
      chosen_len.push_back(float(pairs[id].chosen.size()));
      rejected_len.push_back(float(pairs[id].rejected.size()));
    }
    const at::Tensor lc = at::tensor(chosen_len), lr = at::tensor(rejected_len);
    chosen = chosen / lc, rejected = rejected / lr;
    ref_chosen = ref_chosen / lc, ref_rejected = ref_rejected / lr;
  }
  for (const int64_t id : ids) {
    const TokenizedPair& p = pairs[id];
    tokens += static_cast<int64_t>(2 * p.prompt.size() + p.chosen.size() + p.rejected.size());
  }
  const train::DpoLoss l = train::dpo_loss(chosen, rejected, ref_chosen, ref_rejected, c.beta,
                                           c.loss_type, c.label_smoothing);
  auto mean = [](const at::Tensor& t) { return t.to(at::kDouble).mean().item<double>(); };
  return {
      l.loss,
      {mean(l.chosen_rewards), mean(l.rejected_rewards),
       mean((l.chosen_rewards > l.rejected_rewards).to(at::kDouble)),
       mean(l.chosen_rewards - l.rejected_rewards), mean(chosen.detach()), mean(rejected.detach())},
      tokens};
}

// Held-out loss and metrics ("eval_loss", "eval_rewards/accuracies", ...), each process a
// share of the pairs, pooled.
nlohmann::json evaluate_held_out(const DpoConfig& c, LlamaForCausalLM& model,
                                 const PreferenceData& data, const at::Tensor& reference,
                                 int32_t pad, bool bf16, const train::DataParallel& dp) {
  at::NoGradGuard no_grad;
  const auto n = static_cast<int64_t>(data.held_out.size());
  at::Tensor sums = at::zeros({static_cast<int64_t>(kMetricNames.size()) + 1}, at::kDouble);
  for_each_own_batch(n, c.per_device_train_batch_size, dp, [&](const std::vector<int64_t>& ids) {
    const PairLoss l = pair_loss(c, model, data.held_out, reference, ids, pad, bf16);
    std::vector<double> values = {l.loss.item<double>()};
    values.insert(values.end(), l.metrics.begin(), l.metrics.end());
    sums += at::tensor(values, at::kDouble) * static_cast<double>(ids.size());
  });
  dp.all_reduce_sum(sums);
  sums /= static_cast<double>(n);
  nlohmann::json out = {{"eval_loss", sums[0].item<double>()}};
  for (size_t i = 0; i < kMetricNames.size(); ++i) {
    out["eval_" + kMetricNames[i]] = sums[static_cast<int64_t>(i) + 1].item<double>();
  }
  return out;
}

}  // namespace

TrainingResult dpo(const DpoConfig& c, const TrainingRun& run) {
  const train::DataParallel dp = train::DataParallel::from_environment();
  auto log = [&](const std::string& line) {
    if (run.log && dp.is_main()) run.log(line);
  };
  // --- everything that can be wrong is checked before training ---------------------------------
  train::require_path("model_name_or_path", c.model_name_or_path);
  const std::optional<fs::path> checkpoint = train::checkpoint_to_resume(c.output_dir, run);
  // The policy: the model, or the checkpoint's weights when resuming.
  LoadedModel policy = load_model(checkpoint ? *checkpoint : fs::path(c.model_name_or_path));
  const std::optional<int32_t> eos = policy.tokenizer.eos_id();
  const int32_t pad = eos.value_or(0);  // padding after a row's end is never attended to
  const PreferenceData data = load_pairs(c, policy.tokenizer);
  log(fmt::format("data: {} preference pairs for training, {} held out{}", data.train.size(),
                  data.held_out.size(),
                  data.skipped ? fmt::format(", {} malformed records skipped", data.skipped) : ""));
  const bool bf16 = train::autocast_bf16(c.compute_dtype);
  log(bf16 ? "compute: bf16 autocast (fp32 master weights)" : "compute: fp32");
  if (dp.world_size() > 1) log(fmt::format("data parallel: {} processes (Gloo)", dp.world_size()));

  // The reference is the model as it starts; a resumed run loads it only when its
  // log-probabilities are not cached.
  LlamaForCausalLM& model = policy.model;
  const ReferenceLogps reference = reference_logps(
      c, data, [&] { return checkpoint ? load_model(c.model_name_or_path).model : model; }, pad,
      bf16, dp, log, run.progress);

  train::Objective objective;
  objective.name = "dpo";
  objective.examples = static_cast<int64_t>(data.train.size());
  objective.metric_names = kMetricNames;
  objective.loss = [&](const std::vector<int64_t>& ids) {
    PairLoss l = pair_loss(c, model, data.train, reference.train, ids, pad, bf16);
    return train::MicroBatchLoss{l.loss, std::move(l.metrics), l.tokens};
  };
  if (!data.held_out.empty()) {
    objective.evaluate = [&] {
      return evaluate_held_out(c, model, data, reference.held_out, pad, bf16, dp);
    };
  }
  return train::run_training(c, objective, model, policy.tokenizer,
                             train::trainable_parameters(model, c.freeze_non_mla), checkpoint, dp,
                             run);
}

}  // namespace ecomla
