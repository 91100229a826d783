# shellcheck shell=bash
# Shared helpers for nethook's shell scripts (demo, end-to-end tests, CI).
#
# Source it; do not execute it. Every function is prefixed `nh_` so a caller's
# own names never collide with ours. The scripts that create links or
# containers must call nh_enter_sandbox before doing so: it re-executes the
# script inside a throwaway network + mount namespace so that nothing here can
# ever touch the machine's own interfaces, routes or nftables.

# Repository root = parent of the directory holding this file, whatever the
# caller's working directory is.
NH_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NH_REPO_ROOT

# Debian packages the scripts and the build need. libnftnl-dev and pkg-config
# are build dependencies of the nftnl crate (libmnl-dev is not: the part of
# libmnl that libnftnl needs is crates/mnl-sys); the tests create and list
# conntrack entries with conntrack; busybox-static provides the container rootfs
# (one static binary, no shared libraries to copy).
NH_DEPS=(runc busybox-static nftables iproute2 libnftnl-dev pkg-config conntrack)

nh_log() { printf '%s\n' "$*" >&2; }
nh_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

nh_require_root() {
    [[ ${EUID:-$(id -u)} -eq 0 ]] || nh_die "must run as root (namespaces, runc, nftables)"
}

# --- dependencies -----------------------------------------------------------

# Print the packages from "$@" that are not installed (dpkg's own view, not
# `command -v`, because the -dev packages have no binaries).
nh_missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

# Install NH_DEPS quietly. Does nothing (not even apt-get update) when every
# package is present, so repeated runs and offline machines stay fast.
nh_install_deps() {
    local -a missing wanted=("${NH_DEPS[@]}")
    # python3 edits config.json; it is on every Debian image we know of, but
    # install it rather than fail obscurely later.
    command -v python3 >/dev/null 2>&1 || wanted+=(python3)
    mapfile -t missing < <(nh_missing_packages "${wanted[@]}")
    ((${#missing[@]} == 0)) && return 0
    nh_require_root
    nh_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local -a apt=(apt-get -qq -y -o Dpkg::Use-Pty=0 --no-install-recommends)
    # Only refresh the package lists when installing from the current ones
    # fails (fresh images ship without lists; others usually have them).
    if ! nh_without_service_starts "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1; then
        apt-get -qq update >/dev/null
        nh_without_service_starts "${apt[@]}" install "${missing[@]}" >/dev/null
    fi
}

# nh_without_service_starts CMD...: run CMD (an apt-get install) with maintainer scripts
# forbidden to start services. On a host running systemd, the postinst of Debian's
# containerd starts containerd.service and podman's starts podman.socket/.service and
# podman-restart: daemons of the machine's own that the tests, which start their own
# inside a sandbox, never asked for. /usr/sbin/policy-rc.d exiting 101 ("action
# forbidden") is Debian's way to say so (invoke-rc.d and deb-systemd-invoke honour it).
# It is written only when none exists, with O_EXCL (set -C), and removed when CMD ends,
# however it ends: a host's own policy-rc.d is never replaced or removed. It does not
# stop a postinst from *enabling* a unit, which then starts at the next boot.
nh_without_service_starts() {
    (
        policy=/usr/sbin/policy-rc.d
        created=0
        trap '((created)) && rm -f "$policy"' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        set -C # the redirection below fails on an existing file (O_EXCL)
        if [[ ! -e $policy && ! -L $policy ]] &&
            printf '#!/bin/sh\n# nethook scripts/lib.sh: no service starts during its apt-get install\nexit 101\n' \
                2>/dev/null >"$policy"; then
            # shellcheck disable=SC2034 # read by the EXIT trap
            created=1
            chmod 0755 "$policy"
        fi
        set +C
        "$@"
    )
}

# --- build ------------------------------------------------------------------

nh_cargo_env() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f ${HOME:-/root}/.cargo/env ]]; then
        # shellcheck source=/dev/null
        . "${HOME:-/root}/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || nh_die "cargo not found (install rustup, or source ~/.cargo/env)"
}

