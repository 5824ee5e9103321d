"""Records how transformers renders chat templates, as test expectations for strata's renderer.

Run by hand (not in CI) after scripts/setup.sh and shared/tools/reference-kit.sh .reference, with
transformers and jinja2 installed in .reference/venv:

    .reference/venv/bin/python scripts/gen_template_fixtures.py

It copies the templates into tests/fixtures/templates/ (llama.cpp's vendored models/templates,
SmolLM2's from its GGUF; the Gemma 3 and 3n ones are committed there with their sources in
tests/fixtures/templates/SOURCES.md), renders each for a fixed set of conversations with
transformers' own `render_jinja_template` (what `apply_chat_template` calls), with `strftime_now`
pinned to 2026-01-15, and writes tests/fixtures/templates/expected.json.
"""
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path

import transformers
import transformers.utils.chat_template_utils as ctu
from gguf import GGUFReader

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/templates"
LLAMA_CPP = ROOT / ".reference/llama.cpp/models/templates"
FIXED_NOW = datetime(2026, 1, 15, 9, 30, 0)


class FixedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = FixedDatetime  # strftime_now in templates reads this

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "  Tell me a joke.  "},
    ],
]
SPECIAL = {"bos_token": "<BOS>", "eos_token": "<EOS>"}


def collect():
    llama_dir = OUT / "llama.cpp"
    llama_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(LLAMA_CPP.glob("*.jinja")):
        shutil.copy(src, llama_dir / src.name)
    smol = GGUFReader(ROOT / ".models/SmolLM2-135M-Instruct.Q4_1.gguf").fields["tokenizer.chat_template"]
    (OUT / "HuggingFaceTB-SmolLM2-135M-Instruct.jinja").write_bytes(bytes(smol.parts[smol.data[0]]))
    return sorted(p for p in OUT.rglob("*.jinja"))


def main():
    cases = []
    for path in collect():
        source = path.read_text()
        for i, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                case = {"template": str(path.relative_to(OUT)), "conversation": i, "add_generation_prompt": agp}
                try:
                    case["output"] = ctu.render_jinja_template(
                        conversations=[conv], chat_template=source, add_generation_prompt=agp, **SPECIAL
                    )[0][0]
                except Exception as e:  # the template raised, or needs something we do not give
                    case["error"] = f"{type(e).__name__}: {e}"
                cases.append(case)
    doc = {
        "generator": f"transformers {transformers.__version__} render_jinja_template",
        "now": FIXED_NOW.isoformat(),
        "special_tokens": SPECIAL,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    (OUT / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases from {len(set(c['template'] for c in cases))} templates", file=sys.stderr)


main()
