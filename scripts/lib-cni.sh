# shellcheck shell=bash
# Helpers for the end-to-end tests that drive nethook as a CNI plugin through real
# clients (scripts/e2e-containerd.sh, scripts/e2e-podman-cni.sh). Source after lib.sh.
#
# Those clients look for their configuration in fixed places (/etc/cni/net.d and
# /opt/cni/bin for ctr; Podman can be told, but its defaults are the same). Inside
# the sandbox's private mount namespace those paths are covered with directories of
# the test's own, so neither the machine's files are read nor anything is written
# to them, and /var/lib/cni (where plugins such as host-local keep state) is a tmpfs.

NH_CNI_REF=/usr/lib/cni # Debian's containernetworking-plugins

# nh_cover_dir TARGET SRC: make SRC appear at TARGET in this mount namespace only.
# When TARGET does not exist on the machine it cannot be created there (that
# would write to the machine's /etc or /opt): the deepest existing ancestor is
# covered by an overlay whose upper layer is in $NH_TMP, TARGET is made in that
# layer, and SRC is bind-mounted on it.
nh_cover_dir() {
    local target=$1 src=$2 anc
    nh_require_private_mntns
    if [[ ! -d $target ]]; then
        anc=$target
        while [[ ! -d $anc ]]; do anc="$(dirname "$anc")"; done
        [[ $anc != / ]] || nh_die "nh_cover_dir: will not overlay / for $target"
        local ov
        ov="$(mktemp -d "$NH_TMP/overlay.XXXXXX")"
        mkdir -p "$ov/upper" "$ov/work"
        mount -t overlay -o "lowerdir=$anc,upperdir=$ov/upper,workdir=$ov/work" nethook-e2e "$anc" ||
            nh_die "cannot overlay $anc (to make $target in this mount namespace only)"
        mkdir -p "$target"
    fi
    mount --bind "$src" "$target" || nh_die "cannot bind $src on $target"
}

# nh_cni_sandbox_dirs: private /etc/cni/net.d ($NH_CNI_CONF), /opt/cni/bin
# ($NH_CNI_BIN: nethook, the reference plugins and the spy) and a tmpfs on
# /var/lib/cni. Requires /run to be the sandbox's already (the callers mount it).
nh_cni_sandbox_dirs() {
    NH_CNI_CONF="$NH_TMP/cni/net.d"
    NH_CNI_BIN="$NH_TMP/cni/bin"
    NH_SPY_LOG="$NH_TMP/cni/spy.log"
    export NH_CNI_CONF NH_CNI_BIN NH_SPY_LOG
    mkdir -p "$NH_CNI_CONF" "$NH_CNI_BIN"
    : >"$NH_SPY_LOG"
    # As a user installs it: the plugin copied into the bin dir, and the example conflist
    # (it carries this run's NETHOOK_RUN_DIR/NETHOOK_CONFIG_DIR as runDir/configDir).
    NH_CNI_EXAMPLE="$NH_TMP/cni/example"
    export NH_CNI_EXAMPLE
    "$NETHOOK_BIN" install --cni-bin-dir "$NH_CNI_BIN" --cni-conf-dir "$NH_CNI_EXAMPLE" >/dev/null ||
        nh_die "nethook install --cni-bin-dir $NH_CNI_BIN --cni-conf-dir $NH_CNI_EXAMPLE failed"
    local p
    for p in bandwidth tuning bridge host-local portmap loopback; do
        [[ -x $NH_CNI_REF/$p ]] && cp "$NH_CNI_REF/$p" "$NH_CNI_BIN/$p"
    done
    nh_write_cni_spy "$NH_CNI_BIN/nethook-spy"
    nh_cover_dir /etc/cni/net.d "$NH_CNI_CONF"
    nh_cover_dir /opt/cni/bin "$NH_CNI_BIN"
    # libcni caches every result there (and hands it back as DEL's prevResult).
    [[ -d /var/lib/cni ]] || nh_cover_dir /var/lib/cni "$(mktemp -d "$NH_TMP/varlibcni.XXXXXX")"
    mount -t tmpfs -o mode=0755,size=16m nethook-e2e-cni /var/lib/cni
}

