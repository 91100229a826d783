#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: containerd from Debian (1.6, `ctr run --cni --rootfs DIR`) with
# nethook as its CNI plugin, chained with the reference plugins tuning and bandwidth,
# next to a container runc starts with nethook as its OCI hook, on one network.
#
#   1. nethook is installed by `nethook install --cni-bin-dir --cni-conf-dir`, and the
#      example conflist it writes, with tuning, bandwidth and the spy appended, is the
#      one ctr uses. ctr reads the first conflist in /etc/cni/net.d and the plugins in /opt/cni/bin:
#      both are directories of this test's own, mounted over those paths in the
#      sandbox's private mount namespace; /var/lib/cni is a tmpfs there;
#   2. `ctr run --cni` (waiting for the task, run in the background): the container
#      gets an address on the nethook network, `nethook ls` lists it (as ctr's id,
#      NAMESPACE-ID@eth0), tuning set the MTU and bandwidth shaped the host veth, both
#      finding their interface in nethook's result (prevResult);
#   3. it and a runc container with the nethook hook reach each other;
#   4. what ctr sends, as a pass-through spy plugin at the end of the chain records
#      it: ADD with CNI_NETNS=/proc/PID/ns/net and no runtimeConfig (ctr passes no
#      capability args, so no portMappings: published ports are tested through
#      Podman, scripts/e2e-podman-cni.sh); DEL only when ctr itself waits for the task,
#      after the task is deleted, with CNI_NETNS empty; `ctr run -d` never sends DEL
#      (not on task kill, task delete or container rm): that container's attachment
#      stays until a DEL is sent for it by hand, which then removes it;
#   5. after the DELs nothing is left: no nh* veth, record, IPAM file, nft element,
#      and bandwidth's qdisc went with the veth.
#
# containerd runs with its own config, root, state and socket in the sandbox (never
# the machine's /var/lib/containerd or /run/containerd), and is ended by its pid;
# everything runs in a throwaway network + mount + PID namespace.
#
# Env: NETHOOK_BIN=path  use this binary instead of building
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=lib-cni.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib-cni.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    if ! nh_install_packages containerd runc containernetworking-plugins busybox-static 2>/dev/null ||
        ! command -v ctr >/dev/null || [[ ! -x $NH_CNI_REF/tuning ]]; then
        echo "SKIP: Debian packages containerd/containernetworking-plugins cannot be installed here: nothing tested"
        exit 0
    fi
    nh_require_cmds containerd ctr runc busybox python3 ip nft tc unshare
    nh_build
fi
nh_enter_sandbox_pidns "$0" "$@"

nh_setup_tmp
CTRD_RUN=/run/nethook-containerd
SOCK=$CTRD_RUN/containerd.sock
CTRD_PID=""
ctr() { command ctr --address "$SOCK" "$@"; }

