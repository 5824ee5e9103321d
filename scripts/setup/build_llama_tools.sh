#!/usr/bin/env bash
# Builds llama.cpp's own tools, linked with the very llama.cpp that strata links: the static
# libraries llama-cpp-sys-2 built for `cargo build --release` (found through cargo's build-script
# messages), so a tool and strata differ only in the code under test (the tests), or only in the
# binding (the benchmarks: same ggml kernels, same build flags, AMX left out alike), on any CPU.
#   bash scripts/setup/build_llama_tools.sh [TOOL...]
# TOOL is one of
#   imatrix quantize rpc-server completion   what the tests run: the default (scripts/test.sh),
#   mtmd-cli                                 with llama-mtmd-cli (tests/multimodal.rs compares with it)
#   bench server                             what the benchmarks (scripts/bench/) build when run
#   perplexity tokenize                      by hand
# and becomes .llama-tools/bin/llama-TOOL. Only what changed is rebuilt (an object older than its
# source or the libraries, or compiled with other flags); from nothing, on 2 busy cores, a tool takes 10-30 s and
# llama-server about 6 minutes (its 60 C++ files). Prints nothing on success.
#
# The crate's llama.cpp tree ships the tools' READMEs but not their sources (but for
# llama-mtmd-cli's, which comes with the mtmd library strata links, and is built from there
# against that library), so these come from
# llama-cpp-python 0.3.36's tree (.llama-tools/llama.cpp, unpacked by scripts/setup/setup.sh): a
# slightly older llama.cpp (ggml 0.25.3; the crate's is 0.26.0) whose tools compile against the
# newer headers unchanged, with two exceptions, both llama-server's: its multimodal library (mtmd)
# is compiled from the same 0.3.36 tree, not taken from strata's build, to match the server's
# calls into it; and the one helper of the old common library it needs that the new one dropped
# comes from llama_tools/server_compat.h. Its web UI is left out (no prebuilt assets in the tree,
# and no npm here): the server answers its HTTP API, which is what the benchmarks use.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "scripts/setup/build_llama_tools.sh: $*" >&2; exit 1; }
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(imatrix quantize rpc-server completion mtmd-cli)
tree=$(bash scripts/setup/llama_cpp_tree.sh)
src=.llama-tools/llama.cpp
[ -f "$src/.from-llama_cpp_python-0.3.36" ] || die "$src is missing: run scripts/setup/setup.sh"
out=$(cargo build --release --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "build-script-executed" and "llama-cpp-sys-2" in m["package_id"]:
        print(m["out_dir"])')
[ -n "$out" ] && [ -f "$out/build/src/libllama.a" ] || die "cannot find llama-cpp-sys-2's static libraries (is strata built with shared ones?)"
libllama=$out/build/src/libllama.a
libs=(common/libllama-common.a common/libllama-common-base.a src/libllama.a ggml/src/libggml.a ggml/src/libggml-cpu.a
      ggml/src/ggml-rpc/libggml-rpc.a ggml/src/libggml-base.a vendor/cpp-httplib/libcpp-httplib.a vendor/hash/libvendor-hash.a)
here=scripts/setup/llama_tools
# As CMake's Release build of llama.cpp compiles its tools (NDEBUG: llama-bench otherwise warns
# that asserts are on). The headers are the crate's: those the libraries were built from.
cxx=(g++ -O3 -DNDEBUG -std=c++17 -I"$tree/include" -I"$tree/common" -I"$tree/ggml/include" -I"$tree/vendor")
mkdir -p .llama-tools/bin .llama-tools/obj

# compile OBJDIR FLAG... -- SOURCE...: each SOURCE to OBJDIR/<its path, / as _>.o, in parallel,
# where the object is missing or older than its source, the libraries or a header that FLAG
# forces in (-include), and all of them when the compiler's command line changed (OBJDIR/.flags).
obj_of() { local n=${2#"$src"/}; n=${n#.}; echo "$1/$(echo "$n" | tr / _).o"; }
compile() {
  local dir=$1; shift
  local flags=() deps=("$libllama") todo=() o prev= all=
  while [ "$1" != -- ]; do
    [ "$prev" = -include ] && deps+=("$1")
    prev=$1 flags+=("$1"); shift
  done
  shift
  mkdir -p "$dir"
  local want="${cxx[*]} ${flags[*]}"
  [ "$(cat "$dir/.flags" 2>/dev/null)" = "$want" ] || all=1
  for s in "$@"; do
    o=$(obj_of "$dir" "$s")
    local stale=$all
    [ -f "$o" ] && [ ! "$s" -nt "$o" ] || stale=1
    for d in "${deps[@]}"; do [ "$d" -nt "$o" ] && stale=1; done
    [ -n "$stale" ] && todo+=("$o" "$s")
  done
  [ ${#todo[@]} -eq 0 ] && return 0
  printf '%s\0' "${todo[@]}" | xargs -0 -n2 -P"$(nproc)" bash -c \
    'o=${@: -2:1} s=${@: -1}; "${@:1:$#-2}" -c "$s" -o "$o.tmp" && mv "$o.tmp" "$o"' _ "${cxx[@]}" "${flags[@]}" \
    || die "compiling failed (see above)"
  echo "$want" >"$dir/.flags"
}

# Every tool also links llama_tools/flush_log_at_exit.cpp, so its last log lines survive exit.
compile .llama-tools/obj/common -- "$here/flush_log_at_exit.cpp"
flush=$(obj_of .llama-tools/obj/common "$here/flush_log_at_exit.cpp")

for tool in "${tools[@]}"; do
  obj=.llama-tools/obj/$tool
  case $tool in
    imatrix | quantize | completion | perplexity | tokenize) dir=$tool ;;
    rpc-server) dir=rpc ;;
    bench) dir=llama-bench ;;
    server) dir=server ;;
    mtmd-cli) dir=mtmd ;;
    *) die "unknown tool $tool (imatrix, quantize, rpc-server, completion, bench, server, perplexity, tokenize, mtmd-cli)" ;;
  esac
  srcs=("$src/tools/$dir"/*.cpp)
  [ -f "${srcs[0]}" ] || die "$src/tools/$dir has no sources: run scripts/setup/setup.sh"
  extra=()
  if [ "$tool" = mtmd-cli ]; then
    [ -f "$out/build/tools/mtmd/libmtmd.a" ] || die "strata's build has no libmtmd.a (llama-cpp-sys-2's mtmd feature)"
    compile "$obj" -I"$tree/tools/mtmd" -- "$tree/tools/mtmd/mtmd-cli.cpp"
    objs=("$obj"/*.o)
    extra=("$out/build/tools/mtmd/libmtmd.a")
  elif [ "$tool" = server ]; then
    # The UI's asset table, empty: ui.h and ui.cpp as scripts/ui-assets.cmake writes them
    # when there are no assets.
    gen=$obj/gen
    mkdir -p "$gen"
    sed -e 's|^#cmakedefine LLAMA_UI_HAS_ASSETS 1|/* no assets: built without the web UI */|' -e 's/@N_ASSETS@/0/g' \
      "$src/tools/ui/ui.h.in" >"$gen/ui.h.tmp"
    sed -e 's/@ASSET_ARRAYS@//' -e 's/@ASSET_TABLE@//' -e 's/@N_ASSETS@/0/g' -e 's/@USE_GZIP@/false/' \
      "$src/tools/ui/ui.cpp.in" >"$gen/ui.cpp.tmp"
    for f in ui.h ui.cpp; do cmp -s "$gen/$f.tmp" "$gen/$f" && rm "$gen/$f.tmp" || mv "$gen/$f.tmp" "$gen/$f"; done
    # mtmd's own sources, as its CMakeLists lists them.
    mtmd=($(sed -n '/^add_library(mtmd/,/)/p' "$src/tools/mtmd/CMakeLists.txt" | grep -o '[^ ]*\.cpp' | sed "s|^|$src/tools/mtmd/|"))
    [ ${#mtmd[@]} -gt 10 ] || die "cannot read mtmd's sources from $src/tools/mtmd/CMakeLists.txt"
    compile "$obj/mtmd" -I"$src/tools/mtmd" -- "${mtmd[@]}"
    compile "$obj" -include "$here/server_compat.h" -I"$src/tools/mtmd" -I"$src/tools/server" -I"$gen" -- "${srcs[@]}" "$gen/ui.cpp"
    objs=("$obj"/*.o "$obj"/mtmd/*.o)
  else
    compile "$obj" -- "${srcs[@]}"
    objs=("$obj"/*.o)
  fi
  bin=.llama-tools/bin/llama-$tool
  relink=
  [ -x "$bin" ] && [ ! "$libllama" -nt "$bin" ] && [ ! "$flush" -nt "$bin" ] || relink=1
  for o in "${objs[@]}"; do [ "$o" -nt "$bin" ] && relink=1; done
  if [ -n "$relink" ]; then
    g++ "${objs[@]}" "$flush" -o "$bin.tmp" "${extra[@]}" "${libs[@]/#/$out/build/}" -fopenmp -lpthread -ldl -lssl -lcrypto
    mv "$bin.tmp" "$bin"
  fi
done
