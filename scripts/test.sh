#!/usr/bin/env bash
# Installs what the tests need (scripts/setup.sh), then runs the whole test suite, then every
# fuzz target for 30 seconds (scripts/fuzz.sh; nightly toolchain and cargo-fuzz).
# Release mode, so llama.cpp (built by llama-cpp-sys-2) is compiled once for build and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release --workspace
bash scripts/fuzz.sh 30
