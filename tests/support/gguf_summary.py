"""Summarize a GGUF file with llama.cpp's own Python reader (the `gguf` package), as JSON:
tensor count, metadata keys, and count and bytes per ggml type. A test oracle for strata inspect."""
import json
import sys

from gguf import GGUFReader

reader = GGUFReader(sys.argv[1])
types = {}
for t in reader.tensors:
    entry = types.setdefault(t.tensor_type.name, {"count": 0, "bytes": 0})
    entry["count"] += 1
    entry["bytes"] += int(t.n_bytes)
print(json.dumps({
    "n_tensors": len(reader.tensors),
    "keys": [k for k in reader.fields if not k.startswith("GGUF.")],
    "types": types,
    "total_bytes": sum(e["bytes"] for e in types.values()),
}))
