#pragma once
// The scheduling policy of one model replica: iteration-level continuous batching (vLLM's design).
// Plain host code, no actors: the scheduler actor calls
//
//   add(request) / cancel(id)                 whenever requests come and go
//   plan = schedule()                          builds one iteration for the shards
//   events = update(plan, result)              consumes what the shards sampled
//
// strictly in that cycle (one step in flight at a time: a cancel frees blocks at once, which is
// only safe because the next plan is built after the current result came back).
//
// Each step: running sequences first (decodes, then prompt chunks still in progress), then waiting
// requests in (priority, arrival) order, under max_num_seqs and a token budget; long prompts are
// split into chunks so decodes keep flowing. When the KV cache has no room, the running sequence
// that comes last in (priority, arrival) order is preempted: its blocks are freed and it goes back
// to waiting, to be recomputed from its prompt plus the tokens generated so far. Its sampler stays
// on the shard (no new_sequence, no release), so the tokens it produces are the same as without
// preemption.
//
// Parallel sampling (n > 1): the caller adds n requests with their own ids (and seeds), the first
// as usual and the others with fork_of naming it. Such a fork child waits while its parent
// prefills; once the parent has computed every prompt position but the last, the child shares
// the parent's prompt blocks (kv_block_manager::fork) and runs only the last prompt token itself,
// so it samples its first token from its own logits. A write into a block another sequence still
// holds copies it first (block_copy in the plan). A fork whose parent is not here (another
// replica, already ended, a different prompt) runs as an ordinary request, and so does a child
// after a preemption: placement and timing never change what a choice generates.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/sampling/sampler.hpp"
#include "runtime/serving/kv_block_manager.hpp"
#include "runtime/serving/step_plan.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

/// Settings of a scheduler_policy.
struct scheduler_config {
  int64_t max_num_seqs = 64;             ///< sequences running at once
  int64_t max_num_batched_tokens = 512;  ///< tokens per step (the token budget)
  bool enable_chunked_prefill = true;    ///< split prompts across steps to fit the budget
  int64_t max_model_len = 0;             ///< context limit: the model's context length (required)
};

/// One generation request as the scheduler sees it (already tokenized).
struct serving_request {
  request_id id = 0;
  std::vector<int32_t> prompt;       ///< prompt token ids (BOS included if the model wants it)
  sampling_params params;            ///< params.stop_token_ids end the sequence too
  int32_t max_tokens = 16;           ///< most tokens to generate
  std::vector<std::string> stop;     ///< stop strings (matched on the detokenized text)
  bool ignore_eos = false;           ///< do not stop at the tokenizer's EOS / end-of-turn ids
  int32_t priority = 0;              ///< lower runs first; ties by arrival
  request_id fork_of = 0;            ///< non-zero: another choice of that request (same prompt): share its prompt's KV
  std::string cache_salt;            ///< vLLM's cache_salt: prefix-cache hits only among requests with the same salt
};

/// Why a sequence ended; to_string gives the OpenAI finish_reason.
enum class finish_kind { none, stop, length, cancelled, error };
const char* to_string(finish_kind k) noexcept;

/// Token counts of one request (OpenAI `usage`).
struct usage_counts {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;       ///< sampled tokens, a final stop token included
  int64_t cached_prompt_tokens = 0;    ///< prompt tokens not computed on admission: from the prefix cache, or shared by a fork
};

/// What the scheduler tells a request's stream: a sampled token and/or the end.
struct token_event {
  request_id id = 0;
  int32_t token = -1;                ///< the sampled id; -1 when the event carries no token
  bool token_is_stop = false;        ///< token is an EOS/stop id: not part of the output
  std::string text;                  ///< text released by this event (stop strings cut off)
  float logprob = 0.0f;              ///< raw log-probability of token
  std::vector<token_logprob> top;    ///< top log-probabilities when asked for
  finish_kind finish = finish_kind::none;
  std::string error;                 ///< with finish_kind::error: why
  usage_counts usage;                ///< counts so far (final on the finishing event)
};

