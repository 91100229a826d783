#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The whole test suite, as CI runs it (via .ci/run) and as a developer can:
#
#   sudo bash scripts/test.sh
#
#   1. install the Debian packages the build and the tests need (no-op when present);
#   2. cargo build --release, once (the binary the end-to-end scripts use);
#   3. cargo test --release --features failpoints (unit + privileged integration
#      tests, rollback and crash tests included), reusing step 2's dependencies;
#   4. every scripts/e2e-*.sh, handed the binary from step 2 (NETHOOK_BIN) so
#      none of them builds again.
# Every step runs even when an earlier one failed (as long as there is a
# binary), so one CI log shows all failures; the exit status is non-zero if
# anything failed. Needs root: the tests create namespaces, links, nftables
# tables - each inside its own throwaway network namespace.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nh_require_root
cd "$NH_REPO_ROOT"

summary=()
failed=0
step() { printf '\n==== %s\n' "$*"; }
record() { # STATUS(0=ok) TEXT
    if (($1 == 0)); then summary+=("ok    $2"); else summary+=("FAIL  $2"); failed=1; fi
}

step "dependencies"
# The privileged tests ping from the sandbox host and, through nsenter, from inside
# containers with the host's ping; not every Debian image has it (busybox's is used only
# inside runc's rootfs).
NH_DEPS+=(iputils-ping)
nh_install_deps
nh_cargo_env
echo "ok ($(cargo --version))"
# youki is built from crates.io once and cached (~/.cache/nethook); building it here,
# outside the per-script timeout below, keeps a first run on a new machine from
# killing e2e-youki.sh half-way through the build.
nh_ensure_youki
echo "youki: $NH_YOUKI"

step "cargo build --release"
if ! cargo build --release; then
    record 1 "cargo build --release"
    printf '\n==== summary\n%s\n' "${summary[@]}"
    exit 1
fi
record 0 "cargo build --release"
# The end-to-end scripts get this exact binary, copied aside: the test build below
# enables the failpoints feature, which must never reach a binary that runs containers.
target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"
mkdir -p "$target_dir/e2e"
cp "$(nh_release_bin)" "$target_dir/e2e/nethook"
NETHOOK_BIN="$target_dir/e2e/nethook"
export NETHOOK_BIN

step "cargo test --release --features failpoints"
log="$(mktemp /tmp/nethook-cargo-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
# Full output streams to the log as usual; the per-binary "test result:" lines
# are kept for the summary at the end, where they are easy to find. Reusing the
# release profile means only the nethook crate is compiled again for the feature.
set +e
cargo test --release --features failpoints 2>&1 </dev/null | tee "$log"
rc=${PIPESTATUS[0]}
set -e
record "$rc" "cargo test --release --features failpoints"
while IFS= read -r line; do
    summary+=("        $line")
done < <(grep -E '^(test result:|error(\[|:))' "$log" || true)

shopt -s nullglob
for script in scripts/e2e-*.sh; do
    step "$script"
    set +e
    # timeout: a hung container must not hang CI forever; the script's own
    # traps still clean up on TERM.
    timeout --kill-after=30 900 bash "$script" </dev/null | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    last="$(tail -n 1 "$log")"
    [[ $last =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]] || last="exit status $rc"
    record "$rc" "$script: $last"
done

step "summary"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "FAILED"
    exit 1
fi
echo "ALL PASSED"
