#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of names: real runc containers (busybox rootfs) on networks with a
# resolver (`--dns`), real DNS traffic, an "upstream" DNS server in an outside namespace
# named by the sandbox's own /etc/resolv.conf (bind-mounted in its mount namespace).
#
#   1. the first container of a DNS network starts `nethook dns`; nethook.resolv=true
#      writes the container's /etc/resolv.conf naming its gateway;
#   2. containers resolve each other by name, NAME.NETWORK and alias (A, AAAA, PTR),
#      with TTL 0, over UDP and TCP; a service resolves to its VIP and a client's 60
#      requests to http://web/ reach all three members;
#   3. another network's names are not answered there;
#   4. everything else is forwarded: answers, NXDOMAIN, REFUSED and truncation pass
#      through, 127.0.0.53-style stubs in resolv.conf are skipped;
#   5. a stopped container is gone from DNS when its poststop returns; a taken name
#      is refused naming the holder;
#   6. a killed resolver is restarted by the next hook, a hung one replaced;
#   7. it binds only the gateway addresses, and exits when no container of a DNS
#      network is left;
#   8. bad input: one line, nothing changed.
#
# Everything runs in a throwaway network+mount namespace (see lib.sh).
# Env: NETHOOK_BIN=path  use this binary instead of building.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip nft unshare nsenter ss
    nh_build
fi
nh_enter_sandbox "$0" "$@"
nh_private_run

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ASK="$HERE/dns/ask.py"
D4=10.66.0.0/24
D6=fd00:66::/64
GW4=10.66.0.1
GW6=fd00:66::1
O4=10.67.0.0/24
OGW=10.67.0.1
UPLINK4=192.0.2.1
UPSTREAM=192.0.2.53

M1="m1"; M2="m2"; M3="m3"
C="client"
O1="other1"
STARTED=()

ask() { nh_in_ctr "$1" python3 "$ASK" "${@:2}"; } # ID SERVER NAME [TYPE] [--tcp]

