#!/usr/bin/env bash
# strata serve beside llama.cpp's llama-server (built by scripts/setup/build_llama_tools.sh against
# strata's own llama.cpp libraries; LLAMA_SERVER to run another) on the same model, threads, context
# and slots, alternating for ROUNDS rounds (default 3) on an otherwise idle machine; prints the
# median of each measure and of the per-round ratios (scripts/bench/bench_serve.py says what each is):
# aggregate generation t/s at 1 and 4 concurrent 128-token streams, time to first token of a
# 512-token prompt and of the follow-up turn that hits the cache.
#   bash scripts/bench/bench_serve.sh [MODEL.gguf]     (default: Gemma 3 270M; THREADS=2, ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-.models/gemma-3-270m-q4_k_m.gguf}
cargo build --release -q
LS=$(bash scripts/bench/peer_tool.sh server)
T=${THREADS:-2}
# A model without a chat template: llama-server falls back to chatml, so strata is given it too.
template=()
./target/release/strata inspect "$MODEL" --json | grep -q '"tokenizer.chat_template"' || template=(--chat-template chatml)
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$out"' EXIT
. scripts/bench/wait_ready.sh
for round in $(seq "${ROUNDS:-3}"); do
  ./target/release/strata serve "$MODEL" "${template[@]}" --port 8391 -t "$T" -c 4096 -np 4 2>"$out/strata.log" & pid=$!
  wait_ready 8391
  python3 scripts/bench/bench_serve.py http://127.0.0.1:8391 >"$out/strata-$round.json"
  kill $pid; wait $pid 2>/dev/null || true
  LD_LIBRARY_PATH=$(dirname "$LS") "$LS" -m "$MODEL" --port 8392 -t "$T" -c 4096 -np 4 --no-webui 2>"$out/llama.log" & pid=$!
  wait_ready 8392
  python3 scripts/bench/bench_serve.py http://127.0.0.1:8392 >"$out/llama-$round.json"
  kill $pid; wait $pid 2>/dev/null || true
  pid=
done
python3 - "$out" "$T" <<'PY'
import json, pathlib, statistics, sys
d, threads = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = {side: [json.loads(f.read_text()) for f in sorted(d.glob(f"{side}-*.json"))] for side in ("strata", "llama")}
print(f"| measure ({threads} threads) | llama-server | strata serve | strata / llama-server (median of rounds) |")
print("|---|---:|---:|---:|")
for key, better in [("tg1", "higher"), ("tg4", "higher"), ("ttft_prompt", "lower"), ("ttft_followup", "lower")]:
    s = [r[key] for r in runs["strata"]]
    l = [r[key] for r in runs["llama"]]
    # A ratio above 1 is strata doing better: speed over speed, time under time.
    ratios = [a / b if better == "higher" else b / a for a, b in zip(s, l)]
    unit = "t/s" if better == "higher" else "s"
    print(f"| {key} ({better} is better) | {statistics.median(l):.3f} {unit} | {statistics.median(s):.3f} {unit} | {statistics.median(ratios):.2f} |")
PY
