#!/usr/bin/env bash
# Where Gemma 4 E2B's per-layer embedding table lives at run time, and what it costs: an
# E2B-shaped random checkpoint (scripts/fixtures/synthetic_checkpoint.py, Gemma 4 E2B's tensor shapes from
# tests/fixtures/gemma-4-e2b.manifest.json) converted by strata at q4_k_m with the table at q8_0
# and at q4_k, and at q8_0 with the table at q8_0; each run by `strata generate` and by llama.cpp's
# `llama-completion` (scripts/setup/build_llama_tools.sh; LLAMA_COMPLETION to run another) with the table read lazily (-lzm on) and loaded whole (off):
# CPU, THREADS (2) threads, -c 4096, a 512-token prompt, then 128 tokens (greedy, end of
# generation ignored). Peak RSS (strata: /proc/self/status; llama-completion: /usr/bin/time),
# strata's resident anonymous and file-backed memory at the end, prompt and generation t/s, and
# `strata plan`'s RAM for the same file. Then a cold start (page cache dropped, where allowed):
# seconds to the first token. Files go to .bench/ (about 25 GB); run on an idle machine.
#   bash scripts/bench/bench_ple_memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${THREADS:-2}
cargo build --release -q
LC=$(bash scripts/bench/peer_tool.sh completion)
S=./target/release/strata
B=.bench
mkdir -p $B
if [ ! -f $B/e2b-hf/model.safetensors ]; then
  .venv/bin/python scripts/fixtures/synthetic_checkpoint.py write tests/fixtures/gemma-4-e2b.manifest.json $B/e2b-hf.tmp
  mv $B/e2b-hf.tmp $B/e2b-hf
fi
python3 -c "
import random
random.seed(7)
w = 'the quick brown fox jumps over a lazy dog while seven wizards quietly judge every boxing match'.split()
print(' '.join(random.choice(w) for _ in range(505)))" >$B/prompt.txt
rows=()
# SPEED_ONLY=1: only the speed rounds below (on the file of an earlier run).
mixes=("q4_k_m q8_0" "q4_k_m q4_k" "q8_0 q8_0")
[ -n "${SPEED_ONLY:-}" ] && mixes=()
for mix in "${mixes[@]}"; do
  set -- $mix
  f=$B/e2b-$1-ple-$2.gguf
  [ -f "$f" ] || $S convert $B/e2b-hf -o "$f" --type "$1" --ple-type "$2" >/dev/null
  for lazy in on off; do
    planned=$($S plan "$f" --device laptop-cpu-16gb -c 4096 --lazy-mode $lazy --json 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(next(m['ram_bytes'] for m in d['mixes'] if m['body']=='$1' and m['ple']=='$(echo $2 | tr a-z A-Z)'))" 2>/dev/null || echo 0)
    s=$($S generate "$f" -f $B/prompt.txt -n 128 -c 4096 -t "$T" --temp 0 --ignore-eos --lazy-mode $lazy --json)
    rows+=("$(python3 -c "
import json, sys
d = json.loads(sys.argv[1]); m = d['memory']
print(f\"| $1 + PLE $2 | strata generate | {sys.argv[2]} | {m['peak_rss']/1e9:.2f} GB | {m['rss_anon']/1e9:.2f} / {m['rss_file']/1e9:.2f} GB | {d['prompt_tokens_per_second']:.1f} | {d['generation_tokens_per_second']:.2f} | {int(sys.argv[3])/1e9:.2f} GB |\")
" "$s" "$lazy" "$planned")")
    err=$( { /usr/bin/time -v env LD_LIBRARY_PATH="$(dirname "$LC")" "$LC" -m "$f" -f $B/prompt.txt -n 128 -c 4096 -t "$T" \
      --temp 0 --ignore-eos -lzm $lazy -no-cnv >/dev/null; } 2>&1 )
    rows+=("$(python3 -c "
import re, sys
e = sys.argv[1]
rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', e).group(1)) * 1024
pp = re.search(r'prompt eval time =.*?([\d.]+) tokens per second', e).group(1)
tg = re.search(r'\n.*?\beval time =.*?([\d.]+) tokens per second', e.split('prompt eval time')[1]).group(1)
print(f'| $1 + PLE $2 | llama-completion | {sys.argv[2]} | {rss/1e9:.2f} GB | – | {float(pp):.1f} | {float(tg):.2f} | |')
" "$err" "$lazy")")
  done
done
if [ ${#rows[@]} -gt 0 ]; then
  echo "| file | runner | lazy | peak RSS | anon / file at end | prompt t/s | gen t/s | plan RAM |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
fi
# Speed, the goal's configuration (q4_k_m, table at q8_0, lazy on), alternating ROUNDS (5) times.
f=$B/e2b-q4_k_m-ple-q8_0.gguf
speeds=()
for round in $(seq "${ROUNDS:-5}"); do
  s=$($S generate "$f" -f $B/prompt.txt -n 128 -c 4096 -t "$T" --temp 0 --ignore-eos --lazy-mode on --json)
  e=$( { LD_LIBRARY_PATH="$(dirname "$LC")" "$LC" -m "$f" -f $B/prompt.txt -n 128 -c 4096 -t "$T" --temp 0 --ignore-eos -lzm on -no-cnv >/dev/null; } 2>&1 )
  speeds+=("$(python3 -c "
import json, re, sys
d = json.loads(sys.argv[1]); e = sys.argv[2]
pp = float(re.search(r'prompt eval time =.*?([\d.]+) tokens per second', e).group(1))
tg = float(re.search(r'\n.*?\beval time =.*?([\d.]+) tokens per second', e.split('prompt eval time')[1]).group(1))
print(d['prompt_tokens_per_second'], d['generation_tokens_per_second'], pp, tg)
" "$s" "$e")")
done
printf '%s\n' "${speeds[@]}" | python3 -c "
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f'speed, q4_k_m + PLE q8_0, lazy on, {len(rows)} alternating rounds (medians): prompt strata {med(0):.1f} / llama-completion {med(2):.1f} t/s, '
      f'ratio {statistics.median(r[0] / r[2] for r in rows):.2f}; generation strata {med(1):.2f} / llama-completion {med(3):.2f} t/s, ratio {statistics.median(r[1] / r[3] for r in rows):.2f}')
"
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  for lazy in on off; do
    sync; echo 3 >/proc/sys/vm/drop_caches
    start=$(date +%s.%N)
    $S generate "$f" -p "Hello" -n 1 -c 4096 -t "$T" --temp 0 --lazy-mode $lazy >/dev/null
    echo "cold start, lazy $lazy: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s to load, read the prompt and give one token"
  done
else
  echo "cold start: the page cache cannot be dropped here (not root)"
fi
