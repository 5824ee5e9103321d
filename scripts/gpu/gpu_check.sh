#!/usr/bin/env bash
# The CUDA check, run on a machine with an NVIDIA GPU (nvcc, cmake, ninja, python3 with torch),
# from the repository root, with a prepared folder .gpu/ holding:
#   strata                 strata built here with `--features llama-cpp-2/dynamic-link` (so the
#                          llama.cpp libraries it loads are the CUDA ones built below)
#   llama.cpp.tar.xz       the llama.cpp sources of llama-cpp-sys-2 (the same version strata binds)
#   e2b.manifest.json      `scripts/fixtures/synthetic_checkpoint.py manifest` of Gemma 4 E2B's text config
# It builds llama.cpp's libraries and llama-bench with CUDA, then checks strata on the GPU:
# devices, logits of the gemma4 fixture offloaded against transformers', `-ngl auto` on an
# E2B-shaped random model (where the PLE table lives), and speed beside llama-bench.
# Everything it prints is also written to $OUT/gpu-check.log.
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

step "llama.cpp with CUDA (sm_90), shared libraries and llama-bench"
mkdir -p /tmp/l && tar xJf $G/llama.cpp.tar.xz -C /tmp/l
cmake -S /tmp/l/llama.cpp -B /tmp/l/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
timeout "${BUILD_TIMEOUT:-320}" cmake --build /tmp/l/b -j"$(nproc)" --target llama-bench >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
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
    step "$f: strata bench (GPU, -ngl auto) beside llama-bench (-ngl 99)"
    $S bench $f -ngl auto -r 3
    /tmp/l/b/bin/llama-bench -m $f -ngl 99 -r 3 -p 512 -n 128 2>/dev/null
done

step "partial offload: -ngl 10 on the Q4_K_M file"
$S generate /tmp/e2b-q4_k_m.gguf -p "Hello" -n 4 --temp 0 -ngl 10 -v 2>&1 | grep -E "^\[loaded|offloaded|model buffer" | head
step "done"
