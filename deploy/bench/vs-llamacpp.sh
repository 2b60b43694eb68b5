#!/usr/bin/env bash
# Decode speed of troupe against llama.cpp on the same GGUF file and thread count, measured side by
# side: the two run in turn, A B A B ..., and each figure is the median of the runs.
#
#   deploy/bench/vs-llamacpp.sh MODEL.gguf [THREADS] [RUNS]
#
# Needs llama.cpp's llama-bench (built with CMake, -DGGML_NATIVE=ON); point LLAMA_BENCH at it.
# Prints one JSON object: troupe's and llama.cpp's decode tokens/s (tg64) and their ratio.
set -euo pipefail
model=${1:?usage: $0 MODEL.gguf [THREADS] [RUNS]}
threads=${2:-2}
runs=${3:-5}
here=$(cd "$(dirname "$0")/../.." && pwd)
troupe=${TROUPE:-$here/build/bin/troupe}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to llama.cpp\'s llama-bench binary}
gen=64

ours=() theirs=()
for ((i = 0; i < runs; i++)); do
  t=$("$troupe" bench-engine --model "$model" --threads "$threads" --prompt-tokens 16 --gen-tokens "$gen" \
        --batch 1 --no-bandwidth | python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_s"])')
  l=$("$llama_bench" -m "$model" -t "$threads" -p 0 -n "$gen" -r 1 -o json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])')
  ours+=("$t") theirs+=("$l")
done
python3 - "$model" "$threads" "${ours[*]}" "${theirs[*]}" <<'PY'
import json, statistics, sys
model, threads, ours, theirs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
o, t = [float(x) for x in ours], [float(x) for x in theirs]
print(json.dumps({"model": model, "threads": threads, "runs": len(o),
                  "troupe_decode_tok_s": round(statistics.median(o), 2),
                  "llamacpp_decode_tok_s": round(statistics.median(t), 2),
                  "ratio": round(statistics.median(a / b for a, b in zip(o, t)), 3),
                  "troupe_runs": o, "llamacpp_runs": t}))
PY
