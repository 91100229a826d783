#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of IPv6 dual stack: real runc containers (busybox rootfs) on a
# dual-stack network (`--subnet --subnet6`) and an IPv6-only one (`--subnet6`).
#
#   1. each container has its IPv6 address at once (not tentative), no link-local
#      address, a default route via the gateway, which is not tentative either;
#      containers ping each other, the gateway and the host over IPv6;
#   2. turning IPv6 forwarding on kept the uplink's router-advertised default
#      route (accept_ra=2 first) and the hook said so;
#   3. an "outside" namespace sees their IPv6 traffic masqueraded to the host's
#      address; a port published on the dual-stack network answers over both
#      families from outside, from the host and from another container
#      (hairpin); one published on one host IPv6 address answers there only;
#   4. UDP: a restarted container on the same host port gets the same client
#      flow at once (the conntrack entries of the old one were flushed);
#   5. isolation: the IPv6-only network and the dual-stack one do not reach
#      each other; the default network gets IPv6 with `network update`;
#   6. anti-spoofing: another IPv6 source, a forged neighbour advertisement and
#      a router advertisement from a container are dropped;
#   7. bad input gets one line and changes nothing;
#   8. after runc kill + delete nothing is left, and `network rm` works.
#
# Everything runs in a throwaway network+mount namespace (see lib.sh).
# Env: NETHOOK_BIN=path  use this binary instead of building.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip nft unshare nsenter conntrack
    nh_build
fi
nh_enter_sandbox "$0" "$@"

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

D4=10.62.0.0/24
D6=fd00:62::/64
S6=fd00:63::/120
GW6=fd00:62::1
UPLINK4=192.0.2.1
UPLINK6=2001:db8:9::1     # the sandbox host's addresses towards "outside"
UPLINK6B=2001:db8:9::3    # a second one, where nothing is published
OUTSIDE4=192.0.2.2
OUTSIDE6=2001:db8:9::2

A="v6-$$-a"
B="v6-$$-b"
W="v6-$$-web"   # publishes 8080 (both families) and [UPLINK6]:8081
X="v6-$$-x"     # on the IPv6-only network
U1="v6-$$-u1"   # UDP 5353, stopped and replaced by U2
U2="v6-$$-u2"
STARTED=()

ping6_from() { nh_exec "$1" ping -6 -c 1 -W 2 "$2"; }
no_ping6_from() { ! nh_exec "$1" ping -6 -c 1 -W 1 "$2" >/dev/null 2>&1; }
wget6() { timeout 5 busybox wget -q -O - "$1"; }

check_inside6() { # ID IP6
    local out
    out="$(nh_exec "$1" ip -o -6 addr show dev eth0)" || return 1
    [[ $out == *" inet6 $2/64 "* ]] || { echo "eth0 lacks $2/64: $out"; return 1; }
    [[ $out != *tentative* ]] || { echo "the address is tentative: $out"; return 1; }
    [[ $out != *"fe80:"* ]] || { echo "eth0 has a link-local address: $out"; return 1; }
    out="$(nh_exec "$1" ip -6 route)" || return 1
    [[ $out == *"default via $GW6 dev eth0"* ]] || { echo "routes: $out"; return 1; }
}

# The address is usable the moment createRuntime returns: a socket binds to it (a
# tentative address would give EADDRNOTAVAIL).
binds_at_once() { # ID IP6
    nh_in_ctr "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))' "$2"
}

gateway_not_tentative() { # BRIDGE GW (the bridge's own link-local address may be tentative: nothing uses it)
    local out
    out="$(ip -o -6 addr show dev "$1" | grep " inet6 $2/")" || { echo "no $2 on $1"; return 1; }
    [[ $out != *tentative* ]] || { echo "bridge: $out"; return 1; }
}

# The outside namespace answers TCP 7000 with the address it sees the client at.
outside_sees() { # ID DEST EXPECTED_SOURCE [OTHER_EXPECTED_SOURCE]
    local out
    out="$(nh_exec "$1" sh -c "echo | nc -w 3 $2 7000")" || { echo "no answer: $out"; return 1; }
    [[ $out == "$3" || $out == "${4-$3}" ]] || { echo "outside saw '$out', not $3"; return 1; }
}

