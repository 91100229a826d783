#!/usr/bin/env bash
# Fuzzes the state parser and the annotation grammar with cargo fuzz (libFuzzer), a few
# minutes per target. Not part of CI. Any crash is saved under fuzz/artifacts/<target>/;
# turn it into a regression test in src/frontend/oci.rs or src/model/ports.rs before fixing it.
#
#   bash scripts/fuzz.sh            # 3 minutes per target
#   FUZZ_SECONDS=30 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f ~/.cargo/env ]] && . ~/.cargo/env
seconds="${FUZZ_SECONDS:-180}"

# From /, so that this repository's .cargo/config.toml (static linking) stays out of it.
command -v cargo-fuzz >/dev/null 2>&1 || (cd / && cargo install cargo-fuzz --locked)
# cargo fuzz passes -Z sanitizer flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1

# Seed the corpora with the repository's good and bad samples.
mkdir -p fuzz/corpus/state fuzz/corpus/annotations
cp testdata/*.json fuzz/corpus/state/ 2>/dev/null || true
for f in testdata/bad/*.json; do
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("stdin",""),end="")' "$f" \
        > "fuzz/corpus/state/$(basename "$f")"
done
printf '%s' '8080:80' > fuzz/corpus/annotations/simple
printf '%s' '127.0.0.1:5000-5010:6000-6010/udp,9:9/sctp' > fuzz/corpus/annotations/ranges

for target in state annotations; do
    echo "== fuzzing $target for ${seconds}s"
    cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096
done
echo "no crashes"
