#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of services: real runc containers (busybox rootfs) join services
# with the annotation nethook.service=NAME, and nftables balances each service's VIP
# (one per family) over its live members.
#
#   1. three httpd members each serve their own name; a client container's 60
#      requests to the IPv4 VIP reach all three, and so do 60 to the IPv6 VIP;
#   2. a member reaches its own service (hairpin);
#   3. stopping one member removes it at once: no request reaches it afterwards;
#   4. a UDP service: a client's flow moves to a live member as soon as its member's
#      poststop returns (its conntrack entries were flushed);
#   5. a service with no member refuses connections at once (TCP reset, ICMP for UDP);
#   6. --publish: a host port balanced the same way, from an outside namespace;
#   7. --affinity client-ip: one client keeps one member;
#   8. `nft flush ruleset` is repaired by the next hook: the VIP answers again;
#   9. bad input (unknown service, clashes, bad ports, a VIP outside the range) is
#      refused with one line and changes nothing;
#  10. service rm and teardown leave nothing behind.
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
nh_private_run

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

D4=10.64.0.0/24
D6=fd00:64::/64
R4=10.65.0.0/24
R6=fd00:65::/112
UPLINK4=192.0.2.1
OUTSIDE4=192.0.2.2

M1="svc-$$-m1"
M2="svc-$$-m2"
M3="svc-$$-m3"
C="svc-$$-client"
U1="svc-$$-u1"
U2="svc-$$-u2"
STARTED=()


# N requests with CMD... URL; prints one answer per line (or "FAIL").
ask_n() { # N CMD...
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do
        "$@" 2>/dev/null || echo FAIL
    done
}
from_client() { nh_exec "$C" timeout 3 wget -q -O - "$1"; }

# Every expected member answered, and nothing else did.
answers_are() { # "ANSWERS" EXPECTED...
    local answers=$1 want
    shift
    for want in "$@"; do
        grep -qx "$want" <<<"$answers" || { echo "no answer from $want:"; sort <<<"$answers" | uniq -c; return 1; }
    done
    local other
    other="$(grep -vxF -f <(printf '%s\n' "$@") <<<"$answers" || true)"
    [[ -z $other ]] || { echo "unexpected answers:"; sort <<<"$answers" | uniq -c; return 1; }
}

service_field() { # NAME FIELD
    nh service inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$2"
}

echo "== nethook services e2e (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# "Outside": a namespace behind an uplink, for published service ports.
nh_outside_ns "$UPLINK4" "$OUTSIDE4"
UDP_PIDS=()
stop_bg() {
    local p
    for p in "${UDP_PIDS[@]}" "$OUTSIDE_NS_PID"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap 'stop_bg; nh_cleanup' EXIT

# --- 1. a TCP service over both families ---------------------------------------------
nh_section "network svc ($D4 + $D6, service ranges $R4 $R6) and service web"
nh_check "nethook network create svc with service ranges" \
    nh network create svc --subnet "$D4" --subnet6 "$D6" --service-range "$R4" --service-range "$R6"
nh_check "nethook service create web --network svc --port 80/tcp" \
    nh service create web --network svc --port 80/tcp
VIP4="$(service_field web vip4 || true)"
VIP6="$(service_field web vip6 || true)"
echo "   web: $VIP4 $VIP6"
nh_check "web's VIPs come from the ranges" bash -c "[[ $VIP4 == 10.65.0.* && $VIP6 == fd00:65::* ]]"
nh_check "service ls shows web with no member" bash -c "$NETHOOK_BIN service ls | grep -E '^web +svc .* 0\$'"
nh_start_named_httpd "$M1" "runc run $M1 in service web" nethook.network=svc nethook.service=web
nh_start_named_httpd "$M2" "runc run $M2 in service web" nethook.network=svc nethook.service=web
nh_start_named_httpd "$M3" "runc run $M3 in service web" nethook.network=svc nethook.service=web
nh_start "$C" "runc run client $C on svc" nethook.network=svc
nh_check "service inspect lists 3 members" \
    bash -c "$NETHOOK_BIN service inspect web | python3 -c 'import json,sys; assert len(json.load(sys.stdin)[\"members\"]) == 3'"
ANS="$(ask_n 60 from_client "http://$VIP4/")"
nh_check "60 requests from $C to http://$VIP4/ reach all three members" answers_are "$ANS" "$M1" "$M2" "$M3"
ANS="$(ask_n 60 from_client "http://[$VIP6]/")"
nh_check "60 requests from $C to http://[$VIP6]/ reach all three members" answers_are "$ANS" "$M1" "$M2" "$M3"
ANS="$(ask_n 30 timeout 3 busybox wget -q -O - "http://$VIP4/")"
nh_check "30 requests from the host to http://$VIP4/ reach all three" answers_are "$ANS" "$M1" "$M2" "$M3"

# --- 2. hairpin ----------------------------------------------------------------------
nh_section "a member reaches its own service"
ANS="$(ask_n 30 nh_exec "$M1" timeout 3 wget -q -O - "http://$VIP4/")"
nh_check "30 requests from $M1 to its own service all answer, itself included" answers_are "$ANS" "$M1" "$M2" "$M3"

# --- 3. removal ----------------------------------------------------------------------
nh_section "stopping a member removes it at once"
nh_check "runc kill + delete $M2" nh_stop_checked "$M2"
ANS="$(ask_n 30 from_client "http://$VIP4/")"
nh_check "30 requests right after $M2's poststop reach only $M1 and $M3" answers_are "$ANS" "$M1" "$M3"
nh_check "service inspect lists 2 members" \
    bash -c "$NETHOOK_BIN service inspect web | python3 -c 'import json,sys; assert len(json.load(sys.stdin)[\"members\"]) == 2'"

# --- 4. UDP ----------------------------------------------------------------------------
nh_section "a UDP service"
nh_check "nethook service create dns53 --port 5353/udp" nh service create dns53 --network svc --port 5353/udp
UVIP="$(service_field dns53 vip4 || true)"
udp_server() { # ID: answers every datagram with its id
    nh_in_ctr "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))
while True:
    d, peer = s.recvfrom(64); s.sendto(sys.argv[1].encode(), peer)' "$1" >/dev/null 2>&1 &
    UDP_PIDS+=($!)
}
nh_start "$U1" "runc run $U1 in service dns53" nethook.network=svc nethook.service=dns53
udp_server "$U1"
udp_ask() { # from the client, from source port 40000 (one flow), to VIP:5353
    nh_in_ctr "$C" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 40000)); s.settimeout(2)
