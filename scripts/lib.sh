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

# Debian packages the scripts and the build need. libnftnl-dev/libmnl-dev/
# pkg-config are build dependencies of the nftnl/mnl crates; conntrack is used
# by nethook to flush stale entries; busybox-static provides the container
# rootfs (one static binary, no shared libraries to copy).
NH_DEPS=(runc busybox-static nftables iproute2 libnftnl-dev libmnl-dev pkg-config conntrack)

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
    if ! "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1; then
        apt-get -qq update >/dev/null
        "${apt[@]}" install "${missing[@]}" >/dev/null
    fi
}

# --- build ------------------------------------------------------------------

nh_cargo_env() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f ${HOME:-/root}/.cargo/env ]]; then
        # shellcheck source=/dev/null
        . "${HOME:-/root}/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || nh_die "cargo not found (install rustup, or source ~/.cargo/env)"
}

# True when the release binary is missing or any build input is newer.
nh_build_needed() {
    local bin=$1
    [[ -x $bin ]] || return 0
    local -a inputs=()
    local p
    for p in src build.rs Cargo.toml Cargo.lock; do
        [[ -e $NH_REPO_ROOT/$p ]] && inputs+=("$NH_REPO_ROOT/$p")
    done
    ((${#inputs[@]} == 0)) && return 1
    [[ -n "$(find "${inputs[@]}" -newer "$bin" -print -quit 2>/dev/null)" ]]
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
    local target="${CARGO_TARGET_DIR:-$NH_REPO_ROOT/target}"
    local bin="$target/release/nethook"
    if nh_build_needed "$bin"; then
        nh_cargo_env
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

# Create the per-run scratch directory and point every piece of state into it.
# Sets NH_TMP, NH_RUNC_ROOT; exports NETHOOK_RUN_DIR/NETHOOK_CONFIG_DIR so the
# CLI and the hooks share one private state. The caller installs the trap
# (it knows which containers it made); nh_cleanup is the usual handler.
nh_setup_tmp() {
    NH_TMP="$(mktemp -d /tmp/nethook-sandbox.XXXXXX)"
    NH_RUNC_ROOT="$NH_TMP/runc"
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

# `command`: a caller may define its own runc() wrapper for display.
nh_runc() { command runc --root "$NH_RUNC_ROOT" "$@"; }

# nh_run_container BUNDLE ID: create + start detached. The container's stdio
# goes to a log file: inheriting ours would keep a caller's pipe (tee, CI log
# collector) open until the container dies, and there is no stdin in CI.
# runc's own errors (including a failed createRuntime hook) land in that log,
# which is printed on failure.
nh_run_container() {
    local bundle=$1 id=$2 log="$NH_TMP/$2.log"
    if ! nh_runc run --detach --bundle "$bundle" "$id" </dev/null >"$log" 2>&1; then
        sed 's/^/    runc: /' "$log" >&2
        return 1
    fi
}

# nh_exec ID CMD...: run a command inside a running container.
nh_exec() {
    local id=$1
    shift
    nh_runc exec "$id" "$@" </dev/null
}

nh_container_status() {
    nh_runc state "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || echo absent
}

# nh_stop_container ID: SIGKILL, wait until runc sees it stopped, delete
# (runc delete runs the poststop hooks). Quiet; safe on absent containers.
nh_stop_container() {
    local id=$1 i status
    status="$(nh_container_status "$id")"
    [[ $status == absent ]] && return 0
    if [[ $status == running || $status == created || $status == paused ]]; then
        nh_runc kill "$id" KILL >/dev/null 2>&1 || true
        for ((i = 0; i < 50; i++)); do
            [[ "$(nh_container_status "$id")" == stopped ]] && break
            sleep 0.1
        done
    fi
    nh_runc delete "$id" >/dev/null 2>&1 || nh_runc delete --force "$id" >/dev/null 2>&1 || true
}

# Kill and delete every container under this run's runc root.
nh_stop_all() {
    [[ -n ${NH_RUNC_ROOT:-} && -d $NH_RUNC_ROOT ]] || return 0
    local id
    while read -r id; do
        [[ -n $id ]] && nh_stop_container "$id"
    done < <(nh_runc list --quiet 2>/dev/null || true)
}

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

# Names of host-side veths nethook made (nh + 12 hex), one per line.
nh_host_veths() {
    ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -E '^nh[0-9a-f]{12}$' || true
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
