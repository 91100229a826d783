#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of the macvlan driver: real runc containers (busybox rootfs)
# with nethook as their createRuntime/poststop hook, on a network made with
# `nethook network create --driver macvlan --parent lan0`.
#
# The LAN: the kernel here has no dummy driver, so the parent is one end of a
# veth pair (lan0, in the sandbox, with the host's address 192.168.50.10/24)
# whose other end is eth0 of a "LAN host" namespace (192.168.50.1/24, also the
# LAN's router, so the network's gateway).
#
#   1. network create refusals: no --parent, a parent that does not exist, a
#      parent that is a bridge port, loopback, a subnet that is not the
#      parent's LAN, a range holding the host's own address; then the network;
#   2. two containers get addresses from --ip-range, a macvlan eth0 (mode
#      bridge) with the LAN's prefix and default route via the router; they
#      reach each other and the LAN host, and the LAN host reaches both; no
#      link on the host; the host itself does not reach them through lan0 (a
#      kernel property) but does through a macvlan of its own (the README's
#      workaround);
#   3. nethook.ports on a macvlan network is refused with one line;
#   4. after runc kill + delete nothing is left: no record, allocation, ls
#      entry, no macvlan, and the LAN host no longer reaches the addresses;
#   5. CYCLES (default 100) runc create/stop cycles, timed, then nothing left;
#   6. HOOK_CYCLES (default 1000) cycles through `nethook hook` as a runtime
#      calls it, half of the teardowns while the netns is alive (nethook must
#      delete the macvlan in there), half after it died; nothing left;
#   7. as a CNI plugin: ADD (its result lists no host interface), CHECK, DEL
#      while the netns lives (the macvlan deleted in there), DEL again, DEL
#      after the netns died; nothing left.
#
# Everything runs in a throwaway network+mount namespace (see lib.sh).
# Env: NETHOOK_BIN=path  use this binary instead of building
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip unshare nsenter
    nh_build
fi
nh_enter_sandbox "$0" "$@"

nh_setup_tmp
LAN_PID=""
HOOK_PIDS=()
cleanup() {
    local rc=$? p
    set +e
    for p in "${HOOK_PIDS[@]}" $LAN_PID; do kill "$p" 2>/dev/null; done
    (exit "$rc")
    nh_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CYCLES=${CYCLES:-100}
HOOK_CYCLES=${HOOK_CYCLES:-1000}
SUBNET=192.168.50.0/24
ROUTER=192.168.50.1
HOST_IP=192.168.50.10
RANGE=192.168.50.128/26
PARENT=lan0
A="mv-$$-a"
B="mv-$$-b"
P="mv-$$-ports"
STARTED=()

lan() { nsenter -t "$LAN_PID" -n "$@"; }
ping_from() { nh_exec "$1" ping -c 1 -W 2 "$2"; }
lan_pings() { lan busybox ping -c 1 -W 2 "$1"; }
lan_cannot_ping() { ! lan busybox ping -c 1 -W 1 "$1"; }
host_cannot_ping() { ! busybox ping -c 1 -W 1 "$1"; }

# refused WANT CMD...: CMD fails with one line that contains WANT.
refused() {
    local want=$1 out
    shift
    if out="$("$@" 2>&1)"; then echo "accepted: $out"; return 1; fi
    [[ $out == *"$want"* ]] || { echo "said: $out"; return 1; }
    [[ $(wc -l <<<"$out") -eq 1 ]] || { echo "more than one line: $out"; return 1; }
}

in_range() { # IP
    python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$RANGE" ||
        { echo "$1 not in $RANGE"; return 1; }
}

check_inside() { # ID IP: a macvlan eth0 of lan0 with IP/24, default via the router, only lo+eth0
    local out
    out="$(nh_exec "$1" ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet $2/24 "* ]] || { echo "eth0 lacks $2/24: $out"; return 1; }
    out="$(nh_exec "$1" ip route)" || return 1
    [[ $out == *"default via $ROUTER"* ]] || { echo "no default via $ROUTER: $out"; return 1; }
    out="$(nh_exec "$1" cat /sys/class/net/eth0/address)" || return 1
    [[ $out == "$(nh_ls_field "$1" mac)" ]] || { echo "MAC $out is not the record's"; return 1; }
    out="$(nh_exec "$1" ip -o link)" || return 1
    out="$(awk -F': ' '{sub(/@.*/, "", $2); print $2}' <<<"$out" | sort | tr '\n' ' ')"
    [[ $out == "eth0 lo " ]] || { echo "links: $out"; return 1; }
}

