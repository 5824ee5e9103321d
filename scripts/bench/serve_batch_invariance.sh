#!/usr/bin/env bash
# How often a greedy answer differs between the request alone and the same request 4 at a time,
# for strata serve and llama-server (llama.cpp's, linked with the same llama.cpp) in one run.
# llama.cpp's CPU kernels round a batch's rows otherwise than a single row, so an answer can
# change at its first near-tie. N questions (default 48) of 48 tokens, -np 4 -c 4096 -t 2, ROUNDS
# rounds (default 3) on each real model; a model without a chat template gets chatml in both.
#   bash scripts/bench/serve_batch_invariance.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-48}
ROUNDS=${ROUNDS:-3}
cargo build --release -q
LS=$(bash scripts/bench/peer_tool.sh server)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null' EXIT
differ() { # differ COMMAND...: starts a server on port 8393, prints how many of N answers differ
  "$@" --port 8393 -t 2 -c 4096 -np 4 >/dev/null 2>&1 & pid=$!
  for _ in $(seq 600); do curl -sf http://127.0.0.1:8393/health >/dev/null && break; sleep 0.2; done
  python3 scripts/bench/bench_serve.py http://127.0.0.1:8393 --same-as-alone "$N" | python3 -c 'import json,sys; print(json.load(sys.stdin)["differ"])'
  kill $pid; wait $pid 2>/dev/null || true
  pid=
}
echo "| model | round | strata serve | llama-server |"
echo "|---|---:|---:|---:|"
for model in .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/gemma-3-270m-q4_k_m.gguf; do
  template=()
  ./target/release/strata inspect "$model" --json | grep -q '"tokenizer.chat_template"' || template=(--chat-template chatml)
  for round in $(seq "$ROUNDS"); do
    s=$(differ ./target/release/strata serve "$model" "${template[@]}")
    l=$(differ "$LS" -m "$model" "${template[@]}")
    echo "| $(basename "$model") | $round | $s of $N | $l of $N |"
  done
done
