#include "runtime/serving/scheduler_policy.hpp"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "runtime/core/log.hpp"

namespace troupe {

const char* to_string(finish_kind k) noexcept {
  switch (k) {
    case finish_kind::none: return "";
    case finish_kind::stop: return "stop";
    case finish_kind::length: return "length";
    case finish_kind::cancelled: return "cancelled";
    case finish_kind::error: return "error";
  }
  return "unknown";
}

struct scheduler_policy::sequence {
  serving_request req;
  uint64_t arrival = 0;
  std::vector<int32_t> tokens;      ///< prompt + generated
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  int64_t n_computed = 0;           ///< leading tokens whose KV is in this sequence's blocks
  int64_t n_cached_prompt = 0;      ///< from the prefix cache on first admission
  bool admitted = false;            ///< has run at least once (usage counts the first admission)
  bool running = false;
  bool on_shard = false;            ///< the shards hold a sampler for it (sent new_sequence)
  request_id fork_parent = 0;       ///< a fork child not admitted yet: the request it will share the prompt of
  std::optional<stream_decoder> decoder;
  std::string held;                 ///< text not released yet: it may be the start of a stop string
  size_t max_stop = 0;              ///< longest stop string, bytes
};

scheduler_policy::scheduler_policy(const scheduler_config& cfg, const kv_block_manager_config& kv,
                                   const tokenizer* tok)
    : cfg_(cfg), tok_(tok), blocks_(kv) {
  const int64_t cache_tokens = blocks_.config().n_blocks * blocks_.config().block_size;
  max_len_ = cfg_.max_model_len > 0 ? std::min(cfg_.max_model_len, cache_tokens) : cache_tokens;
  if (cfg_.max_num_seqs <= 0) cfg_.max_num_seqs = 1;
  if (cfg_.max_num_batched_tokens <= 0) cfg_.max_num_batched_tokens = 1;
}

scheduler_policy::~scheduler_policy() = default;

bool scheduler_policy::before(const sequence& a, const sequence& b) {
  if (a.req.priority != b.req.priority) return a.req.priority < b.req.priority;
  return a.arrival < b.arrival;
}

void scheduler_policy::insert_waiting(sequence* s) {
  s->running = false;
  auto pos = std::upper_bound(waiting_.begin(), waiting_.end(), s,
                              [](const sequence* a, const sequence* b) { return before(*a, *b); });
  waiting_.insert(pos, s);
}

void scheduler_policy::insert_running(sequence* s) {
  s->running = true;
  auto pos = std::upper_bound(running_.begin(), running_.end(), s,
                              [](const sequence* a, const sequence* b) { return before(*a, *b); });
  running_.insert(pos, s);
}

token_event scheduler_policy::make_event(const sequence& s) const {
  token_event ev;
  ev.id = s.req.id;
  ev.usage.prompt_tokens = s.n_prompt;
  ev.usage.completion_tokens = s.n_generated;
  ev.usage.cached_prompt_tokens = s.n_cached_prompt;
  return ev;
}

std::optional<token_event> scheduler_policy::add(serving_request r) {
  auto reject = [&](errc code, const std::string& why) {
    token_event ev;
    ev.id = r.id;
    ev.finish = finish_kind::error;
    ev.error = error(code, "request " + std::to_string(r.id) + ": " + why).what();
    ev.usage.prompt_tokens = static_cast<int64_t>(r.prompt.size());
    return std::optional<token_event>(std::move(ev));
  };
  if (seqs_.count(r.id)) return reject(errc::invalid_argument, "a request with this id is already queued");
  if (r.prompt.empty()) return reject(errc::invalid_argument, "the prompt has no tokens");
  if (r.max_tokens <= 0) return reject(errc::invalid_argument, "max_tokens must be at least 1");
  if (auto st = r.params.validate(); !st) return reject(st.error().code(), st.error().message());
  if (!r.stop.empty() && !tok_) return reject(errc::invalid_argument, "stop strings need a tokenizer");
  for (const auto& s : r.stop)
    if (s.empty()) return reject(errc::invalid_argument, "a stop string is empty");
  const int64_t n = static_cast<int64_t>(r.prompt.size());
  if (n >= max_len_) {
    const int64_t cache_tokens = blocks_.config().n_blocks * blocks_.config().block_size;
    const bool by_cache = cfg_.max_model_len <= 0 || cache_tokens < cfg_.max_model_len;
    return reject(by_cache ? errc::no_kv_blocks : errc::context_overflow,
                  "the prompt has " + std::to_string(n) + " tokens; at most " + std::to_string(max_len_ - 1) +
                      " fit (" + (by_cache ? "the whole KV cache holds " + std::to_string(cache_tokens) + " tokens"
                                           : "max_model_len is " + std::to_string(cfg_.max_model_len)) + ")");
  }
  auto s = std::make_unique<sequence>();
  s->arrival = next_arrival_++;
  s->tokens = r.prompt;
  s->n_prompt = n;
  for (const auto& stop : r.stop) s->max_stop = std::max(s->max_stop, stop.size());
  if (tok_) s->decoder.emplace(*tok_, /*at_start=*/false);  // a continuation keeps its leading space
  if (r.fork_of != 0)
    if (auto p = seqs_.find(r.fork_of); p != seqs_.end() && p->second->req.prompt == r.prompt) s->fork_parent = r.fork_of;
  s->req = std::move(r);
  sequence* raw = s.get();
  seqs_.emplace(raw->req.id, std::move(s));
  insert_waiting(raw);
  return std::nullopt;
}

std::optional<token_event> scheduler_policy::cancel(request_id id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return std::nullopt;
  sequence& s = *it->second;
  token_event ev = make_event(s);
  ev.finish = finish_kind::cancelled;
  flush_text(s, ev);
  retire(id);
  return ev;
}

void scheduler_policy::retire(request_id id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  sequence* s = it->second.get();
  blocks_.free(id);
  auto& list = s->running ? running_ : waiting_;
  list.erase(std::remove(list.begin(), list.end(), s), list.end());
  if (s->on_shard) released_.push_back(id);
  seqs_.erase(it);
}

void scheduler_policy::preempt(size_t running_index) {
  sequence* s = running_[running_index];
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(running_index));
  blocks_.free(s->req.id);
  s->n_computed = 0;  // recompute prompt + generated tokens (the prefix cache may give some back)
  insert_waiting(s);
  ++preemptions_;
}

