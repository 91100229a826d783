#!/usr/bin/env bash
# Leak test: CYCLES (default 1000) create/stop cycles of fake containers (processes in
# their own netns) with published TCP and UDP ports, through `nethook hook` as a runtime
# calls it. A window of 8 containers is alive at any time, so addresses and host ports
# are reused while others hold theirs; half the teardowns run after the container died
# (the usual poststop), half while its netns is still alive. At the end nothing may be
# left: no host veth, endpoint record, allocation or nftables element. Once per driver
# (DRIVERS, default "bridge routed dual": the default network, a routed network, then a
# dual-stack bridge network, whose containers publish over both families).
#
#   bash scripts/e2e-cycles.sh            CYCLES=200 DRIVERS=routed bash scripts/e2e-cycles.sh
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cycles="${CYCLES:-1000}"
drivers="${DRIVERS:-bridge routed dual}"
window=8
network_annotation=
nh_install_deps
nh_build
nh_enter_sandbox "$0" "$@"
nh_setup_tmp
NH_PASS=0 NH_FAIL=0

declare -A pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$NH_TMP"
}
trap cleanup EXIT

# start_ctr I: a process in a new netns; waits until it really is in one.
start_ctr() {
    unshare --net sleep 600 &
    local pid=$!
    nh_wait_own_netns "$pid"
    pids[$1]=$pid
}

hook() { # STATUS I [PID]
    local pid_field=""
    [[ -n ${3:-} ]] && pid_field="\"pid\":$3,"
    printf '{"ociVersion":"1.0.2","id":"cycle-%d","status":"%s",%s"bundle":"/x","annotations":{%s"nethook.ports":"%d:80,%d:53/udp"}}' \
        "$2" "$1" "$pid_field" "$network_annotation" $((20000 + $2 % 16)) $((21000 + $2 % 16)) |
        env -i NETHOOK_RUN_DIR="$NETHOOK_RUN_DIR" NETHOOK_CONFIG_DIR="$NETHOOK_CONFIG_DIR" "$NETHOOK_BIN" hook
}

stop_ctr() { # I
    local i=$1 pid=${pids[$1]}
    if ((i % 2)); then
        kill "$pid"; wait "$pid" 2>/dev/null || true
        hook stopped "$i"
    else
        hook stopped "$i"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    fi
    unset "pids[$i]"
}

map_size() { nft -j list "$1" "${3:-inet}" nethook "$2" | python3 -c 'import json,sys; print(sum(len(o[k].get("elem",[])) for o in json.load(sys.stdin)["nftables"] for k in ("set","map") if k in o))'; }

for driver in $drivers; do
echo "== $cycles cycles, $driver driver"
if [[ $driver == bridge ]]; then
    network_annotation=""
elif [[ $driver == dual ]]; then
    nh network create "cyc-$driver" --subnet 10.62.0.0/24 --subnet6 fd00:62::/64 >/dev/null 2>&1
    network_annotation="\"nethook.network\":\"cyc-$driver\","
else
    nh network create "cyc-$driver" --subnet 10.62.0.0/24 --driver "$driver" >/dev/null
    network_annotation="\"nethook.network\":\"cyc-$driver\","
fi
errors=0
start=$(date +%s.%N)
for ((i = 0; i < cycles; i++)); do
    start_ctr "$i"
    hook creating "$i" "${pids[$i]}" || { errors=$((errors + 1)); echo "setup $i failed"; }
    if ((i >= window)); then
        stop_ctr $((i - window)) || { errors=$((errors + 1)); echo "teardown $((i - window)) failed"; }
    fi
    ((i % 100 == 99)) && echo "$((i + 1)) cycles"
done
for i in "${!pids[@]}"; do stop_ctr "$i" || errors=$((errors + 1)); done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
echo "$cycles cycles in ${elapsed}s"

nh_check "$driver: every hook call succeeded" test "$errors" -eq 0
nh_wait_until 10 nh_no_host_veths || true
nh_settle
nh_check "$driver: no host veth left" nh_no_host_veths
nh_check "$driver: no endpoint left (nethook ls)" test "$(nh ls --json | tr -d '[:space:]')" = "[]"
nh_check "$driver: no endpoint record left" test -z "$(ls -A "$NETHOOK_RUN_DIR/endpoints")"
nh_check "$driver: no address allocated" nh_ipam_empty
nh_check "$driver: ports4 map empty" test "$(map_size map ports4)" -eq 0
nh_check "$driver: hports4 map empty" test "$(map_size map hports4)" -eq 0
nh_check "$driver: masq4 set empty" test "$(map_size set masq4)" -eq 0
nh_check "$driver: ports6, hports6 and masq6 empty" test "$(($(map_size map ports6) + $(map_size map hports6) + $(map_size set masq6)))" -eq 0
nh_check "$driver: IPv6 anti-spoofing set addrs6 empty" test "$(map_size set addrs6 bridge)" -eq 0
nh_check "$driver: network sets nets, intra and intra4 empty" test "$(($(map_size set nets) + $(map_size set intra) + $(map_size set intra4)))" -eq 0
nh_check "$driver: anti-spoofing sets macs, addrs4 and raddrs4 empty" test "$(($(map_size set macs bridge) + $(map_size set addrs4 bridge) + $(map_size set raddrs4)))" -eq 0
nh_check "$driver: no host route to a container left" test -z "$(ip route show | grep -E '^10\.62\.[0-9.]+ ' || true)"
[[ $driver == bridge ]] || nh_check "$driver: network rm" nh network rm "cyc-$driver"
done
nh_summary