s.sendto(b"q", (sys.argv[1], 5353)); print(s.recvfrom(64)[0].decode())' "$UVIP"
}
udp_answer_is() { local got; got="$(udp_ask 2>&1)" || { echo "no answer: $got"; return 1; }; [[ $got == "$1" ]] || { echo "answered '$got', not $1"; return 1; }; }
nh_check "the client's UDP flow to $UVIP:5353 reaches $U1" nh_wait_until 3 udp_answer_is "$U1"
nh_start "$U2" "runc run $U2 in service dns53" nethook.network=svc nethook.service=dns53
udp_server "$U2"
nh_check "the same flow keeps reaching $U1 (its conntrack entry)" udp_answer_is "$U1"
nh_check "runc kill + delete $U1" nh_stop_checked "$U1"
nh_check "the same flow reaches $U2 right after $U1's poststop" udp_answer_is "$U2"

# --- 5. no members --------------------------------------------------------------------
nh_section "a service with no member refuses"
nh_check "nethook service create empty --port 81,5354/udp" nh service create empty --network svc --port 81,5354/udp
EVIP="$(service_field empty vip4 || true)"
tcp_refused() {
    nh_in_ctr "$C" python3 -c '
import socket, sys, time
t = time.time()
try:
    socket.create_connection((sys.argv[1], 81), timeout=3); sys.exit("connected")
except ConnectionRefusedError:
    sys.exit(0 if time.time() - t < 1 else "refused, but late")' "$EVIP"
}
udp_refused() {
    nh_in_ctr "$C" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect((sys.argv[1], 5354))
s.send(b"q")
try:
    s.recv(64); sys.exit("answered")
except ConnectionRefusedError:
    pass' "$EVIP"
}
nh_check "TCP to $EVIP:81 is refused at once" tcp_refused
nh_check "UDP to $EVIP:5354 gets port unreachable" udp_refused

# --- 6. publish ------------------------------------------------------------------------
nh_section "a published service"
nh_check "nethook service create pub --port 80 --publish 18080" \
    nh service create pub --network svc --port 80 --publish 18080
P1="svc-$$-p1"
P2="svc-$$-p2"
nh_start_named_httpd "$P1" "runc run $P1 in pub" nethook.network=svc nethook.service=pub
nh_start_named_httpd "$P2" "runc run $P2 in pub" nethook.network=svc nethook.service=pub
ANS="$(ask_n 30 nh_in_outside timeout 3 busybox wget -q -O - "http://$UPLINK4:18080/")"
nh_check "30 requests from outside to $UPLINK4:18080 reach both members" answers_are "$ANS" "$P1" "$P2"
nh_start_refused "svc-$$-clash" "a container publishing 18080 is refused, naming the service" \
    --says "published by service pub" nethook.network=svc nethook.ports=18080:80

