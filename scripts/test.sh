#!/usr/bin/env bash
# Installs what the tests need (scripts/setup/setup.sh), checks the formatting (rustfmt) and the
# lints (clippy, warnings as errors), builds strata and the llama.cpp tools the tests compare it
# with (scripts/setup/build_llama_tools.sh), then runs the whole test suite, then the tests of
# llama.cpp's own server suite that strata is expected to pass (scripts/compat/expected_pass.txt),
# then every fuzz target for 30 seconds (scripts/check/fuzz.sh; nightly toolchain and cargo-fuzz).
# Release mode, so llama.cpp (built by llama-cpp-sys-2) is compiled once for build, lints and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup/setup.sh
cargo fmt --all --check
cargo build --release
cargo clippy --workspace --all-targets --release -- -D warnings
bash scripts/setup/build_llama_tools.sh
cargo test --release --workspace
.venv/bin/python scripts/compat/llama_server_suite.py --check
bash scripts/check/fuzz.sh 30
