#!/usr/bin/env bash
# strata's one-pass conversion beside llama.cpp's two steps, on a Hugging Face folder (default
# SmolLM2-135M-Instruct's; .models/gemma-3-270m-hf for Gemma 3 270M; both made by
# scripts/setup.sh): `scripts/bench_convert.sh [HF_DIR]`. Time and peak memory of HF -> Q4_K_M and HF -> Q8_0
# with strata; of convert_hf_to_gguf.py to F16 and to Q8_0 (when the reference venv has torch:
# .reference/venv/bin/pip install torch) and of llama-quantize F16 GGUF -> Q4_K_M; then whether
# the Q4_K_M files' tensors are byte-identical. Needs the reference kit (.reference, see
# bench_runner.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LQ=.reference/llama.cpp/build/bin/llama-quantize
HF=${1:-.models/SmolLM2-135M-Instruct-hf}
T=${THREADS:-2}
tmp=$(mktemp -d)
cargo build --release -q
./target/release/strata convert "$HF" -o "$tmp/f16.gguf" --type f16 > /dev/null
/usr/bin/time -f "strata convert HF -> q4_k_m, $T threads: %e s, peak RSS %M KB" \
  ./target/release/strata convert "$HF" -o "$tmp/strata.gguf" --type q4_k_m -t "$T" > /dev/null
/usr/bin/time -f "strata convert HF -> q8_0, $T threads: %e s, peak RSS %M KB" \
  ./target/release/strata convert "$HF" -o "$tmp/strata-q8.gguf" --type q8_0 -t "$T" > /dev/null
PY=.reference/venv/bin/python
if "$PY" -c "import torch" 2> /dev/null; then
  for outtype in f16 q8_0; do
    /usr/bin/time -f "convert_hf_to_gguf.py --outtype $outtype: %e s, peak RSS %M KB" \
      "$PY" .reference/llama.cpp/convert_hf_to_gguf.py "$HF" --outtype "$outtype" --outfile "$tmp/llama-$outtype.gguf" > /dev/null 2> "$tmp/conv.log" \
      || { cat "$tmp/conv.log"; exit 1; }
    tail -1 "$tmp/conv.log"
  done
else
  echo "convert_hf_to_gguf.py not timed: .reference/venv has no torch"
fi
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
