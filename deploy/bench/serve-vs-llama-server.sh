#!/usr/bin/env bash
# One serving workload against `troupe serve` and llama.cpp's `llama-server` on the same GGUF file
# and thread count, measured with `troupe bench` (streaming, vLLM's metric names) at several client
# concurrencies. The servers run one at a time, in turn (troupe, llama.cpp, troupe, ...), and each
# figure is the median over the rounds.
#
#   deploy/bench/serve-vs-llama-server.sh MODEL.gguf [THREADS] [ROUNDS] [OUT_DIR]
#
# Needs llama.cpp's llama-server (built with CMake, -DGGML_NATIVE=ON); point LLAMA_SERVER at it.
# llama-server gets one slot per client at the highest concurrency (--parallel) and a context of
# 256 tokens per slot; both servers get ignore_eos so that every request generates OUTPUT_LEN tokens.
# Environment: INPUT_LEN (64), OUTPUT_LEN (64), NUM_PROMPTS (128), CONCURRENCY (1,4,16,64).
# Prints a Markdown table; the raw `troupe bench --json` files stay in OUT_DIR.
set -euo pipefail
model=${1:?usage: $0 MODEL.gguf [THREADS] [ROUNDS] [OUT_DIR]}
threads=${2:-2}
rounds=${3:-2}
out=${4:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/../.." && pwd)
troupe=${TROUPE:-$here/build/bin/troupe}
llama_server=${LLAMA_SERVER:?set LLAMA_SERVER to llama.cpp\'s llama-server binary}
input_len=${INPUT_LEN:-64} output_len=${OUTPUT_LEN:-64} num_prompts=${NUM_PROMPTS:-128}
concurrency=${CONCURRENCY:-1,4,16,64}
max_c=$(tr ',' '\n' <<<"$concurrency" | sort -n | tail -1)
port=18431
mkdir -p "$out"

wait_ready() {  # $1: URL that answers 200 once the model is loaded
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "server at $1 did not become ready" >&2
  return 1
}

run_bench() {  # $1: label, $2: round
  "$troupe" bench --url "http://127.0.0.1:$port" --model bench --tokenizer "$model" --dataset random \
    --input-len "$input_len" --output-len "$output_len" --num-prompts "$num_prompts" \
    --max-concurrency "$concurrency" --ignore-eos --temperature 0 --seed "$2" --no-progress \
    --json "$out/$1-$2.json" >"$out/$1-$2.txt"
}

for ((r = 1; r <= rounds; r++)); do
  "$troupe" serve --model "bench=$model" --threads "$threads" --port "$port" --max-num-seqs "$max_c" \
    2>"$out/troupe-serve-$r.log" &
  pid=$!
  wait_ready "http://127.0.0.1:$port/ready"
  run_bench troupe "$r"
  kill -TERM "$pid" && wait "$pid" || true

  "$llama_server" -m "$model" -t "$threads" --port "$port" --parallel "$max_c" -c $((max_c * 256)) \
    --alias bench >"$out/llama-server-$r.log" 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/health"
  run_bench llama-server "$r"
  kill -TERM "$pid" && wait "$pid" || true
done

python3 - "$out" "$rounds" "$model" "$threads" <<'PY'
import json, statistics, sys
out, rounds, model, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def runs(server):
    per_c = {}
    for r in range(1, rounds + 1):
        for run in json.load(open(f"{out}/{server}-{r}.json"))["runs"]:
            per_c.setdefault(run["max_concurrency"], []).append(run)
    return per_c
def med(rs, key):
    return statistics.median(x[key] for x in rs)
t, l = runs("troupe"), runs("llama-server")
print(f"model {model}, {threads} threads, median of {rounds} rounds\n")
print("| clients | server | output tok/s | req/s | mean TTFT ms | p99 TTFT ms | mean TPOT ms | p99 ITL ms | failed |")
print("|---|---|---|---|---|---|---|---|---|")
for c in sorted(t):
    for name, d in (("troupe", t), ("llama-server", l)):
        rs = d.get(c, [])
        if not rs:
            continue
        print(f"| {c} | {name} | {med(rs, 'output_throughput'):.0f} | {med(rs, 'request_throughput'):.1f} | "
              f"{med(rs, 'mean_ttft_ms'):.1f} | {med(rs, 'p99_ttft_ms'):.1f} | {med(rs, 'mean_tpot_ms'):.2f} | "
              f"{med(rs, 'p99_itl_ms'):.1f} | {sum(x['failed'] for x in rs)} |")
PY
