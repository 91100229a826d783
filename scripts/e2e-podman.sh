#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: Podman (Debian 12's 4.3, runtime runc) running busybox
# containers from a rootfs directory with nethook installed by
# `nethook install --podman-hooks-dir DIR`, on the built-in default network.
#
#   1. `nethook install` writes a hooks.d file (createRuntime + poststop,
#      triggered by the annotation nethook.network, absolute path, env only
#      NETHOOK_*); the test lowers its timeout to 2 s;
#   2. the hook contract by direct invocation: env -i, stdout closed, within
#      2 s, poststop state without pid (as podman sends it);
#   3. `podman run --network none --annotation nethook.network=nethook`: two
#      containers get distinct addresses, reach each other, the gateway and
#      the host; podman's own network stack stays out (only lo + eth0 inside,
#      no podman bridge, no other nftables table);
#   4. a container without the annotation gets no network from nethook;
#   5. nethook.ports=8080:80 on a busybox httpd answers on the host's addresses (not 127.0.0.1) and
#      (hairpin) from another container;
#   6. a container that exits by itself is torn down (conmon's cleanup runs
#      the poststop hook) and set up again by podman start;
#   7. names: a container finds another by its nethook.name through the
#      /etc/resolv.conf nethook.resolv=true wrote (Podman refuses --dns with
#      --network none);
#   8. podman stop runs the poststop hook, podman rm / rm -f leave nothing: no
#      nh* veth, no endpoint record, no IPAM allocation, empty nft maps, no
#      container, no mount.
#
# No image is pulled: --rootfs points at a busybox directory. Podman's storage
# (--root) is in the temp dir, its run root is /run/nethook-podman on a tmpfs
# mounted over /run in the sandbox's private mount namespace: podman and its
# runc also write /run/runc and /run/containers, which must not reach the
# machine's /run. Everything runs in a throwaway network + mount + PID
# namespace, so conmon and podman's cleanup processes cannot outlive the test.
#
# Env: NETHOOK_BIN=path  use this binary instead of building
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_install_packages podman runc conmon
    nh_require_cmds podman conmon runc busybox python3 ip nft unshare nsenter
    # Build before entering the sandbox: cargo may need the network.
    nh_build
fi
nh_enter_sandbox_pidns "$0" "$@"

nh_setup_tmp
# By default podman asks runc for nofile and nproc limits above what this
# machine lets a process raise them to, and the container fails ("error setting
# rlimit type 7: operation not permitted"); ask for modest ones instead.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
HOOKS_DIR="$NH_TMP/hooks.d"
PODMAN=(podman
    --root "$NH_TMP/podman/root" --runroot /run/nethook-podman --tmpdir "$NH_TMP/podman/tmp"
    --storage-driver vfs --network-config-dir "$NH_TMP/podman/networks"
    --cgroup-manager cgroupfs --events-backend none --runtime runc
    --hooks-dir "$HOOKS_DIR")
pod() { command "${PODMAN[@]}" "$@" </dev/null; }

