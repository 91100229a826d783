#!/usr/bin/env bash
# Benchmark: nethook (as an OCI hook and as a CNI plugin) against CNI
# bridge+host-local+portmap, Debian's netavark 1.4 (iptables) and netavark 2.1
# (nftables), side by side, up to N containers.
#
# usage: scripts/bench.sh [--quick] [--n N] [--out DIR] [--no-docs] [--profile]
#                         [--peer-budget SECONDS] [--phases LIST]
#   --quick          N=50 try-out (does not touch docs/ unless --docs is given)
#   --n N            containers per tool (default 1000)
#   --out DIR        run directory (default: mktemp -d /tmp/nethook-bench.XXXXXX)
#   --docs           copy bench.csv/bench.png to docs/ (default for a non-quick run)
#   --no-docs        do not
#   --profile        also strace -T -f a few nethook setups/teardowns at N (RUN_DIR/profile)
#   --peer-budget S  stop a peer's setup loop after S seconds (default 200; 0 = none)
#   --phases LIST    comma list of floor,kernel,nethook,nethook2,routed,dual,nhcni,cni,netavark,netavark2,conc,runc
#                    (routed: nethook's routed driver, 2×N containers on one network;
#                    dual: N containers on a dual-stack bridge network)
#                    (nhcni: nethook as a CNI plugin, ADD + DEL with the netns alive;
#                    netavark2: netavark 2.1, nftables driver, built once into ~/.cache/nethook)
#                    (opt-in, issue 22: svc: N service members, plain containers beside them,
#                    requests/s through the VIP with ab; dns: N named containers, resolver
#                    query round trips and RSS; see scripts/bench/svc_dns.py)
# Env: NETHOOK_BIN=path  use this binary (else target/<host tuple>/release/nethook, built if missing)
#      NETHOOK_NETAVARK=path  netavark 2.1 to use (else built once by cargo install, see lib.sh)
#      NETHOOK_BASELINE_BIN=path  also run the nethook phases with this other build (phases
#                       base, base2, each right before its nethook phase): compares two
#                       builds in one run, rows "baseline", column nethook/baseline
#
# What it does: installs the peers from Debian, then re-executes itself in a
# throwaway network + mount + pid namespace (nothing touches the machine's own
# interfaces or nftables; when the sandbox ends every process in it dies), and
# runs scripts/bench/bench.py there. Each tool gets a fresh network namespace of
# its own inside the sandbox; fake containers are `unshare --net sleep`
# processes. Results: RUN_DIR/{bench.csv,bench.png,summary.txt,summary.json}.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
. "$REPO/scripts/lib.sh"
log() { printf '%s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

QUICK=0 N=1000 OUT="" DOCS="" PROFILE=0 BUDGET=200
PHASES="floor,kernel,nethook,nethook2,routed,dual,nhcni,cni,netavark,netavark2,conc,runc"
while (($#)); do
    case $1 in
    --quick) QUICK=1 N=50 ;;
    --n) N=$2; shift ;;
    --out) OUT=$2; shift ;;
    --docs) DOCS=1 ;;
    --no-docs) DOCS=0 ;;
    --profile) PROFILE=1 ;;
    --peer-budget) BUDGET=$2; shift ;;
    --phases) PHASES=$2; shift ;;
    --netavark2) NETAVARK2_ARG=$2; shift ;;
    -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
[[ $N =~ ^[0-9]+$ && $N -ge 21 ]] || die "--n must be a number ≥ 21 (first and last 20 are compared)"
[[ -z $DOCS ]] && { ((QUICK)) && DOCS=0 || DOCS=1; }

