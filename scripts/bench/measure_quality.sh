#!/usr/bin/env bash
# Measured quality of each quantization mix, the numbers behind `strata plan`'s KL column
# (models.toml [quality.*]). Two sets:
#  1. SmolLM2-135M-Instruct and Gemma 3 270M (the Hugging Face folders scripts/setup/setup.sh exports
#     from their 4-bit GGUFs): every quantized preset, without and with an importance matrix,
#     against strata's F16 conversion of the same folder, on a fixed English text (Python's own
#     documentation, pydoc_data.topics: its entries in sorted order, the first 9000 characters
#     for SmolLM2, 3000 for Gemma, whose 262144-entry vocabulary makes the saved logits 1 MiB a
#     token), evaluated in one context: the KL divergence of each mix's next-token distribution
#     from F16's at every position, as llama-perplexity --kl-divergence does. The imatrix is
#     `strata imatrix` of the F16 file over held-out text (characters 30000 to 50000 of the same
#     topics, in chunks of 512 tokens). Beside each file, llama-quantize (scripts/setup/
#     build_llama_tools.sh) quantizes the same F16 file with the same imatrix; the row says
#     whether its tensors are byte-identical to strata's, and if not, measures its file too.
#     Caveat: the folders come from 4-bit GGUFs, so requantizing lands near the same grid and
#     looks cheaper than it would from BF16 weights.
#  2. The per-layer embedding table alone, at F16, Q8_0, Q6_K and Q4_0 with the body at Q8_0,
#     on the tiny random Gemma 4 and Gemma 3n fixtures, against transformers' float32 logits
#     (for Gemma 3n, transformers with llama.cpp's n-1 variance; see tests/convert_fixtures.rs).
#     Caveat: random tables say little about real ones; this shows the mechanism, not a verdict.
# Prints one line per mix: model, body (+imatrix), PLE type, KL mean, KL max, top-1 agreement,
# perplexity, and (set 1) whether llama-quantize's file holds the same tensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=./target/release/strata
T=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build --release -q
bash scripts/setup/build_llama_tools.sh quantize
LQ=.llama-tools/bin/llama-quantize
text() { # FROM TO: characters FROM..TO of Python's documentation topics
  python3 -c "import sys; from pydoc_data.topics import topics; print(''.join(topics[k] for k in sorted(topics))[int(sys.argv[1]):int(sys.argv[2])])" "$1" "$2"
}
same_tensors() { # A.gguf B.gguf: "same" if both hold the same tensors (names, types, bytes)
  .venv/bin/python - "$1" "$2" <<'PY'
import sys
from gguf import GGUFReader
a, b = ({t.name: (t.tensor_type, t.data.tobytes()) for t in GGUFReader(p).tensors} for p in sys.argv[1:3])
print("same" if a == b else "DIFFERENT")
PY
}

row() { # model body ple json
  python3 -c "import json,sys; r=json.loads(sys.argv[4]); print(f'{sys.argv[1]:14} {sys.argv[2]:15} {sys.argv[3]:5} kl_mean {r[\"kl_mean\"]:.6f} kl_max {r[\"kl_max\"]:.4f} top1 {r[\"top1_agreement\"]:.4f} ppl {r[\"ppl\"]:.3f} (base {r[\"base_ppl\"]:.3f})')" "$@"
}

presets_vs_f16() { # NAME HF_DIR CHARS
  text 0 "$3" > "$tmp/text-$1.txt"
  text 30000 50000 > "$tmp/calibration.txt"
  $S convert "$2" -o "$tmp/f16.gguf" --type f16 -t "$T" > /dev/null
  $S perplexity "$tmp/f16.gguf" -f "$tmp/text-$1.txt" -t "$T" --save-logits "$tmp/base.logits" > /dev/null
  $S imatrix "$tmp/f16.gguf" -f "$tmp/calibration.txt" -t "$T" -o "$tmp/imatrix.gguf" > /dev/null 2>&1
  for body in q8_0 q6_k q5_k_m q5_k_s q5_1 q5_0 q4_k_m q4_k_s q4_1 q4_0 iq4_xs iq4_nl q3_k_l q3_k_m q3_k_s q2_k q2_k_s; do
    for with in "" "--imatrix $tmp/imatrix.gguf"; do
      [ "$body" = q2_k_s ] && [ -z "$with" ] && continue  # refused without an imatrix
      label=$body${with:++imatrix}
      # shellcheck disable=SC2086
      $S convert "$2" -o "$tmp/ours.gguf" --type "$body" $with -t "$T" > /dev/null
      # shellcheck disable=SC2086
      $LQ $with "$tmp/f16.gguf" "$tmp/theirs.gguf" "$body" "$T" > /dev/null 2>&1
      same=$(same_tensors "$tmp/ours.gguf" "$tmp/theirs.gguf")
      echo "$(row "$1" "$label" - "$($S perplexity "$tmp/ours.gguf" -t "$T" --kl-base "$tmp/base.logits" --json)") llama-quantize: $same"
      if [ "$same" != same ]; then
        row "$1" "$label(llama-quantize)" - "$($S perplexity "$tmp/theirs.gguf" -t "$T" --kl-base "$tmp/base.logits" --json)"
      fi
      rm "$tmp/ours.gguf" "$tmp/theirs.gguf"
    done
  done
  rm "$tmp/base.logits" "$tmp/f16.gguf" "$tmp/imatrix.gguf"
}
# PLE_ONLY=1: only the PLE-type rows on the fixtures (seconds, not minutes).
if [ -z "${PLE_ONLY:-}" ]; then
  presets_vs_f16 smollm2-135m .models/SmolLM2-135M-Instruct-hf 9000
  presets_vs_f16 gemma-3-270m .models/gemma-3-270m-hf 3000
fi

ple_types() { # NAME FIXTURE BASE_LOGITS
  # Q4_K and Q2_K need rows in 256s: Gemma 3n's fixture table has them (2 layers x 256),
  # Gemma 4's (6 x 16) does not, and falls back (to Q5_0 and Q4_0).
  for ple in f16 q8_0 q6_k q4_k q4_0 q2_k; do
    $S convert "$2" -o "$tmp/ple.gguf" --type q8_0 --ple-type "$ple" -t "$T" > /dev/null
    row "$1" q8_0 "$ple" "$($S perplexity "$tmp/ple.gguf" --kl-base "$2/$3" -t "$T" --json)"
  done
}
ple_types gemma4-fixture tests/fixtures/models/gemma4 reference.logits
ple_types gemma3n-fixture tests/fixtures/models/gemma3n reference-unbiased-std.logits
