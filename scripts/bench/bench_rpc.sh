#!/usr/bin/env bash
# What splitting a model over RPC costs, on loopback: `strata bench` with every layer local
# (--no-repack, what a remote CPU backend runs), on one `strata rpc-server` and on two, beside
# llama.cpp's own llama-bench (--repack 0) with llama.cpp's own rpc-server the same ways (both
# built by scripts/setup/build_llama_tools.sh against strata's llama.cpp); then the bytes loopback carries per generated token (from /sys/class/net/lo, the
# difference between a 160- and a 32-token run, so that loading the weights cancels out).
# THREADS (1) threads for the client and each server; PP (512) prompt and TG (128) generated
# tokens, REPS (3) repetitions; TS (none) the two-server rows' tensor split, e.g. TS=25,47.
#   bash scripts/bench/bench_rpc.sh [MODEL.gguf]     (default: Gemma 3 270M from scripts/setup/setup.sh)
# Run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${THREADS:-1} PP=${PP:-512} TG=${TG:-128} R=${REPS:-3}
M=${1:-.models/gemma-3-270m-q4_k_m.gguf}
cargo build --release -q
bash scripts/setup/build_llama_tools.sh bench rpc-server
LB=.llama-tools/bin
S=./target/release/strata
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
serve() { # serve PORT COMMAND...: start an RPC server and wait until it listens
  local port=$1; shift
  "$@" > /dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
  echo "no server on port $port" >&2; exit 1
}
serve 50152 $S rpc-server -t "$T" --port 50152
serve 50153 $S rpc-server -t "$T" --port 50153
serve 50154 $LB/llama-rpc-server -t "$T" -p 50154
serve 50155 $LB/llama-rpc-server -t "$T" -p 50155
ours=("" "127.0.0.1:50152" "127.0.0.1:50152,127.0.0.1:50153")
theirs=("" "127.0.0.1:50154" "127.0.0.1:50154,127.0.0.1:50155")
split() { # split RPC SEPARATOR: "-ts TS" (TS's commas as SEPARATOR) for two servers, if TS is set
  [[ -n "${TS:-}" && "$1" == *,* ]] && echo "-ts ${TS//,/$2}"
  return 0
}
strata_tps() { # strata_tps RPC: "pp tg" tokens/s
  local rpc=(--no-repack)
  [ -n "$1" ] && rpc=(--rpc "$1" -ngl 99 $(split "$1" ,))
  $S bench "$M" -t "$T" -p "$PP" -n "$TG" -r "$R" "${rpc[@]}" --json 2> /dev/null \
    | python3 -c "import json, sys; t = {x['test']: x['tokens_per_second'] for x in json.load(sys.stdin)['tests']}; print(f\"{t['pp$PP']:.1f} {t['tg$TG']:.1f}\")"
}
llama_tps() {
  local rpc=(--repack 0)
  [ -n "$1" ] && rpc=(--repack 0 --rpc "$1" -ngl 99 $(split "$1" /))
  $LB/llama-bench -m "$M" -t "$T" -p "$PP" -n "$TG" -r "$R" "${rpc[@]}" -o json 2> /dev/null \
    | python3 -c "import json, sys; t = {x['n_prompt'] > 0: x['avg_ts'] for x in json.load(sys.stdin)}; print(f\"{t[True]:.1f} {t[False]:.1f}\")"
}
lo_bytes() { cat /sys/class/net/lo/statistics/tx_bytes; }
per_token() { # per_token DECODES CMD...: loopback bytes per generated token, from CMD -n 32 and
  # CMD -n 160; DECODES: how often CMD decodes its n tokens (strata bench's warm-up repeats the
  # test: 2; llama-bench's warm-up decodes one token: 1)
  local d=$1 a b c; shift
  a=$(lo_bytes); "$@" -n 32 > /dev/null 2>&1
  b=$(lo_bytes); "$@" -n 160 > /dev/null 2>&1
  c=$(lo_bytes)
  echo $(( ((c - b) - (b - a)) / (128 * d) ))
}
echo "$(basename "$M"), $T thread(s), loopback, $R repetition(s)${TS:+, two servers split $TS}"
echo "| RPC servers | strata pp$PP | llama-bench pp$PP | strata tg$TG | llama-bench tg$TG | strata bytes per token | llama-bench bytes per token |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in 0 1 2; do
  bytes=- lbytes=-
  if [ "$n" -gt 0 ]; then
    bytes=$(per_token 2 $S bench "$M" -t "$T" -p 0 -r 1 --rpc "${ours[$n]}" -ngl 99 $(split "${ours[$n]}" ,))
    lbytes=$(per_token 1 $LB/llama-bench -m "$M" -t "$T" -p 0 -r 1 --repack 0 --rpc "${theirs[$n]}" -ngl 99 $(split "${theirs[$n]}" /))
  fi
  read -r sp st <<< "$(strata_tps "${ours[$n]}")"
  read -r lp lt <<< "$(llama_tps "${theirs[$n]}")"
  echo "| $n | $sp | $lp | $st | $lt | $bytes | $lbytes |"
done
