#!/usr/bin/env bash
# Measured quality of each quantization mix, the numbers behind `strata plan`'s KL column
# (models.toml [quality.*]). Two sets:
#  1. SmolLM2-135M-Instruct (the Hugging Face folder scripts/setup.sh exports from its Q4_1
#     GGUF): every body preset against strata's F16 conversion of the same folder, on a fixed
#     English text (Python's own documentation, pydoc_data.topics, the first 9000 characters of
#     its entries in sorted order), evaluated in one context: the KL divergence of each mix's
#     next-token distribution from F16's at every position, as llama-perplexity
#     --kl-divergence does. Caveat: the folder comes from a 4-bit GGUF, so requantizing lands near the
#     same grid and looks cheaper than it would from the original BF16 weights.
#  2. The per-layer embedding table alone, at F16, Q8_0, Q6_K and Q4_0 with the body at Q8_0,
#     on the tiny random Gemma 4 fixture, against transformers' float32 logits (75 tokens).
#     Caveat: random tables say little about real ones; this shows the mechanism, not a verdict.
# Prints one line per mix: model, body, PLE type, KL mean, KL max, top-1 agreement, perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
S=./target/release/strata
T=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build --release -q
python3 -c "
from pydoc_data.topics import topics
print(''.join(topics[k] for k in sorted(topics))[:9000])" > "$tmp/text.txt"

row() { # model body ple json
  python3 -c "import json,sys; r=json.loads(sys.argv[4]); print(f'{sys.argv[1]:14} {sys.argv[2]:7} {sys.argv[3]:5} kl_mean {r[\"kl_mean\"]:.6f} kl_max {r[\"kl_max\"]:.4f} top1 {r[\"top1_agreement\"]:.4f} ppl {r[\"ppl\"]:.3f} (base {r[\"base_ppl\"]:.3f})')" "$@"
}

HF=.models/SmolLM2-135M-Instruct-hf
$S convert "$HF" -o "$tmp/f16.gguf" --type f16 -t "$T" > /dev/null
$S perplexity "$tmp/f16.gguf" -f "$tmp/text.txt" -t "$T" --save-logits "$tmp/base.logits" > /dev/null
for body in q8_0 q6_k q5_k_m q4_k_m q4_0; do
  $S convert "$HF" -o "$tmp/$body.gguf" --type "$body" -t "$T" > /dev/null
  row smollm2-135m "$body" - "$($S perplexity "$tmp/$body.gguf" -t "$T" --kl-base "$tmp/base.logits" --json)"
  rm "$tmp/$body.gguf"
done

G4=tests/fixtures/models/gemma4
for ple in f16 q8_0 q6_k q4_0; do
  $S convert "$G4" -o "$tmp/g4.gguf" --type q8_0 --ple-type "$ple" -t "$T" > /dev/null
  row gemma4-fixture q8_0 "$ple" "$($S perplexity "$tmp/g4.gguf" --kl-base "$G4/reference.logits" -t "$T" --json)"
done
