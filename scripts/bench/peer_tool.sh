#!/usr/bin/env bash
# Prints the path of llama.cpp's TOOL (bench, server, completion, ...) that a benchmark runs beside
# strata: $LLAMA_<TOOL> when set (another build), else .llama-tools/bin/llama-TOOL, built first by
# scripts/setup/build_llama_tools.sh (linked with strata's own llama.cpp) where missing or stale.
#   LB=$(bash scripts/bench/peer_tool.sh bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=${1:?usage: peer_tool.sh TOOL}
var=LLAMA_$(echo "$tool" | tr 'a-z-' 'A-Z_')
path=${!var:-}
if [ -z "$path" ]; then
  bash scripts/setup/build_llama_tools.sh "$tool" >&2
  path=.llama-tools/bin/llama-$tool
fi
[ -x "$path" ] || { echo "scripts/bench/peer_tool.sh: missing $path" >&2; exit 1; }
echo "$path"