# One UDP query from the outside from a fixed source port; prints the answer.
udp_ask() { # PORT
    nh_in_outside python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 40006)); s.settimeout(2)
s.sendto(b"q", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(64)[0].decode())' "$UPLINK6" "$1"
}
udp_answer_is() { # PORT EXPECTED
    local got
    got="$(udp_ask "$1" 2>&1)" || { echo "no answer: $got"; return 1; }
    [[ $got == "$2" ]] || { echo "answered '$got', not $2"; return 1; }
}

spoof6_dropped() { # ID SPOOFED_IP TARGET_IP
    local rc=0
    nh_in_ctr "$1" ip -6 addr add "$2/128" dev eth0 nodad || return 1
    nh_in_ctr "$1" busybox ping -6 -c 1 -W 1 -I "$2" "$3" >/dev/null 2>&1 && rc=1
    nh_in_ctr "$1" ip -6 addr del "$2/128" dev eth0
    ((rc == 0)) || { echo "a packet from $2 got an answer from $3"; return 1; }
}

# From ID, a neighbour advertisement claiming TARGET_IP at ID's MAC, sent to VICTIM.
# The victim's neighbour entry for TARGET_IP must keep the right MAC.
forged_na_dropped() { # ID TARGET_IP VICTIM VICTIM_IP RIGHT_MAC
    local mac
    mac="$(nh_in_ctr "$1" cat /sys/class/net/eth0/address)" || return 1
    nh_exec "$3" ping -6 -c 1 -W 2 "$2" >/dev/null || { echo "$3 cannot reach $2"; return 1; }
    nh_in_ctr "$1" python3 -c '
import socket, struct, sys
target, dst, mac = sys.argv[1:4]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
na = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, target)
na += bytes([2, 1]) + bytes.fromhex(mac.replace(":", ""))
s.sendto(na, (dst, 0, 0, socket.if_nametoindex("eth0")))' "$2" "$4" "$mac" || return 1
    sleep 0.3
    local entry
    entry="$(nh_exec "$3" ip -6 neigh show "$2")" || return 1
    [[ $entry == *"lladdr $5"* ]] || { echo "$3's entry for $2: $entry (should be $5)"; return 1; }
}

# From ID (given its own link-local address first, which anti-spoofing allows),
# a router advertisement with a prefix; VICTIM must learn neither a route nor an
# address from it.
ra_dropped() { # ID VICTIM
    local mac ll
    mac="$(nh_in_ctr "$1" cat /sys/class/net/eth0/address)" || return 1
    ll="$(python3 -c 'import sys; m=[int(x,16) for x in sys.argv[1].split(":")]; m[0]^=2
print("fe80::%02x%02x:%02xff:fe%02x:%02x%02x" % tuple(m))' "$mac")"
    nh_in_ctr "$1" ip -6 addr add "$ll/64" dev eth0 nodad || return 1
    nh_in_ctr "$1" python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
ra += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + socket.inet_pton(socket.AF_INET6, "2001:db8:66::")
s.sendto(ra, ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))' || return 1
    nh_in_ctr "$1" ip -6 addr del "$ll/64" dev eth0
    sleep 0.5
    local out
    out="$(nh_exec "$2" ip -6 route)" || return 1
    [[ $out != *"proto ra"* && $out != *"2001:db8:66"* ]] || { echo "$2 learned: $out"; return 1; }
    out="$(nh_exec "$2" ip -6 addr)" || return 1
    [[ $out != *"2001:db8:66"* ]] || { echo "$2 made a SLAAC address: $out"; return 1; }
}

nothing_left() {
    nh_settle
    local left
    left="$(nh_host_veths)"
    [[ -z $left ]] || { echo "veths left: $left"; return 1; }
    [[ -z "$(ls -A "$NETHOOK_RUN_DIR/endpoints" 2>/dev/null)" ]] || { ls "$NETHOOK_RUN_DIR/endpoints"; return 1; }
    nh_ipam_empty "${STARTED[@]}" -- || return 1
    nh_nft_clean "" || return 1
}

