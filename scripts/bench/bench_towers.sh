#!/usr/bin/env bash
# What a model's vision and audio towers cost at run time, beside what `strata plan` says: a
# random checkpoint with the towers at their real size (names and shapes from
# tests/fixtures/NAME-towers.manifest.json: gemma-4-e2b, the default, or gemma-3-4b) on a
# fixture's tiny text model (gemma4-av, gemma3-vision), converted by strata (projector at F16),
# then `strata generate` (CPU, THREADS (2) threads, one token) with no media, with a 224 x 224
# image, a 2000 x 1500 image (Gemma 4: the most tokens llama.cpp makes of one, 1120), and where
# there is an audio tower a 1-second and a 30-second clip (one encoder chunk): peak RSS (from
# /proc) and seconds, and the text model alone (--no-mmproj). Files go to .bench/towers-NAME
# (about 2 GB); run on an idle machine.
#   bash scripts/bench/bench_towers.sh [gemma-4-e2b gemma4-av | gemma-3-4b gemma3-vision]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${THREADS:-2}
NAME=${1:-gemma-4-e2b}
cargo build --release -q
S=./target/release/strata
B=.bench/towers-$NAME
FX=tests/fixtures/models/${2:-gemma4-av}
mkdir -p $B
if [ ! -f $B/hf/model.safetensors ]; then
  # The towers on the fixture's text model: the projections into the text model's width
  # (Gemma 4's embed_vision and embed_audio, Gemma 3's mm_input_projection) take the fixture's.
  .venv/bin/python - "$FX" $B/manifest.json "$NAME" <<'EOF'
import json, struct, sys
fx, out, name = sys.argv[1:]
towers = json.load(open(f"tests/fixtures/{name}-towers.manifest.json"))
config = json.load(open(f"{fx}/config.json"))
width = config["text_config"]["hidden_size"]
for key in ("vision_config", "audio_config"):
    if key in towers["config"]:
        config[key] = towers["config"][key]
with open(f"{fx}/model.safetensors", "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
tensors = [[n, h["shape"]] for n, h in header.items() if "language_model" in n]
for name, shape in towers["tensors"]:
    if "language_model" in name:
        continue
    if name.startswith(("model.embed_vision.", "model.embed_audio.")):
        shape = [width] + shape[1:]
    if name.endswith("mm_input_projection_weight"):
        shape = shape[:-1] + [width]
    tensors.append([name, shape])
json.dump({"config": config, "tensors": tensors}, open(out, "w"))
EOF
  .venv/bin/python scripts/fixtures/synthetic_checkpoint.py write $B/manifest.json $B/hf.tmp
  cp $FX/{tokenizer.json,tokenizer.model,tokenizer_config.json,chat_template.jinja,preprocessor_config.json} $B/hf.tmp/
  mv $B/hf.tmp $B/hf
fi
[ -f $B/model.gguf ] || $S convert $B/hf -o $B/model.gguf --type q8_0 --mmproj-type f16 >/dev/null
.venv/bin/python - $B <<'EOF'
import struct, sys, wave, zlib
import numpy as np
b = sys.argv[1]

def png(path, rgb):
    rows = b"".join(b"\0" + r.tobytes() for r in rgb)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    head = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

x = np.linspace(0, 255, 2000, dtype=np.float32)
img = np.stack([np.tile(x, (1500, 1)), np.tile(x[:1500, None], (1, 2000)), np.full((1500, 2000), 128.0)], -1).astype(np.uint8)
png(f"{b}/big.png", img)
png(f"{b}/small.png", np.ascontiguousarray(img[:224, :224]))
for seconds in (1, 30):
    t = np.arange(16000 * seconds) / 16000
    with wave.open(f"{b}/tone{seconds}.wav", "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
EOF
$S plan $B/hf --device laptop-cpu-16gb --json | python3 -c "
import json, sys
t = json.load(sys.stdin)['towers']
mib = lambda b: b / 2**20
print(f\"plan: vision {mib(t['vision_bytes']):.1f} MiB, audio {mib(t['audio_bytes']):.1f} MiB, projector {mib(t['projector_bytes']):.1f} MiB; \"
      f\"encoder buffers: vision {mib(t['vision_buffer_bytes']):.1f} MiB, audio {mib(t['audio_buffer_bytes']):.1f} MiB; total {mib(t['vision_bytes'] + t['audio_bytes'] + t['projector_bytes'] + t['vision_buffer_bytes'] + t['audio_buffer_bytes']):.1f} MiB\")"
run() {
  local what=$1
  shift
  local start end
  start=$(date +%s.%N)
  $S generate $B/model.gguf -p "Describe it." -n 1 -t "$T" --json "$@" 2>/dev/null >$B/out.json
  end=$(date +%s.%N)
  python3 -c "
import json
d = json.load(open('$B/out.json'))
print(f\"{'$what':<34} peak RSS {d['memory']['peak_rss'] / 2**20:8.1f} MiB  {$end - $start:6.1f} s\")"
}
run "text model alone (--no-mmproj)" --no-mmproj
run "projector, no media"
run "224 x 224 image" --image $B/small.png
run "2000 x 1500 image" --image $B/big.png
grep -q audio_config $B/hf/config.json || exit 0
run "1 s of audio" --audio $B/tone1.wav
run "30 s of audio" --audio $B/tone30.wav
run "2000 x 1500 image and 30 s of audio" --image $B/big.png --audio $B/tone30.wav