# nh_write_cni_spy PATH: a pass-through CNI plugin for the end of a chain. It records
# each call (command, container id, netns, ifname, the runtimeConfig the client
# passed, whether a prevResult came) as one JSON line in the file named by its
# config's "log" key, and answers ADD with its prevResult: the tests learn from it
# what the client sends and when, instead of assuming it.
nh_write_cni_spy() {
    cat >"$1" <<'PY'
#!/usr/bin/python3
import json, os, sys
conf = json.loads(sys.stdin.read() or "{}")
cmd = os.environ.get("CNI_COMMAND", "")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": conf.get("cniVersion", "1.0.0"),
                      "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
rec = {"command": cmd, "containerId": os.environ.get("CNI_CONTAINERID"),
       "netns": os.environ.get("CNI_NETNS"), "ifname": os.environ.get("CNI_IFNAME"),
       "args": os.environ.get("CNI_ARGS"), "runtimeConfig": conf.get("runtimeConfig"),
       "prevResult": conf.get("prevResult")}
netns = rec["netns"] or ""
rec["netnsExists"] = bool(netns) and os.path.exists(netns)
with open(conf["log"], "a") as f:
    f.write(json.dumps(rec) + "\n")
if cmd == "ADD":
    prev = conf.get("prevResult") or {}
    prev["cniVersion"] = conf.get("cniVersion", "1.0.0")
    print(json.dumps(prev))
PY
    chmod 0755 "$1"
}

# nh_spy_calls [FILTER-PYTHON-EXPR]: the spy's records, one JSON per line, those
# for which the expression (over `r`) is true.
nh_spy_calls() {
    python3 - "$NH_SPY_LOG" "${1:-True}" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if eval(sys.argv[2], {}, {"r": r}):
        print(json.dumps(r))
PY
}

# nh_spy_one COMMAND CONTAINERID: the spy's record of the one COMMAND call for
# CONTAINERID, as JSON on stdout; fails saying how many there were unless exactly one.
# The checks that assert what a client sent start from it.
nh_spy_one() {
    python3 - "$NH_SPY_LOG" "$1" "$2" <<'PY'
import json, sys
log, cmd, cid = sys.argv[1:4]
recs = [r for r in map(json.loads, open(log)) if r["command"] == cmd and r["containerId"] == cid]
if len(recs) != 1:
    sys.exit("%d %s calls for %s" % (len(recs), cmd, cid))
print(json.dumps(recs[0]))
PY
}

# nh_nethook_conflist FILE NAME NETWORK [EXTRA-PLUGIN-JSON...]: a conflist named NAME
# whose first plugin is nethook on nethook network NETWORK (nethook: the default
# network, the one hook containers join) with this run's state dirs, then the extra
# plugins, then the spy.
nh_nethook_conflist() {
    local file=$1 name=$2 network=$3
    shift 3
    python3 - "$file" "$name" "$network" "$NETHOOK_RUN_DIR" "$NETHOOK_CONFIG_DIR" "$NH_SPY_LOG" "$@" <<'PY'
import json, sys
file, name, network, run_dir, config_dir, spy_log = sys.argv[1:7]
extra = sys.argv[7:]
plugins = [{"type": "nethook", "network": network, "runDir": run_dir, "configDir": config_dir,
            "capabilities": {"portMappings": True, "ips": True, "mac": True}}]
plugins += [json.loads(p) for p in extra]
plugins.append({"type": "nethook-spy", "log": spy_log,
                "capabilities": {"portMappings": True, "ips": True, "mac": True}})
with open(file, "w") as f:
    json.dump({"cniVersion": "1.0.0", "name": name, "plugins": plugins}, f, indent=2)
    f.write("\n")
PY
}

