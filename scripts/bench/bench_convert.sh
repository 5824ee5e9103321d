#!/usr/bin/env bash
# strata's one-pass conversion beside llama.cpp's two steps, on a Hugging Face folder (default
# SmolLM2-135M-Instruct's; .models/gemma-3-270m-hf for Gemma 3 270M, both made by
# scripts/setup/setup.sh; .bench/e2b-hf for the E2B-shaped random checkpoint that
# scripts/bench/bench_ple_memory.sh writes): `[PLE_TYPE=q8_0] scripts/bench/bench_convert.sh [HF_DIR]`.
# Time and peak memory of HF -> Q4_K_M and HF -> Q8_0 with strata; of llama.cpp's
# convert_hf_to_gguf.py (.llama-tools/llama.cpp) to F16 and to Q8_0 (when .llama-tools/venv has
# torch: bash scripts/setup/transformers_venv.sh) and of llama-quantize (scripts/setup/
# build_llama_tools.sh) F16 GGUF -> Q4_K_M; the two-step total against strata's one pass; then
# whether the Q4_K_M files' tensors are byte-identical. PLE_TYPE sets the per-layer embedding
# table's type on both sides (strata --ple-type, llama-quantize --tensor-type). Run it on an
# idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
LQ=.llama-tools/bin/llama-quantize
HF=${1:-.models/SmolLM2-135M-Instruct-hf}
T=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ple=() lq_ple=()
if [ -n "${PLE_TYPE:-}" ]; then
  ple=(--ple-type "$PLE_TYPE")
  lq_ple=(--tensor-type "per_layer_token_embd=$PLE_TYPE")
fi
cargo build --release -q
bash scripts/setup/build_llama_tools.sh quantize
./target/release/strata convert "$HF" -o "$tmp/f16.gguf" --type f16 > /dev/null
/usr/bin/time -o "$tmp/strata.time" -f "strata convert HF -> q4_k_m ${ple[*]}, $T threads: %e s, peak RSS %M KB" \
  ./target/release/strata convert "$HF" -o "$tmp/strata.gguf" --type q4_k_m "${ple[@]}" -t "$T" > /dev/null
cat "$tmp/strata.time"
/usr/bin/time -f "strata convert HF -> q8_0, $T threads: %e s, peak RSS %M KB" \
  ./target/release/strata convert "$HF" -o "$tmp/strata-q8.gguf" --type q8_0 -t "$T" > /dev/null
rm -f "$tmp/strata-q8.gguf"
PY=.llama-tools/venv/bin/python
if "$PY" -c "import torch" 2> /dev/null; then
  for outtype in f16 q8_0; do
    /usr/bin/time -o "$tmp/convert-$outtype.time" -f "convert_hf_to_gguf.py --outtype $outtype: %e s, peak RSS %M KB" \
      "$PY" .llama-tools/llama.cpp/convert_hf_to_gguf.py "$HF" --outtype "$outtype" --outfile "$tmp/llama-$outtype.gguf" > /dev/null 2> "$tmp/conv.log" \
      || { cat "$tmp/conv.log"; exit 1; }
    cat "$tmp/convert-$outtype.time"
    rm -f "$tmp/llama-$outtype.gguf"
  done
else
  echo "convert_hf_to_gguf.py not timed: .llama-tools/venv has no torch (bash scripts/setup/transformers_venv.sh)"
fi
/usr/bin/time -o "$tmp/lq.time" -f "llama-quantize F16 -> Q4_K_M ${lq_ple[*]}, $T threads: %e s, peak RSS %M KB" \
  "$LQ" "${lq_ple[@]}" "$tmp/f16.gguf" "$tmp/llama.gguf" Q4_K_M "$T" > /dev/null 2> "$tmp/lq.log" || { cat "$tmp/lq.log"; exit 1; }
cat "$tmp/lq.time"
secs() { sed -E 's/.*: ([0-9.]+) s,.*/\1/' "$1"; }
if [ -f "$tmp/convert-f16.time" ]; then
  python3 -c "import sys; c, q, s = map(float, sys.argv[1:]); print(f'HF -> Q4_K_M: llama.cpp two steps {c:.1f} + {q:.1f} = {c + q:.1f} s, strata {s:.1f} s: {(c + q) / s:.2f}x')" \
    "$(secs "$tmp/convert-f16.time")" "$(secs "$tmp/lq.time")" "$(secs "$tmp/strata.time")"
fi
.venv/bin/python - "$tmp/llama.gguf" "$tmp/strata.gguf" <<'PY'
import sys
from gguf import GGUFReader
a, b = ({t.name: t for t in GGUFReader(p).tensors} for p in sys.argv[1:])
same = [n for n in a if n in b and a[n].tensor_type == b[n].tensor_type and a[n].data.tobytes() == b[n].data.tobytes()]
print(f"{len(same)} of {len(a)} tensors byte-identical (types and data)")
PY
