#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: real runc containers (busybox rootfs) with nethook as their
# createRuntime/poststop hook, on the built-in default network.
#
#   1. two containers get distinct 10.77.x addresses, agree with `nethook ls`,
#      reach each other and the gateway; the host reaches both;
#   2. annotations: static ip/mac/ifname applied, disable honoured, a bad
#      address refused without leftovers; a network made with
#      `nethook network create` used through nethook.network;
#   3. published ports (nethook.ports=8080:80,127.0.0.1:8080:80): an httpd
#      container answers on 127.0.0.1:8080 and on host addresses, also from
#      another container; a second claim on the same host port, on one address
#      of it, or on a port a host process serves fails without leaving anything;
#      after `nft flush ruleset` (a firewall reload) the next container start
#      brings every older container's ports and isolation back, with no gc;
#   4. after runc kill + delete nothing is left: no nh* veth, no endpoint
#      record, no IPAM allocation, no nft element; and the bridge keeps its MAC
#      when a container leaves, so the others keep reaching the gateway.
#
# Everything runs in a throwaway network+mount namespace (see lib.sh); the
# machine's own network and nftables are never touched.
#
# Env: NETHOOK_BIN=path  use this binary instead of building
#      NETHOOK_SKIP_PORTS=1  skip part 3 (until nftables support lands)
# Output: PASS:/FAIL: lines, last line "N passed, M failed"; exit 1 on failure.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    nh_require_cmds runc busybox python3 ip nft unshare
    # Build before entering the sandbox: cargo may need the network.
    nh_build
fi
nh_enter_sandbox "$0" "$@"

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SUBNET=10.77.0.0/16
GATEWAY=10.77.0.1
BRIDGE=nethook0
# A "LAN" address of the sandbox host, on a veth pair whose both ends stay in
# the sandbox (the kernel here may lack the dummy driver). Published ports must
# answer on it like on any host address. TEST-NET-2, never routed anywhere.
LAN_IF=lan0
LAN_IP=198.51.100.1

A="e2e-$$-a"
B="e2e-$$-b"
C="e2e-$$-web"
D="e2e-$$-dup"
E="e2e-$$-static"   # nethook.ip / nethook.mac / nethook.ifname
F="e2e-$$-off"      # nethook.disable=true
G="e2e-$$-badip"    # nethook.ip outside the subnet: must be refused
R="e2e-$$-reload"   # started after a firewall reload
H="e2e-$$-blue"     # on a network made with `nethook network create`
BLUE_SUBNET=10.88.0.0/24
BLUE_GW=10.88.0.1
BLUE_BRIDGE=nhblue0
STATIC_IP=10.77.5.5
STATIC_MAC=02:00:00:00:05:05
ALL_IDS=("$A" "$B") # every id whose address or name must not leak
STARTED=()          # containers runc started, to stop in part 3

link_mac() { ip -o link show dev "$1" 2>/dev/null | sed -n 's|.* link/ether \([0-9a-f:]*\) .*|\1|p'; }

bridge_mac_is() {
    local now
    now="$(link_mac "$BRIDGE")"
    [[ $now == "$1" ]] || { echo "it is $now now"; return 1; }
}

ping_ok() { busybox ping -c 1 -W 3 "$1"; }
ping_from() { nh_exec "$1" ping -c 1 -W 3 "$2"; }

# No `wget -T`: busybox-static 1.35's wget segfaults on it; bound it with
# timeout(1) instead.
host_wget() { timeout 5 busybox wget -q -O - "$1"; }
port_listening() { ss -ltn | grep -q ":$1 "; }
gc_says_nothing() {
    local out
    out="$(nh gc)" || return 1
    [[ $out == "nothing to collect" ]] || { printf '%s\n' "$out"; return 1; }
}

check_bridge() {
    local out
    out="$(ip -o -4 addr show dev "$BRIDGE")" || return 1
    [[ $out == *" inet $GATEWAY/16 "* ]] || { echo "$BRIDGE lacks $GATEWAY/16: $out"; return 1; }
}

no_host_veths() {
    local left
    left="$(nh_host_veths)"
    [[ -z $left ]] || { echo "left on host:"; ip -br link; return 1; }
}