is_macvlan_of_parent() { # ID: the container's eth0 is a macvlan whose lower link is lan0's index
    local pid kind link
    pid="$(nh_runc state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')" || return 1
    kind="$(nsenter -t "$pid" -n ip -d -o link show dev eth0)" || return 1
    [[ $kind == *"macvlan mode bridge"* ]] || { echo "eth0: $kind"; return 1; }
    # "N: eth0@ifM:": M is the lower link's index (/sys here is the machine's, not
    # the sandbox's or the container's, so ip is asked, not sysfs).
    link="$(sed -n 's/^[0-9]*: eth0@if\([0-9]*\):.*/\1/p' <<<"$kind")"
    [[ $link == "$(ip -o link show dev "$PARENT" | cut -d: -f1)" ]] || { echo "iflink $link is not $PARENT's"; return 1; }
}

no_host_links() { # nothing but lo, lan0 and the test's own links on the host
    local out
    out="$(ip -o link | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -vxE 'lo|lan0|br0|p0|p0b' || true)"
    [[ -z $out ]] || { echo "host links: $out"; return 1; }
}

ls_shows_macvlan() {
    local out
    out="$(nh network ls)" || return 1
    grep -E '^lan\b' <<<"$out" | grep -q macvlan || { echo "$out"; return 1; }
    grep -E '^lan\b' <<<"$out" | grep -q "$PARENT" || { echo "$out"; return 1; }
}

stop() { NH_RT=runc nh_rt_stop "$1"; }

nothing_left() { # IP...: records, allocations, ls, no macvlan reachable
    nh_settle
    nh_endpoints_empty || return 1
    nh_ipam_empty "$A" "$B" || return 1
    nh_ls_empty || return 1
    no_host_links || return 1
    local ip
    for ip in "$@"; do lan_cannot_ping "$ip" || { echo "$ip still answers on the LAN"; return 1; }; done
}

echo "== nethook e2e: macvlan driver (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# The LAN host: a process in a namespace of its own.
unshare --net sleep 100000 &
LAN_PID=$!
nh_wait_own_netns "$LAN_PID"
ip link add "$PARENT" type veth peer name eth0 netns "$LAN_PID"
ip addr add "$HOST_IP/24" dev "$PARENT"
ip link set "$PARENT" up
lan ip link set lo up
lan ip addr add "$ROUTER/24" dev eth0
lan ip link set eth0 up
# A bridge port, to be refused as a parent.
ip link add br0 type bridge
ip link add p0 type veth peer name p0b
ip link set p0 master br0

nh_section "network create refusals"
create() { nh network create lan --subnet "$SUBNET" --gateway "$ROUTER" --driver macvlan "$@"; }
nh_check "no --parent is refused" refused "--parent" create
nh_check "a parent that does not exist is refused" refused "parent nosuch0 does not exist" create --parent nosuch0
nh_check "a parent that is a bridge port is refused" refused "port of a bridge" create --parent p0
nh_check "lo as parent is refused" refused "loopback" create --parent lo
nh_check "a subnet that is not the parent's LAN is refused" \
    refused "no route on parent $PARENT covers" nh network create lan --subnet 192.168.60.0/24 --driver macvlan --parent "$PARENT"
nh_check "no --ip-range (the host's $HOST_IP would be handed out) is refused" \
    refused "$HOST_IP is this host's address on $PARENT" create --parent "$PARENT"
nh_check "an --ip-range outside the subnet is refused" refused "not inside the subnet" create --parent "$PARENT" --ip-range 10.0.0.0/26
nh_check "the gateway being the host's own address is refused" \
    refused "is this host's own address" nh network create lan --subnet "$SUBNET" --gateway "$HOST_IP" --driver macvlan --parent "$PARENT" --ip-range "$RANGE"
nh_check "network create lan --driver macvlan --parent $PARENT --ip-range $RANGE" create --parent "$PARENT" --ip-range "$RANGE"
nh_check "network ls shows lan as macvlan on $PARENT" ls_shows_macvlan

