#!/usr/bin/env python3
"""Wall time of whole hook processes (start to exit, as a runtime sees it) for two nethook
binaries, interleaved (order alternating per round), in a throwaway net+mount namespace.

  sudo python3 scripts/hook-ab.py OLD NEW [ROUNDS]

Per round and binary: a fake container (`unshare --net sleep`), createRuntime setup with one
published port, then either
  - teardown with the container alive (its veth is deleted by nethook), or
  - teardown after the container was killed (its netns is gone or going),
alternating between the two per round. Prints p50/p90 of wall time and of the
hook's CPU time (user+sys, from its rusage) per binary and operation. The first
round (bridge and tables created) is left out.
"""
import json, os, resource, statistics, subprocess, sys, tempfile, time

if os.environ.get("NH_WALL_IN_SANDBOX") != "1":
    os.execvpe("unshare", ["unshare", "--net", "--mount", sys.executable] + sys.argv,
               dict(os.environ, NH_WALL_IN_SANDBOX="1"))

subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
old, new = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 100
d = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)


def hook(bin_, who, state):
    env = {"NETHOOK_RUN_DIR": f"{d}/run-{who}", "NETHOOK_CONFIG_DIR": f"{d}/etc-{who}",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    data = json.dumps(state).encode()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([bin_, "hook"], input=data, env=env, capture_output=True)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        for c in containers:
            c.kill()
        sys.exit(f"{who} hook failed: {p.stderr.decode()}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return (t1 - t0) * 1000, cpu * 1000


res = {}
containers = []  # the live fake container, killed by pid on failure
for i in range(rounds):
    order = [("old", old), ("new", new)] if i % 2 == 0 else [("new", new), ("old", old)]
    alive = i % 4 < 2
    for who, bin_ in order:
        c = subprocess.Popen(["unshare", "--net", "sleep", "600"], stdout=subprocess.DEVNULL)
        containers[:] = [c]
        own = os.readlink("/proc/self/ns/net")
        while os.readlink(f"/proc/{c.pid}/ns/net") == own:
            time.sleep(0.005)
        time.sleep(0.02)
        cid = f"{who}-{i}"
        t_set = hook(bin_, who, {"ociVersion": "1.0.2", "id": cid, "status": "creating",
                                 "pid": c.pid, "bundle": "/x",
                                 "annotations": {"nethook.ports": f"{20000 + i}:80"}})
        if not alive:
            c.kill(); c.wait(); time.sleep(0.05)
        t_down = hook(bin_, who, {"ociVersion": "1.0.2", "id": cid, "status": "stopped",
                                  "pid": 0, "bundle": "/x"})
        if alive:
            c.kill(); c.wait(); time.sleep(0.05)
        if i == 0:
            continue
        down = "teardown-alive" if alive else "teardown-gone"
        res.setdefault((who, "setup wall"), []).append(t_set[0])
        res.setdefault((who, "setup cpu"), []).append(t_set[1])
        res.setdefault((who, down + " wall"), []).append(t_down[0])
        res.setdefault((who, down + " cpu"), []).append(t_down[1])

for (who, op), v in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    v.sort()
    print(f"{who:4} {op:20} p50 {statistics.median(v):6.3f} ms  p90 {v[int(len(v) * 0.9)]:6.3f} ms  (n={len(v)})")