# nh_conflist_from_example FILE [EXTRA-PLUGIN-JSON...]: the conflist `nethook install
# --cni-conf-dir` wrote, with the extra plugins and then the spy appended to its chain.
nh_conflist_from_example() {
    local file=$1
    shift
    python3 - "$NH_CNI_EXAMPLE/10-nethook.conflist" "$file" "$NH_SPY_LOG" "$@" <<'PY'
import json, sys
example, file, spy_log, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
doc = json.load(open(example))
doc["plugins"] += [json.loads(p) for p in extra]
doc["plugins"].append({"type": "nethook-spy", "log": spy_log,
                       "capabilities": {"portMappings": True, "ips": True, "mac": True}})
with open(file, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
}

# nh_example_conflist_ok: the example is a 1.0.0 conflist whose nethook plugin carries
# this run's state dirs (a CNI plugin gets no NETHOOK_* environment).
nh_example_conflist_ok() {
    python3 - "$NH_CNI_EXAMPLE/10-nethook.conflist" "$NETHOOK_RUN_DIR" "$NETHOOK_CONFIG_DIR" <<'PY'
import json, sys
path, run_dir, config_dir = sys.argv[1:4]
doc = json.load(open(path))
p = doc["plugins"][0]
print(json.dumps(doc))
if doc.get("cniVersion") != "1.0.0" or p.get("type") != "nethook":
    sys.exit("not a 1.0.0 conflist with nethook first")
if p.get("runDir") != run_dir or p.get("configDir") != config_dir:
    sys.exit("state dirs %r %r, not this run's" % (p.get("runDir"), p.get("configDir")))
PY
}

# nh_cni_plugin_ok: the binary answers CNI VERSION (it is a CNI plugin at all).
nh_cni_plugin_ok() {
    local out
    out="$(echo '{"cniVersion":"1.0.0"}' | env -i CNI_COMMAND=VERSION "$NH_CNI_BIN/nethook" 2>&1)" ||
        { echo "CNI_COMMAND=VERSION failed: $out"; return 1; }
    [[ $out == *supportedVersions* ]] || { echo "VERSION said: $out"; return 1; }
}

# nh_cni_del_by_hand CONFLIST CONTAINERID IFNAME [NETNS]: what a client sends on DEL
# for a whole conflist (plugins in reverse order, each with the conflist's name and
# cniVersion), for containers whose client never sends it.
nh_cni_del_by_hand() {
    python3 - "$@" <<'PY'
import json, os, subprocess, sys
conflist, cid, ifname = sys.argv[1], sys.argv[2], sys.argv[3]
netns = sys.argv[4] if len(sys.argv) > 4 else ""
doc = json.load(open(conflist))
env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "DEL", "CNI_CONTAINERID": cid,
       "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin"}
rc = 0
for p in reversed(doc["plugins"]):
    conf = dict(p, name=doc["name"], cniVersion=doc["cniVersion"])
    r = subprocess.run(["/opt/cni/bin/" + p["type"]], input=json.dumps(conf).encode(), env=env,
                       capture_output=True)
    if r.returncode != 0:
        print("DEL %s: exit %d: %s %s" % (p["type"], r.returncode, r.stdout.decode(), r.stderr.decode()))
        rc = 1
sys.exit(rc)
PY
}

# nh_spy_report: every call the spy saw, one line each (what the client sent).
nh_spy_report() {
    python3 - "$NH_SPY_LOG" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("   %-5s %s if=%s netns=%r (exists: %s) CNI_ARGS=%r runtimeConfig=%s prevResult=%s" % (
        r["command"], r["containerId"], r["ifname"], r["netns"], r["netnsExists"], r["args"],
        json.dumps(r["runtimeConfig"]), "yes" if r["prevResult"] else "no"))
PY
}