endpoints_empty() {
    local dir="$NETHOOK_RUN_DIR/endpoints"
    [[ ! -d $dir ]] && return 0
    local -a left
    mapfile -t left < <(find "$dir" -mindepth 1)
    ((${#left[@]} == 0)) || { printf 'left: %s\n' "${left[@]}"; return 1; }
}

# A network's IPAM directory (one file per address, holding the owner's id)
# may keep its "last" cursor, which legitimately names a freed address, but no
# address file, and no file may name one of our container ids.
ipam_empty() { nh_ipam_empty "${ALL_IDS[@]}" -- "$@"; } # IP...

port_listed() { # ID
    local ports
    ports="$(nh_ls_field "$1" ports)" || return 1
    [[ $ports == *8080* ]] || { echo "ports of $1: $ports"; return 1; }
}

check_static() { # ID: static address, MAC and interface name applied inside
    local out
    out="$(nh_exec "$1" ip -o -4 addr show dev net0)" || return 1
    [[ $out == *" inet $STATIC_IP/16 "* ]] || { echo "net0 lacks $STATIC_IP/16: $out"; return 1; }
    out="$(nh_exec "$1" ip -o link show dev net0)" || return 1
    [[ $out == *"link/ether $STATIC_MAC "* ]] || { echo "net0 MAC is not $STATIC_MAC: $out"; return 1; }
    [[ "$(nh_ls_field "$1" interface)" == net0 ]] || { echo "ls --json interface is not net0"; return 1; }
    [[ "$(nh_ls_field "$1" mac)" == "$STATIC_MAC" ]] || { echo "ls --json mac is not $STATIC_MAC"; return 1; }
}

check_disabled() { # ID: only lo inside, not listed
    local out
    out="$(nh_exec "$1" ip -o link)" || return 1
    [[ $(grep -cv ': lo:' <<<"$out") -eq 0 ]] || { echo "links inside: $out"; return 1; }
    if nh_ls_field "$1" id >/dev/null 2>&1; then echo "$1 is listed by nethook ls"; return 1; fi
}

check_blue() { # ID
    local ip
    ip="$(nh_ls_field "$1" ipv4)" || return 1
    [[ "$(nh_ls_field "$1" network)" == blue ]] || { echo "network is not blue"; return 1; }
    python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' \
        "$ip" "$BLUE_SUBNET" || { echo "$ip not in $BLUE_SUBNET"; return 1; }
    local out
    out="$(nh_exec "$1" ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet $ip/24 "* ]] || { echo "eth0 lacks $ip/24: $out"; return 1; }
    out="$(ip -o link show dev "$(nh_ls_field "$1" host_interface)")" || return 1
    [[ $out == *"master $BLUE_BRIDGE"* ]] || { echo "host veth not on $BLUE_BRIDGE: $out"; return 1; }
}

network_listed() {
    local out
    out="$(nh network ls)" || return 1
    grep -qw "$1" <<<"$out" || { printf '%s\n' "$out"; return 1; }
}

ls_empty() {
    local out
    out="$(nh ls --json)" || return 1
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d == [] else "not empty: %s" % d)' <<<"$out"
}

# No nft element may still point at one of our containers, their host veths
# (anti-spoofing elements in table bridge nethook) or our host port.
nft_clean() { # IP...
    local out ip
    out="$(nft list table inet nethook 2>/dev/null; nft list table bridge nethook 2>/dev/null)" || true
    [[ -n $out ]] || return 0 # no tables: nothing leaked
    if grep -qE '"nh[0-9a-v]{12,13}"' <<<"$out"; then
        echo "a host veth is still in an element:"; printf '%s\n' "$out"; return 1
    fi
    for ip in "$@"; do
        [[ -z $ip ]] && continue
        if grep -qwF "$ip" <<<"$out"; then
            echo "$ip still in a nethook table:"; printf '%s\n' "$out"; return 1
        fi
    done
    if grep -qE '\b8080\b' <<<"$out"; then
        echo "port 8080 still published:"; printf '%s\n' "$out"; return 1
    fi
}

echo "== nethook e2e with runc (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

ip link add "$LAN_IF" type veth peer name "${LAN_IF}p"
ip addr add "$LAN_IP/24" dev "$LAN_IF"
ip link set "${LAN_IF}p" up
ip link set "$LAN_IF" up

# --- 1. two containers --------------------------------------------------------
nh_section "two containers on the default network"
for id in "$A" "$B"; do
    nh_start "$id" "runc run $id (createRuntime hook)"
done

IP_A="$(nh_ls_field "$A" ipv4 2>/dev/null || true)"
IP_B="$(nh_ls_field "$B" ipv4 2>/dev/null || true)"
VETH_A="$(nh_ls_field "$A" host_interface 2>/dev/null || true)"
VETH_B="$(nh_ls_field "$B" host_interface 2>/dev/null || true)"
echo "   $A: ${IP_A:-?} ($VETH_A)   $B: ${IP_B:-?} ($VETH_B)"

