#!/usr/bin/env bash
# How often a greedy answer of strata serve differs between the request alone and the same
# request 4 at a time (llama.cpp's batched matmuls can change low bits of the logits with the
# batch's size). N questions (default 48) of 48 tokens on each real model, -np 4.
#   bash scripts/bench/serve_batch_invariance.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null' EXIT
for model in .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/gemma-3-270m-q4_k_m.gguf; do
  ./target/release/strata serve "$model" --port 8393 -t 2 -c 4096 -np 4 2>/dev/null & pid=$!
  for _ in $(seq 600); do curl -sf http://127.0.0.1:8393/health >/dev/null && break; sleep 0.2; done
  echo "$(basename "$model"): $(python3 scripts/bench/bench_serve.py http://127.0.0.1:8393 --same-as-alone "${1:-48}")"
  kill $pid; wait $pid 2>/dev/null || true
  pid=
done
