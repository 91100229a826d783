#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test: Podman (Debian 12's 4.3) with its CNI backend running nethook as
# the plugin of a network NAME, from a busybox rootfs directory.
#
#   1. CONTAINERS_CONF names a file of this test's with [network] network_backend="cni",
#      cni_plugin_dirs and network_config_dir in the sandbox; the conflist there
#      defines network NAME with plugins nethook (capabilities portMappings, ips, mac)
#      and a pass-through spy that records what Podman sends;
#   2. `podman run -d -p 8080:80 --network NAME --rootfs DIR busybox httpd`: Podman
#      passes the port mapping as runtimeConfig.portMappings, nethook publishes it and
#      the port answers from the sandbox host and (hairpin) from a second container;
#      `nethook ls` lists both by Podman's container id;
#   3. --ip/--mac-address: Podman 4.3 passes them as CNI_ARGS IP=/MAC=, which nethook
#      applies;
#   4. names: with `network update nethook --dns on`, a container run with
#      `--dns GATEWAY` finds the others by the names Podman passes (K8S_POD_NAME);
#   5. podman stop sends DEL (netns still there), podman rm -f of a running container
#      too; afterwards nothing is left: no nh* veth, record, IPAM file, nft element,
#      network namespace under /run/netns, container or mount.
#
# Podman's storage and run root are as in scripts/e2e-podman.sh (vfs in the temp dir,
# run root on a tmpfs over /run in the sandbox's private mount namespace); everything
# runs in a throwaway network + mount + PID namespace.
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
    if ! nh_install_packages podman runc conmon containernetworking-plugins busybox-static 2>/dev/null ||
        ! command -v podman >/dev/null; then
        echo "SKIP: Debian packages podman/containernetworking-plugins cannot be installed here: nothing tested"
        exit 0
    fi
    nh_require_cmds podman conmon runc busybox python3 ip nft unshare
    nh_build
fi
nh_enter_sandbox_pidns "$0" "$@"

nh_setup_tmp
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096) # see e2e-podman.sh
PODMAN=(podman
    --root "$NH_TMP/podman/root" --runroot /run/nethook-podman --tmpdir "$NH_TMP/podman/tmp"
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend none --runtime runc)
pod() { command "${PODMAN[@]}" "$@" </dev/null; }