# --- 7. affinity ---------------------------------------------------------------------
nh_section "client-ip affinity"
nh_check "nethook service create sticky --port 80 --affinity client-ip" \
    nh service create sticky --network svc --port 80 --affinity client-ip
S1="svc-$$-s1"
S2="svc-$$-s2"
nh_start_named_httpd "$S1" "runc run $S1 in sticky" nethook.network=svc nethook.service=sticky
nh_start_named_httpd "$S2" "runc run $S2 in sticky" nethook.network=svc nethook.service=sticky
SVIP="$(service_field sticky vip4 || true)"
ANS="$(ask_n 20 from_client "http://$SVIP/")"
one_member() { # the answers are one member's, every time
    local got
    got="$(sort -u <<<"$ANS")"
    [[ $got == "$S1" || $got == "$S2" ]] || { echo "answers: $(sort <<<"$ANS" | uniq -c)"; return 1; }
}
nh_check "20 requests from $C to sticky all reach one member" one_member

# --- 8. repair after a flush -----------------------------------------------------------
nh_section "nft flush ruleset"
nft flush ruleset
nh_check "a member's poststop after the flush works (runc kill + delete $S2)" nh_stop_checked "$S2"
nh_check "... and leaves no record" test ! -e "$NETHOOK_RUN_DIR/endpoints/$S2.json"
nh_check "after the flush, nethook gc restores the tables" nh gc
nh_check "sticky's members file lists $S1 alone" \
    bash -c "$NETHOOK_BIN service inspect sticky | python3 -c 'import json,sys; m=json.load(sys.stdin)[\"members\"]; assert [x[\"container\"] for x in m] == [\"$S1\"], m'"
ANS="$(ask_n 10 from_client "http://$SVIP/")"
nh_check "sticky answers from $S1 alone after the repair" answers_are "$ANS" "$S1"
ANS="$(ask_n 30 from_client "http://$VIP4/")"
nh_check "web answers again from $M1 and $M3" answers_are "$ANS" "$M1" "$M3"

# --- 9. bad input ----------------------------------------------------------------------
nh_section "bad input: one line, nothing changed"
BEFORE="$(nh service ls)"
nh_start_refused "svc-$$-bad1" "a container naming an unknown service is refused" \
    --says "unknown service" nethook.network=svc nethook.service=nosuch
nh_start_refused "svc-$$-bad2" "a container joining a service of another network is refused" \
    --says "not nethook" nethook.service=web
nh_start_refused "svc-$$-bad3" "a bad nethook.service is refused" --says "nethook.service" nethook.service=web_1
nh_check "service create web again" nh_refused_in_one_line "already exists" nh service create web --network svc --port 80
nh_check "service create with a bad name" nh_refused_in_one_line "DNS label" nh service create web_1 --network svc --port 80
nh_check "service create with a bad port" nh_refused_in_one_line "1 to 65535" nh service create x1 --network svc --port 0
nh_check "service create with a VIP outside the range" \
    nh_refused_in_one_line "service range" nh service create x2 --network svc --port 80 --vip 10.64.0.99
nh_check "service create with a VIP that is taken" \
    nh_refused_in_one_line "already the VIP of service web" nh service create x3 --network svc --port 80 --vip "$VIP4"
nh_check "service create publishing the same host port" \
    nh_refused_in_one_line "18080" nh service create x4 --network svc --port 80 --publish 18080
nh_check "service create on an unknown network" nh_refused_in_one_line "unknown network" nh service create x5 --network nosuch --port 80
nh_check "service ls is unchanged" test "$(nh service ls)" = "$BEFORE"

# --- 10. removal and teardown -----------------------------------------------------------
nh_section "service rm and teardown"
nh_check "service rm empty" nh service rm empty
nh_check "service rm of an unknown service fails" nh_refused_in_one_line "unknown service" nh service rm empty
for id in "${STARTED[@]}"; do nh_stop_container "$id"; done
nh_check "network rm svc is refused while it has services" nh_refused_in_one_line "still has services" nh network rm svc
for s in web dns53 pub sticky; do nh_check "service rm $s" nh service rm "$s"; done
nh_check "no service chain or map is left" bash -c "! nft list table inet nethook | grep -q 'svc-'"
nh_check "no members file is left" bash -c "[[ -z \$(ls -A $NETHOOK_RUN_DIR/services 2>/dev/null) ]]"
nh_check "no host-port claim is left" bash -c "[[ -z \$(ls -A $NETHOOK_RUN_DIR/ports 2>/dev/null) ]]"
nh_check "network rm svc" nh network rm svc

nh_summary
