#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: real crun containers (busybox rootfs) with nethook
# registered by `nethook inject BUNDLE`, on the built-in default network.
#
#   1. `nethook inject` writes createRuntime + poststop entries (absolute path,
#      env only NETHOOK_*, so no PATH), idempotently; the test lowers their
#      timeout to 2 s;
#   2. the hook contract by direct invocation: env -i, stdout closed, within
#      2 s, and crun's poststop state shape ("pid": 0) accepted at teardown;
#   3. two containers get distinct addresses, reach each other, the gateway
#      and the host;
#   4. nethook.ports=8080:80 on a busybox httpd answers on the host's addresses (not 127.0.0.1) and
#      (hairpin) from another container;
#   5. ten run/kill/delete cycles all set up and tear down (crun fails a run
#      now and then when a hook does not drain its stdin);
#   6. after kill + delete nothing is left: no nh* veth, no endpoint record, no
#      IPAM allocation, empty nft maps;
#   7. a bad annotation fails the run; crun shows only the hook's exit code, and
#      nethook's line reaches crun's stderr with the run.oci.hooks.stderr
#      annotation the README gives crun users, and the system log.
#
# Everything runs in a throwaway network + mount + PID namespace (lib.sh): the
# machine's own network, nftables and mounts are never touched, and no process
# outlives the script.
#
# crun 1.8 (Debian 12) refuses a hybrid cgroup layout ("cgroups in hybrid mode
# not supported"), so the sandbox unmounts /sys/fs/cgroup/unified in its own
# private mount namespace; the machine keeps it.
#
# Env: NETHOOK_BIN=path  use this binary instead of building
#      NETHOOK_CYCLES=N  run/delete cycles in part 5 (default 10)
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_install_packages crun
    nh_require_cmds crun runc busybox python3 ip nft unshare nsenter
    # Build before entering the sandbox: cargo may need the network.
    nh_build
fi
nh_enter_sandbox_pidns "$0" "$@"

nh_setup_tmp
NH_RT=crun
trap nh_rt_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== nethook e2e with $(crun --version | head -n 1) (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"
nh_drop_cgroup2_unified

# crun's poststop state: {"ociVersion":"1.0","id":..,"pid":0,"root":..,"bundle":..,"status":"stopped"}
nh_rt_scenario 0

nh_section "a failed hook's line under crun"
# crun throws hooks' stderr away unless run.oci.hooks.stderr names a file for it.
crun_hook_error() {
    local log="$NH_TMP/syslog" out
    nh_rt_bundle "$NH_TMP/bad" e2e-bad nethook.ports=notaport || return 1
    python3 - "$NH_TMP/bad/config.json" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
spec.setdefault("annotations", {})["run.oci.hooks.stderr"] = "/dev/stderr"
for h in spec["hooks"]["createRuntime"]:
    h["env"].append("NETHOOK_SYSLOG_SOCKET=" + path.rsplit("/", 2)[0] + "/syslog")
with open(path, "w") as f:
    json.dump(spec, f)
PY
    # A datagram socket that keeps the one message it gets, as the system log would.
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(10); open(sys.argv[1] + ".got", "w").write(s.recv(4096).decode())' "$log" &
    local listener=$!
    for _ in $(seq 50); do [[ -S $log ]] && break; sleep 0.1; done
    if out="$(crun run -d --bundle "$NH_TMP/bad" e2e-bad </dev/null 2>&1)"; then
        echo "crun ran a container with a bad annotation"; crun delete -f e2e-bad; return 1
    fi
    crun delete -f e2e-bad >/dev/null 2>&1 || true
    wait "$listener" || { echo "no system log message"; return 1; }
    printf '%s\n' "$out"
    grep -q 'nethook: nethook.ports entry "notaport"' <<<"$out" || return 1
    grep -q '^<27>nethook\[[0-9]*\]: container e2e-bad: nethook.ports entry "notaport"' "$log.got" || { cat "$log.got"; return 1; }
}
nh_check "nethook's line on crun's stderr (run.oci.hooks.stderr) and in the system log" crun_hook_error

echo
nh_summary