cleanup() {
    local rc=$?
    set +e
    pod rm --all --force --time 0 >/dev/null 2>&1
    nh_unmount_sandbox
    (exit "$rc")
    nh_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nh_require_private_mntns
mount -t tmpfs -o mode=0755,size=64m nethook-podman-run /run

echo "== nethook e2e with $(podman --version) + $(runc --version | head -n 1) (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

A=e2e-$$-a
B=e2e-$$-b
WEB=e2e-$$-web
PLAIN=e2e-$$-plain # no annotation: nethook must stay out
SHORT=e2e-$$-short # exits by itself, then is started again

# podman_run NAME ROOTFS_ARGS... : podman run -d, the container id in $NAME.id.
podman_run() {
    local name=$1 out
    shift
    nh_make_rootfs "$NH_TMP/rootfs-$name"
    out="$(pod run --detach --name "$name" --network none "${ULIMITS[@]}" --cap-add NET_RAW \
        "$@" 2>&1)" || { echo "$out"; return 1; }
    # The last line is the id; earlier ones would be warnings.
    tail -n 1 <<<"$out" >"$NH_TMP/$name.id"
}
cid() { cat "$NH_TMP/$1.id" 2>/dev/null; }
pexec() { pod exec "$@"; }

running() { [[ "$(pod inspect --format '{{.State.Status}}' "$1" 2>/dev/null)" == running ]]; }

hooks_file_ok() {
    nh_check_hook_entries "$HOOKS_DIR/nethook.json" || return 1
    python3 - "$HOOKS_DIR/nethook.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
if doc.get("version") != "1.0.0":
    sys.exit("version %r" % doc.get("version"))
if doc.get("when") != {"annotations": {"^nethook\\.network$": ".*"}}:
    sys.exit("when %r" % doc.get("when"))
PY
}

# Podman's network stack stays out: no bridge or veth of its own, no nftables
# table but nethook's (inet nethook, and bridge nethook for anti-spoofing).
no_podman_network() {
    local links tables
    links="$(ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -Ev "^(lo|$NH_BRIDGE|nh[0-9a-v]{12,13})$" || true)"
    [[ -z $links ]] || { echo "other links: $links"; return 1; }
    tables="$(nft list tables | grep -Ev '^table (inet|bridge) nethook$' || true)"
    [[ -z $tables ]] || { echo "other nftables tables: $tables"; return 1; }
}

only_lo() { # NAME: nethook stayed out
    local out
    out="$(pexec "$1" ip -o link)" || return 1
    [[ $(grep -cv ': lo:' <<<"$out") -eq 0 ]] || { echo "links inside: $out"; return 1; }
    if nh_ls_field "$(cid "$1")" id >/dev/null 2>&1; then echo "$1 is listed by nethook ls"; return 1; fi
}

stop_then_gone() { # NAME: podman stop, and the poststop hook has run by the time it returns
    local id
    id="$(cid "$1")"
    pod stop --time 0 "$1" >/dev/null || return 1
    nh_wait_until 5 nh_no_record "$id" || { echo "endpoint record of $1 still there after podman stop"; return 1; }
}

rm_gone() { # NAME [rm options]
    local name=$1
    shift
    pod rm "$@" "$name" >/dev/null || return 1
    if pod container exists "$name"; then echo "$name still exists"; return 1; fi
}

exited_and_gone() { # NAME
    [[ "$(pod inspect --format '{{.State.Status}}' "$1" 2>/dev/null)" == exited ]] &&
        nh_no_record "$(cid "$1")"
}

start_again() { # NAME
    pod start "$1" >/dev/null || return 1
    nh_ls_field "$(cid "$1")" ipv4
}

podman_empty() {
    local out
    out="$(pod ps --all --quiet)" || return 1
    [[ -z $out ]] || { echo "containers left: $out"; return 1; }
}

no_mounts_left() {
    local out
    out="$(findmnt -rn -o TARGET | grep -E "^($NH_TMP|/run/nethook-podman)" || true)"
    [[ -z $out ]] || { echo "mounted: $out"; return 1; }
}

# --- 1. registration -------------------------------------------------------------
nh_section "registration: nethook install --podman-hooks-dir"
nh_check "nethook install --podman-hooks-dir $HOOKS_DIR" nh install --podman-hooks-dir "$HOOKS_DIR"
nh_check "hooks.d file: version 1.0.0, createRuntime+poststop, when annotation nethook.network, env only NETHOOK_*" \
    hooks_file_ok
nh_check "hook timeout lowered to 2 s in the test's hooks dir" nh_set_hook_timeout "$HOOKS_DIR/nethook.json" 2

# --- 2. the hook contract -------------------------------------------------------------
nh_section "the hook contract, by direct invocation"
nh_check_hook_direct podman

# --- 3. two containers ---------------------------------------------------------------------
nh_section "two containers: podman run --network none --annotation nethook.network=nethook"
for name in "$A" "$B"; do
    nh_check "podman run $name (createRuntime hook, 2 s timeout)" podman_run "$name" \
        --annotation nethook.network=nethook --rootfs "$NH_TMP/rootfs-$name" sleep 3600
done
IP_A="$(nh_ls_field "$(cid "$A")" ipv4 2>/dev/null || true)"
IP_B="$(nh_ls_field "$(cid "$B")" ipv4 2>/dev/null || true)"
echo "   $A: ${IP_A:-?} ($(cid "$A" | cut -c1-12))   $B: ${IP_B:-?} ($(cid "$B" | cut -c1-12))"
nh_check "nethook ls --json (by podman's container id): distinct addresses in $NH_SUBNET" \
    nh_check_addresses "$IP_A" "$IP_B"
nh_check_pair pexec "$A" "$IP_A" "$(nh_ls_field "$(cid "$A")" host_interface 2>/dev/null || true)" \
    "$B" "$IP_B" "$(nh_ls_field "$(cid "$B")" host_interface 2>/dev/null || true)"
nh_check "podman's network stack stayed out (no bridge/veth/nft table of its own)" no_podman_network

# --- 4. no annotation, no nethook ---------------------------------------------------------
nh_section "a container without the annotation"
nh_check "podman run $PLAIN (no nethook.network annotation)" podman_run "$PLAIN" \
    --rootfs "$NH_TMP/rootfs-$PLAIN" sleep 3600
nh_check "$PLAIN has only lo and is not listed by nethook ls" only_lo "$PLAIN"

# --- names: nethook.resolv ------------------------------------------------------------------
# Podman refuses --dns with --network none; the container's own /etc/resolv.conf is then
# the root's, which nethook.resolv=true writes.
nh_section "names: a DNS network, nethook.name and nethook.resolv=true"
N1=e2e-$$-n1
N2=e2e-$$-n2
nh_check "nethook network create pdns --subnet 10.68.0.0/24 --dns" nh network create pdns --subnet 10.68.0.0/24 --dns
nh_check "podman run $N1 (nethook.name=alpha)" podman_run "$N1" \
    --annotation nethook.network=pdns --annotation nethook.name=alpha --rootfs "$NH_TMP/rootfs-$N1" sleep 3600
nh_check "podman run $N2 (nethook.resolv=true)" podman_run "$N2" \
    --annotation nethook.network=pdns --annotation nethook.resolv=true --rootfs "$NH_TMP/rootfs-$N2" sleep 3600
IP_N1="$(nh_ls_field "$(cid "$N1")" ipv4 2>/dev/null || true)"
finds_alpha() {
    local out
    out="$(pexec "$N2" nslookup alpha 2>&1)" || { echo "$out"; return 1; }
    [[ $out == *"$IP_N1"* ]] || { echo "$out"; return 1; }
}
nh_check "$N2 finds alpha ($IP_N1) through the resolv.conf nethook wrote" finds_alpha
nh_check "podman rm -f $N1 $N2" pod rm --force --time 0 "$N1" "$N2"
nh_check "nethook network rm pdns" nh network rm pdns

# --- 5. published port ---------------------------------------------------------------------
nh_section "published port 8080 -> busybox httpd:80"
nh_check "podman run $WEB with nethook.ports=8080:80" podman_run "$WEB" \
    --annotation nethook.network=nethook --annotation nethook.ports=8080:80 \
    --rootfs "$NH_TMP/rootfs-$WEB" busybox httpd -f -p 80 -h /www
IP_WEB="$(nh_ls_field "$(cid "$WEB")" ipv4 2>/dev/null || true)"
echo "   $WEB: ${IP_WEB:-?} ports $(nh_ls_field "$(cid "$WEB")" ports 2>/dev/null || echo '?')"
nh_check "nethook ls --json: $WEB has its own address" nh_check_addresses "$IP_A" "$IP_B" "$IP_WEB"
nh_check "httpd answers directly on $IP_WEB:80" nh_fetch_ok nh_host_wget "http://$IP_WEB:80/"
nh_check "sandbox host fetches http://$NH_GATEWAY:8080/" nh_fetch_ok nh_host_wget "http://$NH_GATEWAY:8080/"
nh_check "$A fetches http://$NH_GATEWAY:8080/ (hairpin)" \
    nh_fetch_ok pexec "$A" timeout 5 wget -q -O - "http://$NH_GATEWAY:8080/"

# --- 6. exit and restart -------------------------------------------------------------
nh_section "a container that exits by itself, then podman start"
nh_check "podman run $SHORT (sleep 2)" podman_run "$SHORT" \
    --annotation nethook.network=nethook --rootfs "$NH_TMP/rootfs-$SHORT" sleep 2
nh_check "$SHORT is listed by nethook ls while it runs" nh_ls_field "$(cid "$SHORT")" ipv4
nh_check "$SHORT exited and its poststop hook ran (conmon's cleanup)" \
    nh_wait_until 10 exited_and_gone "$SHORT"
nh_check "podman start $SHORT sets it up again" start_again "$SHORT"
IP_SHORT="$(nh_ls_field "$(cid "$SHORT")" ipv4 2>/dev/null || true)"

# --- 7. teardown --------------------------------------------------------------------
nh_section "teardown (podman stop / rm -> poststop hook)"
IDS=("$(cid "$A")" "$(cid "$B")" "$(cid "$WEB")" "$(cid "$PLAIN")" "$(cid "$SHORT")")
nh_check "podman stop $A runs the poststop hook" stop_then_gone "$A"
nh_check "podman rm $A" rm_gone "$A"
nh_check "podman rm -f $B" rm_gone "$B" --force --time 0
nh_check "podman rm -f $WEB" rm_gone "$WEB" --force --time 0
nh_check "podman rm -f $PLAIN" rm_gone "$PLAIN" --force --time 0
# The restarted $SHORT exits by itself 2 s after its start: `podman rm -f` at that moment
# races with its exit (podman 4.3: "container state improper: stopped"). Waiting for the
# exit also pins that the second run's poststop ran.
nh_check "$SHORT exited again and its poststop hook ran again" \
    nh_wait_until 10 exited_and_gone "$SHORT"
nh_check "podman rm $SHORT" rm_gone "$SHORT"
nh_check "podman ps -a is empty" podman_empty
nh_check_no_leftovers "${IDS[@]}" -- "$IP_A" "$IP_B" "$IP_WEB" "$IP_SHORT"
nh_check "nothing mounted under the temp dir or podman's run root" no_mounts_left

echo
nh_summary