cleanup() {
    local rc=$?
    set +e
    pod rm --all --force --time 0 >/dev/null 2>&1
    nh_unmount_sandbox '/var/lib/cni|/etc/cni|/opt'
    (exit "$rc")
    nh_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nh_require_private_mntns
mount -t tmpfs -o mode=0755,size=64m nethook-podman-run /run
nh_cni_sandbox_dirs

NET=nhcni
export CONTAINERS_CONF="$NH_TMP/containers.conf"
cat >"$CONTAINERS_CONF" <<EOF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$NH_CNI_BIN"]
network_config_dir = "$NH_CNI_CONF"
EOF
CONFLIST="$NH_CNI_CONF/20-$NET.conflist"
# Network NAME is nethook's default network (its bridge, subnet and gateway), so the
# shared checks of lib.sh apply; the conflist's name is what Podman knows it by.
nh_nethook_conflist "$CONFLIST" "$NET" nethook

echo "== nethook CNI e2e with $(podman --version) (CNI backend) + $(runc --version | head -n 1) (sandbox netns $(readlink /proc/self/ns/net))"
echo "binary: $NETHOOK_BIN"

SFX=$RANDOM
WEB=e2e-$SFX-web
B=e2e-$SFX-b
C=e2e-$SFX-static

backend_is_cni() {
    local out
    out="$(pod info --format '{{.Host.NetworkBackend}}')" || return 1
    [[ $out == cni ]] || { echo "network backend: $out"; return 1; }
}
network_listed() {
    local out
    out="$(pod network ls --format '{{.Name}} {{.Driver}}')" || return 1
    grep -q "^$NET " <<<"$out" || { echo "podman network ls: $out"; return 1; }
    echo "$out"
}
nh_section "Podman's CNI backend, configured by CONTAINERS_CONF=$CONTAINERS_CONF"
nh_check "podman info: network backend is cni" backend_is_cni
nh_check "podman network ls shows $NET from $CONFLIST" network_listed
nh_check "$NH_CNI_BIN/nethook answers CNI VERSION" nh_cni_plugin_ok

# podman_run NAME [OPTION...] -- CMD...: podman run -d on network NET from a rootfs of
# its own; the container id in $NH_TMP/NAME.id.
podman_run() {
    local name=$1 out
    local -a opts=()
    shift
    while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    nh_make_rootfs "$NH_TMP/rootfs-$name"
    out="$(pod run --detach --name "$name" --network "$NET" "${ULIMITS[@]}" --cap-add NET_RAW \
        "${opts[@]}" --rootfs "$NH_TMP/rootfs-$name" "$@" 2>&1)" || { echo "$out"; return 1; }
    tail -n 1 <<<"$out" >"$NH_TMP/$name.id"
}
cid() { cat "$NH_TMP/$1.id" 2>/dev/null; }
key() { echo "$(cid "$1")@eth0"; } # the attachment nethook ls lists: ID@IFNAME
pexec() { pod exec "$@"; }

# --- 2. published port ---------------------------------------------------------------
nh_section "podman run -d -p 8080:80 --network $NET --rootfs DIR busybox httpd"
nh_check "podman run $WEB -p 8080:80" podman_run "$WEB" -p 8080:80 -- busybox httpd -f -p 80 -h /www
IP_WEB="$(nh_ls_field "$(key "$WEB")" ipv4 2>/dev/null || true)"
echo "   $WEB: ${IP_WEB:-?} ($(cid "$WEB" | cut -c1-12)) ports $(nh_ls_field "$(key "$WEB")" ports 2>/dev/null || echo '?')"
nh_check "nethook ls lists $WEB by Podman's container id, with an address in $NH_SUBNET" nh_check_addresses "$IP_WEB"
spy_add_ports() { # FULLID
    local rec
    rec="$(nh_spy_one ADD "$1")" || return 1
    python3 - "$rec" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("ADD: CNI_NETNS=%s CNI_IFNAME=%s CNI_ARGS=%r runtimeConfig=%s" % (r["netns"], r["ifname"], r["args"], json.dumps(r["runtimeConfig"])))
pm = (r["runtimeConfig"] or {}).get("portMappings") or []
if not any(p.get("hostPort") == 8080 and p.get("containerPort") == 80 and p.get("protocol") == "tcp" for p in pm):
    sys.exit("no portMappings 8080->80/tcp")
PY
}
nh_check "spy: Podman sent ADD with runtimeConfig.portMappings 8080->80/tcp" spy_add_ports "$(cid "$WEB")"
nh_check "httpd answers directly on $IP_WEB:80" nh_fetch_ok nh_host_wget "http://$IP_WEB:80/"
nh_check "the published port answers: sandbox host fetches http://$NH_GATEWAY:8080/" \
    nh_fetch_ok nh_host_wget "http://$NH_GATEWAY:8080/"

nh_check "podman run $B --network $NET (sleep)" podman_run "$B" -- sleep 3600
IP_B="$(nh_ls_field "$(key "$B")" ipv4 2>/dev/null || true)"
echo "   $B: ${IP_B:-?}"
nh_check "nethook ls: distinct addresses" nh_check_addresses "$IP_WEB" "$IP_B"
nh_check "$B: eth0 $IP_B/16, default via $NH_GATEWAY, only lo+eth0" nh_check_inside pexec "$B" "$IP_B"
nh_check "$B pings $WEB ($IP_WEB)" pexec "$B" ping -c 1 -W 3 "$IP_WEB"
nh_check "$B fetches http://$NH_GATEWAY:8080/ (hairpin)" \
    nh_fetch_ok pexec "$B" timeout 5 wget -q -O - "http://$NH_GATEWAY:8080/"

nh_section "static address and MAC: podman run --ip / --mac-address (capabilities ips, mac)"
STATIC_IP=10.77.9.9
STATIC_MAC=02:00:00:00:09:09
nh_check "podman run $C --ip $STATIC_IP --mac-address $STATIC_MAC" \
    podman_run "$C" --ip "$STATIC_IP" --mac-address "$STATIC_MAC" -- sleep 3600
static_ok() {
    local out
    out="$(pexec "$C" ip -o link show dev eth0)" || return 1
    [[ $out == *"link/ether $STATIC_MAC "* ]] || { echo "eth0: $out"; return 1; }
    out="$(pexec "$C" ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet $STATIC_IP/16 "* ]] || { echo "eth0: $out"; return 1; }
}
spy_static_args() { # FULLID: how Podman passed --ip/--mac-address
    local rec
    rec="$(nh_spy_one ADD "$1")" || return 1
    python3 - "$rec" "$STATIC_IP" "$STATIC_MAC" <<'PY'
import json, sys
r, ip, mac = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
args = dict(kv.split("=", 1) for kv in (r["args"] or "").split(";") if "=" in kv)
if args.get("IP") != ip or args.get("MAC") != mac:
    sys.exit("CNI_ARGS %r, runtimeConfig %r" % (r["args"], r["runtimeConfig"]))
PY
}
nh_check "spy: Podman 4.3 passed them as CNI_ARGS IP=/MAC= (not as the ips/mac capabilities)" \
    spy_static_args "$(cid "$C")"