if [[ ${NETHOOK_BENCH_IN_SANDBOX:-} != 1 ]]; then
    [[ $EUID -eq 0 ]] || die "must run as root (namespaces, bridges, nftables)"

    # --- dependencies (Debian) ---------------------------------------------------
    export DEBIAN_FRONTEND=noninteractive
    installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
    apt_updated=0
    install_pkgs() { # install_pkgs PKG...; returns non-zero if any is unavailable
        local -a missing=()
        local p
        for p in "$@"; do installed "$p" || missing+=("$p"); done
        ((${#missing[@]} == 0)) && return 0
        if ((!apt_updated)); then apt-get -qq update >/dev/null 2>&1 || true; apt_updated=1; fi
        log "bench: installing ${missing[*]}"
        apt-get -qq -y -o Dpkg::Use-Pty=0 --no-install-recommends install "${missing[@]}" >/dev/null 2>&1
    }
    install_pkgs python3 iproute2 util-linux time nftables || die "could not install base tools"
    SKIP=""
    install_pkgs python3-matplotlib || log "bench: python3-matplotlib unavailable: no PNG"
    install_pkgs strace || log "bench: strace unavailable: no profile"
    # iptables: both peers program their NAT through it (portmap 1.1 and netavark 1.4 have no
    # nftables backend); it only ever runs inside the sandbox's network namespaces.
    if ! install_pkgs containernetworking-plugins iptables || [[ ! -x /usr/lib/cni/portmap ]]; then
        log "bench: containernetworking-plugins/iptables unavailable: skipping the CNI peer"
        SKIP+="cni=containernetworking-plugins or iptables not installable;"
    fi
    if ! install_pkgs netavark iptables || ! { command -v netavark || [[ -x /usr/lib/podman/netavark ]]; } >/dev/null; then
        log "bench: netavark unavailable: skipping it"
        SKIP+="netavark=netavark not installable;"
    fi
    NETAVARK2=""
    if [[ ,$PHASES, == *,netavark2,* ]]; then
        # Built once (several minutes on two cores) and cached; a failed build skips the
        # phase with its reason instead of ending the run.
        if NETAVARK2="$(nh_ensure_netavark >&2 && echo "$NH_NETAVARK")" && [[ -x $NETAVARK2 ]]; then
            log "bench: netavark 2.1: $NETAVARK2"
        else
            log "bench: netavark 2.1 could not be built: skipping it"
            SKIP+="netavark2=cargo install netavark 2.1.0 failed;"
        fi
    fi
    if ! install_pkgs runc busybox-static; then
        log "bench: runc/busybox-static unavailable: skipping the runc overhead"
        SKIP+="runc=runc or busybox-static not installable;"
    fi
    if [[ ,$PHASES, == *,svc,* ]]; then
        # ab (apache2-utils) drives the requests through a service's VIP; busybox is the
        # members' httpd. Without them the phase still times the member setups.
        install_pkgs apache2-utils busybox-static || log "bench: apache2-utils/busybox unavailable: svc without requests/s"
    fi
    export NETHOOK_BENCH_SKIP="$SKIP"

    # --- nethook binary ----------------------------------------------------------
    if [[ -z ${NETHOOK_BIN:-} ]]; then
        NETHOOK_BIN="$(nh_release_bin)"
        if [[ ! -x $NETHOOK_BIN ]]; then
            log "bench: building nethook (cargo build --release; waits if another build holds the lock)"
            (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed"
        fi
    fi
    [[ -x $NETHOOK_BIN ]] || die "NETHOOK_BIN=$NETHOOK_BIN is not executable"
    NETHOOK_BIN="$(realpath "$NETHOOK_BIN")"
    export NETHOOK_BIN
    if [[ -n ${NETHOOK_BASELINE_BIN:-} ]]; then
        [[ -x $NETHOOK_BASELINE_BIN ]] || die "NETHOOK_BASELINE_BIN=$NETHOOK_BASELINE_BIN is not executable"
        NETHOOK_BASELINE_BIN="$(realpath "$NETHOOK_BASELINE_BIN")"
        export NETHOOK_BASELINE_BIN
    fi

    [[ -n $OUT ]] || OUT="$(mktemp -d /tmp/nethook-bench.XXXXXX)"
    mkdir -p "$OUT"
    OUT="$(realpath "$OUT")"

    # --- sandbox -----------------------------------------------------------------
    # New net namespace: every link, address, route, sysctl and firewall rule made
    # below lives and dies there. New mount namespace: /run gets a private tmpfs
    # (xtables lock, anything a peer might write) and nothing propagates back. New pid
    # namespace: when the sandbox's first process exits, every fake container,
    # hook and peer still running is killed by the kernel.
    # The sandbox's own /proc will not show the kernel workers that destroy a phase's
    # namespaces after it (bench.py waits for them between phases): keep the machine's.
    exec {host_proc}</proc
    export NETHOOK_BENCH_HOST_PROC_FD=$host_proc
    NETHOOK_BENCH_HOST_NETNS="$(readlink /proc/self/ns/net)"
    export NETHOOK_BENCH_HOST_NETNS NETHOOK_BENCH_IN_SANDBOX=1
    args=()
    ((QUICK)) && args+=(--quick)
    args+=(--n "$N" --out "$OUT" --peer-budget "$BUDGET" --phases "$PHASES")
    ((PROFILE)) && args+=(--profile)
    [[ -n $NETAVARK2 ]] && args+=(--netavark2 "$NETAVARK2")
    ((DOCS)) && args+=(--docs) || args+=(--no-docs)
    exec unshare --net --mount --pid --fork --mount-proc --kill-child=SIGKILL -- \
        bash "$(realpath "$0")" "${args[@]}"
fi

# ---- inside the sandbox -------------------------------------------------------------
here="$(readlink /proc/self/ns/net)"
if [[ -z ${NETHOOK_BENCH_HOST_NETNS:-} || $here == "$NETHOOK_BENCH_HOST_NETNS" ]]; then
    die "NETHOOK_BENCH_IN_SANDBOX=1 but not in a fresh network namespace; unset it and rerun"
fi
mount --make-rprivate /
mount -t tmpfs -o mode=0755 bench-run /run
ip link set lo up

docs=() prof=() base=() nv2=()
[[ -n ${NETAVARK2_ARG:-} ]] && nv2=(--netavark2-bin "$NETAVARK2_ARG")
[[ -n ${NETHOOK_BASELINE_BIN:-} ]] && base=(--baseline-bin "$NETHOOK_BASELINE_BIN")
((DOCS)) && docs=(--docs "$REPO/docs")
((PROFILE)) && prof=(--profile)
# Debian's python3: python3-matplotlib is installed for it, not for a pyenv/venv python.
PY=/usr/bin/python3
[[ -x $PY ]] || PY="$(command -v python3)"
rc=0
"$PY" "$REPO/scripts/bench/bench.py" --n "$N" --run-dir "$OUT" --nethook-bin "$NETHOOK_BIN" \
    --peer-budget "$BUDGET" --phases "$PHASES" --skip "${NETHOOK_BENCH_SKIP:-}" \
    "${docs[@]}" "${prof[@]}" "${base[@]}" "${nv2[@]}" || rc=$?
log "bench: results in $OUT"
exit $rc
