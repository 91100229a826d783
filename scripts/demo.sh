#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A guided tour of nethook for a newcomer, on Debian 12 as root:
#
#   sudo bash scripts/demo.sh
#
# Installs the dependencies, builds nethook, then, inside a throwaway network
# namespace (your machine's own network and firewall are never touched),
# starts busybox containers under runc with nethook as their OCI hook, shows
# their addresses, traffic between them, a published port, the nftables table
# nethook manages, and finally that stopping them leaves nothing behind.
# Everything it creates is removed when it exits, even on Ctrl-C.
#
# Env: NETHOOK_BIN=path to skip building; NETHOOK_SKIP_PORTS=1 to skip the
# published-port part.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bold=''
reset=''
if [[ -t 1 ]]; then
    bold=$'\e[1m'
    reset=$'\e[0m'
fi
heading() { printf '\n%s## %s%s\n' "$bold" "$*" "$reset"; }
# show CMD...: print the command as a user would type it, then its output.
show() {
    local shown=${SHOW_AS:-$*}
    printf '$ %s\n' "$shown"
    "$@" 2>&1 | sed 's/^/  /'
}

if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
    nh_require_root
    heading "Installing dependencies (runc, busybox-static, nftables, ...)"
    nh_install_deps
    echo "  ok"
    heading "Building nethook"
    nh_build
    echo "  $NETHOOK_BIN"
fi
nh_enter_sandbox "$0" "$@"

nh_setup_tmp
trap nh_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Make `nethook` in the shown commands refer to the binary we built.
nethook() { "$NETHOOK_BIN" "$@"; }
runc() { nh_runc "$@"; }

heading "A private sandbox"
echo "  Everything below runs in a fresh network namespace made for this demo;"
echo "  it and all state in $NH_TMP disappear when the demo exits."

heading "Starting two busybox containers under runc, nethook as their hook"
for id in demo-a demo-b; do
    nh_make_bundle "$NH_TMP/bundles/$id" "$id"
done
echo "  Each bundle's config.json registers nethook for two hook stages:"
python3 -c '
import json, sys
hooks = json.load(open(sys.argv[1]))["hooks"]
print("\"hooks\": {")
for stage in ("createRuntime", "poststop"):
    print("  \"%s\": [%s]," % (stage, json.dumps(hooks[stage][0])))
print("}")
' "$NH_TMP/bundles/demo-a/config.json" | sed "s|$NH_TMP|\$TMP|g; s/^/    /"
echo "  (\$TMP is this demo's scratch directory: runc state, bundles, nethook state.)"
for id in demo-a demo-b; do
    SHOW_AS="runc run --detach --bundle bundles/$id $id" show nh_run_container "$NH_TMP/bundles/$id" "$id"
done

heading "Their addresses"
show nethook ls

ip_of() {
    nethook ls --json | python3 -c '
import json, sys
print(next(e["ipv4"] for e in json.load(sys.stdin) if e["id"] == sys.argv[1]))' "$1"
}
IP_B="$(ip_of demo-b)"

heading "Inside demo-a"
show runc exec demo-a ip -4 addr show dev eth0
show runc exec demo-a ip route

heading "demo-a pings demo-b"
show runc exec demo-a ping -c 2 "$IP_B"

if [[ ${NETHOOK_SKIP_PORTS:-0} != 1 ]]; then
    heading "A published port: httpd in demo-web, annotation nethook.ports=8080:80,127.0.0.1:8080:80"
    nh_make_bundle "$NH_TMP/bundles/demo-web" demo-web --httpd nethook.ports=8080:80,127.0.0.1:8080:80
    SHOW_AS="runc run --detach --bundle bundles/demo-web demo-web" \
        show nh_run_container "$NH_TMP/bundles/demo-web" demo-web
    show nethook ls
    # busybox wget bounded by timeout(1): its own -T option crashes in 1.35.
    echo "  From the host, port 8080 on 127.0.0.1 (published there too) reaches the container:"
    show timeout 5 busybox wget -q -O - http://127.0.0.1:8080/ || echo "  (no answer)"

    heading "The nftables table nethook manages (in the sandbox's namespace)"
    show nft list table inet nethook || echo "  (no table)"
fi

heading "Stopping the containers (runc kill + delete runs the poststop hook)"
while read -r id; do
    [[ -n $id ]] || continue
    echo "$ runc kill $id KILL && runc delete $id"
    nh_stop_container "$id"
done < <(runc list --quiet)

heading "Nothing is left"
# Wait briefly: the kernel frees a dead namespace's veth asynchronously.
nh_wait_until 3 nh_no_host_veths || true
nh_settle
echo "  Links (the bridge nethook0 stays for the next container; no nh* veth):"
show ip -br link
echo "  Endpoints:"
show nethook ls
echo "  IP allocations (one file per address; only the round-robin cursor 'last' stays):"
if [[ -d $NETHOOK_RUN_DIR/ipam/nethook ]]; then
    SHOW_AS="ls -A \$NETHOOK_RUN_DIR/ipam/nethook" show ls -A "$NETHOOK_RUN_DIR/ipam/nethook"
fi
if [[ ${NETHOOK_SKIP_PORTS:-0} != 1 ]]; then
    echo "  nftables elements (published ports, addresses) in table inet nethook:"
    left="$(nft list table inet nethook 2>/dev/null | grep -A2 'elements = ' || true)"
    if [[ -n $left ]]; then printf '%s\n' "$left" | sed 's/^/  /'; else echo "  (none)"; fi
fi

heading "Done"
echo "  The sandbox namespace, the containers and $NH_TMP are gone now."