answers() { # ID NAME [TYPE] [--tcp] -> the data lines of the answer from the gateway
    ask "$1" "$GW4" "${@:2}" | tail -n +2 | cut -d' ' -f2
}
resolves_to() { # ID NAME WANT [TYPE]
    local got
    got="$(answers "$1" "$2" "${4:-A}")" || { echo "no answer"; return 1; }
    [[ $got == "$3" ]] || { echo "$2 -> '$got', not $3"; return 1; }
}
rcode_is() { # ID SERVER NAME RCODE [ARGS]
    local got
    got="$(ask "$1" "$2" "$3" "${@:5}" | head -n 1)" || { echo "no answer"; return 1; }
    [[ $got == "$4" ]] || { echo "$3: $got, not $4"; return 1; }
}
ttl_zero() { # ID NAME
    local got
    got="$(ask "$1" "$GW4" "$2" | sed -n 2p | cut -d' ' -f1)"
    [[ $got == 0 ]] || { echo "TTL $got"; return 1; }
}
resolver_pid() { cat "$NETHOOK_RUN_DIR/dns/pid" 2>/dev/null; }
resolver_runs() { local p; p="$(resolver_pid)" && [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }
resolver_gone() { ! resolver_runs; }

echo "== nethook DNS e2e (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

# "Outside": an upstream DNS server behind an uplink. The sandbox's resolv.conf (in its
# own mount namespace) names a systemd-resolved-style stub first, which must be skipped.
nh_outside_ns "$UPLINK4" "$UPSTREAM"
nh_in_outside python3 "$HERE/dns/upstream.py" "$UPSTREAM" >/dev/null 2>&1 &
UPSTREAM_PID=$!
printf 'nameserver 127.0.0.53\nnameserver %s\noptions edns0\n' "$UPSTREAM" >"$NH_TMP/resolv.conf"
mount --bind "$NH_TMP/resolv.conf" /etc/resolv.conf
stop_bg() {
    local p
    # The resolver outlives its hooks by design: ended here by pid.
    p="$(resolver_pid || true)"
    [[ -n $p ]] && kill "$p" 2>/dev/null
    for p in "$UPSTREAM_PID" "$OUTSIDE_NS_PID"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    umount /etc/resolv.conf 2>/dev/null || true
}
trap 'stop_bg; nh_cleanup' EXIT

# --- 1. a DNS network, its resolver, resolv.conf --------------------------------------------
nh_section "network app ($D4 + $D6, --dns) and its resolver"
nh_check "nethook network create app --dns" nh network create app --subnet "$D4" --subnet6 "$D6" --dns
nh_check "no resolver runs before a container" resolver_gone
nh_check "nethook service create web --network app --port 80" nh service create web --network app --port 80
nh_check "a service alone starts no resolver" resolver_gone
nh_start_named_httpd "$M1" "runc run $M1 (aliases www, api) in service web" \
    nethook.network=app nethook.service=web nethook.aliases=www,api
nh_check "the first container started the resolver" resolver_runs
VIP="$(nh service inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)["vip4"])')"
nh_start_named_httpd "$M1-b" "a container named $M2 (nethook.name) ..." nethook.network=app nethook.name="$M2"
nh_check "... stopped, frees the name for the container $M2" nh_stop_checked "$M1-b"
nh_start_named_httpd "$M2" "runc run $M2 in service web" nethook.network=app nethook.service=web
nh_start_named_httpd "$M3" "runc run $M3 in service web" nethook.network=app nethook.service=web
nh_start "$C" "runc run $C with nethook.resolv=true" nethook.network=app nethook.resolv=true
resolv_ok() {
    local out
    out="$(nh_exec "$C" cat /etc/resolv.conf)" || return 1
    [[ $out == *"nameserver $GW4"* && $out == *"nameserver $GW6"* && $out == *"search app"* ]] || { echo "$out"; return 1; }
}
nh_check "$C's /etc/resolv.conf names $GW4 and $GW6 and searches app" resolv_ok

# --- 2. names ----------------------------------------------------------------------------------
nh_section "names on app"
IP1="$(nh_ls_field "$M1" ipv4)"
IP1_6="$(nh_ls_field "$M1" ipv6)"
nh_check "$M1 resolves to $IP1" resolves_to "$C" "$M1" "$IP1"
nh_check "$M1.app resolves to $IP1" resolves_to "$C" "$M1.app" "$IP1"
nh_check "alias www resolves to $IP1" resolves_to "$C" www "$IP1"
nh_check "$M1 AAAA is $IP1_6" resolves_to "$C" "$M1" "$IP1_6" AAAA
ptr_names() { # ID ADDRESS WANT...: the PTR answer names exactly these
    local got
    got="$(answers "$1" "$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_address(sys.argv[1]).reverse_pointer)' "$2")" PTR | sort | tr '\n' ' ')"
    shift 2
    [[ $got == "$(printf '%s\n' "$@" | sort | tr '\n' ' ')" ]] || { echo "PTR: $got"; return 1; }
}
nh_check "PTR of $IP1 names $M1.app, www.app and api.app" ptr_names "$C" "$IP1" "$M1.app" www.app api.app
nh_check "answers have TTL 0" ttl_zero "$C" "$M1"
tcp_ok() { [[ "$(answers "$C" "$M1" A --tcp)" == "$IP1" ]]; }
nh_check "$M1 resolves over TCP" tcp_ok
nslookup_ok() { local out; out="$(nh_exec "$C" nslookup web 2>&1)"; [[ $out == *"$VIP"* ]] || { echo "$out"; return 1; }; }
nh_check "busybox nslookup web in $C answers the VIP $VIP" nslookup_ok
from_client() { nh_exec "$C" timeout 3 wget -q -O - "$1"; }
ANS=""
for _ in $(seq 60); do ANS+="$(from_client http://web/ 2>/dev/null || echo FAIL)"$'\n'; done
all_three() {
    local m
    for m in "$M1" "$M2" "$M3"; do grep -qx "$m" <<<"$ANS" || { sort <<<"$ANS" | uniq -c; return 1; }; done
    ! grep -qx FAIL <<<"$ANS" || { sort <<<"$ANS" | uniq -c; return 1; }
}
nh_check "60 requests from $C to http://web/ reach $M1, $M2 and $M3" all_three

# --- 3. isolation between networks -----------------------------------------------------------------
nh_section "another network's names"
nh_check "nethook network create other --dns" nh network create other --subnet "$O4" --dns
nh_start "$O1" "runc run $O1 on other" nethook.network=other
self_ok() { [[ "$(ask "$O1" "$OGW" "$O1" | tail -n +2 | cut -d' ' -f2)" == "$(nh_ls_field "$O1" ipv4)" ]]; }
nh_check "$O1 resolves its own name at $OGW" self_ok
not_local() { # ID SERVER NAME: answered, but not from a zone: the upstream's 192.0.2.7
    local got
    got="$(ask "$1" "$2" "$3" | tail -n +2 | cut -d' ' -f2)"
    [[ $got == 192.0.2.7 ]] || { echo "answered '$got', not the upstream's 192.0.2.7"; return 1; }
}
nh_check "app's resolver does not give $O1's address" not_local "$C" "$GW4" "$O1"
nh_check "other's resolver does not give $M1's address" not_local "$O1" "$OGW" "$M1"
nh_check "$O1.other is not answered at app's resolver" not_local "$C" "$GW4" "$O1.other"
nh_check "an unknown NAME.app is NXDOMAIN, not forwarded" rcode_is "$C" "$GW4" nosuch.app NXDOMAIN

