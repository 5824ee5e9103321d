#!/usr/bin/env bash
# Builds strata with `--features cuda` on a machine without a GPU or a CUDA install, and checks
# that the result starts and says it finds no CUDA device instead of crashing. Not part of CI
# (it compiles ggml's CUDA kernels: long on few cores). Usage:
#   bash scripts/gpu/check_cuda_build.sh [CUDA_ARCH]      # default 89 (RTX 40); writes target-cuda/
#
# The toolkit comes from NVIDIA's CUDA 13 wheels on PyPI, assembled into .cuda/toolkit:
#   nvidia-cuda-nvcc (nvcc, cudafe++, ptxas, nvlink), nvidia-nvvm (cicc, libdevice), nvidia-cuda-crt
#   (crt/ headers),
#   nvidia-cuda-runtime (cudart, headers), nvidia-cublas, nvidia-cuda-cccl (thrust/cub/libcu++
#   headers, which nvcc.profile finds under include/cccl).
# The wheels have no static cuBLAS and no libcuda (the driver), which llama-cpp-sys-2's static
# CUDA link names, so this build links llama.cpp as shared libraries (LLAMA_BUILD_SHARED_LIBS=1)
# and without the driver API (llama-cpp-2's `cuda-no-vmm`: ggml then allocates through cudart,
# which finds the driver at run time). A release build for a GPU machine needs the full CUDA
# toolkit and `cargo build --release --features cuda` as the README says.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-89}
T=.cuda/toolkit
if [ ! -x "$T/bin/nvcc" ]; then
    echo "check_cuda_build: assembling a CUDA toolkit from PyPI wheels into $T"
    rm -rf .cuda && mkdir -p .cuda/wheels "$T"
    python3 -m pip download -q --disable-pip-version-check --no-deps -d .cuda/wheels \
        nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime nvidia-cublas nvidia-cuda-cccl
    for w in .cuda/wheels/*.whl; do python3 -m zipfile -e "$w" .cuda/x; done
    cp -a .cuda/x/nvidia/cu13/. "$T/"
    # Unversioned names for the linker, and lib64 where CMake's FindCUDAToolkit looks.
    for lib in "$T"/lib/lib*.so.*; do ln -sf "$(basename "$lib")" "${lib%%.so.*}.so"; done
    ln -sfn lib "$T/lib64"
    chmod +x "$T"/bin/* "$T"/nvvm/bin/* 2>/dev/null || true
    rm -rf .cuda/x
fi
export CUDA_PATH=$PWD/$T CUDAToolkit_ROOT=$PWD/$T PATH=$PWD/$T/bin:$PATH
export LD_LIBRARY_PATH=$PWD/$T/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvcc --version | tail -2
# A configure step that failed leaves a CMake cache the cmake crate then takes as done.
for b in target-cuda/release/build/llama-cpp-sys-2-*/out/build; do
    [ -d "$b" ] && [ ! -f "$b/Makefile" ] && rm -rf "$b"
done
start=$(date +%s)
CMAKE_CUDA_ARCHITECTURES=$ARCH CMAKE_CUDA_COMPILER=$PWD/$T/bin/nvcc LLAMA_BUILD_SHARED_LIBS=1 \
    cargo build --release --target-dir target-cuda --features cuda,llama-cpp-2/cuda-no-vmm
echo "check_cuda_build: built in $(( $(date +%s) - start )) s for sm_$ARCH"
lib=$(dirname "$(find target-cuda/release/build -name 'libggml-cuda.so*' | head -n1)")
export LD_LIBRARY_PATH=$PWD/$lib:$LD_LIBRARY_PATH
ldd target-cuda/release/strata | grep -E 'ggml|llama|cuda|cublas' || true
set +e
out=$(target-cuda/release/strata devices 2>&1); status=$?
set -e
echo "$out"
[ $status -eq 0 ] || { echo "check_cuda_build: strata devices exited $status" >&2; exit 1; }
echo "$out" | grep -q 'CUDA' || { echo "check_cuda_build: the build reports no CUDA backend" >&2; exit 1; }
echo "check_cuda_build: ok (strata devices ran; no CUDA device on this machine)"
