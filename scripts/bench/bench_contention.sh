#!/usr/bin/env bash
# Generation speed (tg128, SmolLM2) when another process keeps one core busy: 2 threads with
# llama.cpp's OpenMP threads spinning while they wait (the default) or sleeping
# (OMP_WAIT_POLICY=PASSIVE), and 1 thread, for strata and llama.cpp's llama-bench alike; idle
# rows for reference. llama-bench as in scripts/bench/bench_runner.sh (LLAMA_BENCH to run another).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
LB=$(bash scripts/bench/peer_tool.sh bench)
model=.models/SmolLM2-135M-Instruct.Q4_1.gguf
tg() { # tool, wait policy, threads -> tokens/s
  local policy=(env -u OMP_WAIT_POLICY)
  [ "$2" = passive ] && policy=(env OMP_WAIT_POLICY=PASSIVE)
  if [ "$1" = strata ]; then
    "${policy[@]}" ./target/release/strata bench "$model" -t "$3" -p 0 -n 128 -r 5 --json | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["tests"][0]["tokens_per_second"])'
  else
    "${policy[@]}" "$LB" -m "$model" -t "$3" -p 0 -n 128 -r 5 -o json 2>/dev/null | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)[0]["avg_ts"])'
  fi
}
echo "| neighbour | threads | wait policy | llama-bench t/s | strata t/s |"
echo "|---|---:|---|---:|---:|"
for neighbour in idle busy; do
  pid=
  if [ "$neighbour" = busy ]; then
    python3 -c 'while True: pass' &
    pid=$!
  fi
  for run in "2 spin" "2 passive" "1 spin"; do
    set -- $run
    echo "| $neighbour | $1 | $2 | $(tg llama-bench "$2" "$1") | $(tg strata "$2" "$1") |"
  done
  [ -n "$pid" ] && kill "$pid"
done
