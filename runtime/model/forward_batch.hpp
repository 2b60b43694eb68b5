#pragma once
// One iteration batch for the forward pass: several sequences, each contributing a chunk of prompt
// (prefill, any length) or one new token (decode). The scheduler builds it; the model flattens it.

#include <cstdint>
#include <span>
#include <vector>

namespace troupe {

/// One sequence's part of an iteration batch.
struct seq_step {
  std::span<const int32_t> tokens;        ///< the tokens to run (a prompt chunk, or one decode token)
  int64_t start_pos = 0;                  ///< position of tokens[0]; positions before it are cached
  std::span<const int32_t> block_table;   ///< blocks covering [0, start_pos + tokens.size())
  bool want_logits = true;                ///< return the logits of the chunk's last token
};

/// The whole iteration batch.
struct forward_batch {
  std::vector<seq_step> seqs;

  int64_t n_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += static_cast<int64_t>(s.tokens.size());
    return n;
  }
  int64_t n_logits() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.want_logits ? 1 : 0;
    return n;
  }
};

}  // namespace troupe
