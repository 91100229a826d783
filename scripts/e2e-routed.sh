#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of the routed driver: real runc containers (busybox rootfs)
# on a network made with `nethook network create r1 --driver routed`.
#
#   1. each container has its address as /32, a default route via 169.254.1.1
#      (a permanent neighbour entry), an `nr…` host veth that is no bridge port
#      and a /32 host route; containers reach each other through the host, and
#      the host reaches them;
#   2. an "outside" namespace sees their traffic masqueraded to the host's
#      address; a published port answers from outside, from the host (also on
#      127.0.0.1, on one host address, a range) and from another container
#      (hairpin);
#   3. isolation: a container of a second routed network and one of the default
#      bridge network reach no routed container, nor the other way round;
#   4. anti-spoofing: a packet from another source address is dropped;
#   5. after runc kill + delete nothing is left (veths, routes, records,
#      addresses, nft elements), and `network rm` works.
#
# Everything runs in a throwaway network+mount namespace (see lib.sh).
# Env: NETHOOK_BIN=path  use this binary instead of building.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip nft unshare nsenter
    nh_build
fi
nh_enter_sandbox "$0" "$@"

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

R1=10.60.0.0/24
R2=10.61.0.0/24
UPLINK_IP=192.0.2.1    # the sandbox host's address towards "outside"
OUTSIDE_IP=192.0.2.2

A="rt-$$-a"
B="rt-$$-b"
W="rt-$$-web"   # publishes 8080 and 127.0.0.1:8080
X="rt-$$-x"     # on the second routed network
D="rt-$$-def"   # on the default bridge network
STARTED=()

ping_from() { nh_exec "$1" ping -c 1 -W 2 "$2"; }
no_ping_from() { ! nh_exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
ping_ok() { busybox ping -c 1 -W 2 "$1"; }

host_wget() { timeout 5 busybox wget -q -O - "$1"; }

check_routed_inside() { # ID IP
    local out
    out="$(nh_exec "$1" ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet $2/32 "* ]] || { echo "eth0 lacks $2/32: $out"; return 1; }
    [[ $out != *" brd "* ]] || { echo "a /32 with a broadcast address: $out"; return 1; }
    out="$(nh_exec "$1" ip route)" || return 1
    [[ $out == *"default via 169.254.1.1 dev eth0"* ]] || { echo "routes: $out"; return 1; }
    out="$(nh_exec "$1" ip neigh show 169.254.1.1)" || return 1
    [[ $out == *"lladdr 02:4e:a9:fe:01:01 "*PERMANENT* ]] || { echo "neighbour: $out"; return 1; }
}

check_host_side() { # VETH IP
    [[ $1 =~ ^nr[0-9a-v]{13}$ ]] || { echo "host_interface '$1' is not nr+13 base32hex"; return 1; }
    local out
    out="$(ip -o link show dev "$1")" || return 1
    [[ $out != *" master "* ]] || { echo "a routed veth is a bridge port: $out"; return 1; }
    out="$(ip -o -4 addr show dev "$1")"
    [[ -z $out ]] || { echo "the host end has an address: $out"; return 1; }
    out="$(ip route show "$2/32")"
    [[ $out == *"dev $1 "*"scope link"* ]] || { echo "host route to $2: '$out'"; return 1; }
}

# The outside namespace answers TCP 7000 with the address it sees the client at.
outside_sees() { # ID EXPECTED_SOURCE
    local out
    out="$(nh_exec "$1" sh -c "echo | nc -w 3 $OUTSIDE_IP 7000")" || { echo "no answer: $out"; return 1; }
    [[ $out == "$2" ]] || { echo "outside saw '$out', not $2"; return 1; }
}

spoof_dropped() { # ID SPOOFED_IP TARGET_IP
    local pid
    pid="$(nh_pid_of "$1")" || return 1
    nsenter -t "$pid" -n ip addr add "$2/32" dev eth0 || return 1
    local rc=0
    nsenter -t "$pid" -n busybox ping -c 1 -W 1 -I "$2" "$3" >/dev/null 2>&1 && rc=1
    nsenter -t "$pid" -n ip addr del "$2/32" dev eth0
    ((rc == 0)) || { echo "a packet from $2 got an answer from $3"; return 1; }
}

nothing_left() {
    local left
    left="$(ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -E '^nr' || true)"
    [[ -z $left ]] || { echo "routed veths left: $left"; return 1; }
    left="$(ip route show | grep -E '^10\.6[01]\.' || true)"
    [[ -z $left ]] || { echo "host routes left: $left"; return 1; }
    [[ -z "$(ls -A "$NETHOOK_RUN_DIR/endpoints" 2>/dev/null)" ]] || { ls "$NETHOOK_RUN_DIR/endpoints"; return 1; }
    nh_ipam_empty "${STARTED[@]}" -- || return 1
    local nft
    nft="$(nft list table inet nethook 2>/dev/null || true)"
    if grep -qE '"nr[0-9a-v]{13}"|10\.6[01]\.0\.[0-9]+ \.|8080' <<<"$nft"; then
        echo "elements left:"; printf '%s\n' "$nft"; return 1
    fi
}

echo "== nethook routed driver e2e (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# "Outside": a namespace behind an uplink (held by a process of its own, so nothing
# is named in /run/netns), with a TCP service that tells a client its source address.
nh_outside_ns "$UPLINK_IP" "$OUTSIDE_IP"
# Started directly (not through a function, which would fork a subshell): nsenter execs
# python, so $! is the server's own pid, which the EXIT trap ends.
nsenter -t "$OUTSIDE_NS_PID" -n python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen()
while True:
    c, peer = s.accept(); c.sendall((peer[0] + "\n").encode()); c.close()' >/dev/null 2>&1 &