echo "== nethook IPv6 dual-stack e2e (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# "Outside": a namespace behind an uplink (held by a process of its own, so nothing
# is named in /run/netns), routing nothing back to the containers' prefixes, with a
# TCP service that tells a client its source address, and a router that advertises
# a default route to the sandbox host.
unshare --net sleep 100000 &
OUTSIDE_NS_PID=$!
nh_wait_own_netns "$OUTSIDE_NS_PID"
ip link add up0 type veth peer name eth0 netns "$OUTSIDE_NS_PID"
ip addr add "$UPLINK4/24" dev up0
ip -6 addr add "$UPLINK6/64" dev up0 nodad
ip -6 addr add "$UPLINK6B/64" dev up0 nodad
ip link set up0 up
nh_in_outside ip addr add "$OUTSIDE4/24" dev eth0
nh_in_outside ip -6 addr add "$OUTSIDE6/64" dev eth0 nodad
nh_in_outside ip link set eth0 up
nh_in_outside ip link set lo up
nsenter -t "$OUTSIDE_NS_PID" -n python3 -c '
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7000)); s.listen()
while True:
    c, peer = s.accept(); c.sendall((peer[0].removeprefix("::ffff:") + "\n").encode()); c.close()' >/dev/null 2>&1 &
OUTSIDE_PID=$!
stop_outside() {
    local p
    for p in "$OUTSIDE_PID" "$OUTSIDE_NS_PID"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap 'stop_outside; nh_cleanup' EXIT

# The router's advertisement, from eth0's link-local address once both ends have theirs
# (the host ignores an advertisement that arrives before up0's own is usable).
ll_ready() { "$@" ip -6 -o addr show scope link | grep -q 'inet6 fe80' && ! "$@" ip -6 -o addr show scope link | grep -q tentative; }
nh_wait_until 5 ll_ready nh_in_outside || true
nh_wait_until 5 ll_ready env || true
nh_in_outside python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
for _ in range(3):
    s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))'
has_ra_default() { ip -6 route show default | grep -q "dev up0 proto ra"; }
nh_check "the sandbox host learned its IPv6 default route from the router's advertisement" \
    nh_wait_until 3 has_ra_default

# --- 1. dual-stack containers ---------------------------------------------------------
nh_section "dual-stack network d6 ($D4 + $D6) and IPv6-only network s6 ($S6)"
create_says_accept_ra() {
    local out
    out="$(nh network create d6 --subnet "$D4" --subnet6 "$D6" 2>&1)" || { echo "$out"; return 1; }
    [[ $out == *"accept_ra=2 on up0"* ]] || { echo "did not say what it will change: $out"; return 1; }
}
nh_check "nethook network create d6 --subnet $D4 --subnet6 $D6 says it will set accept_ra=2 on up0" \
    create_says_accept_ra
nh_check "nethook network create s6 --subnet6 $S6 (IPv6 only)" nh network create s6 --subnet6 "$S6"
nh_check "network ls shows both families of d6" bash -c "$NETHOOK_BIN network ls | grep -E '^d6 .*$D4, $D6'"
nh_check "network inspect d6 has its ipv6 part" bash -c "$NETHOOK_BIN network inspect d6 | grep -q '\"subnet\": \"$D6\"'"
nh_start "$A" "runc run $A on d6" nethook.network=d6
nh_start "$B" "runc run $B on d6 with nethook.ip6=fd00:62::b0" nethook.network=d6 nethook.ip6=fd00:62::b0
IP6_A="$(nh_ls_field "$A" ipv6 || true)"
IP6_B="$(nh_ls_field "$B" ipv6 || true)"
IP4_A="$(nh_ls_field "$A" ipv4 || true)"
echo "   $A: $IP4_A $IP6_A   $B: $IP6_B"
nh_check "nethook ls shows $B at its static address" test "$IP6_B" = fd00:62::b0
nh_check "$A: $IP6_A/64 not tentative, no link-local, default via $GW6" check_inside6 "$A" "$IP6_A"
nh_check "$B: $IP6_B/64 not tentative, no link-local, default via $GW6" check_inside6 "$B" "$IP6_B"
nh_check "$A can bind its IPv6 address at once" binds_at_once "$A" "$IP6_A"
nh_check "bridge nh-d6 holds $GW6, not tentative" gateway_not_tentative nh-d6 "$GW6"
nh_check "$A pings6 $B" ping6_from "$A" "$IP6_B"
nh_check "$B pings6 $A" ping6_from "$B" "$IP6_A"
nh_check "$A pings6 the gateway" ping6_from "$A" "$GW6"
nh_check "the host pings6 $A" busybox ping -6 -c 1 -W 2 "$IP6_A"
nh_check "$A still pings $B over IPv4" nh_exec "$A" ping -c 1 -W 2 "$(nh_ls_field "$B" ipv4)"