nh_section "two containers on the LAN"
for id in "$A" "$B"; do nh_start "$id" "runc run $id on lan" nethook.network=lan; done
IP_A="$(nh_ls_field "$A" ipv4 2>/dev/null || true)"
IP_B="$(nh_ls_field "$B" ipv4 2>/dev/null || true)"
echo "   $A: ${IP_A:-?}   $B: ${IP_B:-?}"
nh_check "$A's address is in $RANGE" in_range "$IP_A"
nh_check "$B's address is in $RANGE" in_range "$IP_B"
nh_check "$A: eth0 $IP_A/24, its MAC, default via $ROUTER, only lo+eth0" check_inside "$A" "$IP_A"
nh_check "$B: eth0 $IP_B/24, its MAC, default via $ROUTER, only lo+eth0" check_inside "$B" "$IP_B"
nh_check "$A's eth0 is a macvlan (mode bridge) of $PARENT" is_macvlan_of_parent "$A"
nh_check "no link of nethook's on the host" no_host_links
nh_check "$A pings $B ($IP_B)" ping_from "$A" "$IP_B"
nh_check "$B pings $A ($IP_A)" ping_from "$B" "$IP_A"
nh_check "$A pings the LAN host $ROUTER" ping_from "$A" "$ROUTER"
nh_check "$B pings the LAN host $ROUTER" ping_from "$B" "$ROUTER"
nh_check "the LAN host pings $A" lan_pings "$IP_A"
nh_check "the LAN host pings $B" lan_pings "$IP_B"
nh_check "the host does not reach $A through $PARENT (kernel property, see README)" host_cannot_ping "$IP_A"
ip link add nhmv0 link "$PARENT" type macvlan mode bridge
ip addr add 192.168.50.200/32 dev nhmv0
ip link set nhmv0 up
ip route add "$IP_A/32" dev nhmv0
nh_check "with a macvlan of its own (README workaround) the host pings $A" busybox ping -c 1 -W 2 "$IP_A"
ip link del nhmv0

nh_section "published ports"
nh_make_bundle "$NH_TMP/bundles/$P" "$P" nethook.network=lan nethook.ports=8080:80
ports_refused() {
    if nh_run_container "$NH_TMP/bundles/$P" "$P" 2>"$NH_TMP/$P.err"; then STARTED+=("$P"); return 1; fi
    grep -q "is a macvlan network" "$NH_TMP/$P.err" || { cat "$NH_TMP/$P.err"; return 1; }
}
nh_check "nethook.ports on a macvlan network is refused, saying why" ports_refused
stop "$P"
nh_check "the refused container left no record" nh_no_record "$P"

nh_section "teardown"
for id in "${STARTED[@]}"; do nh_check "runc kill + delete $id" stop "$id"; done
STARTED=()
nh_check "nothing left: records, allocations, ls, links; the addresses are silent" nothing_left "$IP_A" "$IP_B"

nh_section "$CYCLES runc create/stop cycles"
nh_make_bundle "$NH_TMP/bundles/cyc" "mv-$$-cyc" nethook.network=lan
cycle_errors=0
t0=$(date +%s.%N)
for ((i = 0; i < CYCLES; i++)); do
    id="mv-$$-c$i"
    if ! nh_run_container "$NH_TMP/bundles/cyc" "$id" 2>>"$NH_TMP/cycles.err"; then cycle_errors=$((cycle_errors + 1)); fi
    NH_RT=runc nh_rt_stop "$id" >/dev/null 2>&1 || cycle_errors=$((cycle_errors + 1))
done
t1=$(date +%s.%N)
echo "   $CYCLES cycles in $(python3 -c "print(round($t1 - $t0, 1))") s"
nh_check "$CYCLES cycles without an error ($cycle_errors)" test "$cycle_errors" -eq 0
nh_check "after $CYCLES cycles nothing is left" nothing_left