seq_plan scheduler_policy::plan_for(sequence& s, int64_t n) {
  seq_plan p;
  p.id = s.req.id;
  p.start_pos = s.n_computed;
  p.tokens.assign(s.tokens.begin() + s.n_computed, s.tokens.begin() + s.n_computed + n);
  auto table = blocks_.table(s.req.id);
  p.block_table.assign(table.begin(), table.end());
  p.sample = s.n_computed + n == static_cast<int64_t>(s.tokens.size());
  if (!s.on_shard) {
    p.new_sequence = true;
    p.params = s.req.params;
    p.prompt = s.req.prompt;
    s.on_shard = true;
  }
  return p;
}

step_plan scheduler_policy::schedule() {
  step_plan plan;
  plan.step = next_step_++;
  plan.released = std::move(released_);
  released_.clear();
  int64_t budget = cfg_.max_num_batched_tokens;
  const bool chunked = cfg_.enable_chunked_prefill;
  std::unordered_set<const sequence*> scheduled;
  bool preempted = false;

  // Running sequences: decodes first (one token each), then prompt chunks in progress.
  for (int pass = 0; pass < 2; ++pass) {
    const bool decode_pass = pass == 0;
    for (size_t i = 0; i < running_.size() && budget > 0;) {
      sequence* s = running_[i];
      const int64_t remaining = static_cast<int64_t>(s->tokens.size()) - s->n_computed;
      if (scheduled.count(s) || (remaining == 1) != decode_pass) {
        ++i;
        continue;
      }
      int64_t n = remaining;
      if (n > budget) {
        if (chunked) n = budget;
        else if (budget < cfg_.max_num_batched_tokens) { ++i; continue; }  // whole, alone, next step
      }
      bool ok = false;
      for (;;) {
        if (blocks_.append_slots(s->req.id, s->n_computed, s->n_computed + n, plan.copies)) {
          ok = true;
          break;
        }
        // No room: preempt the last running sequence after this one not yet in the plan.
        size_t victim = running_.size();
        for (size_t j = running_.size(); j-- > i + 1;)
          if (!scheduled.count(running_[j])) { victim = j; break; }
        if (victim == running_.size()) break;
        preempt(victim);
        preempted = true;
      }
      if (!ok) {
        if (decode_pass) {  // nothing after it to take from: it gives way itself
          preempt(i);
          preempted = true;
        } else {
          ++i;  // a prompt chunk waits for decodes to finish and free blocks
        }
        continue;
      }
      plan.seqs.push_back(plan_for(*s, n));
      scheduled.insert(s);
      budget -= n;
      ++i;
    }
  }

  // Waiting requests, in (priority, arrival) order; none when this step had to preempt. A fork
  // child whose parent's prompt is still being computed is passed over: it holds nobody back.
  for (size_t i = 0; !preempted && i < waiting_.size() && budget > 0 &&
                     static_cast<int64_t>(running_.size()) < cfg_.max_num_seqs;) {
    sequence* s = waiting_[i];
    if (s->fork_parent) {
      auto p = seqs_.find(s->fork_parent);
      if (p == seqs_.end()) {
        s->fork_parent = 0;  // the parent ended before sharing: compute the prompt as any request does
      } else if (!p->second->running || p->second->n_computed < s->n_prompt - 1) {
        ++i;
        continue;
      } else {
        if (!admit_fork(i, *p->second, plan)) break;  // no room: later requests wait too
        --budget;
        continue;
      }
    }
    const auto root = kv_block_manager::salt_root(s->req.cache_salt);
    const int64_t cached = blocks_.cached_prefix(s->tokens, root);
    int64_t n = static_cast<int64_t>(s->tokens.size()) - cached;
    if (n > budget) {
      if (chunked) n = budget;
      else if (budget < cfg_.max_num_batched_tokens) break;
    }
    auto got = blocks_.allocate(s->req.id, s->tokens, cached + n, root);
    if (!got) break;  // no room: later requests wait too (no overtaking)
    s->n_computed = *got;
    if (!s->admitted) {
      s->admitted = true;
      s->n_cached_prompt = std::min(*got, s->n_prompt);
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    insert_running(s);
    plan.seqs.push_back(plan_for(*s, n));
    budget -= n;
  }
  return plan;
}

bool scheduler_policy::admit_fork(size_t i, sequence& parent, step_plan& plan) {
  sequence& s = *waiting_[i];
  // The parent computed these positions in earlier steps (its writes in this step start at its
  // n_computed), so the child reads finished KV; its own last prompt token gives it logits.
  const int64_t shared = s.n_prompt - 1;
  if (auto st = blocks_.fork(parent.req.id, s.req.id, shared); !st) {
    // Cannot happen while a running parent's table covers its n_computed positions; should it,
    // the child computes its prompt itself from the next step on.
    spdlog::warn("scheduler: request {} computes its prompt itself: {}", s.req.id, st.error().what());
    s.fork_parent = 0;
    return false;
  }
  if (!blocks_.append_slots(s.req.id, shared, s.n_prompt, plan.copies)) {
    blocks_.free(s.req.id);
    return false;
  }
  s.fork_parent = 0;  // shared once: after a preemption it recomputes like any other sequence
  s.n_computed = shared;
  if (!s.admitted) {
    s.admitted = true;
    s.n_cached_prompt = shared;
  }
  waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  insert_running(&s);
  plan.seqs.push_back(plan_for(s, 1));
  return true;
}

std::vector<token_event> scheduler_policy::update(const step_plan& plan, const step_result& result) {
  std::vector<token_event> events;
  if (!result.error.empty()) {  // the step failed: its sequences end with the error, others go on
    for (const auto& sp : plan.seqs) {
      auto it = seqs_.find(sp.id);
      if (it == seqs_.end() || !it->second->running) continue;
      token_event ev = make_event(*it->second);
      ev.finish = finish_kind::error;
      ev.error = "step " + std::to_string(plan.step) + " failed: " + result.error;
      events.push_back(std::move(ev));
      retire(sp.id);
    }
    return events;
  }
  size_t next_out = 0;
  for (const auto& sp : plan.seqs) {
    const seq_output* out = nullptr;
    if (sp.sample) {  // outputs come in plan order; look further if a shard skipped one
      for (size_t k = next_out; k < result.outputs.size(); ++k)
        if (result.outputs[k].id == sp.id) {
          out = &result.outputs[k];
          next_out = k + 1;
          break;
        }
    }
    auto it = seqs_.find(sp.id);
    if (it == seqs_.end()) continue;  // cancelled while the step ran
    sequence& s = *it->second;
    if (!s.running || s.n_computed != sp.start_pos) continue;  // not this plan's state any more
    s.n_computed = sp.start_pos + static_cast<int64_t>(sp.tokens.size());
    blocks_.cache_full_blocks(s.req.id, s.tokens, s.n_computed);
    if (!sp.sample) continue;
    token_event ev = make_event(s);
    if (!out) {
      ev.finish = finish_kind::error;
      ev.error = "step " + std::to_string(plan.step) + ": the shard returned no token for this sequence";
    } else {
      on_sample(s, out->sample, ev);
    }
    const bool done = ev.finish != finish_kind::none;
    events.push_back(std::move(ev));
    if (done) retire(sp.id);
  }
  return events;
}

void scheduler_policy::on_sample(sequence& s, const sample_result& r, token_event& ev) {
  s.tokens.push_back(r.token);
  ++s.n_generated;
  ev.token = r.token;
  ev.logprob = r.logprob;
  ev.top = r.top;
  ev.usage.completion_tokens = s.n_generated;
  const auto& ids = s.req.params.stop_token_ids;
  bool is_stop = r.is_stop || std::find(ids.begin(), ids.end(), r.token) != ids.end();
  if (!is_stop && !s.req.ignore_eos && tok_) {
    const auto& eos = tok_->stop_ids();
    is_stop = std::find(eos.begin(), eos.end(), r.token) != eos.end();
  }
  if (is_stop) {
    ev.token_is_stop = true;
    ev.finish = finish_kind::stop;
    flush_text(s, ev);
    return;
  }
  if (tok_ && on_text(s, s.decoder->push(r.token), ev)) {
    ev.finish = finish_kind::stop;
    return;
  }
  if (s.n_generated >= s.req.max_tokens || static_cast<int64_t>(s.tokens.size()) >= max_len_) {
    ev.finish = finish_kind::length;
    flush_text(s, ev);
  }
}

bool scheduler_policy::on_text(sequence& s, const std::string& delta, token_event& ev) {
  s.held += delta;
  size_t best = std::string::npos;
  for (const auto& stop : s.req.stop) best = std::min(best, s.held.find(stop));
  if (best != std::string::npos) {
    ev.text += s.held.substr(0, best);
    s.held.clear();
    return true;
  }
  // Keep back what could still become the start of a stop string, never splitting a UTF-8 char.
  const size_t keep = s.max_stop > 0 ? s.max_stop - 1 : 0;
  if (s.held.size() > keep) {
    size_t cut = s.held.size() - keep;
    while (cut > 0 && cut < s.held.size() && (static_cast<unsigned char>(s.held[cut]) & 0xC0) == 0x80) --cut;
    ev.text += s.held.substr(0, cut);
    s.held.erase(0, cut);
  }
  return false;
}

void scheduler_policy::flush_text(sequence& s, token_event& ev) {
  if (s.decoder) s.held += s.decoder->flush();
  ev.text += s.held;
  s.held.clear();
}

scheduler_stats scheduler_policy::stats() const {
  scheduler_stats st;
  st.waiting = static_cast<int64_t>(waiting_.size());
  st.running = static_cast<int64_t>(running_.size());
  st.preemptions = preemptions_;
  st.steps = static_cast<int64_t>(next_step_);
  st.kv = blocks_.stats();
  return st;
}

}  // namespace troupe
