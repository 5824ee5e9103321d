#!/usr/bin/env bash
# strata's one-pass conversion beside llama.cpp's llama-quantize, on SmolLM2-135M-Instruct's
# Hugging Face folder (made by scripts/setup.sh): time and peak memory of HF -> Q4_K_M with
# strata, and of F16 GGUF -> Q4_K_M with llama-quantize (the second of llama.cpp's two steps;
# its first, convert_hf_to_gguf.py, needs torch, which is not installed here), then whether the
# two files' tensors are byte-identical. Needs the reference kit (.reference, see bench_runner.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LQ=.reference/llama.cpp/build/bin/llama-quantize
HF=.models/SmolLM2-135M-Instruct-hf
T=${THREADS:-2}
tmp=$(mktemp -d)
cargo build --release -q
./target/release/strata convert "$HF" -o "$tmp/f16.gguf" --type f16 > /dev/null
/usr/bin/time -f "strata convert HF -> q4_k_m, $T threads: %e s, peak RSS %M KB" \
  ./target/release/strata convert "$HF" -o "$tmp/strata.gguf" --type q4_k_m -t "$T" > /dev/null
/usr/bin/time -f "llama-quantize F16 -> Q4_K_M, $T threads: %e s, peak RSS %M KB" \
  "$LQ" "$tmp/f16.gguf" "$tmp/llama.gguf" Q4_K_M "$T" > /dev/null 2> "$tmp/lq.log" || { cat "$tmp/lq.log"; exit 1; }
tail -1 "$tmp/lq.log"
.venv/bin/python - "$tmp/llama.gguf" "$tmp/strata.gguf" <<'PY'
import sys
from gguf import GGUFReader
a, b = ({t.name: t for t in GGUFReader(p).tensors} for p in sys.argv[1:])
same = [n for n in a if n in b and a[n].tensor_type == b[n].tensor_type and a[n].data.tobytes() == b[n].data.tobytes()]
print(f"{len(same)} of {len(a)} tensors byte-identical (types and data)")
PY
rm -rf "$tmp"