nh_check "$C: eth0 has $STATIC_IP/16 and $STATIC_MAC" static_ok
listed_at() { [[ $1 == "$2" ]] || { echo "listed at '$1'"; return 1; }; }
nh_check "nethook ls lists $C at $STATIC_IP" listed_at "$(nh_ls_field "$(key "$C")" ipv4 2>/dev/null)" "$STATIC_IP"
nh_check "$B pings $C ($STATIC_IP)" pexec "$B" ping -c 1 -W 3 "$STATIC_IP"

# --- names: --dns GATEWAY ---------------------------------------------------------------
nh_section "names: nethook network update nethook --dns on, podman run --dns $NH_GATEWAY"
D=e2e-$SFX-dns
nh_check "nethook network update nethook --dns on (running containers get their names)" \
    nh network update nethook --dns on
nh_check "podman run $D --dns $NH_GATEWAY" podman_run "$D" --dns "$NH_GATEWAY" -- sleep 3600
resolv_names_gateway() {
    local out
    out="$(pexec "$D" cat /etc/resolv.conf)" || return 1
    [[ $out == *"nameserver $NH_GATEWAY"* ]] || { echo "$out"; return 1; }
}
nh_check "$D's resolv.conf names $NH_GATEWAY" resolv_names_gateway
finds() { # NAME ADDRESS: from $D, by the pod name Podman passes as K8S_POD_NAME
    local out
    out="$(pexec "$D" nslookup "$1" 2>&1)" || { echo "$out"; return 1; }
    [[ $out == *"$2"* ]] || { echo "$out"; return 1; }
}
nh_check "$D finds $WEB ($IP_WEB) by name" finds "$WEB" "$IP_WEB"
nh_check "$D finds $B.nethook ($IP_B)" finds "$B.nethook" "$IP_B"
nh_check "podman rm -f $D" pod rm --force --time 0 "$D"
result_dns() { # the ADD result nethook gave, as Podman hands it back in DEL's prevResult
    local rec
    rec="$(nh_spy_one DEL "$(cid "$D")")" || return 1
    python3 - "$rec" "$NH_GATEWAY" <<'PY'
import json, sys
dns = (json.loads(sys.argv[1])["prevResult"] or {}).get("dns") or {}
print("result dns:", json.dumps(dns))
if dns.get("nameservers") != [sys.argv[2]] or dns.get("search") != ["nethook"]:
    sys.exit("not the network's resolver")
PY
}
nh_check "the CNI result's dns named $NH_GATEWAY and search nethook" result_dns
nh_check "nethook network update nethook --dns off" nh network update nethook --dns off

# --- 3. teardown ---------------------------------------------------------------------
nh_section "teardown: podman stop / rm -f send DEL"
spy_del() { # FULLID: exactly one DEL, and say what came with it
    local rec
    rec="$(nh_spy_one DEL "$1")" || return 1
    python3 - "$rec" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("DEL: CNI_NETNS=%s (exists: %s) runtimeConfig=%s prevResult=%s" % (
    r["netns"], r["netnsExists"], json.dumps(r["runtimeConfig"]), "yes" if r["prevResult"] else "no"))
PY
}
not_listed() { ! nh_ls_field "$1" id >/dev/null 2>&1 || { echo "$1 still listed"; return 1; }; }
IDS=("$(key "$WEB")" "$(key "$B")" "$(key "$C")")
nh_check "podman stop $WEB" pod stop --time 0 "$WEB"
nh_check "spy: Podman sent one DEL for $WEB on stop" spy_del "$(cid "$WEB")"
nh_check "$WEB is gone from nethook ls after podman stop" not_listed "$(key "$WEB")"
nh_check "the published port is closed" nh_fetch_fails nh_host_wget "http://$NH_GATEWAY:8080/"
nh_check "podman rm $WEB" pod rm "$WEB"
nh_check "podman rm -f $B (running)" pod rm --force --time 0 "$B"
nh_check "podman rm -f $C (running)" pod rm --force --time 0 "$C"
nh_check "spy: Podman sent one DEL for $B on rm -f" spy_del "$(cid "$B")"
podman_empty() {
    local out
    out="$(pod ps --all --quiet)" || return 1
    [[ -z $out ]] || { echo "containers left: $out"; return 1; }
}
no_netns_left() {
    local left
    left="$(ls -A /run/netns 2>/dev/null || true)"
    [[ -z $left ]] || { echo "/run/netns: $left"; return 1; }
}
no_mounts_left() {
    local out
    out="$(findmnt -rn -o TARGET | grep -E "^($NH_TMP/podman|/run/nethook-podman|/run/netns/)" || true)"
    [[ -z $out ]] || { echo "mounted: $out"; return 1; }
}
nh_check "podman ps -a is empty" podman_empty
nh_check "no network namespace left under /run/netns" no_netns_left
nh_check_no_leftovers "${IDS[@]}" -- "$IP_WEB" "$IP_B" "$STATIC_IP"
nh_check "nothing mounted under podman's storage or run root" no_mounts_left

nh_section "what the client sent (the spy's record)"
nh_spy_report

echo
nh_summary
