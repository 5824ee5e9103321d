#!/usr/bin/env python3
"""Builds fuzz/corpus/<target>/ seeds from the repository's real files (rerun it after the
fixtures change; it only needs Python 3). Each seed is small: real headers, with tokenizer
arrays cut to a few entries and tensors shrunk to one block, so the fuzzer starts from files
that parse all the way through."""
import json, os, struct, sys, glob, hashlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")
FIX = os.path.join(ROOT, "tests", "fixtures")

def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ---- GGUF ----
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# ggml type id -> (block size, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}

class R:
    def __init__(s, b): s.b, s.p = b, 0
    def take(s, n):
        v = s.b[s.p:s.p + n]; s.p += n
        if len(v) != n: raise EOFError
        return v
    def u32(s): return struct.unpack("<I", s.take(4))[0]
    def u64(s): return struct.unpack("<Q", s.take(8))[0]
    def string(s): return s.take(s.u64())

def value(r, ty, cut):
    """Reads a value and returns its bytes again, arrays cut to `cut` entries."""
    if ty in SIZES: return r.take(SIZES[ty])
    if ty == 8:
        s = r.string(); return struct.pack("<Q", len(s)) + s
    if ty == 9:
        et, n = r.u32(), r.u64()
        items = [value(r, et, cut) for _ in range(n)]
        items = items[:cut]
        return struct.pack("<IQ", et, len(items)) + b"".join(items)
    raise ValueError(ty)

