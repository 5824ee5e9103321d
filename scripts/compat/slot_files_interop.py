#!/usr/bin/env python3
"""Slot files between llama-server and strata serve, both ways, on the same model: one server
answers a prompt and saves its slot (POST /slots/0?action=save), the other restores the file
(?action=restore) and answers the same prompt again; the restore must bring back every token the
first saved, the second answer must find them in its cache (timings.cache_n), and both answers
must be the same text.

    .venv/bin/python scripts/compat/slot_files_interop.py [MODEL.gguf]

Needs llama-server (scripts/setup/build_llama_tools.sh server) and target/release/strata.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The three largest cities of France are"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def start(name, folder):
    port = free_port()
    common = ["-m", str(MODEL), "--port", str(port), "-np", "1", "-c", "1024", "-t", "2",
              "--slot-save-path", str(folder)]
    if name == "llama-server":
        command = [str(ROOT / ".llama-tools" / "bin" / "llama-server"), *common, "--cache-ram", "0"]
    else:
        command = [str(ROOT / "target" / "release" / "strata"), "serve", *common, "--cache-ram", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{name} did not start")


def complete(port):
    return post(port, "/completion", {"prompt": PROMPT, "n_predict": 12, "temperature": 0, "cache_prompt": True})


def one_way(saver, restorer):
    with tempfile.TemporaryDirectory() as folder:
        # llama-server joins the folder and the file name without a separator.
        folder = folder + "/"
        process, port = start(saver, folder)
        try:
            first = complete(port)
            saved = post(port, "/slots/0?action=save", {"filename": "slot.bin"})
        finally:
            process.kill()
            process.wait()
        process, port = start(restorer, folder)
        try:
            restored = post(port, "/slots/0?action=restore", {"filename": "slot.bin"})
            again = complete(port)
        finally:
            process.kill()
            process.wait()
    ok = (restored["n_restored"] == saved["n_saved"] and again["timings"]["cache_n"] > 0
          and again["content"] == first["content"])
    print(f"{saver} saves, {restorer} restores: n_saved {saved['n_saved']}, n_restored {restored['n_restored']}, "
          f"cache_n {again['timings']['cache_n']} of {again['tokens_evaluated']} prompt tokens, "
          f"same answer: {again['content'] == first['content']} -> {'ok' if ok else 'FAILED'}")
    return ok


def main():
    results = [one_way("llama-server", "strata"), one_way("strata", "llama-server")]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