# --- 2. host forwarding and router advertisements ------------------------------------
nh_section "IPv6 forwarding on the host"
nh_check "net.ipv6.conf.all.forwarding is 1" test "$(cat /proc/sys/net/ipv6/conf/all/forwarding)" = 1
nh_check "the uplink up0 takes router advertisements with accept_ra=2 now" \
    test "$(cat /proc/sys/net/ipv6/conf/up0/accept_ra)" = 2
nh_check "the router-advertised default route is still there" has_ra_default
nh_check "nethook recorded what it changed (\$NETHOOK_RUN_DIR/forwarding6 names up0)" \
    grep -q "accept_ra=2 on up0" "$NETHOOK_RUN_DIR/forwarding6"

# --- 3. masquerade and published ports ------------------------------------------------
nh_section "outside world and published ports over IPv6"
nh_check "outside sees $A as one of the host's addresses $UPLINK6, $UPLINK6B (IPv6 masquerade)" \
    outside_sees "$A" "$OUTSIDE6" "$UPLINK6" "$UPLINK6B"
nh_check "outside sees $A as $UPLINK4 over IPv4" outside_sees "$A" "$OUTSIDE4" "$UPLINK4"
WEB_PORTS="8080:80,[$UPLINK6]:8081:80,8090-8091:80-81"
nh_start "$W" "runc run $W on d6 with nethook.ports=$WEB_PORTS" \
    --httpd nethook.network=d6 "nethook.ports=$WEB_PORTS"
IP6_W="$(nh_ls_field "$W" ipv6 || true)"
nh_check "host fetches http://[$IP6_W]:80/ directly" nh_fetch_ok wget6 "http://[$IP6_W]:80/"
nh_check "outside fetches http://[$UPLINK6]:8080/" nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://[$UPLINK6]:8080/"
nh_check "outside fetches http://$UPLINK4:8080/ (the same publish over IPv4)" \
    nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://$UPLINK4:8080/"
nh_check "host fetches http://[$UPLINK6]:8080/" nh_fetch_ok wget6 "http://[$UPLINK6]:8080/"
nh_check "host fetches http://[$GW6]:8080/ (the bridge's address)" nh_fetch_ok wget6 "http://[$GW6]:8080/"
nh_check "outside fetches http://[$UPLINK6]:8081/ (published on that address)" \
    nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://[$UPLINK6]:8081/"
nh_check "outside gets nothing on http://[$UPLINK6B]:8081/ (another host address)" \
    nh_fetch_fails nh_in_outside timeout 3 busybox wget -q -O - "http://[$UPLINK6B]:8081/"
nh_check "outside gets nothing on http://$UPLINK4:8081/ (published on IPv6 only)" \
    nh_fetch_fails nh_in_outside timeout 3 busybox wget -q -O - "http://$UPLINK4:8081/"
nh_check "outside fetches http://[$UPLINK6]:8090/ (a published range)" \
    nh_fetch_ok nh_in_outside timeout 5 busybox wget -q -O - "http://[$UPLINK6]:8090/"
nh_check "$A fetches http://[$UPLINK6]:8080/ (hairpin)" \
    nh_fetch_ok nh_exec "$A" timeout 5 wget -q -O - "http://[$UPLINK6]:8080/"
nh_check "$W fetches its own published port (hairpin to itself)" \
    nh_fetch_ok nh_exec "$W" timeout 5 wget -q -O - "http://[$UPLINK6]:8080/"