nh_check "nethook ls --json: distinct addresses in $SUBNET" nh_check_addresses "$IP_A" "$IP_B"
nh_check "bridge $BRIDGE holds gateway $GATEWAY/16" check_bridge
nh_check "host veth of $A is nh+hex and on $BRIDGE" nh_check_host_veth "$VETH_A"
nh_check "host veth of $B is nh+hex and on $BRIDGE" nh_check_host_veth "$VETH_B"
nh_check "eth0 in $A has $IP_A/16 and default via $GATEWAY, only lo+eth0" nh_check_inside nh_exec "$A" "$IP_A"
nh_check "eth0 in $B has $IP_B/16 and default via $GATEWAY, only lo+eth0" nh_check_inside nh_exec "$B" "$IP_B"
nh_check "$A pings $B ($IP_B)" ping_from "$A" "$IP_B"
nh_check "$B pings $A ($IP_A)" ping_from "$B" "$IP_A"
nh_check "$A pings gateway $GATEWAY" ping_from "$A" "$GATEWAY"
nh_check "$B pings gateway $GATEWAY" ping_from "$B" "$GATEWAY"
nh_check "host pings $A ($IP_A)" ping_ok "$IP_A"
nh_check "host pings $B ($IP_B)" ping_ok "$IP_B"

# --- 2. annotations and a custom network --------------------------------------
nh_section "annotations and a network made with 'nethook network create'"
ALL_IDS+=("$E" "$F" "$G" "$H")
nh_start "$E" "runc run $E with nethook.ip/mac/ifname" \
    nethook.ip="$STATIC_IP" nethook.mac="$STATIC_MAC" nethook.ifname=net0
nh_check "$E has $STATIC_IP/16 and $STATIC_MAC on net0" check_static "$E"
nh_check "$E pings $A ($IP_A)" ping_from "$E" "$IP_A"
nh_start "$F" "runc run $F with nethook.disable=true" nethook.disable=true
nh_check "$F has no interface but lo and is not listed" check_disabled "$F"
nh_start_refused "$G" "nethook.ip=192.0.2.10 (outside $SUBNET) is refused" nethook.ip=192.0.2.10
nh_check "nethook network create blue --subnet $BLUE_SUBNET" \
    nh network create blue --subnet "$BLUE_SUBNET" --bridge "$BLUE_BRIDGE"
nh_check "nethook network ls shows blue" network_listed blue
nh_check "nethook network inspect blue" nh network inspect blue
nh_start "$H" "runc run $H with nethook.network=blue" nethook.network=blue
IP_H="$(nh_ls_field "$H" ipv4 2>/dev/null || true)"
nh_check "$H has ${IP_H:-?}/24 in $BLUE_SUBNET on $BLUE_BRIDGE" check_blue "$H"
nh_check "$H pings its gateway $BLUE_GW" ping_from "$H" "$BLUE_GW"

# --- 3. published ports -------------------------------------------------------
IP_C=""
if [[ ${NETHOOK_SKIP_PORTS:-0} == 1 ]]; then
    nh_section "published ports: SKIPPED (NETHOOK_SKIP_PORTS=1)"
