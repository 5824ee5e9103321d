#!/usr/bin/env bash
# Builds llama.cpp's own tools that the tests check strata against (llama-imatrix, llama-quantize,
# llama-rpc-server and llama-completion, the RPC server and client of the same protocol), linked with
# the very llama.cpp that strata links: the static libraries llama-cpp-sys-2 built for
# `cargo build --release` (found through cargo's build-script messages), so a tool and strata
# differ only in the code under test, on any CPU. The crate's llama.cpp tree ships the tools'
# READMEs but not their sources, so these come from llama-cpp-python 0.3.36's tree
# (scripts/setup.sh unpacks them into .llama-tools/src). One C++ file per tool: seconds, not
# another llama.cpp build. Writes .llama-tools/bin/llama-<tool>; prints nothing on success.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "scripts/build_llama_tools.sh: $*" >&2; exit 1; }
tree=$(bash scripts/llama_cpp_tree.sh)
out=$(cargo build --release --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "build-script-executed" and "llama-cpp-sys-2" in m["package_id"]:
        print(m["out_dir"])')
[ -n "$out" ] && [ -f "$out/build/src/libllama.a" ] || die "cannot find llama-cpp-sys-2's static libraries (is strata built with shared ones?)"
mkdir -p .llama-tools/bin
libs=(common/libllama-common.a common/libllama-common-base.a src/libllama.a ggml/src/libggml.a ggml/src/libggml-cpu.a
      ggml/src/ggml-rpc/libggml-rpc.a ggml/src/libggml-base.a vendor/cpp-httplib/libcpp-httplib.a vendor/hash/libvendor-hash.a)
# Each tool also links scripts/llama_tools/flush_log_at_exit.cpp, so its last log lines survive exit.
flush=scripts/llama_tools/flush_log_at_exit.cpp
for tool in imatrix quantize rpc completion; do
  srcs=(.llama-tools/src/$tool/*.cpp) bin=.llama-tools/bin/llama-${tool/#rpc/rpc-server}
  [ -f "${srcs[0]}" ] || die ".llama-tools/src/$tool is missing: run scripts/setup.sh"
  srcs+=("$flush")
  if [ ! -x "$bin" ] || [ "$out/build/src/libllama.a" -nt "$bin" ] || [ "${srcs[0]}" -nt "$bin" ] || [ "$flush" -nt "$bin" ]; then
    g++ -O2 -std=c++17 -I"$tree/include" -I"$tree/common" -I"$tree/ggml/include" -I"$tree/vendor" "${srcs[@]}" -o "$bin.tmp" \
      "${libs[@]/#/$out/build/}" -fopenmp -lpthread -ldl -lssl -lcrypto
    mv "$bin.tmp" "$bin"
  fi
done