def shrink_gguf(data, cut=8):
    r = R(data)
    assert r.take(4) == b"GGUF"
    ver, nt, nkv = r.u32(), r.u64(), r.u64()
    out = [b"GGUF", struct.pack("<IQQ", ver, nt, nkv)]
    align = 32
    for _ in range(nkv):
        k = r.string(); ty = r.u32()
        v = value(r, ty, cut)
        if k == b"general.alignment": align = struct.unpack("<I", v)[0]
        out.append(struct.pack("<Q", len(k)) + k + struct.pack("<I", ty) + v)
    off = 0
    for _ in range(nt):
        name = r.string(); nd = r.u32(); shape = [r.u64() for _ in range(nd)]; ty = r.u32(); r.u64()
        bs, bb = BLOCKS[ty]
        shape = [bs] + [1] * (nd - 1)
        out.append(struct.pack("<Q", len(name)) + name + struct.pack("<I", nd) + b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<IQ", ty, off))
        off += (bb + align - 1) // align * align
    head = b"".join(out)
    head += b"\0" * (-len(head) % align)
    return head + b"\0" * off

ggufs = sorted(glob.glob(os.path.join(FIX, "models", "*", "llamacpp-*.gguf"))) + sorted(glob.glob(os.path.join(ROOT, ".models", "*.gguf")))
# Shrunk: one file per architecture (and each quantization mix once); the raw first 4 KiB of
# the real models and of one fixture.
SHRUNK = ["gemma3/llamacpp-q8_0", "gemma3n/llamacpp-q8_0-ple-q4_0", "gemma4/llamacpp-q8_0-ple-q4_0",
          "gemma4-cg/llamacpp-f32", "qwen3/llamacpp-q8_0", "SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"]
HEAD = ["gemma4/llamacpp-f32", "SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"]
for path in ggufs:
    data = open(path, "rb").read()
    key = path[:-5].split("/models/")[-1].split("/.models/")[-1]
    tag = key.replace("/", "-")
    if key in HEAD:
        put("gguf", tag + ".head4k", data[:4096])
    if key in SHRUNK:
        try:
            put("gguf", tag + ".shrunk", shrink_gguf(data))
        except Exception as e:
            print(f"{path}: not shrunk ({e})", file=sys.stderr)

# ---- safetensors ----
SEP = b"\0\0\xff\0"
def shrink_st(data):
    """The real header, each tensor cut to its first row (at most 8 values), data to match."""
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    new, off, body = {}, 0, b""
    for name, t in h.items():
        if name == "__metadata__": new[name] = t; continue
        size = {"F32": 4, "F16": 2, "BF16": 2}.get(t["dtype"], 1)
        shape = [1] * (len(t["shape"]) - 1) + [min(8, t["shape"][-1])] if t["shape"] else []
        k = size
        for d in shape: k *= d
        b0 = t["data_offsets"][0] + 8 + n
        body += data[b0:b0 + k]
        new[name] = {"dtype": t["dtype"], "shape": shape, "data_offsets": [off, off + k]}
        off += k
    j = json.dumps(new, separators=(",", ":")).encode()
    return struct.pack("<Q", len(j)) + j + body, list(new)

sts = sorted(glob.glob(os.path.join(FIX, "models", "*", "model.safetensors"))) + sorted(glob.glob(os.path.join(ROOT, ".models", "*", "model.safetensors")))
for path in sts:
    tag = os.path.basename(os.path.dirname(path))
    data = open(path, "rb").read(1 << 20) if os.path.getsize(path) > (1 << 20) else open(path, "rb").read()
    if "/.models/" in path:
        put("safetensors", tag + ".head4k", SEP + data[:4096])
    elif tag in ("gemma3n", "gemma4", "qwen3"):
        small, names = shrink_st(open(path, "rb").read())
        put("safetensors", tag + ".single", SEP + small)
# A sharded pair with its index, from the smallest fixture.
small, names = shrink_st(open(os.path.join(FIX, "models", "gemma3", "model.safetensors"), "rb").read())
n = struct.unpack("<Q", small[:8])[0]
h = json.loads(small[8:8 + n]); names = [k for k in h if k != "__metadata__"]
half = len(names) // 2
shards = []
for part in (names[:half], names[half:]):
    new, off, body = {}, 0, b""
    for k in part:
        t = h[k]; b0, b1 = t["data_offsets"]
        body += small[8 + n + b0:8 + n + b1]
        new[k] = dict(t, data_offsets=[off, off + b1 - b0]); off += b1 - b0
    j = json.dumps(new).encode()
    shards.append(struct.pack("<Q", len(j)) + j + body)
index = {"metadata": {"total_size": 0}, "weight_map": {k: ("model-00001-of-00002.safetensors" if i < half else "model-00002-of-00002.safetensors") for i, k in enumerate(names)}}
put("safetensors", "gemma3.sharded", json.dumps(index, indent=1).encode() + SEP + shards[0] + SEP + shards[1])

# ---- sentencepiece ----
for path in sorted(set(glob.glob(os.path.join(FIX, "models", "*", "tokenizer.model")))):
    data = open(path, "rb").read()
    h = hashlib.sha1(data).hexdigest()[:8]
    put("sentencepiece", "fixture-" + h, data)
big = os.path.join(ROOT, ".models", "gemma-3-270m-hf", "tokenizer.model")
if os.path.exists(big):
    put("sentencepiece", "gemma-3-270m.head4k", open(big, "rb").read(4096))

# ---- config.json ----
for path in sorted(glob.glob(os.path.join(FIX, "models", "*", "config.json")) + glob.glob(os.path.join(ROOT, ".models", "*", "config.json"))):
    put("config", os.path.basename(os.path.dirname(path)), open(path, "rb").read())

# ---- tokenizer folders: tokenizer.json \0 tokenizer_config.json \0 tokenizer.model \0 config.json \0 added_tokens.json ----
def rd(p, limit=None):
    if not os.path.exists(p): return b""
    d = open(p, "rb").read()
    return d if limit is None else d[:limit]
for m in ["gemma3", "gemma4"]:
    d = os.path.join(FIX, "models", m)
    put("tokenizer", m + "-json", b"\0".join([rd(d + "/tokenizer.json"), rd(d + "/tokenizer_config.json"), b"", rd(d + "/config.json"), b""]))
put("tokenizer", "gemma3-sp", b"\0".join([b"", rd(FIX + "/models/gemma3/tokenizer_config.json"), rd(FIX + "/models/gemma3/tokenizer.model"), rd(FIX + "/models/gemma3/config.json"), b'{"<extra>": 5}']))
smol = os.path.join(ROOT, ".models", "SmolLM2-135M-Instruct-hf")
if os.path.exists(smol):
    # A byte-level BPE (gpt2) tokenizer, cut to a few hundred tokens and merges.
    tj = json.loads(rd(smol + "/tokenizer.json"))
    tj["model"]["vocab"] = {k: v for k, v in tj["model"]["vocab"].items() if v < 300}
    tj["model"]["merges"] = tj["model"]["merges"][:50]
    tj["added_tokens"] = [dict(a, id=300 + i) for i, a in enumerate(tj["added_tokens"][:4])]
    put("tokenizer", "smollm2-bpe", b"\0".join([json.dumps(tj).encode(), rd(smol + "/tokenizer_config.json"), b"", b'{"vocab_size": 310, "bos_token_id": 1}', b""]))

# ---- chat templates: source \0 flags+bos \0 eos \0 role \0 content ... ----
conv = [b"system", b"Be brief.", b"user", b"Hi {{ there }} <|im_end|>", b"assistant", b"Hello!", b"user", b"\xe2\x96\x81 and {% raw %}"]
tpls = sorted(glob.glob(os.path.join(FIX, "templates", "*.jinja")) + glob.glob(os.path.join(FIX, "templates", "llama.cpp", "*.jinja")))
tpls = [t for t in tpls if os.path.getsize(t) < 6000][:10]
for path in tpls:
    put("chat_template", os.path.basename(path).replace(".jinja", ""), b"\0".join([rd(path), b"\x03<bos>", b"<eos>"] + conv))
put("chat_template", "strftime-tojson", b"\0".join([b"{{ strftime_now('%d %b %Y') }}{{ messages | tojson(indent=2) }}{% generation %}{{ raise_exception('x') if false }}{% endgeneration %}{{ 'ab'.split('a') }}{{ messages[0].content.startswith('B') }}", b"\x01", b""] + conv))

# ---- importance matrices: llama-imatrix's GGUF layout (a dense entry, 1-D; an expert entry,
# 2-D with a count per expert) and its legacy .dat ----
def gguf_str(x): return struct.pack("<Q", len(x)) + x
def imatrix_gguf():
    kv = [(b"general.type", struct.pack("<I", 8) + gguf_str(b"imatrix")),
          (b"imatrix.datasets", struct.pack("<II", 9, 8) + struct.pack("<Q", 1) + gguf_str(b"calibration.txt")),
          (b"imatrix.chunk_count", struct.pack("<II", 4, 2)), (b"imatrix.chunk_size", struct.pack("<II", 4, 128))]
    tensors = [(b"blk.0.attn_k.weight.in_sum2", [8], [float(i) for i in range(8)]),
               (b"blk.0.attn_k.weight.counts", [1], [256.0]),
               (b"blk.0.ffn_down_exps.weight.in_sum2", [4, 2], [1.0] * 8),
               (b"blk.0.ffn_down_exps.weight.counts", [1, 2], [100.0, 0.0])]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    out += b"".join(gguf_str(k) + v for k, v in kv)
    offset, data = 0, b""
    for name, shape, values in tensors:
        out += gguf_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<IQ", 0, offset)
        blob = struct.pack("<%df" % len(values), *values)
        blob += b"\0" * (-len(blob) % 32)
        data += blob; offset += len(blob)
    return out + b"\0" * (-len(out) % 32) + data
put("imatrix", "dense-and-experts.gguf", imatrix_gguf())
dat = struct.pack("<i", 2)
for name, values in [(b"blk.0.attn_k.weight", [0.5] * 8), (b"blk.0.ffn_up.weight", [2.0] * 4)]:
    dat += struct.pack("<i", len(name)) + name + struct.pack("<ii", 2, len(values)) + struct.pack("<%df" % len(values), *values)
put("imatrix", "legacy.dat", dat + struct.pack("<ii", 2, 15) + b"calibration.txt")

# ---- models.toml ----
put("models_toml", "models.toml", rd(os.path.join(ROOT, "models.toml")))
print("seeds written under", OUT)
