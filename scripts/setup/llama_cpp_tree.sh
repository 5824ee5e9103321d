#!/usr/bin/env bash
# Prints the path of the llama.cpp tree strata links: the one inside the llama-cpp-sys-2 crate of
# the version Cargo.toml pins, in the cargo registry: the headers that
# scripts/setup/build_llama_tools.sh compiles llama.cpp's own tools against.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "scripts/setup/llama_cpp_tree.sh: $*" >&2; exit 1; }
version=$(sed -n 's/^llama-cpp-2 = .*"=\([0-9.]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || die "cannot read the llama-cpp-2 version from Cargo.toml"
tree=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$version"/llama.cpp 2>/dev/null | head -1)
[ -n "$tree" ] || die "llama-cpp-sys-2 $version is not in the cargo registry: run cargo build --release first"
echo "$tree"
