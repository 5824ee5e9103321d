#!/usr/bin/env bash
# strata bench beside llama.cpp's llama-bench on the same GGUF files, threads and tests
# (pp512, tg128, 5 repetitions), on an otherwise idle machine. Needs the reference kit:
#   bash ../shared/tools/reference-kit.sh .reference   (builds llama-bench from llama-cpp-python 0.3.36's llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
LB=.reference/llama.cpp/build/bin/llama-bench
[ -x "$LB" ] || { echo "missing $LB: run the reference kit first" >&2; exit 1; }
cargo build --release -q
for model in .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/gemma-3-270m-q4_k_m.gguf; do
  for t in ${THREADS:-2 1}; do
    echo "== $(basename "$model"), $t thread(s)"
    "$LB" -m "$model" -t "$t" -p 512 -n 128 -r 5 -o md 2>/dev/null | grep -E "pp512|tg128"
    ./target/release/strata bench "$model" -t "$t" -p 512 -n 128 -r 5 | grep -E "pp512|tg128|sample"
  done
done
