#!/usr/bin/env python3
"""A random-weight Hugging Face checkpoint with a real model's shapes (e.g. Gemma 4 E2B's), for
measuring conversion memory and speed, and GPU offload, without downloading the model.

Two steps, so that the second needs neither transformers nor the network:

    # names and shapes of every tensor, from transformers' own model class on the meta device
    python scripts/synthetic_checkpoint.py manifest CONFIG.json MANIFEST.json
    # config.json, model.safetensors (BF16, random), and the gemma4 fixture's tokenizer with its
    # vocabulary padded to the config's vocab_size
    python scripts/synthetic_checkpoint.py write MANIFEST.json DIR

`write` needs numpy; it uses torch (and a GPU) for the random numbers when it finds them.
CONFIG.json is a text config (for Gemma 4: `text_config` of the published config.json, with
"architectures": ["Gemma4ForCausalLM"] and "model_type": "gemma4_text").
"""
import json
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "models" / "gemma4"


def manifest(config_path: Path, out: Path):
    import torch
    import transformers

    config = json.loads(config_path.read_text())
    cls = getattr(transformers, config["architectures"][0])
    cfg = cls.config_class.from_dict(config)
    with torch.device("meta"):
        model = cls(cfg)
    # save_pretrained leaves a tied output projection out of the checkpoint
    tied = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    tensors = [[name, list(t.shape)] for name, t in model.state_dict().items() if name not in tied]
    out.write_text(json.dumps({"config": cfg.to_dict() | {"architectures": config["architectures"]}, "tensors": tensors}) + "\n")
    print(f"{out}: {len(tensors)} tensors, {sum(_numel(s) for _, s in tensors) / 1e9:.2f} B parameters")


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _random_bf16(shape, norm: bool, seed: int) -> bytes:
    """Normal values (1 + 0.1·N for norms, 0.02·N otherwise) as little-endian BF16 bytes."""
    try:
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        g = torch.Generator(device=dev).manual_seed(seed)
        t = torch.randn(shape, generator=g, device=dev, dtype=torch.float32)
        t = 1.0 + 0.1 * t if norm else 0.02 * t
        return t.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()
    except ImportError:
        import numpy as np

        x = np.random.default_rng(seed).standard_normal(_numel(shape), dtype=np.float32)
        x = 1.0 + 0.1 * x if norm else 0.02 * x
        return (x.view(np.uint32) >> 16).astype("<u2").tobytes()


def write(manifest_path: Path, out: Path):
    m = json.loads(manifest_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(m["config"], indent=2) + "\n")
    header, offset = {}, 0
    for name, shape in m["tensors"]:
        size = 2 * _numel(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for i, (name, shape) in enumerate(m["tensors"]):
            f.write(_random_bf16(shape, "norm" in name or name.endswith("layer_scalar"), i))
    for name in ["tokenizer_config.json", "chat_template.jinja", "generation_config.json"]:
        shutil.copy(TOKENIZER / name, out / name)
    tok = json.loads((TOKENIZER / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    n_vocab = m["config"]["vocab_size"]
    for i in range(max(vocab.values()) + 1, n_vocab):
        vocab[f"<unused{i}>"] = i
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    print(f"{out}: {offset / 2**30:.2f} GiB of BF16 weights, vocabulary padded to {n_vocab}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("manifest", "write"):
        sys.exit(__doc__)
    {"manifest": manifest, "write": write}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
