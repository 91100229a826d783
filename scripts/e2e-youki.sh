#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: real youki containers (busybox rootfs) with nethook
# registered by `nethook inject BUNDLE`, on the built-in default network.
#
#   1. `nethook inject` writes createRuntime + poststop entries (absolute path,
#      env only NETHOOK_*, so no PATH), idempotently; the test lowers their
#      timeout to 2 s;
#   2. the hook contract by direct invocation: env -i, stdout closed, within
#      2 s, and youki's poststop state shape (the dead init's pid) accepted;
#   3. two containers get distinct addresses, reach each other, the gateway
#      and the host;
#   4. nethook.ports=8080:80 on a busybox httpd answers on the host's addresses (not 127.0.0.1) and
#      (hairpin) from another container;
#   5. ten run/kill/delete cycles all set up and tear down;
#   6. after kill + delete nothing is left: no nh* veth, no endpoint record, no
#      IPAM allocation, empty nft maps. youki's poststop state still carries
#      the dead pid: nethook must tear down by container id alone.
#
# youki 0.7.0 comes from crates.io, built once with `--features v1` (a default
# build has no cgroup manager and runs nothing on this cgroup v1 layout) and
# cached in ~/.cache/nethook/youki-0.7.0 (or $NETHOOK_CACHE_DIR): about 7
# minutes with a cold cargo cache, nothing after. NETHOOK_YOUKI=path skips it.
#
# Everything runs in a throwaway network + mount + PID namespace (lib.sh): the
# machine's own network, nftables and mounts are never touched, and no process
# outlives the script.
#
# Env: NETHOOK_BIN=path    use this binary instead of building
#      NETHOOK_YOUKI=path  use this youki instead of the cached build
#      NETHOOK_CYCLES=N    run/delete cycles in part 5 (default 10)
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip nft unshare nsenter
    # Both need the network (crates.io): before entering the sandbox.
    nh_ensure_youki
    nh_build
fi
nh_enter_sandbox_pidns "$0" "$@"

nh_setup_tmp
NH_RT=youki
trap nh_rt_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== nethook e2e with $("$NH_YOUKI" --version | sed -n 1p) ($NH_YOUKI; sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

nh_rt_scenario dead

echo
nh_summary
