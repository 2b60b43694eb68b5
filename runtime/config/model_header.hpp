#pragma once
// What `troupe serve --check` and `troupe node --check` read from a configured model's file without
// loading it: the hyper-parameters (heads, KV heads, layers) and the quantized block of the matrices a
// tensor-parallel split cuts, so a split or a KV cache that cannot work is refused before start.

#include <cstdint>
#include <string>

#include "runtime/config/serve_config.hpp"
#include "runtime/core/error.hpp"
#include "runtime/model/weights.hpp"

namespace troupe {

struct model_header {
  model_hparams hp;
  int block_elems = 1;  ///< elements per quantized block of attn_output / ffn_down (1: float types)
};

/// Opens m.path (an hf: path is pulled first; a GGUF file is mapped, its weights not read). Errors
/// read "ORIGIN: WHEREpath: model 'NAME': PROBLEM".
expected<model_header> read_model_header(const model_config& m, const std::string& origin, const std::string& where);

/// The bytes of one KV block of the largest shard of a tp x pp split (stage 0 takes the extra layers,
/// each tp rank its share of the KV heads); tp must divide the KV heads.
uint64_t kv_block_bytes(const model_hparams& hp, int tp = 1, int pp = 1);

}  // namespace troupe
