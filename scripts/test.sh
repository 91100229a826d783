#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The whole test suite, as CI runs it (via .ci/run) and as a developer can:
#
#   sudo bash scripts/test.sh
#
#   1. install the Debian packages the build and the tests need (no-op when present);
#   2. cargo fmt --check (every crate of the workspace);
#   3. cargo build --release, once: target/<tuple>/release/nethook, the binary users
#      install and the end-to-end scripts run;
#   4. cargo clippy -D warnings over every target, with the failpoints feature and
#      without (check mode: links nothing, so step 3's binary stays as it is);
#   5. cargo test --release --features failpoints (unit + privileged integration
#      tests, rollback and crash tests included), with its binaries in
#      target/failpoints/ so that no binary with test code lands where step 3's is,
#      while compiled dependencies are shared with step 3 (cargo's build-dir);
#   6. every scripts/e2e-*.sh, handed the binary from step 3 (NETHOOK_BIN) so
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
nh_rust_components rustfmt clippy
echo "ok ($(cargo --version))"
# youki is built from crates.io once and cached (~/.cache/nethook); building it here,
# outside the per-script timeout below, keeps a first run on a new machine from
# killing e2e-youki.sh half-way through the build.
nh_ensure_youki
echo "youki: $NH_YOUKI"

step "cargo fmt --check"
set +e
cargo fmt --all --check
record $? "cargo fmt --check"
set -e

step "cargo build --release"
if ! cargo build --release; then
    record 1 "cargo build --release"
    printf '\n==== summary\n%s\n' "${summary[@]}"
    exit 1
fi
record 0 "cargo build --release"
# The end-to-end scripts get this exact binary. No later step writes to it: clippy
# links nothing, and the failpoints build below puts its binaries elsewhere.
NETHOOK_BIN="$(nh_release_bin)"
export NETHOOK_BIN
target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"

# --release: the build scripts and proc macros compiled in step 3 are reused (clippy
# checks, it does not generate code, so only type-checking is done again); the lints
# are the same as in the dev profile.
for features in failpoints ""; do
    args=(--release --workspace --all-targets ${features:+--features "nethook/$features"})
    step "cargo clippy ${args[*]} -- -D warnings"
    set +e
    cargo clippy "${args[@]}" -- -D warnings
    record $? "cargo clippy ${args[*]} -- -D warnings"
    set -e
done

step "cargo test --release --features failpoints"
log="$(mktemp /tmp/nethook-cargo-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
# Full output streams to the log as usual; the per-binary "test result:" lines
# are kept for the summary at the end, where they are easy to find.
# The failpoints feature must never reach target/<tuple>/release/nethook, the binary
# users install: this build's final artifacts (the nethook binary with failpoints, the
# test binaries) go to target/failpoints/. Its intermediate artifacts stay in the
# shared build directory (CARGO_BUILD_BUILD_DIR, cargo 1.91+), so nothing step 3
# compiled is compiled again. (The test harness needs panic = "unwind", so the
# dependencies are compiled once more for it, as they always were.)
# --workspace: crates/mnl-sys's tests run too.
set +e
CARGO_TARGET_DIR="$target_dir/failpoints" CARGO_BUILD_BUILD_DIR="$target_dir" \
    cargo test --release --workspace --features nethook/failpoints 2>&1 </dev/null | tee "$log"
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
    if [[ $last == SKIP:* ]]; then
        # A script that could not install what it needs tested nothing: a developer sees
        # it in the summary; in CI, where every package must install, it fails the run.
        if [[ ${CI:-} == true ]]; then record 1 "$script: $last"; else summary+=("skip  $script: $last"); fi
        continue
    fi
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
