#!/usr/bin/env python3
"""llama-server's command line, run as `strata serve`: the adapter that llama.cpp's server tests
start in place of llama-server (LLAMA_SERVER_BIN_PATH).

Every flag the suite's ServerProcess can pass is in one of these tables:
  SAME     the same meaning in strata serve, passed on (under strata's name where it differs);
  VALUES   flags whose values map one by one to strata's arguments;
  SWITCHES flags without a value, passed on;
  MEANT    nothing to pass: strata already behaves as the flag asks (each with the reason);
  anything else is refused with exit status 2, so a test that needs a missing feature fails
  instead of passing against a server that ignored what it asked for.
STRATA_BIN names the binary (default: target/release/strata of this repository).
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# llama-server flag -> strata serve flag, for flags that take a value.
SAME = {
    "--port": "--port",
    "--host": "--host",
    "--temp": "--temp",
    "--seed": "--seed",
    "--model": "--model",
    "-m": "--model",
    "--ctx-size": "--ctx-size",
    "-c": "--ctx-size",
    "--batch-size": "--batch-size",
    "-b": "--batch-size",
    "--ubatch-size": "--ubatch-size",
    "-ub": "--ubatch-size",
    "--threads": "--threads",
    "-t": "--threads",
    "--n-gpu-layers": "--n-gpu-layers",
    "-ngl": "--n-gpu-layers",
    "--parallel": "--parallel",
    "-np": "--parallel",
    "--n-predict": "--n-predict",
    "-n": "--n-predict",
    "--alias": "--alias",
    "--api-key": "--api-key",
    "--chat-template": "--chat-template",
    "--chat-template-file": "--chat-template-file",
    "--cache-ram": "--cache-ram",
    "--cors-origins": "--cors-origin",
    "--reasoning-budget": "--reasoning-budget",
    "--sleep-idle-seconds": "--sleep-idle-seconds",
    "--slot-save-path": "--slot-save-path",
    "--tags": "--tags",
    "-ctk": "--cache-type-k",
    "--cache-type-k": "--cache-type-k",
    "-ctv": "--cache-type-v",
    "--cache-type-v": "--cache-type-v",
}
# Flags whose values map one by one: llama-server's (flag, value) -> strata's arguments (none:
# strata's default already means it). A value not listed is refused.
VALUES = {
    ("--reasoning", "on"): ["--think", "true"],
    ("--reasoning", "off"): ["--think", "false"],
    ("--reasoning", "auto"): [],
    ("--reasoning-format", "deepseek"): [],
    ("--reasoning-format", "auto"): [],
}
# Flags without a value that strata serve takes under the same name.
SWITCHES = {"--metrics", "--slots", "--kv-unified", "--verbose"}
# Flags strata needs no counterpart for, and why.
MEANT = {
    "--offline": "strata never downloads: a model is a local file",
    "--cont-batching": "strata's engine always batches continuously",
    "--jinja": "strata always renders the model's template with a Jinja engine",
    "--no-jinja": "strata always renders the model's template with a Jinja engine (llama-server's "
    "non-Jinja path applies the same template's built-in equivalent)",
    "--no-ui": "strata serves no web page yet",
    "--no-slots": "strata serves /slots only when --slots asks for it",
}


def main(argv):
    out = []
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag in SAME:
            if i + 1 >= len(argv):
                sys.exit(f"strata_as_llama_server: {flag} needs a value")
            out += [SAME[flag], argv[i + 1]]
            i += 2
        elif any(f == flag for f, _ in VALUES):
            value = argv[i + 1] if i + 1 < len(argv) else ""
            if (flag, value) not in VALUES:
                print(f"strata_as_llama_server: llama-server's {flag} {value} has no strata counterpart", file=sys.stderr)
                sys.exit(2)
            out += VALUES[(flag, value)]
            i += 2
        elif flag in SWITCHES:
            out.append(flag)
            i += 1
        elif flag in MEANT:
            i += 1
        else:
            print(f"strata_as_llama_server: llama-server's {flag} has no strata counterpart", file=sys.stderr)
            sys.exit(2)
    binary = os.environ.get("STRATA_BIN", str(ROOT / "target" / "release" / "strata"))
    os.execv(binary, [binary, "serve", *out])


if __name__ == "__main__":
    main(sys.argv[1:])