# --- 4. UDP and conntrack ---------------------------------------------------------------
nh_section "UDP published over IPv6: a restarted container gets the flow at once"
udp_server() { # ID TAG
    local pid
    pid="$(nh_pid_of "$1")"
    nsenter -t "$pid" -n python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::", 53))
while True:
    _, peer = s.recvfrom(64); s.sendto(sys.argv[1].encode(), peer)' "$2" >/dev/null 2>&1 &
    echo $!
}
nh_start "$U1" "runc run $U1 publishing 5353/udp" nethook.network=d6 nethook.ports=5353:53/udp
SRV1="$(udp_server "$U1" old)"
nh_check "outside's UDP flow to [$UPLINK6]:5353 reaches $U1" nh_wait_until 3 udp_answer_is 5353 old
nh_check "runc kill + delete $U1" nh_stop_checked "$U1"
kill "$SRV1" 2>/dev/null || true
nh_settle
nh_start "$U2" "runc run $U2 publishing 5353/udp" nethook.network=d6 nethook.ports=5353:53/udp
SRV2="$(udp_server "$U2" new)"
sleep 0.3
nh_check "the same flow reaches $U2 on the first try (conntrack flushed)" udp_answer_is 5353 new
kill "$SRV2" 2>/dev/null || true

# --- 5. isolation -------------------------------------------------------------------------
nh_section "isolation between the dual-stack and the IPv6-only network"
nh_start "$X" "runc run $X on IPv6-only s6" nethook.network=s6
IP6_X="$(nh_ls_field "$X" ipv6 || true)"
nh_check "$X has no IPv4 address" test -z "$(nh_ls_field "$X" ipv4)"
nh_check "$X pings6 its gateway fd00:63::1" ping6_from "$X" fd00:63::1
nh_check "$X (s6) does not reach $A (d6)" no_ping6_from "$X" "$IP6_A"
nh_check "$A (d6) does not reach $X (s6)" no_ping6_from "$A" "$IP6_X"
nh_check "$X reaches $W's published port on [$UPLINK6]:8080" \
    nh_fetch_ok nh_exec "$X" timeout 5 wget -q -O - "http://[$UPLINK6]:8080/"
nh_check "outside sees $X as the host ($UPLINK6 or $UPLINK6B)" outside_sees "$X" "$OUTSIDE6" "$UPLINK6" "$UPLINK6B"

# --- 5b. the default network gets IPv6 ------------------------------------------------
nh_section "network update nethook --subnet6: the default network, its bridge already up"
D1="v6-$$-d1"
D2="v6-$$-d2"
nh_start "$D1" "runc run $D1 on the default network (IPv4 only)"
nh_check "nethook network update nethook --subnet6 fd00:77::/64" nh network update nethook --subnet6 fd00:77::/64
nh_start "$D2" "runc run $D2 on the default network, now dual stack"
IP6_D2="$(nh_ls_field "$D2" ipv6 || true)"
nh_check "$D1 (started before) has no IPv6 address" test -z "$(nh_ls_field "$D1" ipv6)"
nh_check "$D2 got $IP6_D2 in fd00:77::/64" test "${IP6_D2%::*}" = fd00:77
nh_check "$D2 pings6 the default bridge's new gateway fd00:77::1" ping6_from "$D2" fd00:77::1
nh_check "$D2 pings $D1 over IPv4" nh_exec "$D2" ping -c 1 -W 2 "$(nh_ls_field "$D1" ipv4)"

# --- 6. anti-spoofing -----------------------------------------------------------------------
nh_section "anti-spoofing"
nh_check "$A sending from fd00:62::99 (not its address) is dropped" spoof6_dropped "$A" fd00:62::99 "$IP6_B"
nh_check "$A sending as $B ($IP6_B) is dropped" spoof6_dropped "$A" "$IP6_B" "$GW6"
MAC_B="$(nh_ls_field "$B" mac)"
nh_check "$A's forged advertisement for $B's address does not move $W's neighbour entry" \
    forged_na_dropped "$A" "$IP6_B" "$W" "$IP6_W" "$MAC_B"
nh_check "$A's router advertisement reaches nobody ($B learns no route or address)" ra_dropped "$A" "$B"
nh_check "$A still reaches $B from its own address" ping6_from "$A" "$IP6_B"