nh_section "$HOOK_CYCLES cycles through 'nethook hook', half torn down with the netns alive"
hook() { # STATUS I [PID]
    local pid_field=""
    [[ -n ${3:-} ]] && pid_field="\"pid\":$3,"
    printf '{"ociVersion":"1.0.2","id":"mvh-%d","status":"%s",%s"bundle":"/x","annotations":{"nethook.network":"lan"}}' \
        "$2" "$1" "$pid_field" |
        env -i NETHOOK_RUN_DIR="$NETHOOK_RUN_DIR" NETHOOK_CONFIG_DIR="$NETHOOK_CONFIG_DIR" "$NETHOOK_BIN" hook
}
has_eth0() { nsenter -t "$1" -n ip -o link show dev eth0 >/dev/null 2>&1; }
hook_errors=0
live_deleted=0
t0=$(date +%s.%N)
for ((i = 0; i < HOOK_CYCLES; i++)); do
    unshare --net sleep 600 &
    pid=$!
    HOOK_PIDS=("$pid")
    nh_wait_own_netns "$pid"
    hook creating "$i" "$pid" 2>>"$NH_TMP/hook.err" || hook_errors=$((hook_errors + 1))
    if ((i % 2)); then
        kill "$pid"; wait "$pid" 2>/dev/null || true
        hook stopped "$i" 2>>"$NH_TMP/hook.err" || hook_errors=$((hook_errors + 1))
    else
        hook stopped "$i" "$pid" 2>>"$NH_TMP/hook.err" || hook_errors=$((hook_errors + 1))
        nh_settle
        # The namespace is alive: nethook must have deleted the macvlan in there.
        if has_eth0 "$pid"; then echo "   cycle $i: eth0 still in the live netns"; else live_deleted=$((live_deleted + 1)); fi
        kill "$pid"; wait "$pid" 2>/dev/null || true
    fi
    HOOK_PIDS=()
done
t1=$(date +%s.%N)
echo "   $HOOK_CYCLES hook cycles in $(python3 -c "print(round($t1 - $t0, 1))") s"
# The hook logs one line per setup to stderr; anything else is worth showing.
grep -v ' on lan: eth0 ' "$NH_TMP/hook.err" | sed 's/^/    hook: /' | head -5 || true
nh_check "$HOOK_CYCLES hook cycles without an error ($hook_errors)" test "$hook_errors" -eq 0
nh_check "every teardown with the netns alive deleted the macvlan in it ($live_deleted of $((HOOK_CYCLES / 2 + HOOK_CYCLES % 2)))" \
    test "$live_deleted" -eq $((HOOK_CYCLES / 2 + HOOK_CYCLES % 2))
nh_check "after the hook cycles nothing is left" nothing_left
nh_section "CNI: ADD, CHECK, DEL with the netns alive"
cni() { # COMMAND ID PID
    printf '{"cniVersion":"1.0.0","name":"lan","type":"nethook","network":"lan","runDir":"%s","configDir":"%s"}' \
        "$NETHOOK_RUN_DIR" "$NETHOOK_CONFIG_DIR" |
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
            CNI_NETNS="/proc/$3/ns/net" CNI_IFNAME=eth0 CNI_PATH=/nonexistent "$NETHOOK_BIN"
}
cni_add_ok() { # ID PID: the result lists the container interface and no empty host one
    local out
    out="$(cni ADD "$1" "$2")" || { echo "$out"; return 1; }
    python3 -c '
import json, sys
r = json.load(sys.stdin)
names = [i.get("name") for i in r["interfaces"]]
sys.exit(0 if names == ["eth0"] and r["ips"][0]["address"].startswith("192.168.50.") else "result: %s" % r)
' <<<"$out"
}
unshare --net sleep 600 &
CNI_PID=$!
HOOK_PIDS=("$CNI_PID")
nh_wait_own_netns "$CNI_PID"
nh_check "CNI ADD on lan" cni_add_ok cni-1 "$CNI_PID"
nh_check "the netns has a macvlan eth0" has_eth0 "$CNI_PID"
nh_check "CNI CHECK finds it whole" cni CHECK cni-1 "$CNI_PID"
nh_check "CNI DEL with the netns alive" cni DEL cni-1 "$CNI_PID"
nh_settle
nh_check "DEL deleted the macvlan in the live netns" bash -c "! nsenter -t $CNI_PID -n ip link show dev eth0"
nh_check "a second DEL is a no-op" cni DEL cni-1 "$CNI_PID"
nh_check "CNI ADD again" cni_add_ok cni-2 "$CNI_PID"
kill "$CNI_PID"; wait "$CNI_PID" 2>/dev/null || true
HOOK_PIDS=()
nh_check "CNI DEL after the netns died" cni DEL cni-2 "$CNI_PID"
nh_check "after CNI nothing is left" nothing_left
nh_check "network rm lan" nh network rm lan

nh_summary
