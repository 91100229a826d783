#!/usr/bin/env python3
"""Step timings (NETHOOK_TIMING=1) of setups of a plain container, a service member and a
named container on a DNS network, alternating, in a throwaway namespace: where a member's
and a name's extra time goes. "after" is the time after the last mark (the resolver being
told of the name, and the record's final write).

    sudo unshare --net --mount --pid --fork --mount-proc python3 scripts/bench/issue22_steps.py BINARY [ROUNDS]
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

B = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 60
subprocess.run("mount --make-rprivate / && ip link set lo up", shell=True, check=True)
d = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)
env = {"NETHOOK_RUN_DIR": d + "/run", "NETHOOK_CONFIG_DIR": d + "/etc", "NETHOOK_TIMING": "1",
       "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def nh(*args):
    subprocess.run([B, *args], env=env, check=True, capture_output=True)


nh("network", "create", "svcnet", "--subnet", "10.210.0.0/16")
nh("service", "create", "web", "--network", "svcnet", "--port", "80/tcp")
nh("network", "create", "dnsnet", "--subnet", "10.211.0.0/16", "--dns")
KINDS = {"plain": {"nethook.network": "svcnet"},
         "member": {"nethook.network": "svcnet", "nethook.service": "web"},
         "named": {"nethook.network": "dnsnet"}}
steps = {k: {} for k in KINDS}
wall = {k: [] for k in KINDS}
procs = []
me = os.readlink("/proc/self/ns/net")
try:
    for i in range(N):
        for kind, ann in KINDS.items():
            p = subprocess.Popen(["unshare", "--net", "sleep", "600"])
            procs.append(p)
            while os.readlink(f"/proc/{p.pid}/ns/net") == me:
                time.sleep(0.001)
            a = dict(ann)
            if kind == "named":
                a["nethook.name"] = f"n{i}"
            st = json.dumps({"ociVersion": "1.0.2", "id": f"{kind}-{i}", "status": "creating",
                             "pid": p.pid, "bundle": "/x", "annotations": a})
            t0 = time.perf_counter()
            r = subprocess.run([B, "hook"], input=st.encode(), env=env, capture_output=True)
            wall[kind].append((time.perf_counter() - t0) * 1000)
            m = re.search(r"timing setup: (.*)", r.stderr.decode())
            if not m:
                sys.exit(f"{kind}-{i}: {r.stderr.decode().strip()}")
            parts = dict(x.rsplit(" ", 1) for x in m.group(1).split(", "))
            vals = {k: float(v[:-2]) for k, v in parts.items()}
            vals["after"] = vals["total"] - sum(v for k, v in vals.items() if k != "total")
            for k, v in vals.items():
                steps[kind].setdefault(k, []).append(v)
    # Teardowns, last first (N members down to 1), namespace alive: the veth delete is the
    # kernel's (~16 ms here) and lands in one step; the others are nethook's.
    tsteps = {k: {} for k in KINDS}
    for i in reversed(range(N)):
        for kind in KINDS:
            st = json.dumps({"ociVersion": "1.0.2", "id": f"{kind}-{i}", "status": "stopped", "bundle": "/x"})
            r = subprocess.run([B, "hook"], input=st.encode(), env=env, capture_output=True)
            m = re.search(r"timing teardown: (.*)", r.stderr.decode())
            if m:
                for part in m.group(1).split(", "):
                    k, v = part.rsplit(" ", 1)
                    tsteps[kind].setdefault(k, []).insert(0, float(v[:-2]))
    for part, sl in (("first 50", slice(0, 50)), (f"last 50 (to {N})", slice(-50, None))):
        print(f"-- teardown, netns alive, {part}, ms, medians")
        for kind in tsteps:
            print(f"{kind:7} " + ", ".join(f"{k} {statistics.median(v[sl]):.2f}" for k, v in tsteps[kind].items()))
    # Medians of the first and the last 50 rounds (up to 50 and up to N members).
    for part, sl in (("first 50", slice(0, 50)), (f"last 50 (to {N})", slice(-50, None))):
        print(f"-- {part}, ms, medians")
        for kind in steps:
            print(f"{kind:7} wall {statistics.median(wall[kind][sl]):.2f}; " +
                  ", ".join(f"{k} {statistics.median(v[sl]):.2f}" for k, v in steps[kind].items()))
finally:
    for p in procs:
        p.kill()
        p.wait()
    pid = open(d + "/run/dns/pid").read().strip() if os.path.exists(d + "/run/dns/pid") else None
    if pid:
        try:
            os.kill(int(pid), 9)  # the resolver the first named container started, by its pid
        except OSError:
            pass
