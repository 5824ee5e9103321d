#!/usr/bin/env bash
# strata bench beside llama.cpp's llama-bench on the same GGUF files, threads and tests
# (pp512, tg128, 5 repetitions each), on an otherwise idle machine. The two alternate for ROUNDS
# rounds (default 3) so that drift in the machine's speed hits both; the table gives each
# side's mean t/s over all rounds and the median of the per-round ratios. llama-bench is the one
# scripts/setup/build_llama_tools.sh links with strata's own llama.cpp libraries (built here when
# missing), so the two differ only in the binding; LLAMA_BENCH=path/to/llama-bench runs another.
#   bash scripts/bench/bench_runner.sh     (THREADS="2 1", ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
LB=$(bash scripts/bench/peer_tool.sh bench)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for model in .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/gemma-3-270m-q4_k_m.gguf; do
  for t in ${THREADS:-2 1}; do
    for round in $(seq "${ROUNDS:-3}"); do
      "$LB" -m "$model" -t "$t" -p 512 -n 128 -r 5 -o json 2>/dev/null >"$out/lb-$(basename "$model")-$t-$round.json"
      ./target/release/strata bench "$model" -t "$t" -p 512 -n 128 -r 5 --json >"$out/strata-$(basename "$model")-$t-$round.json"
    done
  done
done
python3 - "$out" <<'EOF'
import json, pathlib, statistics, sys
runs = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    side, rest = f.stem.split("-", 1)
    model, threads, round_ = rest.rsplit("-", 2)
    doc = json.loads(f.read_text())
    if side == "lb":
        speeds = {("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"]): r["avg_ts"] for r in doc}
    else:
        speeds = {r["test"]: r["tokens_per_second"] for r in doc["tests"]}
    for test, ts in speeds.items():
        runs.setdefault((model, int(threads), test), {}).setdefault(side, {})[round_] = ts
print("| model | threads | test | llama-bench t/s | strata t/s | strata / llama-bench (median of rounds) | range |")
print("|---|---:|---|---:|---:|---:|---|")
for (model, threads, test), sides in sorted(runs.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
    lb, st = sides["lb"], sides["strata"]
    ratios = [st[r] / lb[r] for r in sorted(lb)]
    print(f"| {model} | {threads} | {test} | {statistics.mean(lb.values()):.1f} | {statistics.mean(st.values()):.1f} "
          f"| {statistics.median(ratios):.2f} | {min(ratios):.2f}–{max(ratios):.2f} |")
EOF
