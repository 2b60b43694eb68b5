#!/usr/bin/env bash
# Runs one fuzz harness for a bounded time on a copy of its committed corpus (the fuzzer writes new
# inputs into the corpus directory it is given), as ctest's `fuzz` tests do:
#   fuzz/run.sh BUILD/fuzz-build/bin/fuzz_gguf fuzz/corpus/gguf [SECONDS=20] [ARTIFACT_DIR] [GENERATED_DIR]
# GENERATED_DIR: the seeds fuzz_make_seeds wrote for this harness (BUILD/fuzz-build/corpus/gguf).
# Fails on a crash, a sanitizer report, a leak, a slow input (-timeout) or too much memory; the input
# that did it is kept in ARTIFACT_DIR (libFuzzer also prints it in base64 when it is small).
set -euo pipefail
bin=$1 corpus=$2 seconds=${3:-20} artifacts=${4:-$PWD/fuzz-artifacts} generated=${5:-}
# A fixed seed by default: a CI run is then a prefix of the same sequence of inputs that a longer local
# run with the same seed has already been through (TROUPE_FUZZ_SEED=0 asks libFuzzer for a random one).
seed=${TROUPE_FUZZ_SEED:-1}
if [ ! -x "$bin" ]; then
  echo "fuzz: $bin was not built (see the troupe_fuzz_build step of the build)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$artifacts"
[ -d "$corpus" ] && cp -r "$corpus"/. "$work/corpus/"
# The binary seeds the fuzz build writes (fuzz_make_seeds), when the harness has any.
[ -n "$generated" ] && [ -d "$generated" ] && cp -r "$generated"/. "$work/corpus/"
name=$(basename "$bin")
"$bin" -seed="$seed" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-" "$work/corpus"
