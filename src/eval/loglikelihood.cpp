#include "ecomla/loglikelihood.h"

#include <ATen/ops/from_blob.h>
#include <c10/core/InferenceMode.h>

#include <fmt/format.h>
#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>

namespace ecomla {

TokenizedRequest encode_request(const Tokenizer& tokenizer, const std::string& context,
                                const std::string& continuation, int32_t prefix_token) {
  TokenizedRequest request;
  // Python's str.rstrip() without arguments: the context's trailing whitespace.
  const size_t kept = context.find_last_not_of(" \t\n\r\v\f");
  const size_t n_context = kept == std::string::npos ? 0 : kept + 1;
  if (n_context == 0) {
    request.context = {prefix_token};
    request.continuation = tokenizer.encode(context + continuation);
  } else {
    const std::string head = context.substr(0, n_context);
    const std::string tail = context.substr(n_context) + continuation;
    const std::vector<int32_t> whole = tokenizer.encode(head + tail);
    request.context = tokenizer.encode(head);
    // lm-eval takes the tail of the whole encoding, even where the split point merged tokens.
    const size_t split = std::min(request.context.size(), whole.size());
    request.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(split), whole.end());
  }
  if (request.continuation.empty()) {
    throw std::invalid_argument(
        fmt::format("the continuation '{}' of context '{}' encodes to no tokens", continuation,
                    context.substr(context.size() > 60 ? context.size() - 60 : 0)));
  }
  return request;
}

std::vector<TokenizedRequest> rolling_windows(const std::vector<int32_t>& tokens,
                                              int32_t prefix_token, int64_t max_length) {
  if (max_length < 1) throw std::invalid_argument("rolling windows: max_length must be >= 1");
  std::vector<TokenizedRequest> windows;
  const auto n = static_cast<int64_t>(tokens.size());
  if (n == 0) return windows;
  auto slice = [&](int64_t from, int64_t to) {
    return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + to);
  };
  const int64_t first = std::min(max_length, n);
  windows.push_back({{prefix_token}, slice(0, first)});
  for (int64_t predicted = first; predicted < n;) {
    const int64_t length = std::min(n - predicted, max_length);
    const int64_t end = predicted + length;
    // The window is the max_length tokens before `end`; what it does not predict is context.
    windows.push_back({slice(end - max_length - 1, end - length), slice(end - length, end)});
    predicted = end;
  }
  return windows;
}

