#!/usr/bin/env bash
# Prefix-affinity routing against affinity-blind routing: one shared-prefix workload (G groups of
# requests sharing a long prompt prefix) sent through `troupe serve` with several replicas of one
# model, once per routing strategy, measured with `troupe bench`. Reports each strategy's
# prefix-cache hit rate (from /metrics: prompt tokens found in the cache over prompt tokens looked
# up) and its latencies.
#
#   deploy/bench/routing.sh [MODEL.gguf] [REPLICAS] [OUT_DIR]
#
# CLUSTER=1 runs the replicas as a cluster instead: a head node (gateway and router) and one
# `troupe node` process per replica, from a generated config on loopback ports.
#
# Environment: STRATEGIES (chwbl,round-robin,least-loaded), PREFIX_LEN (320), SUFFIX_LEN (32),
# NUM_PREFIXES (6), NUM_PROMPTS (240), OUTPUT_LEN (16), CONCURRENCY (12), THREADS (1 per replica),
# KV_MB (256: KV cache per replica; prefix affinity pays when one replica cannot cache every prefix).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:-$here/../shared/models/stories260K/stories260K.gguf}
replicas=${2:-3}
out=${3:-$(mktemp -d)}
troupe=${TROUPE:-$here/build/bin/troupe}
strategies=${STRATEGIES:-chwbl,round-robin,least-loaded}
port=18432
mkdir -p "$out"

metric() {  # sum of a metric's samples in /metrics
  curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'
}

echo "| strategy | prefix-cache hit rate | mean TTFT ms | p99 TTFT ms | mean E2E ms | output tok/s | failed |"
echo "|---|---|---|---|---|---|---|"
start_server() {  # strategy -> the pids to stop afterwards, in $pids
  local strategy=$1
  if [[ "${CLUSTER:-0}" != 1 ]]; then
    "$troupe" serve --model "bench=$model" --replicas "$replicas" --threads "${THREADS:-1}" --routing "$strategy" \
      --kv-mb "${KV_MB:-256}" --port "$port" 2>"$out/serve-$strategy.log" &
    pids=$!
    return
  fi
  local cfg="$out/cluster-$strategy.yaml"
  {
    echo "cluster: routing-bench"
    echo "routing: {strategy: $strategy}"
    echo "nodes:"
    echo "  - {name: head, host: 127.0.0.1, port: 18500, http_port: $port}"
    for r in $(seq 1 "$replicas"); do echo "  - {name: w$r, host: 127.0.0.1, port: $((18500 + r)), threads: ${THREADS:-1}}"; done
    echo "models:"
    echo "  - name: bench"
    echo "    path: $model"
    echo "    kv_cache_mb: ${KV_MB:-256}"
    echo "    replicas:"
    for r in $(seq 1 "$replicas"); do echo "      - node: w$r"; done
  } >"$cfg"
  pids=""
  for n in head $(seq -f "w%g" 1 "$replicas"); do
    "$troupe" node --config "$cfg" --name "$n" 2>"$out/node-$strategy-$n.log" &
    pids="$pids $!"
  done
}

for strategy in ${strategies//,/ }; do
  start_server "$strategy"
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.2; done
  "$troupe" bench --url "http://127.0.0.1:$port" --model bench --tokenizer "$model" --dataset shared-prefix \
    --prefix-len "${PREFIX_LEN:-320}" --suffix-len "${SUFFIX_LEN:-32}" --num-prefixes "${NUM_PREFIXES:-6}" \
    --num-prompts "${NUM_PROMPTS:-240}" --output-len "${OUTPUT_LEN:-16}" --max-concurrency "${CONCURRENCY:-12}" \
    --ignore-eos --temperature 0 --seed 1 --no-progress --json "$out/bench-$strategy.json" >"$out/bench-$strategy.txt"
  hits=$(metric troupe_prefix_cache_hits_total)
  queries=$(metric troupe_prefix_cache_queries_total)
  for pid in $pids; do kill -TERM "$pid"; done
  for pid in $pids; do wait "$pid" || true; done
  python3 - "$out/bench-$strategy.json" "$strategy" "$hits" "$queries" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
strategy, hits, queries = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rate = hits / queries if queries else 0.0
print(f"| {strategy} | {rate:.1%} | {run['mean_ttft_ms']:.1f} | {run['p99_ttft_ms']:.1f} | {run['mean_e2el_ms']:.1f} | "
      f"{run['output_throughput']:.0f} | {run['failed']} |")
PY
done
