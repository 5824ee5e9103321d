#!/usr/bin/env bash
# The same image (and clip) sent to `strata serve` and to llama.cpp's llama-server (built by
# scripts/setup/build_llama_tools.sh; LLAMA_SERVER to run another) on the same files: the
# gemma3-vision and gemma4-av fixtures converted by strata (F32) with their projectors, a
# Chat Completions request with the image as a data: URL (and for gemma4-av, one with a WAV as
# input_audio), greedy, 24 tokens (end of generation ignored), one slot each; prints both answers and whether they agree.
# Not a test: llama-server takes minutes to build.
#   bash scripts/compat/media_vs_llama_server.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
S=./target/release/strata
LS=$(bash scripts/bench/peer_tool.sh server)
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$out"' EXIT
. scripts/bench/wait_ready.sh
ask() { # PORT KIND FILE -> the answer's text
  python3 - "$1" "$2" "$3" <<'PY'
import base64, json, sys, urllib.request
port, kind, path = sys.argv[1:]
data = base64.b64encode(open(path, "rb").read()).decode()
part = ({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}} if kind == "image"
        else {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
body = {"messages": [{"role": "user", "content": [part, {"type": "text", "text": "Describe this."}]}],
        "temperature": 0, "max_tokens": 24, "seed": 1, "ignore_eos": True}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"]))
PY
}
agree=0
total=0
for case in "gemma3-vision image gradient.png" "gemma4-av image checkers.png" "gemma4-av audio tone.wav"; do
  set -- $case
  fixture=$1 kind=$2 file=tests/fixtures/media/$3
  model=$out/$fixture.gguf
  [ -f "$model" ] || $S convert tests/fixtures/models/$fixture -o "$model" --type f32 >/dev/null
  $S serve "$model" --port 8393 -t 2 -c 2048 -np 1 2>"$out/strata.log" & pid=$!
  wait_ready 8393
  ours=$(ask 8393 "$kind" "$file")
  kill $pid; wait $pid 2>/dev/null || true
  LD_LIBRARY_PATH=$(dirname "$LS") "$LS" -m "$model" --mmproj "$out/mmproj-$fixture.gguf" --port 8394 -t 2 -c 2048 -np 1 \
    --no-webui 2>"$out/llama.log" & pid=$!
  wait_ready 8394
  theirs=$(ask 8394 "$kind" "$file")
  kill $pid; wait $pid 2>/dev/null || true
  pid=
  total=$((total + 1))
  verdict=differ
  [ "$ours" = "$theirs" ] && verdict=same && agree=$((agree + 1))
  printf '%s, %s %s: %s\n  strata:       %s\n  llama-server: %s\n' "$fixture" "$kind" "$3" "$verdict" "$ours" "$theirs"
done
echo "$agree of $total answers the same"