else
    nh_section "published port 8080 -> httpd:80"
    ALL_IDS+=("$C" "$D")
    nh_start "$C" "runc run $C with nethook.ports=8080:80,127.0.0.1:8080:80" --httpd nethook.ports=8080:80,127.0.0.1:8080:80
    IP_C="$(nh_ls_field "$C" ipv4 2>/dev/null || true)"
    echo "   $C: ${IP_C:-?} ports $(nh_ls_field "$C" ports 2>/dev/null || echo '?')"
    nh_check "nethook ls --json: $C has its own address" nh_check_addresses "$IP_A" "$IP_B" "$IP_C"
    nh_check "nethook ls --json: $C lists a published port" port_listed "$C"
    # Direct first: if this fails the problem is the container, not NAT.
    nh_check "httpd answers directly on $IP_C:80" nh_fetch_ok host_wget "http://$IP_C:80/"
    nh_check "host fetches http://127.0.0.1:8080/" nh_fetch_ok host_wget "http://127.0.0.1:8080/"
    nh_check "host fetches http://$LAN_IP:8080/" nh_fetch_ok host_wget "http://$LAN_IP:8080/"
    nh_check "host fetches http://$GATEWAY:8080/" nh_fetch_ok host_wget "http://$GATEWAY:8080/"
    # Another container reaching the published port on a host address goes
    # out and back through the bridge (the hairpin masquerade case).
    nh_check "$A fetches http://$LAN_IP:8080/" \
        nh_fetch_ok nh_exec "$A" timeout 5 wget -q -O - "http://$LAN_IP:8080/"

    # A second claim on 8080/tcp must fail at createRuntime and leave
    # nothing. Only meaningful while the first claim holds the port.
    if [[ " ${STARTED[*]} " == *" $C "* ]]; then
        nh_start_refused "$D" "a second container publishing 8080 is refused" \
            --httpd nethook.ports=8080:80
        ALL_IDS+=("$D-ip" "$D-host")
        nh_start_refused "$D-ip" "a second container publishing 8080 on $LAN_IP only is refused" \
            --httpd "nethook.ports=$LAN_IP:8080:80"
        nh_check "$C still serves after the refused claims" nh_fetch_ok host_wget "http://127.0.0.1:8080/"
        # A host service on 127.0.0.1:9999, like a database bound to loopback.
        python3 -c 'import socket,time;s=socket.socket();s.bind(("127.0.0.1",9999));s.listen();time.sleep(300)' &
        HOST_SVC=$!
        nh_wait_until 5 port_listening 9999 || true
        nh_start_refused "$D-host" "publishing 9999, which a host process serves on 127.0.0.1, is refused" \
            --httpd nethook.ports=9999:80
        kill "$HOST_SVC" 2>/dev/null; wait "$HOST_SVC" 2>/dev/null || true
    else
        nh_fail "duplicate host port check not run: $C is not running"
    fi

    nh_section "firewall reload: nft flush ruleset, then another container starts"
    if [[ " ${STARTED[*]} " == *" $C "* ]]; then
        nft flush ruleset
        nh_check "after the flush $C no longer answers on $LAN_IP:8080" nh_fetch_fails host_wget "http://$LAN_IP:8080/"
        ALL_IDS+=("$R")
        nh_start "$R" "runc run $R after the flush" nethook.ports=8090:80
        nh_check "$C answers on $LAN_IP:8080 again, with no gc" nh_fetch_ok host_wget "http://$LAN_IP:8080/"
        nh_check "$C answers on 127.0.0.1:8080 again" nh_fetch_ok host_wget "http://127.0.0.1:8080/"
        nh_check "$A fetches http://$LAN_IP:8080/ again (hairpin masquerade)" \
            nh_fetch_ok nh_exec "$A" timeout 5 wget -q -O - "http://$LAN_IP:8080/"
        nh_check "nethook gc finds nothing left to repair" gc_says_nothing
    else
        nh_fail "firewall reload check not run: $C is not running"
    fi
fi

# --- 4. teardown ----------------------------------------------------------------
nh_section "teardown (runc kill + runc delete -> poststop hook)"
# Stop first the container whose host veth lent its MAC to the bridge, if
# any: a bridge without a MAC of its own takes the lowest port MAC and changes
# it when that port goes, silently breaking every other container's ARP entry
# for the gateway. The survivors must keep reaching the gateway at once.
# Only containers on the default network take part; the others go last.
order=()
others=()
br_mac="$(link_mac "$BRIDGE")"
for id in "${STARTED[@]}"; do
    if [[ "$(nh_ls_field "$id" network 2>/dev/null)" != nethook ]]; then
        others+=("$id")
        continue
    fi
    veth="$(nh_ls_field "$id" host_interface 2>/dev/null || true)"
    if [[ -n $veth && "$(link_mac "$veth")" == "$br_mac" ]]; then
        order=("$id" "${order[@]}")
    else
        order+=("$id")
    fi
done
n_default=${#order[@]}
order+=("${others[@]}")
for i in "${!order[@]}"; do
    id=${order[$i]}
    nh_check "runc kill + delete $id" nh_stop_checked "$id"
    if ((i == 0 && n_default > 1)); then
        nh_check "bridge MAC unchanged after $id left ($br_mac)" bridge_mac_is "$br_mac"
        nh_check "${order[1]} still pings gateway $GATEWAY right after $id left" \
            ping_from "${order[1]}" "$GATEWAY"
    fi
done
# Deleting the netns frees the veth pair asynchronously: poll briefly.
nh_wait_until 3 nh_no_host_veths || true
nh_check "no nh* veth left on the host" no_host_veths
nh_check "no endpoint records left in \$NETHOOK_RUN_DIR/endpoints" endpoints_empty
nh_check "no allocations left in \$NETHOOK_RUN_DIR/ipam" ipam_empty "$IP_A" "$IP_B" "$IP_C" "$STATIC_IP" "$IP_H"
nh_check "nethook ls --json is []" ls_empty
nh_check "nethook network rm blue" nh network rm blue
if [[ ${NETHOOK_SKIP_PORTS:-0} != 1 ]]; then
    nh_check "no nft element left for our containers or port 8080" nft_clean "$IP_A" "$IP_B" "$IP_C" "$STATIC_IP" "$IP_H"
fi

echo
nh_summary
