#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (issue 6): GGUF, importance matrices (GGUF and .dat),
# safetensors (+ shard index), SentencePiece tokenizer.model, config.json, the tokenizer folder
# readers, chat templates, models.toml, and grammars and tool-call output (grammar). Each target runs SECONDS (default 600) under libFuzzer with AddressSanitizer,
# starting from the committed seeds in fuzz/corpus/<target>/ (new inputs go to the ignored
# fuzz/target/corpus/<target>/, so the seeds stay as committed).
#
#   bash scripts/check/fuzz.sh [SECONDS]            all targets
#   FUZZ_TARGETS="gguf config" bash scripts/check/fuzz.sh 60
#
# Exits non-zero on the first crash, hang (-timeout=10 s per input) or out-of-memory
# (-rss_limit_mb=2048); libFuzzer saves the input under fuzz/artifacts/<target>/ and prints the
# command that reproduces it. Needs the nightly toolchain (rustup) and cargo-fuzz, which it
# installs when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECS=${1:-600}
TARGETS=(${FUZZ_TARGETS:-gguf imatrix safetensors sentencepiece config tokenizer chat_template models_toml grammar})
CARGO_FUZZ_VERSION=0.13.2

die() { echo "scripts/check/fuzz.sh: $*" >&2; exit 1; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "scripts/check/fuzz.sh: installing the nightly toolchain (libFuzzer's sanitizer flags need it)" >&2
    rustup toolchain install nightly --profile minimal || die "no nightly toolchain and 'rustup toolchain install nightly' failed; install it by hand and rerun"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "scripts/check/fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" \
        || die "cannot install cargo-fuzz $CARGO_FUZZ_VERSION from crates.io (offline?); install it by hand with 'cargo install cargo-fuzz --locked' and rerun"
fi

dict_for() {
    case $1 in
        gguf | imatrix) echo gguf ;;
        safetensors | config | tokenizer) echo json ;;
        chat_template) echo jinja ;;
        models_toml) echo toml ;;
        *) echo "" ;;
    esac
}

cd fuzz
cargo +nightly fuzz build || die "building the fuzz targets failed"
mkdir -p target/logs
summary=()
for t in "${TARGETS[@]}"; do
    [ -d "corpus/$t" ] || die "unknown target $t (no fuzz/corpus/$t)"
    mkdir -p "target/corpus/$t"
    args=(-max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    d=$(dict_for "$t")
    [ -n "$d" ] && args+=(-dict="dict/$d.dict")
    echo "== fuzz $t for ${SECS}s"
    start=$(date +%s)
    if ! cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- "${args[@]}" >"target/logs/$t.log" 2>&1; then
        tail -n 60 "target/logs/$t.log" >&2
        die "target $t failed (crash, hang or out-of-memory): full log in fuzz/target/logs/$t.log, input in fuzz/artifacts/$t/"
    fi
    execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "target/logs/$t.log" | tail -n1 | awk '{print $2}')
    summary+=("$t: ${execs:-?} executions in $(( $(date +%s) - start ))s, no crash")
    echo "   ${summary[-1]}"
done
echo "== all fuzz targets passed"
printf '   %s\n' "${summary[@]}"