# nh_rust_components COMPONENT...: make sure rustup's components (rustfmt, clippy) are
# there; a toolchain from rustup's minimal profile lacks them. No-op without rustup
# (a distribution's cargo: its packages provide them, or the step using them fails).
nh_rust_components() {
    command -v rustup >/dev/null 2>&1 || return 0
    local -a missing=()
    local c installed
    installed="$(rustup component list --installed 2>/dev/null)" || return 0
    for c in "$@"; do
        grep -q "^$c-" <<<"$installed" || missing+=("$c")
    done
    ((${#missing[@]} == 0)) || rustup component add "${missing[@]}"
}

# True when the release binary is missing or any build input is newer.
nh_build_needed() {
    local bin=$1
    [[ -x $bin ]] || return 0
    local -a inputs=()
    local p
    for p in src crates build.rs Cargo.toml Cargo.lock .cargo; do
        [[ -e $NH_REPO_ROOT/$p ]] && inputs+=("$NH_REPO_ROOT/$p")
    done
    ((${#inputs[@]} == 0)) && return 1
    [[ -n "$(find "${inputs[@]}" -newer "$bin" -print -quit 2>/dev/null)" ]]
}

# Where `cargo build --release` puts the binary. .cargo/config.toml builds for the host's
# target tuple, so that the static-linking flags reach the binary but not build scripts or
# proc macros; cargo then writes under target/<tuple>/.
nh_release_bin() {
    nh_cargo_env
    local target="${CARGO_TARGET_DIR:-$NH_REPO_ROOT/target}" tuple
    tuple="$(rustc -vV | sed -n 's/^host: //p')"
    [[ -n $tuple ]] || nh_die "rustc -vV names no host tuple"
    echo "$target/$tuple/release/nethook"
}

# Make sure a release binary exists and export its absolute path as
# NETHOOK_BIN. A caller (test.sh, CI, a developer) may pass NETHOOK_BIN to skip
# building entirely; otherwise build only when the binary is missing or older
# than its sources, so test.sh building first means its children build nothing.
nh_build() {
    if [[ -n ${NETHOOK_BIN:-} ]]; then
        [[ -x $NETHOOK_BIN ]] || nh_die "NETHOOK_BIN=$NETHOOK_BIN is not executable"
        NETHOOK_BIN="$(realpath "$NETHOOK_BIN")"
        export NETHOOK_BIN
        return 0
    fi
    local bin
    bin="$(nh_release_bin)"
    if nh_build_needed "$bin"; then
        nh_log "building nethook (cargo build --release)"
        (cd "$NH_REPO_ROOT" && cargo build --release --quiet) || nh_die "cargo build failed"
    fi
    [[ -x $bin ]] || nh_die "build produced no $bin"
    NETHOOK_BIN="$(realpath "$bin")"
    export NETHOOK_BIN
}

# Run the CLI against this script's private state, never /run or /etc.
nh() { "$NETHOOK_BIN" "$@"; }

# --- sandbox ----------------------------------------------------------------

# nh_enter_sandbox "$0" "$@"
# Outside the sandbox: re-exec the script in fresh network and mount
# namespaces (does not return). Inside (NETHOOK_IN_SANDBOX=1): make mounts
# private and bring up lo, then return so the script carries on.
#
# Why these namespaces: the net namespace holds every bridge, veth, address,
# route, sysctl under /proc/sys/net and the nftables ruleset nethook creates, so
# the machine's own network is unreachable from here; it disappears when the
# last process in it exits. The mount namespace keeps any mount we (or a
# failing runc) make from leaking into the host. --kill-child makes the script
# die with unshare if unshare itself is killed, so its EXIT trap still runs.
nh_enter_sandbox() {
    local script=$1
    shift
    if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
        nh_require_root
        # Remember the namespace we leave, to prove below that we left it.
        NH_HOST_NETNS="$(readlink /proc/self/ns/net)"
        export NH_HOST_NETNS NETHOOK_IN_SANDBOX=1
        exec unshare --net --mount --fork --kill-child=SIGTERM -- \
            bash "$(realpath "$script")" "$@"
    fi
    # Guard against being "inside" only because of a stray environment
    # variable: everything below would then rewire the host.
    local here
    here="$(readlink /proc/self/ns/net)"
    if [[ -z ${NH_HOST_NETNS:-} || $here == "$NH_HOST_NETNS" ]]; then
        nh_die "NETHOOK_IN_SANDBOX=1 but not in a fresh network namespace; unset it and rerun"
    fi
    # Never propagate a mount back to the host, whatever unshare's default.
    mount --make-rprivate /
    ip link set lo up
}

# nh_private_run: /run on a tmpfs of the sandbox's own (call after nh_enter_sandbox). The
# resolver nethook starts would otherwise see the host's systemd (/run/systemd/system) and
# start itself in a scope of the host's.
nh_private_run() {
    mount -t tmpfs -o mode=0755,size=16m nethook-sandbox-run /run
}

# Create the per-run scratch directory and point every piece of state into it.
# Sets NH_TMP, NH_RUNC_ROOT; exports NETHOOK_RUN_DIR/NETHOOK_CONFIG_DIR so the
# CLI and the hooks share one private state. The caller installs the trap
# (it knows which containers it made); nh_cleanup is the usual handler.
nh_setup_tmp() {
    NH_TMP="$(mktemp -d /tmp/nethook-sandbox.XXXXXX)"
    NH_RUNC_ROOT="$NH_TMP/rt-runc" # nh_rt's root for runc
    NETHOOK_RUN_DIR="$NH_TMP/run"
    NETHOOK_CONFIG_DIR="$NH_TMP/config"
    export NH_TMP NH_RUNC_ROOT NETHOOK_RUN_DIR NETHOOK_CONFIG_DIR
    mkdir -p "$NH_RUNC_ROOT" "$NH_TMP/bundles"
    # nethook creates its own dirs (0700); only the parents must exist.
}

# --- rootfs and bundles -----------------------------------------------------

# nh_make_rootfs DIR: a minimal busybox-static root filesystem.
nh_make_rootfs() {
    local root=$1 bb applet
    bb="$(command -v busybox)" || nh_die "busybox not found (apt-get install busybox-static)"
    # A dynamically linked busybox would need its libraries in the rootfs.
    if ! file -L "$bb" 2>/dev/null | grep -q 'statically linked' &&
        ldd "$bb" >/dev/null 2>&1; then
        nh_die "$bb is not static (apt-get install busybox-static)"
    fi
    mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,www,root,var/run}
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"
    # One symlink per applet so `runc exec ID ip ...` and `sleep` just work.
    while read -r applet; do
        [[ -n $applet && $applet != busybox ]] || continue
        [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
    done < <("$root/bin/busybox" --list)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf '<html><body>hello from nethook</body></html>\n' >"$root/www/index.html"
}

# nh_make_bundle DIR ID [--httpd] [--no-hooks] [key=value ...]
# Writes DIR/config.json (and DIR/rootfs if missing). The process is
# `sleep 3600`, or with --httpd busybox httpd serving /www on port 80. Each
# key=value becomes an annotation (e.g. nethook.ports=8080:80). Unless
# --no-hooks, nethook is registered as createRuntime and poststop hook with
# this run's private state dirs.
nh_make_bundle() {
    local dir=$1 id=$2
    shift 2
    local mode=sleep hooks=1
    local -a annotations=()
    while (($#)); do
        case $1 in
        --httpd) mode=httpd ;;
        --no-hooks) hooks=0 ;;
        *=*) annotations+=("$1") ;;
        *) nh_die "nh_make_bundle: bad argument '$1'" ;;
        esac
        shift
    done
    mkdir -p "$dir"
    [[ -d $dir/rootfs ]] || nh_make_rootfs "$dir/rootfs"
    rm -f "$dir/config.json"
    (cd "$dir" && runc spec)
    NH_ID="$id" NH_MODE="$mode" NH_HOOKS="$hooks" \
        NH_HOOK_BIN="${NETHOOK_BIN:-}" \
        NH_HOOK_ENV="NETHOOK_RUN_DIR=${NETHOOK_RUN_DIR:-}"$'\n'"NETHOOK_CONFIG_DIR=${NETHOOK_CONFIG_DIR:-}" \
        python3 - "$dir/config.json" "${annotations[@]}" <<'PY'
import json, os, sys

path, pairs = sys.argv[1], sys.argv[2:]
with open(path) as f:
    spec = json.load(f)

proc = spec["process"]
if os.environ["NH_MODE"] == "httpd":
    # -f: stay in the foreground, so it is the container's init.
    proc["args"] = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
else:
    proc["args"] = ["sleep", "3600"]
proc["terminal"] = False          # detached, no console socket
proc["cwd"] = "/"
# busybox ping opens a raw socket; CAP_NET_RAW in every set makes it work
# for the container's root user (the default spec leaves it out).
for name, caps in proc.get("capabilities", {}).items():
    if "CAP_NET_RAW" not in caps:
        caps.append("CAP_NET_RAW")

spec["root"] = {"path": "rootfs", "readonly": False}
spec["hostname"] = os.environ["NH_ID"]

# A network namespace of its own, without a path: runc creates it and hands
# its pid to the createRuntime hook, which plumbs the veth into it.
namespaces = spec["linux"].setdefault("namespaces", [])
if not any(ns.get("type") == "network" for ns in namespaces):
    namespaces.append({"type": "network"})
for ns in namespaces:
    if ns.get("type") == "network":
        ns.pop("path", None)

if os.environ["NH_HOOKS"] == "1":
    binary = os.environ["NH_HOOK_BIN"]
    if not binary:
        sys.exit("nh_make_bundle: NETHOOK_BIN is not set (call nh_build first)")
    # Hooks start with an empty environment, so the private state dirs must be
    # passed explicitly or the hook would use /run/nethook and /etc/nethook.
    hook = {
        "path": binary,
        "args": ["nethook", "hook"],
        "env": os.environ["NH_HOOK_ENV"].split("\n"),
        "timeout": 2,
    }
    spec["hooks"] = {"createRuntime": [hook], "poststop": [dict(hook)]}
else:
    spec.pop("hooks", None)

annotations = spec.setdefault("annotations", {})
for pair in pairs:
    key, _, value = pair.partition("=")
    annotations[key] = value

with open(path, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY
}

# --- containers -------------------------------------------------------------

# The runc flavour of the nh_rt_* helpers below (the runtime scripts set NH_RT;
# the runc script and the demo use these). State under $NH_RUNC_ROOT, which is
# where nh_rt keeps runc's. nh_rt runs `command runc`, so a caller may define
# its own runc() wrapper for display.
nh_runc() { NH_RT=runc nh_rt "$@"; }

# nh_run_container BUNDLE ID: create + start detached (see nh_rt_run).
nh_run_container() { NH_RT=runc nh_rt_run "$@"; }

# nh_exec ID CMD...: run a command inside a running container.
nh_exec() { NH_RT=runc nh_rt_exec "$@"; }

nh_container_status() { NH_RT=runc nh_rt_status "$1"; }

# nh_stop_checked ID: runc kill, wait until stopped, runc delete (which runs the
# poststop hooks); fails, saying why, when a step fails or runc still knows the id.
nh_stop_checked() {
    nh_runc kill "$1" KILL || return 1
    local i
    for ((i = 0; i < 50; i++)); do
        [[ "$(nh_container_status "$1")" == stopped ]] && break
        sleep 0.1
    done
    nh_runc delete "$1"
    [[ "$(nh_container_status "$1")" == absent ]] || { echo "$1 still known to runc"; return 1; }
}

# nh_stop_container ID: kill, wait, delete (runc delete runs the poststop
# hooks). Quiet and always succeeds: for cleanup paths.
nh_stop_container() { NH_RT=runc nh_rt_stop "$1" >/dev/null 2>&1 || true; }

# Kill and delete every container under this run's runc root.
nh_stop_all() { NH_RT=runc nh_rt_stop_all; }

# EXIT trap: containers first (they are not our children and would outlive the
# sandbox otherwise), then the scratch directory. Must never fail.
nh_cleanup() {
    local rc=$?
    set +e
    nh_stop_all
    if [[ -n ${NH_TMP:-} && -d $NH_TMP ]]; then
        # A container that refused to die would still have its rootfs in use
        # by its own mount namespace; deleting files under it is harmless.
        rm -rf --one-file-system "$NH_TMP"
    fi
    return "$rc"
}

# --- checks -----------------------------------------------------------------

NH_PASS=0
NH_FAIL=0

nh_pass() { NH_PASS=$((NH_PASS + 1)); printf 'PASS: %s\n' "$*"; }
nh_fail() { NH_FAIL=$((NH_FAIL + 1)); printf 'FAIL: %s\n' "$*"; }

# nh_check DESC CMD...: PASS if CMD succeeds; on failure show its output.
nh_check() {
    local desc=$1 out
    shift
    if out="$("$@" 2>&1)"; then
        nh_pass "$desc"
    else
        nh_fail "$desc"
        [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/    /'
    fi
    return 0
}

# Final summary line; returns non-zero when anything failed.
nh_summary() {
    printf '%d passed, %d failed\n' "$NH_PASS" "$NH_FAIL"
    ((NH_FAIL == 0))
}

# Names of host-side veths nethook made (nh + 13 base32hex digits, or an older
# nethook's 12 hex), one per line.
nh_host_veths() {
    ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -E "^n[hr][0-9a-v]{12,13}$" || true
}

# nh_wait_own_netns PID: wait until PID (an `unshare --net ...` just started in the
# background) is in a network namespace of its own, not this shell's.
nh_wait_own_netns() {
    local own
    own="$(readlink /proc/self/ns/net)"
    while [[ "$(readlink "/proc/$1/ns/net" 2>/dev/null)" == "$own" ]]; do sleep 0.001; done
}

nh_no_host_veths() { [[ -z "$(nh_host_veths)" ]]; }

# nh_wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
nh_wait_until() {
    local deadline=$(($(date +%s%N) + $1 * 1000000000))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(date +%s%N) < deadline)) || return 1
        sleep 0.1
    done
}

# === crun, youki, podman ======================================================
# Helpers for scripts/e2e-crun.sh, e2e-youki.sh and e2e-podman.sh. They register
# nethook the way a user does (`nethook inject BUNDLE`, `nethook install
# --podman-hooks-dir DIR`) and share one scenario and one set of checks.

# Where built tools (youki) are kept between runs.
NH_CACHE_DIR="${NETHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/nethook}"

# nh_install_packages PKG...: install the Debian packages only one script needs,
# the same way (and as quietly) as nh_install_deps.
nh_install_packages() {
    # Dynamic scoping: nh_install_deps sees this list instead of the global one.
    local -a NH_DEPS=("$@")
    nh_install_deps
}

# --- youki ------------------------------------------------------------------

NH_YOUKI_VERSION=0.7.0

# nh_ensure_youki: export NH_YOUKI, the youki binary to use. NETHOOK_YOUKI=path
# picks one; otherwise youki $NH_YOUKI_VERSION from crates.io, built once with
# cgroup v1 support (`--features v1`: a default build has no cgroup manager and
# cannot run any container on this layout) into $NH_CACHE_DIR. The build takes
# about 7 minutes on two cores with a cold cargo cache; its target directory
# is temporary. Run it outside the sandbox: cargo needs the network.
nh_ensure_youki() {
    if [[ -n ${NETHOOK_YOUKI:-} ]]; then
        [[ -x $NETHOOK_YOUKI ]] || nh_die "NETHOOK_YOUKI=$NETHOOK_YOUKI is not executable"
        NH_YOUKI="$(realpath "$NETHOOK_YOUKI")"
        export NH_YOUKI
        return 0
    fi
    local root="$NH_CACHE_DIR/youki-$NH_YOUKI_VERSION"
    if [[ ! -x $root/bin/youki ]]; then
        nh_cargo_env
        nh_log "building youki $NH_YOUKI_VERSION with --features v1 into $root (about 7 minutes, once)"
        local start=$SECONDS
        mkdir -p "$NH_CACHE_DIR"
        # A subshell whose traps remove the (half a gigabyte) target dir and a
        # partial install however it ends, a CI timeout's SIGTERM included.
        (
            target="$(mktemp -d /tmp/nethook-youki-build.XXXXXX)"
            trap 'rm -rf "$target" "$root.partial"' EXIT
            trap 'exit 143' TERM
            trap 'exit 130' INT
            rm -rf "$root.partial"
            # Away from this repository, whose .cargo/config.toml (static linking) is for
            # nethook only.
            cd /
            CARGO_TARGET_DIR="$target" cargo install youki --version "=$NH_YOUKI_VERSION" \
                --locked --features v1 --root "$root.partial" --quiet </dev/null >&2 || exit 1
            # Only a finished build lands under the name that is looked for.
            mv "$root.partial" "$root"
        ) || nh_die "cargo install youki failed"
        nh_log "youki built in $((SECONDS - start)) s"
    fi
    NH_YOUKI="$root/bin/youki"
    export NH_YOUKI
}

# --- netavark 2.1 -------------------------------------------------------------

NH_NETAVARK_VERSION=2.1.0

# nh_ensure_netavark: export NH_NETAVARK, netavark $NH_NETAVARK_VERSION (the bench's
# strongest peer: its nftables driver). NETHOOK_NETAVARK=path picks one; otherwise it is
# built once from crates.io into $NH_CACHE_DIR, as youki is (Debian 12 ships 1.4, which
# has only the iptables driver). Its build script compiles protobuf definitions, so
# Debian's protobuf-compiler is installed first. Nice'd: it takes several minutes on two
# cores and must not starve a benchmark or a test running beside it. Outside the sandbox.
nh_ensure_netavark() {
    if [[ -n ${NETHOOK_NETAVARK:-} ]]; then
        [[ -x $NETHOOK_NETAVARK ]] || nh_die "NETHOOK_NETAVARK=$NETHOOK_NETAVARK is not executable"
        NH_NETAVARK="$(realpath "$NETHOOK_NETAVARK")"
        export NH_NETAVARK
        return 0
    fi
    local root="$NH_CACHE_DIR/netavark-$NH_NETAVARK_VERSION"
    if [[ ! -x $root/bin/netavark ]]; then
        nh_install_packages protobuf-compiler
        nh_cargo_env
        nh_log "building netavark $NH_NETAVARK_VERSION into $root (several minutes, once)"
        local start=$SECONDS
        mkdir -p "$NH_CACHE_DIR"
        (
            target="$(mktemp -d /tmp/nethook-netavark-build.XXXXXX)"
            trap 'rm -rf "$target" "$root.partial"' EXIT
            trap 'exit 143' TERM
            trap 'exit 130' INT
            rm -rf "$root.partial"
            cd /
            CARGO_TARGET_DIR="$target" nice -n 10 cargo install netavark \
                --version "=$NH_NETAVARK_VERSION" --locked --root "$root.partial" --quiet \
                </dev/null >&2 || exit 1
            mv "$root.partial" "$root"
        ) || nh_die "cargo install netavark failed"
        nh_log "netavark built in $((SECONDS - start)) s"
    fi
    NH_NETAVARK="$root/bin/netavark"
    export NH_NETAVARK
}

# --- crun and the hybrid cgroup layout -----------------------------------------

# nh_drop_cgroup2_unified: crun 1.8 refuses a hybrid cgroup layout (v1
# controllers plus an empty cgroup2 at /sys/fs/cgroup/unified: "cgroups in
# hybrid mode not supported"). Unmount that cgroup2 - in the sandbox's private
# mount namespace only, which this checks first: the machine keeps it.
nh_drop_cgroup2_unified() {
    nh_require_private_mntns
    if findmnt -n -t cgroup2 /sys/fs/cgroup/unified >/dev/null 2>&1; then
        umount /sys/fs/cgroup/unified
    fi
}

# nh_enter_sandbox_pidns "$0" "$@": nh_enter_sandbox plus a PID namespace
# with its own /proc, in one unshare (does not return outside the sandbox).
# The script is the namespace's init: whatever the runtimes leave running
# (container inits, conmon, podman's cleanup processes) is reparented to it,
# and the kernel kills all of it when the script ends, however it ends. As
# with nh_enter_sandbox, if unshare is killed the script gets SIGTERM (its
# EXIT trap runs); unshare itself blocks SIGTERM and SIGINT while it waits.
nh_enter_sandbox_pidns() {
    local script=$1
    shift
    if [[ ${NETHOOK_IN_SANDBOX:-} != 1 ]]; then
        nh_require_root
        NH_HOST_NETNS="$(readlink /proc/self/ns/net)"
        NH_HOST_MNTNS="$(readlink /proc/self/ns/mnt)"
        export NH_HOST_NETNS NH_HOST_MNTNS NETHOOK_IN_SANDBOX=1
        exec unshare --net --mount --propagation private --pid --mount-proc --fork \
            --kill-child=SIGTERM -- bash "$(realpath "$script")" "$@"
    fi
    [[ $$ -eq 1 ]] || nh_die "NETHOOK_IN_SANDBOX=1 but not the init of a PID namespace; unset it and rerun"
    nh_require_private_mntns
    # The checks and setup of the inside half (fresh netns, rprivate, lo up).
    nh_enter_sandbox "$script" "$@"
}

# nh_require_private_mntns: die unless this is a mount namespace of our own
# (entered by nh_enter_sandbox_pidns) with / private.
# nh_require_cmds CMD...: every command is on PATH, or one line says which is missing.
nh_require_cmds() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || nh_die "$cmd not found (run scripts/test.sh, which installs dependencies)"
    done
}

nh_require_private_mntns() {
    local here
    here="$(readlink /proc/self/ns/mnt)"
    [[ -n ${NH_HOST_MNTNS:-} && $here != "$NH_HOST_MNTNS" ]] ||
        nh_die "not in a mount namespace of our own (enter with nh_enter_sandbox_pidns)"
    [[ "$(findmnt -n -o PROPAGATION /)" == private ]] || nh_die "/ is not a private mount here"
}

# nh_unmount_sandbox [REGEX]: unmounts what the test mounted under $NH_TMP and /run (and
# under paths matching REGEX, e.g. covered CNI dirs), deepest first, then the tmpfs on /run.
# Only in the script's private mount namespace: nothing here reaches the machine.
nh_unmount_sandbox() {
    findmnt -rn -o TARGET | grep -E "^($NH_TMP|/run/${1:+|$1})" | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
    mountpoint -q /run && umount -l /run
}

# --- OCI runtimes driven with a bundle (crun, youki; runc works too) ------------

# NH_RT names the runtime: crun, youki (binary NH_YOUKI) or runc. Its state
# lives under $NH_TMP/<runtime>.
nh_rt() {
    local bin=$NH_RT
    [[ $NH_RT == youki ]] && bin=$NH_YOUKI
    command "$bin" --root "$NH_TMP/rt-$NH_RT" "$@"
}

# nh_rt_bundle DIR ID [--httpd] [key=value ...]: a busybox bundle as
# nh_make_bundle makes it, with nethook registered by `nethook inject` (which
# carries this run's NETHOOK_RUN_DIR/NETHOOK_CONFIG_DIR into the hook's env),
# then every nethook hook's timeout lowered to 2 s: the hook must finish well
# within it, and the runtime kills it and fails the container otherwise.
nh_rt_bundle() {
    local dir=$1 id=$2
    shift 2
    nh_make_bundle "$dir" "$id" --no-hooks "$@"
    nh inject "$dir" >/dev/null || return 1
    nh_set_hook_timeout "$dir/config.json" 2
}

# nh_set_hook_timeout FILE SECONDS: in a config.json or a hooks.d file, set the
# timeout of every hook whose path is $NETHOOK_BIN.
nh_set_hook_timeout() {
    python3 - "$1" "$2" "$NETHOOK_BIN" <<'PY'
import json, sys
path, timeout, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path) as f:
    doc = json.load(f)
entries = [doc["hook"]] if "hook" in doc else \
    [h for stage in doc.get("hooks", {}).values() for h in stage]
n = 0
for h in entries:
    if h.get("path") == binary:
        h["timeout"] = timeout
        n += 1
if n == 0:
    sys.exit("no hook for %s in %s" % (binary, path))
with open(path, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
}

# nh_check_hook_entries FILE: the hook entries nethook wrote (config.json: one
# per stage createRuntime/poststop; hooks.d: one with both stages) call
# $NETHOOK_BIN by absolute path as `nethook hook`, and set no environment but
# NETHOOK_* (runtimes give a hook exactly `env`: so no PATH, no HOME).
nh_check_hook_entries() {
    python3 - "$1" "$NETHOOK_BIN" <<'PY'
import json, sys
path, binary = sys.argv[1], sys.argv[2]
with open(path) as f:
    doc = json.load(f)
if "hook" in doc:
    stages = doc.get("stages", [])
    if sorted(stages) != ["createRuntime", "poststop"]:
        sys.exit("stages are %s" % stages)
    entries = [doc["hook"]]
else:
    hooks = doc.get("hooks", {})
    entries = []
    for stage in ("createRuntime", "poststop"):
        mine = [h for h in hooks.get(stage, []) if h.get("path") == binary]
        if len(mine) != 1:
            sys.exit("%d nethook entries in %s" % (len(mine), stage))
        entries += mine
for h in entries:
    if h.get("path") != binary or not binary.startswith("/"):
        sys.exit("path is %r, not %s" % (h.get("path"), binary))
    if h.get("args") != ["nethook", "hook"]:
        sys.exit("args are %r" % h.get("args"))
    bad = [e for e in h.get("env", []) if not e.startswith("NETHOOK_")]
    if bad:
        sys.exit("env sets more than NETHOOK_*: %s" % bad)
print("env: %s" % entries[0].get("env", []))
PY
}

# nh_rt_run BUNDLE ID: create and start detached; the container's stdio and
# the runtime's errors (a failed hook's among them) go to $NH_TMP/ID.log,
# printed on failure.
nh_rt_run() {
    local bundle=$1 id=$2 log="$NH_TMP/$2.log"
    if ! nh_rt run --detach --bundle "$bundle" "$id" </dev/null >"$log" 2>&1; then
        sed "s/^/    $NH_RT: /" "$log" >&2
        return 1
    fi
}

nh_rt_exec() {
    local id=$1
    shift
    nh_rt exec "$id" "$@" </dev/null
}

nh_rt_status() {
    nh_rt state "$1" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || echo absent
}

# nh_rt_stop ID: SIGKILL, wait until stopped, delete (the runtime runs the
# poststop hooks at delete). Fails when the container is still known after.
nh_rt_stop() {
    local id=$1 i status
    status="$(nh_rt_status "$id")"
    [[ $status == absent ]] && return 0
    if [[ $status != stopped ]]; then
        nh_rt kill "$id" KILL >/dev/null 2>&1 || true
        for ((i = 0; i < 50; i++)); do
            [[ "$(nh_rt_status "$id")" == stopped ]] && break
            sleep 0.1
        done
    fi
    nh_rt delete "$id" >/dev/null 2>&1 || nh_rt delete --force "$id" >/dev/null 2>&1 || true
    [[ "$(nh_rt_status "$id")" == absent ]] || { echo "$id is still known to $NH_RT"; return 1; }
}

# Every container in this run's state root (a directory per container for
# crun, youki and runc alike).
nh_rt_stop_all() {
    [[ -n ${NH_TMP:-} && -d $NH_TMP/rt-${NH_RT:-none} ]] || return 0
    local dir
    for dir in "$NH_TMP/rt-$NH_RT"/*/; do
        [[ -d $dir ]] && nh_rt_stop "$(basename "$dir")" >/dev/null 2>&1
    done
    return 0
}

# EXIT trap for the crun/youki scripts: containers, then nh_cleanup.
nh_rt_cleanup() {
    local rc=$?
    set +e
    nh_rt_stop_all
    (exit "$rc")
    nh_cleanup
}

# --- checks shared by the runtime scripts ------------------------------------------

NH_SUBNET=10.77.0.0/16
NH_GATEWAY=10.77.0.1
NH_BRIDGE=nethook0
NH_PAGE='hello from nethook'

# nh_ls_field ID FIELD: one field of a container's `nethook ls --json` entry.
nh_ls_field() {
    nh ls --json | python3 -c '
import json, sys
want, field = sys.argv[1], sys.argv[2]
for ep in json.load(sys.stdin):
    if ep.get("id") == want:
        v = ep.get(field)
        print(json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v))
        sys.exit(0)
sys.exit("container %s not in nethook ls --json" % want)
' "$1" "$2"
}

# nh_check_addresses IP...: all in the default subnet, none the gateway, distinct.
nh_check_addresses() {
    python3 - "$NH_SUBNET" "$NH_GATEWAY" "$@" <<'PY'
import ipaddress, sys
net, gw, ips = ipaddress.ip_network(sys.argv[1]), sys.argv[2], sys.argv[3:]
for ip in ips:
    if not ip:
        sys.exit("missing address in %s" % ips)
    if ipaddress.ip_address(ip) not in net or ip == gw:
        sys.exit("%s is not a container address in %s" % (ip, net))
if len(set(ips)) != len(ips):
    sys.exit("addresses are not distinct: %s" % ips)
PY
}

# nh_check_pair EXEC_FN A IP_A VETH_A B IP_B VETH_B: two containers on the
# default network, as every runtime script checks them: host veths, the view
# from inside (through EXEC_FN ID CMD...), pings both ways, to the gateway and
# from the sandbox host.
nh_check_pair() {
    local exec_fn=$1 a=$2 ip_a=$3 veth_a=$4 b=$5 ip_b=$6 veth_b=$7
    nh_check "host veth of $a ($veth_a) is nh+hex and on $NH_BRIDGE" nh_check_host_veth "$veth_a"
    nh_check "host veth of $b ($veth_b) is nh+hex and on $NH_BRIDGE" nh_check_host_veth "$veth_b"
    nh_check "$a: eth0 $ip_a/16, default via $NH_GATEWAY, only lo+eth0" nh_check_inside "$exec_fn" "$a" "$ip_a"
    nh_check "$b: eth0 $ip_b/16, default via $NH_GATEWAY, only lo+eth0" nh_check_inside "$exec_fn" "$b" "$ip_b"
    nh_check "$a pings $b ($ip_b)" "$exec_fn" "$a" ping -c 1 -W 3 "$ip_b"
    nh_check "$b pings $a ($ip_a)" "$exec_fn" "$b" ping -c 1 -W 3 "$ip_a"
    nh_check "$a pings gateway $NH_GATEWAY" "$exec_fn" "$a" ping -c 1 -W 3 "$NH_GATEWAY"
    nh_check "$b pings gateway $NH_GATEWAY" "$exec_fn" "$b" ping -c 1 -W 3 "$NH_GATEWAY"
    nh_check "sandbox host pings $a ($ip_a)" busybox ping -c 1 -W 3 "$ip_a"
}

# nh_check_host_veth VETH: named nh + 13 base32hex digits and attached to the bridge.
nh_check_host_veth() {
    [[ $1 =~ ^nh[0-9a-v]{13}$ ]] || { echo "host_interface '$1' is not nh+13 base32hex"; return 1; }
    local line
    line="$(ip -o link show dev "$1")" || return 1
    [[ $line == *"master $NH_BRIDGE"* ]] || { echo "$1 not attached to $NH_BRIDGE: $line"; return 1; }
}

# nh_check_inside EXEC_FN ID IP: eth0 has IP/16, default route via the gateway,
# and only lo and eth0 exist (nobody else plumbed the netns).
nh_check_inside() {
    local exec_fn=$1 id=$2 ip=$3 out
    out="$("$exec_fn" "$id" ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet $ip/16 "* ]] || { echo "eth0 in $id lacks $ip/16: $out"; return 1; }
    out="$("$exec_fn" "$id" ip route)" || return 1
    [[ $out == *"default via $NH_GATEWAY"* ]] || { echo "no default route via $NH_GATEWAY in $id: $out"; return 1; }
    out="$("$exec_fn" "$id" ip -o link)" || return 1
    out="$(awk -F': ' '{sub(/@.*/, "", $2); print $2}' <<<"$out" | sort | tr '\n' ' ')"
    [[ $out == "eth0 lo " ]] || { echo "links in $id: $out"; return 1; }
}

# nh_start ID DESC BUNDLE_ARGS...: make the bundle and runc run it (a PASS/FAIL line
# saying DESC); a running container is added to the caller's STARTED array.
nh_start() {
    local id=$1 desc=$2
    shift 2
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" "$@"
    nh_check "$desc" nh_run_container "$NH_TMP/bundles/$id" "$id"
    [[ "$(nh_container_status "$id")" == running ]] && STARTED+=("$id")
    return 0
}

# A refused container left no host veth (against VETHS_BEFORE), record or address.
nh_refused_left_nothing() { # VETHS_BEFORE ID
    [[ "$(nh_host_veths | sort)" == "$1" ]] || { echo "host veths changed:"; ip -br link; return 1; }
    [[ ! -e $NETHOOK_RUN_DIR/endpoints/$2.json ]] || { echo "endpoint record for $2 left"; return 1; }
    if grep -rlxF -e "$2" "$NETHOOK_RUN_DIR/ipam" 2>/dev/null; then
        echo "^ ipam still allocates an address to $2"; return 1
    fi
}

# nh_start_refused ID DESC [--says TEXT] BUNDLE_ARGS...: createRuntime must fail (its
# hook's first line containing TEXT), and leave nothing.
nh_start_refused() {
    local id=$1 desc=$2 says="" before said
    shift 2
    if [[ ${1:-} == --says ]]; then says=$2; shift 2; fi
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" "$@"
    before="$(nh_host_veths | sort)"
    if nh_run_container "$NH_TMP/bundles/$id" "$id" 2>"$NH_TMP/$id.err"; then
        STARTED+=("$id")
        nh_fail "$desc"
        return 0
    fi
    said="$(sed -n 's/.*stderr: \(.*\)"$/\1/p' "$NH_TMP/$id.err" | head -n 1 | sed 's/\\n.*//' | cut -c1-300)"
    if [[ -n $says && $said != *"$says"* ]]; then
        nh_fail "$desc (the hook said: $said)"
    else
        nh_pass "$desc"
        printf '    hook said: %s\n' "$said"
    fi
    nh_stop_container "$id"
    nh_check "refused $id left no veth, record or IPAM entry" nh_refused_left_nothing "$before" "$id"
}

# nh_outside_ns UPLINK_IP OUTSIDE_IP: an "outside" namespace behind an uplink veth up0
# (held by a process of its own, so nothing is named in /run/netns), /24 on both ends.
# Sets OUTSIDE_NS_PID; the caller ends it by pid.
nh_outside_ns() {
    unshare --net sleep 100000 &
    OUTSIDE_NS_PID=$!
    nh_wait_own_netns "$OUTSIDE_NS_PID"
    ip link add up0 type veth peer name eth0 netns "$OUTSIDE_NS_PID"
    ip addr add "$1/24" dev up0
    ip link set up0 up
    nh_in_outside ip addr add "$2/24" dev eth0
    nh_in_outside ip link set eth0 up
    nh_in_outside ip link set lo up
}

# nh_start_named_httpd ID DESC ANNOTATION...: a runc httpd container whose page is its
# own id (services' tests tell members apart by it).
nh_start_named_httpd() {
    local id=$1 desc=$2
    shift 2
    nh_make_bundle "$NH_TMP/bundles/$id" "$id" --httpd "$@"
    printf '%s\n' "$id" >"$NH_TMP/bundles/$id/rootfs/www/index.html"
    nh_check "$desc" nh_run_container "$NH_TMP/bundles/$id" "$id"
    [[ "$(nh_container_status "$id")" == running ]] && STARTED+=("$id")
    return 0
}

# nh_in_ctr ID CMD...: CMD in the network namespace of runc container ID (the host's tools).
nh_in_ctr() { local pid; pid="$(nh_pid_of "$1")" && shift && nsenter -t "$pid" -n "$@"; }

# nh_in_outside CMD...: CMD in the namespace nh_outside_ns made.
nh_in_outside() { nsenter -t "$OUTSIDE_NS_PID" -n "$@"; }

# nh_refused_in_one_line EXPECTED_TEXT CMD...: CMD fails, saying one line with the text.
nh_refused_in_one_line() {
    local want=$1 out
    shift
    if out="$("$@" 2>&1)"; then echo "accepted: $out"; return 1; fi
    [[ $(wc -l <<<"$out") -eq 1 ]] || { echo "more than one line: $out"; return 1; }
    [[ $out == *"$want"* ]] || { echo "said: $out"; return 1; }
}

# nh_pid_of ID: the pid of a runc container's init (its network namespace's holder).
nh_pid_of() { nh_runc state "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }

nh_fetch_ok() { # CMD...: the page must come back, not merely a connection
    local out
    out="$("$@" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    [[ $out == *"$NH_PAGE"* ]] || { printf 'unexpected body: %s\n' "$out"; return 1; }
}

nh_fetch_fails() { # CMD...: no page may come back
    local out
    if out="$("$@" 2>&1)" && [[ $out == *"$NH_PAGE"* ]]; then
        printf 'got the page: %s\n' "$out"
        return 1
    fi
}

# No `wget -T`: busybox-static 1.35's wget segfaults on it; timeout(1) bounds it.
nh_host_wget() { timeout 5 busybox wget -q -O - "$1"; }

nh_no_host_veths_left() {
    [[ -z "$(nh_host_veths)" ]] || { echo "left on host:"; ip -br link; return 1; }
}

nh_endpoints_empty() {
    local dir="$NETHOOK_RUN_DIR/endpoints"
    [[ -d $dir ]] || return 0
    local -a left
    mapfile -t left < <(find "$dir" -mindepth 1)
    ((${#left[@]} == 0)) || { printf 'left: %s\n' "${left[@]}"; return 1; }
}

# nh_ipam_empty [ID... [-- IP...]]: no network's IPAM directory
# ($NETHOOK_RUN_DIR/ipam/<network>/) holds an address file, and no file there
# names one of the ids. Only each network's `last` and `last6` cursors may stay; they may name
# a freed address, so the IPs are not looked for beyond that. A leftover
# single-file allocation (ipam/<network>.json, older versions) counts as a leak.
nh_ipam_empty() {
    local root="$NETHOOK_RUN_DIR/ipam" id f rc=0
    local -a ids=() left=()
    while (($#)) && [[ $1 != -- ]]; do ids+=("$1"); shift; done
    [[ -d $root ]] || return 0
    mapfile -t left < <(
        find "$root" -mindepth 1 -maxdepth 1 ! -type d
        find "$root" -mindepth 2 -maxdepth 2 ! \( -type f \( -name last -o -name last6 \) \)
        find "$root" -mindepth 3
    )
    if ((${#left[@]})); then
        echo "leaked allocations in $root:"
        for f in "${left[@]}"; do printf '  %s: %s\n' "${f#"$root"/}" "$(head -c 200 "$f" 2>/dev/null)"; done
        rc=1
    fi
    for id in "${ids[@]}"; do
        [[ -n $id ]] || continue
        if grep -rlxF -e "$id" "$root" 2>/dev/null; then echo "  ^ names $id"; rc=1; fi
    done
    return "$rc"
}

nh_ls_empty() {
    local out
    out="$(nh ls --json)" || return 1
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d == [] else "not empty: %s" % d)' <<<"$out"
}

# nh_nft_clean IP...: with no container left, every set and map in nethook's
# tables (inet nethook: masquerade, networks, published ports; bridge nethook:
# anti-spoofing) is empty, so no element mentions an address, a host veth or
# host port 8080 either. Missing tables are clean too. Two sets may hold an element
# with no container: fwd_guard (nethook turned forwarding on in the sandbox) and each
# table's probe element (nfproto 0, the interface name nethook/probe) that shows the table's
# version.
nh_nft_clean() {
    local family out rc=0
    for family in inet bridge; do
        out="$(nft -j list table "$family" nethook 2>/dev/null)" || continue
        python3 -c '
import json, sys
family, ips = sys.argv[1], {ip for ip in sys.argv[2:] if ip}
bad = []
for obj in json.load(sys.stdin)["nftables"]:
    for kind in ("map", "set"):
        s = obj.get(kind)
        elems = [e for e in (s or {}).get("elem", []) if e not in ("nethook/probe", 0, "0")]
        if s and s["name"] != "fwd_guard" and elems:
            bad.append("%s %s nethook %s holds %s" % (kind, family, s["name"], json.dumps(s["elem"])))
if bad:
    sys.exit("\n".join(bad))
' "$family" "$@" <<<"$out" || rc=1
    done
    return "$rc"
}

# nh_check_no_leftovers ID... -- IP...: the teardown checks, as PASS/FAIL lines.
nh_check_no_leftovers() {
    local -a ids=() ips=()
    while (($#)) && [[ $1 != -- ]]; do ids+=("$1"); shift; done
    (($#)) && shift
    ips=("$@")
    # Deleting the netns frees the veth pair asynchronously: poll briefly.
    nh_wait_until 3 nh_no_host_veths || true
    nh_settle
    nh_check "no nh* veth left on the host" nh_no_host_veths_left
    nh_check "no endpoint records left in \$NETHOOK_RUN_DIR/endpoints" nh_endpoints_empty
    nh_check "no allocations left in \$NETHOOK_RUN_DIR/ipam" nh_ipam_empty "${ids[@]}" -- "${ips[@]}"
    nh_check "nethook ls --json is []" nh_ls_empty
    nh_check "every nft set and map in tables inet/bridge nethook is empty" nh_nft_clean "${ips[@]}"
}

# --- the hook contract, by direct invocation ---------------------------------------

# nh_check_hook_direct LABEL [POSTSTOP_PID]: run `nethook hook` the way a
# runtime does, but at its harshest: empty environment except NETHOOK_* (no
# PATH), stdout closed, cwd /, and inside the 2 s budget (timeout 2 kills it).
# The "container" is a sleep in a network namespace of its own. Setup gets a
# state with status "creating"; teardown one with status "stopped" and, when
# POSTSTOP_PID is given, that pid (crun sends 0; "dead" means the killed
# sleep's pid, as youki sends its dead init's), else none (runc, podman). Both stages must exit 0, setup must plumb eth0,
# teardown must leave no record.
nh_check_hook_direct() {
    local label=$1 post_pid=${2-} id="direct-$$-$1" pid
    unshare --net sleep 30 </dev/null >/dev/null 2>&1 &
    pid=$!
    # unshare execs sleep in place once the netns exists.
    nh_wait_until 2 nh_other_netns "$pid" || true
    local state="$NH_TMP/$id.state" ann='{"nethook.network":"nethook"}'
    printf '{"ociVersion":"1.0.2","id":"%s","status":"creating","pid":%d,"bundle":"%s","annotations":%s}\n' \
        "$id" "$pid" "$NH_TMP" "$ann" >"$state"
    nh_check "$label: nethook hook (setup) with env -i, no PATH, stdout closed, within 2 s" \
        nh_hook_harsh "$state"
    echo "   setup took $(cat "$NH_TMP/harsh.ms" 2>/dev/null || echo ?) ms"
    nh_check "$label: the direct hook gave the namespace eth0 with an address" \
        nh_netns_has_eth0 "$pid"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local pidfield="" pidtext="no pid"
    [[ $post_pid == dead ]] && post_pid=$pid
    if [[ -n $post_pid ]]; then
        pidfield="\"pid\":$post_pid,"
        pidtext="pid $post_pid"
    fi
    printf '{"ociVersion":"1.0.2","id":"%s","status":"stopped",%s"bundle":"%s","annotations":%s}\n' \
        "$id" "$pidfield" "$NH_TMP" "$ann" >"$state"
    nh_check "$label: nethook hook (teardown, $pidtext) the same way" \
        nh_hook_harsh "$state"
    echo "   teardown took $(cat "$NH_TMP/harsh.ms" 2>/dev/null || echo ?) ms"
    nh_check "$label: teardown removed the record of $id" nh_no_record "$id"
}

nh_other_netns() { [[ "$(readlink "/proc/$1/ns/net")" != "$(readlink /proc/self/ns/net)" ]]; }

nh_no_record() {
    nh_settle
    [[ ! -e $NETHOOK_RUN_DIR/endpoints/$1.json ]] || { echo "record of $1 left"; return 1; }
}

# nh_settle: wait until no nethook process holds the store's lock, then until
# no teardown is finishing in the background. A poststop (or CNI DEL) whose veth
# is still there leaves the end of its teardown (veth, address, record) to a
# child that holds the attachment's mark, $NETHOOK_RUN_DIR/deleting/ID, locked
# until it is done; reading the store's files directly, as these checks do,
# means waiting for both. A mark is opened without creating it (flock FILE
# would create one, which nethook would read as an abandoned teardown).
nh_settle() {
    [[ -e $NETHOOK_RUN_DIR/lock ]] || return 0
    flock "$NETHOOK_RUN_DIR/lock" true
    local mark fd
    for mark in "$NETHOOK_RUN_DIR"/deleting/*; do
        { exec {fd}<"$mark"; } 2>/dev/null || continue
        flock -s "$fd"
        exec {fd}<&-
    done
}

nh_netns_has_eth0() {
    local out
    out="$(nsenter -t "$1" -n ip -o -4 addr show dev eth0)" || return 1
    [[ $out == *" inet 10.77."* ]] || { echo "eth0: $out"; return 1; }
}

# nh_hook_harsh STATE_FILE: `nethook hook <STATE` with only NETHOOK_* in the
# environment, stdout closed, cwd /, killed after 2 s; prints the time taken.
nh_hook_harsh() {
    local t0 rc ms
    t0=$(date +%s%N)
    (cd / && exec timeout -s KILL 2 env -i NETHOOK_RUN_DIR="$NETHOOK_RUN_DIR" \
        NETHOOK_CONFIG_DIR="$NETHOOK_CONFIG_DIR" "$NETHOOK_BIN" hook <"$1" >&-)
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "$ms" >"$NH_TMP/harsh.ms"
    echo "exit $rc after $ms ms"
    ((rc == 0))
}

# nh_inject_idempotent BUNDLE: a second `nethook inject` leaves config.json as it was.
nh_inject_idempotent() {
    local before out
    before="$(cat "$1/config.json")"
    out="$(nh inject "$1" 2>&1)" || { echo "$out"; return 1; }
    [[ $out == *"already set"* ]] || { echo "said: $out"; return 1; }
    [[ "$(cat "$1/config.json")" == "$before" ]] || { echo "config.json changed"; return 1; }
}

# --- the crun/youki scenario ------------------------------------------------------

nh_section() { printf '\n-- %s\n' "$*"; }

# nh_rt_scenario [POSTSTOP_PID]: the end-to-end scenario for NH_RT (crun,
# youki), mirroring e2e-runc.sh's core: registration by `nethook inject`, the
# hook contract, two containers that reach each other and the gateway, a
# published port, repeated start/delete cycles, and a teardown that leaves
# nothing. POSTSTOP_PID is what the runtime puts in its poststop state, for
# the direct-invocation check (crun: 0, youki: dead).
nh_rt_scenario() {
    local post_pid=${1-}
    local a="e2e-$$-a" b="e2e-$$-b" web="e2e-$$-web" cyc="e2e-$$-cycle"
    local -a ids=("$a" "$b" "$web" "$cyc") started=()
    local id ip_a ip_b ip_web out i

    nh_section "registration: nethook inject BUNDLE"
    local bundle_a="$NH_TMP/bundles/$a"
    nh_make_bundle "$bundle_a" "$a" --no-hooks
    nh_check "nethook inject $bundle_a" nh inject "$bundle_a"
    nh_check "nethook inject again says 'already set' and changes nothing" nh_inject_idempotent "$bundle_a"
    nh_check "injected entries: absolute path, 'nethook hook', env only NETHOOK_* (no PATH)" \
        nh_check_hook_entries "$bundle_a/config.json"
    nh_check "hook timeouts lowered to 2 s in the test bundle" nh_set_hook_timeout "$bundle_a/config.json" 2

    nh_section "the hook contract, by direct invocation"
    nh_check_hook_direct "$NH_RT" "$post_pid"

    nh_section "two containers on the default network ($NH_RT run --detach)"
    nh_check "$NH_RT run $a (createRuntime hook, 2 s timeout)" nh_rt_run "$bundle_a" "$a"
    nh_rt_bundle "$NH_TMP/bundles/$b" "$b"
    nh_check "$NH_RT run $b (createRuntime hook, 2 s timeout)" nh_rt_run "$NH_TMP/bundles/$b" "$b"
    for id in "$a" "$b"; do
        [[ "$(nh_rt_status "$id")" == running ]] && started+=("$id")
    done
    ip_a="$(nh_ls_field "$a" ipv4 2>/dev/null || true)"
    ip_b="$(nh_ls_field "$b" ipv4 2>/dev/null || true)"
    echo "   $a: ${ip_a:-?}   $b: ${ip_b:-?}"
    nh_check "nethook ls --json: distinct addresses in $NH_SUBNET" nh_check_addresses "$ip_a" "$ip_b"
    nh_check_pair nh_rt_exec "$a" "$ip_a" "$(nh_ls_field "$a" host_interface 2>/dev/null || true)" \
        "$b" "$ip_b" "$(nh_ls_field "$b" host_interface 2>/dev/null || true)"

    nh_section "published port 8080 -> busybox httpd:80"
    nh_rt_bundle "$NH_TMP/bundles/$web" "$web" --httpd nethook.ports=8080:80
    nh_check "$NH_RT run $web with nethook.ports=8080:80" nh_rt_run "$NH_TMP/bundles/$web" "$web"
    [[ "$(nh_rt_status "$web")" == running ]] && started+=("$web")
    ip_web="$(nh_ls_field "$web" ipv4 2>/dev/null || true)"
    echo "   $web: ${ip_web:-?} ports $(nh_ls_field "$web" ports 2>/dev/null || echo '?')"
    nh_check "nethook ls --json: $web has its own address" nh_check_addresses "$ip_a" "$ip_b" "$ip_web"
    nh_check "httpd answers directly on $ip_web:80" nh_fetch_ok nh_host_wget "http://$ip_web:80/"
    # A publish on every address leaves 127.0.0.0/8 to host services: the host reaches it
    # on its other addresses, here the bridge's.
    nh_check "sandbox host fetches http://$NH_GATEWAY:8080/" nh_fetch_ok nh_host_wget "http://$NH_GATEWAY:8080/"
    nh_check "sandbox host's 127.0.0.1:8080 is not captured by a publish on every address" \
        nh_fetch_fails nh_host_wget "http://127.0.0.1:8080/"
    nh_check "$a fetches http://$NH_GATEWAY:8080/ (hairpin)" \
        nh_fetch_ok nh_rt_exec "$a" timeout 5 wget -q -O - "http://$NH_GATEWAY:8080/"

    nh_section "start/delete cycles (a hook that does not drain stdin fails some)"
    local cycles=${NETHOOK_CYCLES:-10} ok=0
    nh_rt_bundle "$NH_TMP/bundles/$cyc" "$cyc"
    for ((i = 1; i <= cycles; i++)); do
        if ! nh_rt_run "$NH_TMP/bundles/$cyc" "$cyc" 2>"$NH_TMP/cycle.err"; then
            printf '   cycle %d: run failed\n' "$i"; sed 's/^/   /' "$NH_TMP/cycle.err"
            nh_rt_stop "$cyc" >/dev/null 2>&1
            continue
        fi
        if ! nh_ls_field "$cyc" ipv4 >/dev/null 2>&1; then
            printf '   cycle %d: no endpoint while running\n' "$i"
        elif ! out="$(nh_rt_stop "$cyc" 2>&1)"; then
            printf '   cycle %d: delete failed: %s\n' "$i" "$out"
        elif ! nh_no_record "$cyc" >/dev/null; then
            printf '   cycle %d: endpoint record left after delete\n' "$i"
        else
            ok=$((ok + 1))
            continue
        fi
        nh_rt_stop "$cyc" >/dev/null 2>&1
    done
    nh_check "$ok/$cycles cycles of $NH_RT run + kill + delete set up and tore down" \
        [ "$ok" -eq "$cycles" ]

    nh_section "teardown ($NH_RT kill + $NH_RT delete -> poststop hook)"
    for id in "${started[@]}"; do
        nh_check "$NH_RT kill + delete $id" nh_rt_stop "$id"
    done
    nh_check_no_leftovers "${ids[@]}" -- "$ip_a" "$ip_b" "$ip_web"
}
