#!/usr/bin/env bash
# Builds llama.cpp's llama-bench against the very llama.cpp that strata links (the tree inside
# the llama-cpp-sys-2 crate), so that `strata bench` and this llama-bench differ only in the
# binding. That tree ships llama-bench's README but not its source, so the source comes from the
# reference kit's llama.cpp (llama-cpp-python 0.3.36's, ggml 0.25.3; the crate's is ggml
# 0.26.0), whose llama-bench.cpp builds against the newer tree unchanged. Release, native CPU,
# OpenMP, static, as llama-cpp-sys-2 builds it for strata. Prints the binary's path; use it as
#   LLAMA_BENCH=$(bash scripts/build_llama_bench.sh) bash scripts/bench_runner.sh
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "scripts/build_llama_bench.sh: $*" >&2; exit 1; }
src=$(bash scripts/llama_cpp_tree.sh)
version=${src%/llama.cpp} version=${version##*llama-cpp-sys-2-}
ref=.reference/llama.cpp/tools/llama-bench
[ -f "$ref/llama-bench.cpp" ] || die "$ref/llama-bench.cpp is missing: run ../shared/tools/reference-kit.sh .reference"
out=.reference/llama-bench-sys-$version
rm -rf "$out"
cp -r "$src" "$out"
cp "$ref"/* "$out/tools/llama-bench/"
echo 'add_subdirectory(llama-bench)' >"$out/tools/CMakeLists.txt"
cmake -S "$out" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$out/build" --target llama-bench -j"$(nproc)" >&2
echo "$out/build/bin/llama-bench"
