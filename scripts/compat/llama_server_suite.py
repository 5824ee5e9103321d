#!/usr/bin/env python3
"""llama.cpp's own server tests (tools/server/tests of the pinned llama.cpp tree that
scripts/setup/setup.sh unpacks) against llama-server and against strata serve, in one run.

    python scripts/compat/llama_server_suite.py                  # both servers: the table
    python scripts/compat/llama_server_suite.py --check          # strata on the expected list
    python scripts/compat/llama_server_suite.py --write-expected # both, then rewrite the list

Both servers run the same preset on the same local model (scripts/compat/local_models.py);
strata runs behind scripts/compat/strata_as_llama_server.py. The files for llama-server's own
agent and infrastructure features are left out (OUT_OF_SCOPE). The table counts, per file, the
tests llama-server passes and how many of those strata passes; `--check` runs only the tests in
scripts/compat/expected_pass.txt against strata and fails if any of them does not pass.
"""
import argparse
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "scripts" / "compat"
SUITE = ROOT / ".llama-tools" / "llama.cpp" / "tools" / "server" / "tests"
WORK = ROOT / ".compat"
EXPECTED = HERE / "expected_pass.txt"
MODEL = ROOT / ".models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_OF_SCOPE = {
    "test_mcp_servers.py": "llama-server's MCP client",
    "test_tools_builtin.py": "llama-server's server-side tools",
    "test_proxy.py": "llama-server's CORS proxy",
    "test_router.py": "llama-server's multi-model router",
    "test_compat_gcp.py": "Vertex AI's /predict",
}


def suite_copy():
    """A fresh copy of the suite (its tests write files beside themselves), at the same depth
    below a folder whose `models/` is the tree's (the tests read ../../../models/templates)."""
    if not (SUITE / "utils.py").is_file():
        sys.exit(f"{SUITE} is missing: run scripts/setup/setup.sh")
    dest = WORK / "tools" / "server" / "tests"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(SUITE, dest)
    models = WORK / "models"
    if not models.is_symlink():
        models.symlink_to(SUITE.parents[2] / "models")
    return dest


def run(server_bin, tests, name, port):
    """Runs pytest on `tests` (paths or node ids) against one server; returns {node id: outcome}."""
    suite = WORK / "tools" / "server" / "tests"
    xml = WORK / f"{name}.xml"
    env = {
        **os.environ,
        "LLAMA_SERVER_BIN_PATH": str(server_bin),
        "COMPAT_MODEL": str(MODEL),
        "PYTHONPATH": f"{HERE}{os.pathsep}{suite}",
        "PORT": str(port),
        "LLAMA_CACHE": str(WORK / "cache"),
    }
    cmd = [sys.executable, "-m", "pytest", "-p", "local_models", "-q",
           "--junitxml", str(xml), "-o", "junit_family=xunit1", "-p", "no:cacheprovider", *tests]
    with open(WORK / f"{name}.log", "w") as log:
        subprocess.run(cmd, cwd=suite, env=env, stdout=log, stderr=subprocess.STDOUT)
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        node = f"{case.get('file') or case.get('classname').replace('.', '/') + '.py'}::{case.get('name')}"
        if case.find("skipped") is not None:
            outcomes[node] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes[node] = "failed"
        else:
            outcomes[node] = "passed"
    return outcomes


def test_files(suite):
    return sorted(p.name for p in (suite / "unit").glob("test_*.py") if p.name not in OUT_OF_SCOPE)