# --- 7. bad input ----------------------------------------------------------------------------
nh_section "bad input: one line, nothing changed"
NETS_BEFORE="$(nh network ls)"
nh_check "--subnet6 fe80::/64 is refused" nh_refused_in_one_line "link-local" nh network create bad --subnet6 fe80::/64
nh_check "--subnet6 fd00:62:0:0:1::/80 (inside d6) is refused as an overlap" \
    nh_refused_in_one_line "overlaps" nh network create bad --subnet6 fd00:62:0:0:1::/80
nh_check "--subnet6 2001:db8:9::/64 (the uplink's prefix) is refused as overlapping a host route" \
    nh_refused_in_one_line "overlaps the host route" nh network create bad --subnet6 2001:db8:9::/64
nh_check "--subnet6 fd00:70::5/64 (host bits) is refused" nh_refused_in_one_line "did you mean fd00:70::/64" \
    nh network create bad --subnet6 fd00:70::5/64
nh_check "--gateway6 outside the prefix is refused" nh_refused_in_one_line "gateway6" \
    nh network create bad --subnet6 fd00:70::/64 --gateway6 fd00:71::1
nh_check "--subnet6 with --driver routed is refused" nh_refused_in_one_line "bridge networks only" \
    nh network create bad --subnet 10.70.0.0/24 --subnet6 fd00:70::/64 --driver routed
nh_check "the network list did not change" test "$(nh network ls)" = "$NETS_BEFORE"
refused_start() { # ID WANT ANNOTATIONS...
    local id=$1 want=$2
    shift 2
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" "$@"
    if nh_run_container "$NH_TMP/bundles/$id" "$id" >"$NH_TMP/$id.out" 2>&1; then
        STARTED+=("$id")
        echo "started"; return 1
    fi
    nh_runc delete -f "$id" >/dev/null 2>&1 || true
    grep -q "$want" "$NH_TMP/$id.out" || { cat "$NH_TMP/$id.out"; return 1; }
}
nh_check "publishing on [::1] is refused at createRuntime, saying why" \
    refused_start "v6-$$-lo" "route_localnet" nethook.network=d6 "nethook.ports=[::1]:8082:80"
nh_check "nethook.ip6 outside the prefix is refused" \
    refused_start "v6-$$-out" "outside network d6's subnet" nethook.network=d6 nethook.ip6=fd00:99::5
nh network create p4 --subnet 10.64.0.0/24 >/dev/null
nh_check "nethook.ip6 on an IPv4-only network is refused" \
    refused_start "v6-$$-v4" "has no IPv6 subnet" nethook.network=p4 nethook.ip6=fd00:62::77
nh_check "a published IPv6 host IP on an IPv4-only network is refused" \
    refused_start "v6-$$-p4" "has no IPv6 subnet" nethook.network=p4 "nethook.ports=[$UPLINK6]:8083:80"
nh_check "nethook.ip6 of $B is refused, naming $B" \
    refused_start "v6-$$-dup" "$B" nethook.network=d6 nethook.ip6=fd00:62::b0
no_refused_record() {
    local ids
    ids="$(nh ls --json | python3 -c 'import json,sys; print(" ".join(e["id"] for e in json.load(sys.stdin)))')"
    [[ ! $ids =~ v6-$$-(lo|out|v4|p4|dup) ]] || { echo "records: $ids"; return 1; }
}
nh_check "the refusals left no record" no_refused_record

# --- 8. teardown -----------------------------------------------------------------------------
nh_section "teardown"
for id in "${STARTED[@]}"; do
    [[ $id == "$U1" ]] && continue
    nh_check "runc kill + delete $id" nh_stop_checked "$id"
done
nh_check "nothing left: veths, records, addresses, nft elements" nothing_left
nh_check "nethook ls --json is []" test "$(nh ls --json | tr -d '[:space:]')" = "[]"
nh_check "nethook network rm d6" nh network rm d6
nh_check "nethook network rm s6" nh network rm s6
nh_check "nethook network rm p4" nh network rm p4
nh_check "bridges nh-d6 and nh-s6 are gone" bash -c '! ip link show nh-d6 2>/dev/null && ! ip link show nh-s6 2>/dev/null'

echo
nh_summary
