#!/usr/bin/env bash
# The CUDA check, run on a machine with an NVIDIA GPU (nvcc, cmake, ninja, python3 with torch),
# from the repository root, with the folder .gpu/ that scripts/gpu/prepare.sh fills here (strata
# built with `--features cuda` against llama.cpp's shared libraries, llama-bench linked against
# them, llama-cpp-sys-2's llama.cpp sources, and Gemma 4 E2B's tensor manifest).
# It builds llama.cpp's shared libraries with CUDA for this GPU from those sources (the same
# version strata binds, so strata and llama-bench load them), then checks strata on the GPU:
# devices, logits of the gemma4 fixture offloaded against transformers', `-ngl auto` on an
# E2B-shaped random model (where the PLE table lives), and speed beside llama-bench.
# Everything it prints is also written to $OUT/gpu-check.log. About 4.5 minutes on an H200
# machine with 16 cores, 3 of them building.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
G=.gpu
S=$G/strata
T0=$(date +%s)
step() { echo; echo "== [$(($(date +%s) - T0)) s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv
nproc; nvcc --version | tail -1

step "E2B-shaped random checkpoint (BF16), written in the background while llama.cpp builds"
python3 scripts/fixtures/synthetic_checkpoint.py write $G/e2b.manifest.json /tmp/e2b >"$OUT/synthetic.log" 2>&1 &
SYNTH=$!

step "llama.cpp with CUDA (CUDA_ARCH, default 90-real: H100/H200): shared libraries"
# Flash attention's kernels compiled empty (GGML_CUDA_FA=OFF) to build in about 3 minutes on 16
# cores; strata and llama-bench run the same libraries, so the comparison stays even. AMX stays
# out as in .cargo/config.toml; NCCL and RDMA off as in strata's own build.
mkdir -p /tmp/l && tar xJf $G/llama.cpp.tar.xz -C /tmp/l
mkdir -p /tmp/l/llama.cpp/app && touch /tmp/l/llama.cpp/app/CMakeLists.txt  # not in the crate
export CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S /tmp/l/llama.cpp -B /tmp/l/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90-real}" -DGGML_CUDA_FA=OFF -DGGML_CUDA_NO_VMM=ON \
    -DGGML_CUDA_COMPRESSION_MODE=none -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DGGML_RPC=ON -DGGML_RPC_RDMA=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF >"$OUT/cmake.log" 2>&1 \
    || { tail -20 "$OUT/cmake.log"; exit 1; }
timeout "${BUILD_TIMEOUT:-390}" cmake --build /tmp/l/b -j"$(nproc)" --target llama llama-common ggml ggml-cuda ggml-rpc \
    >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 1; }
export LD_LIBRARY_PATH=/tmp/l/b/bin
ldd $S | grep -E "llama|ggml|not found"

step "strata devices"
$S devices

step "gemma4 fixture, F32, against transformers' logits: CPU, then all layers on the GPU"
$S convert tests/fixtures/models/gemma4 -o /tmp/g4.gguf --type f32 >/dev/null
for ngl in 0 99; do
    echo "-ngl $ngl: $($S perplexity /tmp/g4.gguf --kl-base tests/fixtures/models/gemma4/reference.logits --json -ngl $ngl)"
done

step "E2B-shaped checkpoint: conversion time and peak memory"
wait $SYNTH; cat "$OUT/synthetic.log"
$S plan gemma-4-e2b --device auto
python3 - "$S" <<'EOF'
import resource, subprocess, sys, time
for preset, extra in [("q4_k_m", []), ("q8_0", ["--ple-type", "q4_0"])]:
    t = time.time()
    subprocess.run([sys.argv[1], "convert", "/tmp/e2b", "-o", f"/tmp/e2b-{preset}.gguf", "--type", preset, *extra],
                   check=True, stdout=subprocess.DEVNULL)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"convert {preset} {' '.join(extra)}: {time.time() - t:.1f} s, peak RSS (largest so far) {rss:.2f} GiB")
EOF
ls -l /tmp/e2b-*.gguf

for f in /tmp/e2b-q4_k_m.gguf /tmp/e2b-q8_0.gguf; do
    step "$f: -ngl auto, placement"
    $S generate $f -p "The capital of France is" -n 8 --temp 0 -ngl auto -v 2>&1 | grep -E "^\[loaded|offloaded|model buffer|prefetch|KV buffer|error" | head -20
    step "$f: llama-bench (-ngl 99), then strata bench (GPU, -ngl auto)"
    $G/llama-bench -m $f -ngl 99 -r 3 -p 512 -n 128 2>/dev/null
    $S bench $f -ngl auto -r 3
done

step "partial offload: -ngl 10 on the Q4_K_M file"
$S generate /tmp/e2b-q4_k_m.gguf -p "Hello" -n 4 --temp 0 -ngl 10 -v 2>&1 | grep -E "^\[loaded|offloaded|model buffer" | head
step "done"
