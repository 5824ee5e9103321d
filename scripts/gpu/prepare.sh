#!/usr/bin/env bash
# Fills .gpu/ here for scripts/gpu/gpu_check.sh on a GPU machine (under the device tool's 64 MiB):
#   strata             built with `--features cuda` by check_cuda_build.sh, linked against llama.cpp's
#                      shared libraries (the GPU machine builds its own for its GPU; same sonames)
#   llama-bench        llama.cpp's, linked here against the same libraries (objects from
#                      scripts/setup/build_llama_tools.sh bench)
#   llama.cpp.tar.xz   llama-cpp-sys-2's llama.cpp sources, without models, docs, tests and tools
#   e2b.manifest.json  tests/fixtures/gemma-4-e2b.manifest.json
# The libraries built here are not sent: nvcc from the PyPI wheels (13.5) writes PTX newer than
# a 580 driver can compile, so their kernels fail there ("CUDA error" at the first graph).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/gpu/check_cuda_build.sh 89
bash scripts/setup/build_llama_tools.sh bench
rm -rf .gpu && mkdir -p .gpu
cp target-cuda/release/strata .gpu/strata && strip .gpu/strata
lib=$(dirname "$(find target-cuda/release/build -name 'libllama.so' | head -n1)")
g++ .llama-tools/obj/bench/*.o .llama-tools/obj/common/*.o -o .gpu/llama-bench -L"$lib" \
    -lllama-common -lllama -lggml -lggml-base -fopenmp -lpthread -ldl -Wl,-rpath-link,"$PWD/.cuda/toolkit/lib"
src=$(dirname "$(bash scripts/setup/llama_cpp_tree.sh)")
tar cJf .gpu/llama.cpp.tar.xz -C "$src" --exclude=llama.cpp/models --exclude=llama.cpp/docs \
    --exclude=llama.cpp/tests --exclude=llama.cpp/examples --exclude=llama.cpp/tools llama.cpp
cp tests/fixtures/gemma-4-e2b.manifest.json .gpu/e2b.manifest.json
du -sh .gpu
echo "prepare: .gpu/ is ready; on the GPU machine: bash scripts/gpu/gpu_check.sh (carry .gpu)"
