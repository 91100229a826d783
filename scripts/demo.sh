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
# nethook manages, then the same binary run as a CNI plugin (as containerd,
# Podman and kubelet run it) putting one more namespace on the same network,
# a routed network (no bridge), a dual-stack network (IPv6), and finally that stopping
# them leaves nothing behind.
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
# Paths under this demo's scratch directory read as $TMP.
show() {
    local shown=${SHOW_AS:-$*}
    printf '$ %s\n' "$shown" | tmp_as_var
    "$@" 2>&1 | tmp_as_var | sed 's/^/  /'
}
tmp_as_var() { if [[ -n ${NH_TMP:-} ]]; then sed "s|$NH_TMP|\$TMP|g"; else cat; fi; }

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
nh_private_run

nh_setup_tmp
CNI_NETNS="" # the CNI section's network namespace, once it exists
demo_cleanup() {
    local rc=$?
    set +e
    if [[ -n $CNI_NETNS ]]; then
        # DEL is idempotent: harmless when the CNI section already sent it. The netns file
        # is a bind mount: unmounted, so the scratch directory can be removed.
        cni DEL >/dev/null 2>&1
        umount "$CNI_NETNS" 2>/dev/null
    fi
    (exit "$rc")
    nh_cleanup
}
trap demo_cleanup EXIT
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

heading "The same binary as a CNI plugin"
echo "  containerd (ctr run --cni, nerdctl), Podman's CNI backend and kubelet run CNI plugins."
echo "  Installed as one, nethook puts their containers on the same network, with the same IPAM:"
CNI_DIR="$NH_TMP/cni"
show nethook install --cni-bin-dir "$CNI_DIR/bin" --cni-conf-dir "$CNI_DIR/net.d"
show cat "$CNI_DIR/net.d/10-nethook.conflist"
echo "  A runtime makes the container's network namespace (here: one pinned to a file),"
CNI_NETNS="$CNI_DIR/netns-demo-cni"
touch "$CNI_NETNS"
show unshare --net="$CNI_NETNS" true
echo "  then runs each plugin of the list with CNI_* variables and, on stdin, the plugin's"
echo "  entry with the list's name and cniVersion. Done by hand:"
python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
entry = dict(doc["plugins"][0], name=doc["name"], cniVersion=doc["cniVersion"])
open(sys.argv[2], "w").write(json.dumps(entry) + "\n")' "$CNI_DIR/net.d/10-nethook.conflist" "$CNI_DIR/stdin.json"
show cat "$CNI_DIR/stdin.json"
# cni COMMAND: the plugin called as a runtime calls it, for container demo-cni.
cni() {
    CNI_COMMAND=$1 CNI_CONTAINERID=demo-cni CNI_NETNS=$CNI_NETNS CNI_IFNAME=eth0 \
        CNI_PATH=$CNI_DIR/bin "$CNI_DIR/bin/nethook" <"$CNI_DIR/stdin.json"
}
cni_env="CNI_CONTAINERID=demo-cni CNI_NETNS=$CNI_NETNS CNI_IFNAME=eth0 CNI_PATH=$CNI_DIR/bin"
echo "  ADD prints the CNI result: the interfaces, the address, the route:"
cni_add_pretty() { cni ADD | python3 -m json.tool; }
SHOW_AS="CNI_COMMAND=ADD $cni_env $CNI_DIR/bin/nethook < $CNI_DIR/stdin.json | python3 -m json.tool" \
    show cni_add_pretty
echo "  nethook ls lists the attachment as CONTAINERID@IFNAME, next to the runc containers:"
show nethook ls
IP_CNI="$(ip_of demo-cni@eth0)"
show nsenter --net="$CNI_NETNS" ip -br addr
echo "  From demo-cni's namespace to demo-b (a runc container) and back:"
show nsenter --net="$CNI_NETNS" busybox ping -c 2 "$IP_B"
show runc exec demo-b ping -c 1 "$IP_CNI"
echo "  DEL (a runtime sends it when the container goes) removes it:"
SHOW_AS="CNI_COMMAND=DEL $cni_env $CNI_DIR/bin/nethook < $CNI_DIR/stdin.json" show cni DEL
show nethook ls
echo "  (README, \"Kubernetes and CNI\": conflists for containerd, Podman and kubelet.)"

