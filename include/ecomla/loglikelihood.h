// Batched log-likelihood scoring with the definitions of lm-evaluation-harness's HFLM
// (lm_eval/api/model.py _encode_pair, models/huggingface.py _loglikelihood_tokens):
// - trailing spaces of the context move to the continuation; the continuation's tokens are the
//   tail of encode(context + continuation) after encode(context) (no BOS is added);
// - an empty context is replaced by the prefix token (BOS, else EOS);
// - sequences longer than max_length + 1 tokens lose tokens from the left;
// - greedy = every continuation token is the argmax of its logits.
//
// The requests of one group (the choices of one question) are packed into one prefix tree, so a
// shared context is computed once (TokenTree, layers.h); groups are sorted by size to cut
// padding and batched up to a token budget; the LM head runs only where a token is scored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ecomla/model.h"
#include "ecomla/progress.h"
#include "ecomla/tokenizer.h"

namespace ecomla {

struct TokenizedRequest {
  std::vector<int32_t> context, continuation;  // continuation not empty
};

struct LoglikelihoodResult {
  double logprob = 0;   // sum over the continuation tokens, nats
  bool greedy = false;  // every continuation token was the most likely one
};

// lm-eval's _encode_pair (with the empty-context rule of loglikelihood()).
TokenizedRequest encode_request(const Tokenizer& tokenizer, const std::string& context,
                                const std::string& continuation, int32_t prefix_token);

// lm-eval's get_rolling_token_windows + make_disjoint_window with context_len 1: the document's
// tokens as disjoint windows of at most max_length predicted tokens, the first conditioned on
// the prefix token, each later one on the windows's previous token.
std::vector<TokenizedRequest> rolling_windows(const std::vector<int32_t>& tokens,
                                              int32_t prefix_token, int64_t max_length);

struct ScoreOptions {
  int64_t max_length = 2048;    // the model's context window, as lm-eval's max_length
  int64_t batch_size = 64;      // groups (documents) per forward pass, at most
  int64_t batch_tokens = 2048;  // packed tokens (padding included) per forward pass, at most
  ProgressCallback progress;    // units: groups
};

// What a scoring run computed.
struct ScoreStats {
  int64_t tree_tokens = 0;    // tokens run through the model after prefix sharing
  int64_t padded_tokens = 0;  // including the padding of each batch
  int64_t scored_rows = 0;    // positions that went through the LM head
  int64_t forward_passes = 0;
};

// Scores every request; results[g][r] belongs to groups[g][r]. Runs in the weights' dtype.
std::vector<std::vector<LoglikelihoodResult>> score_requests(
    LlamaForCausalLM& model, const std::vector<std::vector<TokenizedRequest>>& groups,
    const ScoreOptions& options, ScoreStats* stats = nullptr);

}  // namespace ecomla