OUTSIDE_PID=$!
stop_outside() {
    local p
    for p in "$OUTSIDE_PID" "$OUTSIDE_NS_PID"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap 'stop_outside; nh_cleanup' EXIT

# --- 1. containers on a routed network ------------------------------------------
nh_section "two containers on routed network r1 ($R1)"
nh_check "nethook network create r1 --driver routed" nh network create r1 --subnet "$R1" --driver routed
nh_check "nethook network create r2 --driver routed" nh network create r2 --subnet "$R2" --driver routed
nh_check "network ls shows r1 as routed with no link" bash -c "$NETHOOK_BIN network ls | grep -E '^r1 +routed +- '"
nh_start "$A" "runc run $A on r1" nethook.network=r1
nh_start "$B" "runc run $B on r1" nethook.network=r1
IP_A="$(nh_ls_field "$A" ipv4 || true)"
IP_B="$(nh_ls_field "$B" ipv4 || true)"
echo "   $A: $IP_A   $B: $IP_B"
nh_check "$A: $IP_A/32, default via 169.254.1.1, permanent neighbour" check_routed_inside "$A" "$IP_A"
nh_check "$B: $IP_B/32, default via 169.254.1.1, permanent neighbour" check_routed_inside "$B" "$IP_B"
nh_check "host side of $A: nr veth, no bridge, no address, /32 route" \
    check_host_side "$(nh_ls_field "$A" host_interface)" "$IP_A"
nh_check "$A pings $B through the host" ping_from "$A" "$IP_B"
nh_check "$B pings $A through the host" ping_from "$B" "$IP_A"
nh_check "the host pings $A" ping_ok "$IP_A"
nh_check "$A pings the host's uplink $UPLINK_IP" ping_from "$A" "$UPLINK_IP"

# --- 2. masquerade and published ports -------------------------------------------
nh_section "outside world and published ports"
nh_check "outside sees $A as $UPLINK_IP (masquerade)" outside_sees "$A" "$UPLINK_IP"
WEB_PORTS="8080:80,127.0.0.1:8080:80,$UPLINK_IP:8081:80,8090-8091:80-81"
nh_start "$W" "runc run $W on r1 with nethook.ports=$WEB_PORTS" \
    --httpd nethook.network=r1 "nethook.ports=$WEB_PORTS"
IP_W="$(nh_ls_field "$W" ipv4 || true)"
nh_check "host fetches http://$IP_W:80/ directly (before NAT)" nh_fetch_ok host_wget "http://$IP_W:80/"
nh_check "outside fetches http://$UPLINK_IP:8080/" nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://$UPLINK_IP:8080/"
nh_check "host fetches http://$UPLINK_IP:8080/" nh_fetch_ok host_wget "http://$UPLINK_IP:8080/"
nh_check "host fetches http://127.0.0.1:8080/" nh_fetch_ok host_wget "http://127.0.0.1:8080/"
nh_check "outside fetches http://$UPLINK_IP:8081/ (published on that host address only)" \
    nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://$UPLINK_IP:8081/"
nh_check "outside fetches http://$UPLINK_IP:8090/ (a published range)" \
    nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://$UPLINK_IP:8090/"
nh_check "$A fetches http://$UPLINK_IP:8080/ (hairpin)" \
    nh_fetch_ok nh_exec "$A" timeout 5 wget -q -O - "http://$UPLINK_IP:8080/"
nh_check "$W fetches its own published port (hairpin to itself)" \
    nh_fetch_ok nh_exec "$W" timeout 5 wget -q -O - "http://$UPLINK_IP:8080/"

# --- 3. isolation ------------------------------------------------------------------
nh_section "isolation from other networks"
nh_start "$X" "runc run $X on routed network r2" nethook.network=r2
nh_start "$D" "runc run $D on the default bridge network"
IP_X="$(nh_ls_field "$X" ipv4 || true)"
IP_D="$(nh_ls_field "$D" ipv4 || true)"
nh_check "$X (r2) does not reach $A (r1)" no_ping_from "$X" "$IP_A"
nh_check "$A (r1) does not reach $X (r2)" no_ping_from "$A" "$IP_X"
nh_check "$D (bridge) does not reach $A (r1)" no_ping_from "$D" "$IP_A"
nh_check "$A (r1) does not reach $D (bridge)" no_ping_from "$A" "$IP_D"
nh_check "$X reaches $W's published port on $UPLINK_IP" \
    nh_fetch_ok nh_exec "$X" timeout 5 wget -q -O - "http://$UPLINK_IP:8080/"

# --- 4. anti-spoofing ------------------------------------------------------------
nh_section "anti-spoofing"
SPOOF="$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[200])' "$R1")"
nh_check "$A sending from $SPOOF (not its address) is dropped" spoof_dropped "$A" "$SPOOF" "$IP_B"
nh_check "$A sending as $B ($IP_B) is dropped" spoof_dropped "$A" "$IP_B" "$UPLINK_IP"
nh_check "$A still reaches $B from its own address" ping_from "$A" "$IP_B"

# --- 5. teardown ------------------------------------------------------------------
nh_section "teardown"
for id in "${STARTED[@]}"; do
    nh_check "runc kill + delete $id" nh_stop_checked "$id"
done
nh_settle
nh_check "nothing left: veths, host routes, records, addresses, nft elements" nothing_left
nh_check "nethook ls --json is []" test "$(nh ls --json | tr -d '[:space:]')" = "[]"
nh_check "nethook network rm r1" nh network rm r1
nh_check "nethook network rm r2" nh network rm r2

echo
nh_summary
