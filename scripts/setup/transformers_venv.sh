#!/usr/bin/env bash
# Makes .llama-tools/venv, the Python that runs transformers and llama.cpp's own converter:
# torch, torchvision and pillow (Gemma 4's image processor), transformers, sentencepiece,
# protobuf, jinja2, numpy and gguf from PyPI (several GB with torch's CUDA wheels; minutes). Only the fixture generators (scripts/fixtures/make_fixtures.py,
# gen_template_fixtures.py) and scripts/bench/bench_convert.sh's timing of convert_hf_to_gguf.py
# need it, never the tests. The converter is .llama-tools/llama.cpp/convert_hf_to_gguf.py
# (scripts/setup/setup.sh unpacks it), which reads GGUF through its own gguf-py. Skips what is
# there; prints the Python's path:
#   "$(bash scripts/setup/transformers_venv.sh)" scripts/fixtures/make_fixtures.py
set -euo pipefail
cd "$(dirname "$0")/../.."
V=.llama-tools/venv
if ! "$V/bin/python" -c "import torch, torchvision, PIL, transformers, sentencepiece, google.protobuf, jinja2, numpy, gguf" 2>/dev/null; then
  echo "transformers_venv: installing torch, torchvision, pillow, transformers, sentencepiece, protobuf, jinja2, numpy and gguf into $V" >&2
  mkdir -p .llama-tools
  [ -x "$V/bin/python" ] || python3 -m venv "$V"
  "$V/bin/pip" install -q --disable-pip-version-check torch torchvision pillow transformers sentencepiece protobuf jinja2 numpy gguf >&2
fi
echo "$V/bin/python"