# --- 4. forwarding ------------------------------------------------------------------------------
nh_section "forwarding to the upstream ($UPSTREAM, after skipping 127.0.0.53)"
fwd_ok() { [[ "$(answers "$C" example.test)" == 192.0.2.7 ]]; }
nh_check "example.test is forwarded and answered" fwd_ok
nh_check "NXDOMAIN passes through" rcode_is "$C" "$GW4" nxname.test NXDOMAIN
nh_check "REFUSED passes through" rcode_is "$C" "$GW4" refuse.test REFUSED
nh_check "truncation passes through over UDP" rcode_is "$C" "$GW4" big.test "NOERROR TC"
big_tcp() { [[ "$(answers "$C" big.test A --tcp | wc -l)" == 100 ]]; }
nh_check "over TCP the 100 answers come back" big_tcp

# --- 5. stop, clash -----------------------------------------------------------------------------
nh_section "a stopped container's name goes; a taken name is refused"
nh_start_refused "dup" "a container named $M2 is refused, naming the holder" \
    --says "taken on network app by container $M2" nethook.network=app nethook.name="$M2"
nh_check "runc kill + delete $M3" nh_stop_checked "$M3"
gone_at_once() { local got; got="$(answers "$C" "$M3")"; [[ $got == 192.0.2.7 ]] || { echo "answered '$got', not the upstream's 192.0.2.7"; return 1; }; }
nh_check "$M3 no longer resolves right after its poststop" gone_at_once

# --- 6. a killed resolver --------------------------------------------------------------------------
nh_section "a killed resolver is restarted by the next hook"
OLD="$(resolver_pid)"
kill -9 "$OLD"
dead() { [[ ! -e /proc/$1 ]] || grep -q '^State:.*Z' "/proc/$1/status"; } # gone, or a zombie nobody reaps
nh_check "resolver $OLD is gone" nh_wait_until 3 dead "$OLD"
nh_start_named_httpd "$M3" "runc run $M3 again" nethook.network=app nethook.service=web
nh_check "a new resolver runs" resolver_runs
nh_check "$M1 resolves again" resolves_to "$C" "$M1" "$IP1"
nh_check "$M3 resolves at once" resolves_to "$C" "$M3" "$(nh_ls_field "$M3" ipv4)"
HUNG="$(resolver_pid)"
kill -STOP "$HUNG"
nh_start_named_httpd "h1" "a container starts while resolver $HUNG hangs (SIGSTOP)" nethook.network=app
nh_check "the hung resolver was replaced" bash -c "[[ \$(cat $NETHOOK_RUN_DIR/dns/pid) != $HUNG ]]"
nh_check "resolver $HUNG is gone" nh_wait_until 3 dead "$HUNG"
nh_check "h1 resolves" resolves_to "$C" h1 "$(nh_ls_field h1 ipv4)"

# --- 7. binding, exit ----------------------------------------------------------------------------
nh_section "what it binds, and when it exits"
only_gateways() {
    local all out pid
    pid="$(resolver_pid)"
    all="$(ss -Hlnup; ss -Hlntp)"
    out="$(grep "pid=$pid," <<<"$all" | awk '{print $4}' | sort -u)"
    local want
    want="$(printf '%s\n' "$GW4:53" "[$GW6]:53" "$OGW:53" | sort -u)"
    [[ $out == "$want" ]] || { echo "bound: $out (all: $all)"; return 1; }
}
nh_check "the resolver listens on $GW4, $GW6 and $OGW port 53 only" only_gateways

# --- 8. bad input ----------------------------------------------------------------------------------
nh_section "bad input: one line, nothing changed"
nh_start_refused "bad1" "nethook.name with a dot is refused" --says "nethook.name" nethook.network=app nethook.name=a.b
nh_start_refused "bad2" "nethook.resolv on a network without DNS is refused" \
    --says "has no resolver" nethook.resolv=true
nh_start_refused "bad3" "a name that is a service's is refused" --says "service web" nethook.network=app nethook.name=web

for id in "${STARTED[@]}"; do nh_stop_container "$id"; done
nh_check "with no container left on a DNS network, the resolver exits" nh_wait_until 3 resolver_gone
nh_check "service rm web" nh service rm web
nh_check "network rm app and other" bash -c "$NETHOOK_BIN network rm app && $NETHOOK_BIN network rm other"
nh_check "no name claim is left" bash -c "[[ -z \$(find $NETHOOK_RUN_DIR/names -type f 2>/dev/null) ]]"

nh_summary