def table(llama, strata):
    per_file = defaultdict(lambda: [0, 0, 0, 0])  # llama passes, strata of those, skipped, strata only
    for node, outcome in llama.items():
        f = node.split("::")[0].split("/")[-1]
        if outcome == "passed":
            per_file[f][0] += 1
            per_file[f][1] += strata.get(node) == "passed"
        elif outcome == "skipped":
            per_file[f][2] += 1
        elif strata.get(node) == "passed":
            per_file[f][3] += 1
    print(f"| file | llama-server passes | strata passes of those | skipped (both) | strata passes, llama-server not |")
    print("|---|---:|---:|---:|---:|")
    n = k = 0
    for f in sorted(per_file):
        a, b, s, only = per_file[f]
        n, k = n + a, k + b
        print(f"| {f} | {a} | {b} | {s} | {only} |")
    print(f"\nstrata passes {k} of {n} tests that llama-server passes ({100 * k / max(n, 1):.1f}%)")
    failing = sorted(node for node, o in llama.items() if o == "passed" and strata.get(node) != "passed")
    if failing:
        print("\nllama-server passes, strata does not:")
        for node in failing:
            print(f"  {node}")
    return sorted(node for node, o in llama.items() if o == "passed" and strata.get(node) == "passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="strata on the expected list only")
    ap.add_argument("--write-expected", action="store_true", help="rewrite expected_pass.txt from this run")
    ap.add_argument("--strata-only", action="store_true", help="run strata alone and list what fails (no table)")
    ap.add_argument("files", nargs="*", help="test files or node ids (default: every file in scope)")
    args = ap.parse_args()
    if not MODEL.is_file():
        sys.exit(f"{MODEL} is missing: run scripts/setup/setup.sh")
    WORK.mkdir(exist_ok=True)
    suite = suite_copy()
    adapter = HERE / "strata_as_llama_server.py"
    if args.check:
        expected = [l.strip() for l in EXPECTED.read_text().splitlines() if l.strip() and not l.startswith("#")]
        strata = run(adapter, expected, "strata", 18180)
        # A test may skip itself for want of something on this machine (an IPv6 loopback):
        # said, not failed.
        for node in expected:
            if strata.get(node) == "skipped":
                print(f"  skipped here: {node}")
        missing = [node for node in expected if strata.get(node) not in ("passed", "skipped")]
        if missing:
            # Some tests time requests against each other (slots busy at once): once more, alone.
            print(f"{len(missing)} expected tests did not pass; running them once more")
            again = run(adapter, missing, "strata-again", 18180)
            for node in missing:
                if again.get(node) == "passed":
                    print(f"  passed the second time: {node}")
            missing = [node for node in missing if again.get(node) != "passed"]
        print(f"strata passes {len(expected) - len(missing)} of the {len(expected)} expected tests "
              f"(logs: {WORK / 'strata.log'}, {WORK / 'strata-again.log'})")
        for node in missing:
            print(f"  not passed: {node} ({strata.get(node, 'not run')})")
        if missing:
            log = (WORK / "strata-again.log").read_text(errors="replace")
            print("".join(line + "\n" for line in log.splitlines() if line.startswith(("FAILED", "ERROR", "E   "))))
        sys.exit(1 if missing else 0)
    files = [f if f.startswith("unit/") else f"unit/{f}" for f in (args.files or test_files(suite))]
    if args.strata_only:
        strata = run(adapter, files, "strata", 18180)
        for node, outcome in sorted(strata.items()):
            print(f"{outcome:8} {node}")
        return
    llama_bin = ROOT / ".llama-tools" / "bin" / "llama-server"
    if not llama_bin.is_file():
        sys.exit(f"{llama_bin} is missing: run scripts/setup/build_llama_tools.sh server")
    llama = run(llama_bin, files, "llama-server", 18080)
    strata = run(adapter, files, "strata", 18180)
    passing = table(llama, strata)
    if args.write_expected:
        EXPECTED.write_text("# Tests of llama.cpp's server suite that strata passes (and llama-server too), written by\n"
                            "# scripts/compat/llama_server_suite.py --write-expected; CI runs them with --check.\n"
                            + "".join(f"{node}\n" for node in passing))
        print(f"\n{EXPECTED}: {len(passing)} tests")


if __name__ == "__main__":
    main()