cleanup() {
    local rc=$?
    set +e
    local id
    for id in $(ctr task ls -q 2>/dev/null); do ctr task kill -s KILL "$id" >/dev/null 2>&1; done
    sleep 0.3
    for id in $(ctr task ls -q 2>/dev/null); do ctr task delete -f "$id" >/dev/null 2>&1; done
    for id in $(ctr c ls -q 2>/dev/null); do ctr c rm "$id" >/dev/null 2>&1; done
    if [[ -n $CTRD_PID ]]; then
        kill "$CTRD_PID" 2>/dev/null
        wait "$CTRD_PID" 2>/dev/null
    fi
    nh_stop_all
    nh_unmount_sandbox '/var/lib/cni|/etc/cni|/opt'
    (exit "$rc")
    nh_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nh_require_private_mntns
mount -t tmpfs -o mode=0755,size=64m nethook-containerd-run /run
nh_cni_sandbox_dirs

echo "== nethook CNI e2e with $(containerd --version | awk '{print $1, $3}') + $(runc --version | head -n 1) (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# --- containerd of our own --------------------------------------------------------
mkdir -p "$CTRD_RUN" "$NH_TMP/containerd/root" "$NH_TMP/containerd/opt"
cat >"$NH_TMP/containerd/config.toml" <<EOF
version = 2
root = "$NH_TMP/containerd/root"
state = "$CTRD_RUN/state"
# No CRI: it would load CNI itself and serve kubelet, neither of which is tested here.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
# The opt plugin would otherwise create /opt/containerd on the machine.
[plugins."io.containerd.internal.v1.opt"]
  path = "$NH_TMP/containerd/opt"
EOF
containerd --config "$NH_TMP/containerd/config.toml" </dev/null >"$NH_TMP/containerd.log" 2>&1 &
CTRD_PID=$!
ctrd_up() { [[ -S $SOCK ]] && ctr version >/dev/null 2>&1; }
if ! nh_wait_until 20 ctrd_up; then
    nh_fail "containerd started (socket $SOCK)"
    tail -n 20 "$NH_TMP/containerd.log" | sed 's/^/    /'
    nh_summary
    exit 1
fi
nh_pass "containerd $(ctr version 2>/dev/null | awk '/Server:/{s=1} s&&/Version:/{print $2; exit}') up on $SOCK (root, state, opt in the sandbox)"

# --- the conflist ------------------------------------------------------------
nh_section "conflist: nethook install's example + tuning (mtu 1400) -> bandwidth (ingress 8 Mbit/s) -> spy"
nh_check "nethook install --cni-bin-dir --cni-conf-dir: a 1.0.0 conflist with this run's runDir/configDir" \
    nh_example_conflist_ok
nh_check "$NH_CNI_BIN/nethook (installed copy) answers CNI VERSION" nh_cni_plugin_ok
CONFLIST="$NH_CNI_CONF/10-nethook.conflist"
MTU=1400
nh_conflist_from_example "$CONFLIST" \
    "{\"type\":\"tuning\",\"mtu\":$MTU}" \
    '{"type":"bandwidth","ingressRate":8000000,"ingressBurst":65536}'

ROOTFS="$NH_TMP/rootfs"
nh_make_rootfs "$ROOTFS"
SFX=$RANDOM # $$ is 1 in the PID namespace
A=e2e-$SFX-a # ctr run --cni, ctr waits for it (in the background here)
D=e2e-$SFX-d # ctr run --cni -d
H=e2e-$SFX-hook # runc + the nethook OCI hook
# With --rootfs (no image) ctr gives the process no environment at all.
CPATH=PATH=/usr/sbin:/usr/bin:/sbin:/bin
NS=default # ctr's namespace: CNI_CONTAINERID is NS-ID
CTR_PIDS=()

# ctr_run_fg ID CMD...: `ctr run --cni` as a user runs it in a terminal: ctr stays,
# waits for the task and tears it down (DEL included) when it exits.
ctr_run_fg() {
    local id=$1
    shift
    ctr run --cni --env "$CPATH" --rootfs "$ROOTFS" "$id" "$@" </dev/null >"$NH_TMP/ctr-$id.log" 2>&1 &
    CTR_PIDS+=($!)
    echo $! >"$NH_TMP/ctr-$id.pid"
    nh_wait_until 10 task_running "$id" || { cat "$NH_TMP/ctr-$id.log"; return 1; }
}
task_running() { [[ "$(ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}')" == RUNNING ]]; }
ctr_exec() {
    local id=$1
    shift
    ctr task exec --exec-id "x$RANDOM$RANDOM" "$id" "$@" </dev/null
}
fid() { echo "$NS-$1"; }   # CNI_CONTAINERID
key() { echo "$NS-$1@eth0"; } # the attachment nethook ls lists: ID@IFNAME
runc_stop() { NH_RT=runc nh_rt_stop "$1"; }

# --- 2. ctr run --cni ----------------------------------------------------------
nh_section "ctr run --cni --rootfs DIR $A sleep 3600 (ctr waits for the task)"
nh_check "ctr run --cni $A" ctr_run_fg "$A" sleep 3600
IP_A="$(nh_ls_field "$(key "$A")" ipv4 2>/dev/null || true)"
VETH_A="$(nh_ls_field "$(key "$A")" host_interface 2>/dev/null || true)"
echo "   $(key "$A"): ${IP_A:-?} host veth ${VETH_A:-?}"
nh_check "nethook ls lists $(key "$A") with an address in $NH_SUBNET" nh_check_addresses "$IP_A"
nh_check "host veth of $A ($VETH_A) is nh+hex and on $NH_BRIDGE" nh_check_host_veth "$VETH_A"
nh_check "$A: eth0 $IP_A/16, default via $NH_GATEWAY, only lo+eth0" nh_check_inside ctr_exec "$A" "$IP_A"

mtu_is() { # ID MTU
    local out
    out="$(ctr_exec "$1" cat /sys/class/net/eth0/mtu)" || return 1
    [[ $out == "$2" ]] || { echo "eth0 mtu is $out"; return 1; }
}
tbf_on() { # VETH
    local out
    out="$(tc qdisc show dev "$1")" || return 1
    [[ $out == *"qdisc tbf"* ]] || { echo "qdiscs on $1: $out"; return 1; }
}
nh_check "tuning (after nethook) set $A's eth0 MTU to $MTU: it found eth0 in nethook's result" mtu_is "$A" "$MTU"
nh_check "bandwidth (after tuning) put a tbf qdisc on host veth $VETH_A: it found the host interface in the result" \
    tbf_on "$VETH_A"

spy_add_ok() { # FULLID: the spy got ADD with a /proc netns, no runtimeConfig, and nethook's result
    local rec
    rec="$(nh_spy_one ADD "$1")" || return 1
    python3 - "$rec" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("ADD: CNI_NETNS=%s CNI_IFNAME=%s CNI_ARGS=%r runtimeConfig=%r" % (r["netns"], r["ifname"], r["args"], r["runtimeConfig"]))
if not (r["netns"] or "").startswith("/proc/"):
    sys.exit("netns %r" % r["netns"])
if r["runtimeConfig"]:
    sys.exit("ctr passed runtimeConfig %r" % r["runtimeConfig"])
prev = r["prevResult"] or {}
ifs = prev.get("interfaces", [])
if not any(i.get("name") == r["ifname"] and i.get("sandbox") == r["netns"] for i in ifs):
    sys.exit("no %s with sandbox %s in the result: %s" % (r["ifname"], r["netns"], ifs))
if not any("sandbox" not in i or not i["sandbox"] for i in ifs):
    sys.exit("no host interface in the result: %s" % ifs)
if not prev.get("ips"):
    sys.exit("no ips in the result: %s" % prev)
PY
}
nh_check "spy: ctr sent ADD with CNI_NETNS=/proc/PID/ns/net and no runtimeConfig (no capability args: no portMappings); the result names eth0 in that netns, the host veth, an address" \
    spy_add_ok "$(fid "$A")"

# --- 3. a runc container with the OCI hook on the same network ----------------------
nh_section "a runc container with the nethook OCI hook, on the same network"
nh_make_bundle "$NH_TMP/bundles/$H" "$H"
nh_check "runc run $H (createRuntime hook)" nh_run_container "$NH_TMP/bundles/$H" "$H"
IP_H="$(nh_ls_field "$H" ipv4 2>/dev/null || true)"
echo "   $H: ${IP_H:-?}"
nh_check "nethook ls lists the hook container and the CNI one with distinct addresses" nh_check_addresses "$IP_A" "$IP_H"
nh_check "$A (CNI) pings $H (hook) at $IP_H" ctr_exec "$A" ping -c 1 -W 3 "$IP_H"
nh_check "$H (hook) pings $A (CNI) at $IP_A" nh_exec "$H" ping -c 1 -W 3 "$IP_A"
nh_check "$A pings the gateway $NH_GATEWAY" ctr_exec "$A" ping -c 1 -W 3 "$NH_GATEWAY"

# --- 4. detached: no DEL from ctr ----------------------------------------------------
nh_section "ctr run --cni -d $D: who sends DEL"
nh_check "ctr run --cni -d $D" ctr run --cni -d --env "$CPATH" --rootfs "$ROOTFS" "$D" sleep 3600
IP_D="$(nh_ls_field "$(key "$D")" ipv4 2>/dev/null || true)"
nh_check "nethook ls lists $(key "$D") at ${IP_D:-?}" nh_check_addresses "$IP_A" "$IP_H" "$IP_D"
nh_check "$D pings $A" ctr_exec "$D" ping -c 1 -W 3 "$IP_A"
task_gone() { ! ctr task ls -q 2>/dev/null | grep -qx "$1"; }
stop_detached() {
    ctr task kill -s KILL "$D" >/dev/null || return 1
    nh_wait_until 5 task_stopped "$D" || true
    ctr task delete "$D" >/dev/null || return 1
    ctr c rm "$D" >/dev/null || return 1
}
task_stopped() { [[ "$(ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}')" == STOPPED ]]; }
no_del_for() { # FULLID
    local out
    out="$(nh_spy_calls "r['command'] == 'DEL' and r['containerId'] == '$1'")"
    [[ -z $out ]] || { echo "DEL sent: $out"; return 1; }
}
nh_check "ctr task kill + task delete + container rm $D" stop_detached
nh_check "spy: ctr sent no DEL for the detached $D (task kill, task delete, c rm)" no_del_for "$(fid "$D")"
nh_check "so its attachment is still listed by nethook ls" nh_ls_field "$(key "$D")" ipv4
nh_check "DEL by hand (the conflist in reverse, CNI_NETNS empty, as ctr would send it) succeeds" \
    nh_cni_del_by_hand "$CONFLIST" "$(fid "$D")" eth0
not_listed() { ! nh_ls_field "$1" id >/dev/null 2>&1 || { echo "$1 still listed"; return 1; }; }
nh_check "and removes $(key "$D") from nethook ls" not_listed "$(key "$D")"
nh_check "a second DEL (idempotent) succeeds too" nh_cni_del_by_hand "$CONFLIST" "$(fid "$D")" eth0

# --- 5. ctr sends DEL when the task it waits for ends ------------------------------
nh_section "ctr task kill $A: the waiting ctr deletes the task, then sends DEL"
ctr_exited() { ! kill -0 "$(cat "$NH_TMP/ctr-$1.pid")" 2>/dev/null; }
nh_check "ctr task kill $A" ctr task kill -s KILL "$A"
nh_wait_until 10 ctr_exited "$A" || true
nh_check "the ctr run of $A has exited" ctr_exited "$A"
spy_del_ok() { # FULLID
    local rec
    rec="$(nh_spy_one DEL "$1")" || return 1
    python3 - "$rec" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("DEL: CNI_NETNS=%r prevResult=%s" % (r["netns"], "yes" if r["prevResult"] else "no"))
if r["netns"]:
    sys.exit("netns %r (expected empty)" % r["netns"])
PY
}
nh_check "spy: ctr sent one DEL for $(fid "$A") when its task ended, with CNI_NETNS empty" spy_del_ok "$(fid "$A")"
nh_check "$(key "$A") is gone from nethook ls" not_listed "$(key "$A")"
ctr c rm "$A" >/dev/null 2>&1 || true

# --- teardown -------------------------------------------------------------------------
nh_section "teardown"
nh_check "runc kill + delete $H (poststop hook)" runc_stop "$H"
nh_check "no container left in containerd" bash -c "[[ -z \$(command ctr --address $SOCK c ls -q) ]]"
nh_check_no_leftovers "$(key "$A")" "$(key "$D")" "$H" -- "$IP_A" "$IP_D" "$IP_H"
nh_check "no ifb or other link of bandwidth's left" bash -c "[[ -z \$(ip -o link show | grep -Ev ': (lo|$NH_BRIDGE):') ]] || { ip -br link; exit 1; }"

nh_section "what the client sent (the spy's record)"
nh_spy_report

echo
nh_summary