namespace {

// The requests of one group as a prefix tree: node i holds one input token at position
// (depth) positions[i] under parent[i] (-1 at the root). A request's continuation token k is
// predicted by the logits of node targets[r][k].first.
struct PackedGroup {
  std::vector<int64_t> tokens, positions, parent;
  std::vector<std::vector<std::pair<int64_t, int32_t>>> targets;
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

PackedGroup pack_group(const std::vector<TokenizedRequest>& requests, int64_t max_length) {
  PackedGroup group;
  std::map<std::pair<int64_t, int64_t>, int64_t> children;  // (parent, token) -> node
  for (const TokenizedRequest& request : requests) {
    if (request.context.empty()) throw std::invalid_argument("a request has no context token");
    const auto n_continuation = static_cast<int64_t>(request.continuation.size());
    if (n_continuation > max_length) {
      throw std::invalid_argument(
          fmt::format("a continuation of {} tokens does not fit the context window of {} tokens",
                      n_continuation, max_length));
    }
    std::vector<int64_t> sequence(request.context.begin(), request.context.end());
    sequence.insert(sequence.end(), request.continuation.begin(), request.continuation.end());
    // As lm-eval: (context + continuation)[-(max_length + 1):][:-1] is the model's input.
    const auto total = static_cast<int64_t>(sequence.size());
    const int64_t dropped = std::max<int64_t>(0, total - (max_length + 1));
    std::vector<int64_t> path;  // the node of each input token
    int64_t node = -1;
    for (int64_t i = dropped; i < total - 1; ++i) {
      const auto [it, inserted] = children.try_emplace({node, sequence[i]}, group.size());
      if (inserted) {
        group.tokens.push_back(sequence[i]);
        group.positions.push_back(i - dropped);
        group.parent.push_back(node);
      }
      node = it->second;
      path.push_back(node);
    }
    const int64_t first_target = total - n_continuation - dropped;  // index into the input
    auto& targets = group.targets.emplace_back();
    for (int64_t k = 0; k < n_continuation; ++k) {
      targets.emplace_back(path[first_target + k - 1], request.continuation[k]);
    }
  }
  return group;
}

// One forward pass over several packed groups, padded to the largest: fills `results`.
void score_batch(LlamaForCausalLM& model, const std::vector<const PackedGroup*>& batch,
                 std::vector<std::vector<LoglikelihoodResult>*> results, ScoreStats& stats) {
  const auto b = static_cast<int64_t>(batch.size());
  int64_t t = 0;
  for (const PackedGroup* g : batch) t = std::max(t, g->size());
  std::vector<int64_t> tokens(b * t, 0), positions(b * t, 0);
  std::vector<uint8_t> mask(b * t * t, 0);  // padding tokens see themselves only
  for (int64_t r = 0; r < b; ++r) {
    const PackedGroup& g = *batch[r];
    std::copy(g.tokens.begin(), g.tokens.end(), tokens.begin() + r * t);
    std::copy(g.positions.begin(), g.positions.end(), positions.begin() + r * t);
    uint8_t* rows = mask.data() + r * t * t;
    for (int64_t i = 0; i < t; ++i) {
      if (i >= g.size()) {
        rows[i * t + i] = 1;
        continue;
      }
      for (int64_t j = i; j >= 0; j = g.parent[j]) rows[i * t + j] = 1;
    }
  }
  const at::Device device = model->device();
  const TokenTree tree{at::from_blob(positions.data(), {b, t}, at::kLong).to(device),
                       at::from_blob(mask.data(), {b, 1, t, t}, at::kBool).to(device)};
  const at::Tensor input = at::from_blob(tokens.data(), {b, t}, at::kLong).to(device);
  const at::Tensor hidden = model->model->forward(input, tree).reshape({b * t, -1});

  // The LM head and softmax only at the scored nodes, each once however many requests use it.
  std::map<int64_t, int64_t> row_of;  // flat node index -> row of `scored`
  for (int64_t r = 0; r < b; ++r) {
    for (const auto& targets : batch[r]->targets) {
      for (const auto& [node, token] : targets) row_of.try_emplace(r * t + node, row_of.size());
    }
  }
  stats.padded_tokens += b * t;
  stats.scored_rows += static_cast<int64_t>(row_of.size());
  stats.forward_passes += 1;
  std::vector<int64_t> flat(row_of.size());
  for (const auto& [index, row] : row_of) flat[row] = index;
  const at::Tensor scored = hidden.index_select(
      0, at::from_blob(flat.data(), {static_cast<int64_t>(flat.size())}, at::kLong).to(device));
  constexpr int64_t kRowsPerChunk = 512;  // bounds the [rows, vocab] fp32 log-probabilities
  std::vector<at::Tensor> logp_chunks, argmax_chunks;
  for (int64_t c = 0; c < scored.size(0); c += kRowsPerChunk) {
    const at::Tensor logp =
        model->logits(scored.narrow(0, c, std::min(kRowsPerChunk, scored.size(0) - c)))
            .to(at::kFloat)
            .log_softmax(-1)
            .cpu();
    argmax_chunks.push_back(logp.argmax(-1));
    logp_chunks.push_back(logp);
  }
  for (int64_t r = 0; r < b; ++r) {
    auto& out = *results[r];
    out.clear();
    for (const auto& targets : batch[r]->targets) {
      LoglikelihoodResult result{0, true};
      for (const auto& [node, token] : targets) {
        const int64_t row = row_of.at(r * t + node);
        const at::Tensor& logp = logp_chunks[row / kRowsPerChunk];
        const int64_t i = row % kRowsPerChunk;
        result.logprob += logp.accessor<float, 2>()[i][token];
        result.greedy =
            result.greedy && argmax_chunks[row / kRowsPerChunk].accessor<int64_t, 1>()[i] == token;
      }
      out.push_back(result);
    }
  }
}

}  // namespace

std::vector<std::vector<LoglikelihoodResult>> score_requests(
    LlamaForCausalLM& model, const std::vector<std::vector<TokenizedRequest>>& groups,
    const ScoreOptions& options, ScoreStats* stats) {
  if (options.batch_tokens < 1 || options.batch_size < 1) {
    throw std::invalid_argument("batch_size and batch_tokens must be >= 1");
  }
  std::vector<PackedGroup> packed;
  packed.reserve(groups.size());
  for (const auto& group : groups) packed.push_back(pack_group(group, options.max_length));
  // Largest first, as lm-eval: memory trouble shows at once and the ETA only improves.
  std::vector<size_t> order(packed.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return packed[a].size() > packed[b].size(); });

  ScoreStats local_stats;
  ScoreStats& counts = stats ? *stats : local_stats;
  for (const PackedGroup& g : packed) counts.tree_tokens += g.size();

  c10::InferenceMode guard;
  model->eval();
  std::vector<std::vector<LoglikelihoodResult>> results(groups.size());
  int64_t done = 0;
  for (size_t next = 0; next < order.size();) {
    const int64_t width = packed[order[next]].size();  // the batch's widest group
    std::vector<const PackedGroup*> batch;
    std::vector<std::vector<LoglikelihoodResult>*> outputs;
    do {
      batch.push_back(&packed[order[next]]);
      outputs.push_back(&results[order[next]]);
      ++next;
    } while (next < order.size() && static_cast<int64_t>(batch.size()) < options.batch_size &&
             static_cast<int64_t>(batch.size() + 1) * width <= options.batch_tokens);
    score_batch(model, batch, outputs, counts);
    done += static_cast<int64_t>(batch.size());
    if (options.progress && !options.progress({"loglikelihood", done,
                                               static_cast<int64_t>(groups.size()), "docs", ""})) {
      throw std::runtime_error("scoring cancelled");
    }
  }
  return results;
}

}  // namespace ecomla