/// Counters for /metrics.
struct scheduler_stats {
  std::string model;         ///< the model the replica serves (filled in by the router)
  std::string replica;       ///< the replica's id (router)
  bool up = true;            ///< the router routes to it (router: healthy, heartbeats answered)
  int64_t routed = 0;        ///< requests the router sent to it since it joined (router, retries included)
  int64_t waiting = 0;       ///< queue depth
  int64_t running = 0;
  int64_t preemptions = 0;   ///< total since start
  int64_t steps = 0;
  kv_block_stats kv;

  /// Adds another replica's figures (the model name, the replica fields stay).
  scheduler_stats& operator+=(const scheduler_stats& o) noexcept {
    waiting += o.waiting;
    running += o.running;
    preemptions += o.preemptions;
    steps += o.steps;
    kv += o.kv;
    return *this;
  }
};

class scheduler_policy {
 public:
  /// tok may be null: then no text is produced and stop strings are refused.
  scheduler_policy(const scheduler_config& cfg, const kv_block_manager_config& kv, const tokenizer* tok);
  ~scheduler_policy();
  scheduler_policy(const scheduler_policy&) = delete;
  scheduler_policy& operator=(const scheduler_policy&) = delete;

  /// Queues a request. nullopt: queued. Otherwise the request can never run (empty prompt, longer
  /// than the context or than the whole KV cache, bad params, duplicate id): an error event.
  std::optional<token_event> add(serving_request r);

  /// Ends a request at once and frees its blocks: its cancelled event, or nothing if unknown.
  std::optional<token_event> cancel(request_id id);

  /// Builds the next iteration (its seqs may be empty when nothing can run).
  step_plan schedule();

  /// Takes the shards' result for `plan`: appends tokens, fills the prefix cache, detects the end
  /// of sequences (and frees their blocks). Returns the events in plan order.
  std::vector<token_event> update(const step_plan& plan, const step_result& result);

  /// Whether any request is waiting or running.
  bool has_work() const noexcept { return !waiting_.empty() || !running_.empty(); }
  /// The longest sequence a request may reach (max_model_len, capped by the KV cache size).
  int64_t max_len() const noexcept { return max_len_; }
  const kv_block_manager& blocks() const noexcept { return blocks_; }
  scheduler_stats stats() const;

 private:
  struct sequence;
  using seq_ptr = std::unique_ptr<sequence>;

  /// (priority, arrival) order: a before b.
  static bool before(const sequence& a, const sequence& b);
  void insert_waiting(sequence* s);
  void insert_running(sequence* s);
  /// Frees seq's blocks and puts it back to waiting for recompute.
  void preempt(size_t running_index);
  /// Admits the fork child at index i of waiting_: shares parent's blocks for all prompt positions
  /// but the last and plans that last token. false: not admitted this step (no room).
  bool admit_fork(size_t i, sequence& parent, step_plan& plan);
  /// A seq_plan for s covering its next n tokens.
  seq_plan plan_for(sequence& s, int64_t n);
  /// Appends a sampled token, detects the end; fills ev.
  void on_sample(sequence& s, const sample_result& r, token_event& ev);
  /// Text of a new token run through the stop strings; returns true when a stop string ended it.
  bool on_text(sequence& s, const std::string& delta, token_event& ev);
  /// Releases the text still held back (end of sequence).
  void flush_text(sequence& s, token_event& ev);
  /// Frees a finished sequence's blocks and drops it.
  void retire(request_id id);
  token_event make_event(const sequence& s) const;

  scheduler_config cfg_;
  const tokenizer* tok_;
  kv_block_manager blocks_;
  int64_t max_len_ = 0;
  uint64_t next_arrival_ = 0;
  uint64_t next_step_ = 0;
  std::unordered_map<request_id, seq_ptr> seqs_;  ///< every live sequence, owner
  std::vector<sequence*> waiting_;                 ///< sorted by (priority, arrival)
  std::vector<sequence*> running_;                 ///< sorted by (priority, arrival)
  std::vector<request_id> released_;               ///< ended since the last plan, known to shards
  int64_t preemptions_ = 0;
};

}  // namespace troupe