heading "A routed network: no bridge, a /32 route per container"
show nethook network create flat --subnet 10.60.0.0/24 --driver routed
show nethook network ls
nh_make_bundle "$NH_TMP/bundles/demo-routed" demo-routed nethook.network=flat
SHOW_AS="runc run --detach --bundle bundles/demo-routed demo-routed" \
    show nh_run_container "$NH_TMP/bundles/demo-routed" demo-routed
IP_R="$(ip_of demo-routed)"
echo "  Inside: its address alone (/32), the gateway 169.254.1.1 known by a permanent entry:"
show runc exec demo-routed ip -4 addr show dev eth0
show runc exec demo-routed ip route
show runc exec demo-routed ip neigh
echo "  On the host: a route to it out of its veth (nr...), which has no address:"
show ip route show "$IP_R"
echo "  Isolation holds as between bridge networks: demo-a (bridge network) cannot reach it."
show runc exec demo-a ping -c 1 -W 1 "$IP_R" || echo "  (no answer, as it should be)"

heading "IPv6: a dual-stack network"
show nethook network create d6 --subnet 10.62.0.0/24 --subnet6 fd00:62::/64
for id in demo-v6a demo-v6b; do
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" nethook.network=d6
    SHOW_AS="runc run --detach --bundle bundles/$id $id" show nh_run_container "$NH_TMP/bundles/$id" "$id"
done
show nethook ls
echo "  Inside: an IPv6 address usable at once (no DAD wait, not tentative), no link-local address,"
echo "  a default route via the bridge's fd00:62::1:"
show runc exec demo-v6a ip -6 addr show dev eth0
show runc exec demo-v6a ip -6 route
IP6_B="$(nh ls --json | python3 -c 'import json,sys; print(next(e["ipv6"] for e in json.load(sys.stdin) if e["id"] == "demo-v6b"))')"
show runc exec demo-v6a ping -6 -c 2 "$IP6_B"

heading "Names and a service: network app with a resolver (--dns)"
show nethook network create app --subnet 10.66.0.0/24 --dns
show nethook service create web --network app --port 80
echo "  Two httpd members join it (nethook.service=web), each serving its own name; a client"
echo "  asks nethook for a resolv.conf naming the network's resolver (nethook.resolv=true):"
for id in web-1 web-2; do
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" --httpd nethook.network=app nethook.service=web
    printf '%s\n' "$id" >"$NH_TMP/bundles/$id/rootfs/www/index.html"
    SHOW_AS="runc run --detach --bundle bundles/$id $id" show nh_run_container "$NH_TMP/bundles/$id" "$id"
done
nh_make_bundle "$NH_TMP/bundles/demo-client" demo-client nethook.network=app nethook.resolv=true
SHOW_AS="runc run --detach --bundle bundles/demo-client demo-client" \
    show nh_run_container "$NH_TMP/bundles/demo-client" demo-client
show nethook service ls
show runc exec demo-client cat /etc/resolv.conf
echo "  The resolver (nethook dns, started by the first container) answers names and the service:"
show runc exec demo-client nslookup web-1
show runc exec demo-client nslookup web
echo "  Six requests to http://web/ spread over the members:"
for _ in 1 2 3 4 5 6; do
    runc exec demo-client timeout 3 wget -q -O - http://web/ | sed 's/^/    /'
done
echo "  In nftables: the service's VIP dispatches to its chain, which picks a member at random:"
show nft list chain inet nethook svc-web || true

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
    # The other sets hold per-network entries (subnets, bridges), which stay with the network.
    echo "  Published ports in table inet nethook (maps ports4, hports4; elements come and go with containers):"
    for map in ports4 hports4; do
        elements="$(nft list map inet nethook "$map" 2>/dev/null | grep -A1 'elements = ' || true)"
        printf '  %s: %s\n' "$map" "${elements:-(none)}"
    done
fi

heading "Done"
echo "  The sandbox namespace, the containers and $NH_TMP are gone now."
