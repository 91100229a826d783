"""Issue 22's phases of the benchmark (services and names), run by bench.py's child.

  svc   one network, one service: N members (each a fake container running
        `busybox httpd`) set up in turn, so the member count grows 1..N; every second
        member has a plain container set up and stopped next to it (same run, same
        network, same moment; a bridge takes 1023 ports, so not N of each at once). Then requests per second with `ab`
        (one connection per request, so every request passes the VIP's DNAT as a new
        flow): through the VIP over the N members, against direct to one member. Then
        the poststops (container gone first), members N..1, every second one with a
        plain container's poststop next to it.
  dns   one `--dns` network, N named containers (nethook.name); the resolver's RSS at
        1, N/10, N/2 and N names; query round trips from inside a container's netns to
        its gateway, for a local name and for a forwarded one (the upstream is
        scripts/dns/upstream.py in an outside namespace, named by a resolv.conf bound
        over /etc/resolv.conf in this phase's own mount namespace); then the poststops.

Every function takes `b`, bench.py's module (its Recorder, run, lo_up, ALL_PROCS), so a
fake container started here is killed by the same finally as bench.py's own.
"""

import ctypes
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM_PY = os.path.join(HERE, "..", "dns", "upstream.py")
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000


class Hook:
    """nethook as an OCI hook and as a CLI, with its state in DIR."""

    def __init__(self, b, bin_, state):
        self.b = b
        self.bin = bin_
        self.env = {"NETHOOK_RUN_DIR": f"{state}/run", "NETHOOK_CONFIG_DIR": f"{state}/etc",
                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    @staticmethod
    def state(cid, pid=None, annotations=None):
        s = {"ociVersion": "1.0.2", "id": cid, "bundle": "/nonexistent"}
        if pid is None:
            s["status"] = "stopped"
        else:
            s.update(status="creating", pid=pid, annotations=annotations or {})
        return json.dumps(s).encode()

    def setup(self, cid, pid, annotations):
        r, t = self.b.run([self.bin, "hook"], self.state(cid, pid, annotations), self.env)
        return r.returncode == 0, t, r.stderr.decode(errors="replace")

    def teardown(self, cid):
        r, t = self.b.run([self.bin, "hook"], self.state(cid), self.env)
        return r.returncode == 0, t, r.stderr.decode(errors="replace")

    def cli(self, *args):
        r = subprocess.run([self.bin, *args], env=self.env, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"nethook {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode()

    def ls(self):
        return {e["id"]: e for e in json.loads(self.cli("ls", "--json"))}


class Fakes:
    """Fake containers: `unshare --net ARGV...` processes, each in a netns of its own."""

    def __init__(self, b):
        self.b = b
        self.procs = {}

    def start(self, key, argv):
        p = subprocess.Popen(["unshare", "--net", *argv], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.b.ALL_PROCS.append(p)
        self.procs[key] = p

    def wait_ready(self):
        # unshare(2) happens before exec: once /proc/PID/exe is no longer unshare, the
        # netns is the container's own.
        me = os.readlink("/proc/self/ns/net")
        for key, p in self.procs.items():
            deadline = time.monotonic() + 10
            while True:
                try:
                    if os.readlink(f"/proc/{p.pid}/ns/net") != me and \
                            os.path.basename(os.readlink(f"/proc/{p.pid}/exe")) != "unshare":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fake container {key} did not start")
                time.sleep(0.001)
        time.sleep(0.5)  # deferred netns work of the kernel, before anything is timed

    def pid(self, key):
        return self.procs[key].pid

    def kill(self, key):
        p = self.procs.pop(key)
        p.kill()
        p.wait()

    def kill_all(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        self.procs.clear()


# --------------------------------------------------------------------------------------
# svc


def ab_rps(url, requests, concurrency):
    """`ab` without keep-alive: one TCP connection (one new flow through the DNAT) per
    request. Returns (requests per second, failed requests, non-2xx) or None."""
    r = subprocess.run(["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-s", "5", url],
                       capture_output=True, timeout=300)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    if r.returncode != 0 or not m:
        return None, (out + r.stderr.decode(errors="replace")).strip()[-300:]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {"rps": float(m.group(1)), "failed": failed,
            "non2xx": int(non2xx.group(1)) if non2xx else 0}, ""


def phase_svc(a, out, b):
    b.lo_up()
    rec = b.Recorder("svc")
    n = a.n
    nh = Hook(b, a.nethook_bin, f"{a.state}/svc")
    www = f"{a.state}/svc-www"
    os.makedirs(www, exist_ok=True)
    with open(f"{www}/index.html", "w") as f:
        f.write("ok\n")
    busybox = shutil.which("busybox")
    nh.cli("network", "create", "svcnet", "--subnet", "10.210.0.0/16")
    nh.cli("service", "create", "web", "--network", "svcnet", "--port", "80/tcp")
    vip = json.loads(nh.cli("service", "inspect", "web"))["vip4"]
    rec.notes["vip4"] = vip
    rec.notes["member_process"] = "busybox httpd -f -p 80" if busybox else "sleep (no busybox: no requests per second)"
    cs = Fakes(b)
    for i in range(n):
        cs.start(f"m{i}", [busybox, "httpd", "-f", "-p", "80", "-h", www] if busybox else ["sleep", "100000"])
        cs.start(f"p{i}", ["sleep", "100000"])  # the plain ones, n/2 per loop
    cs.wait_ready()
    member = {"nethook.network": "svcnet", "nethook.service": "web"}
    plains = iter(range(n))
    eps = {}

    def plain_sample(n_members):
        """A plain container on the same network, set up and stopped again next to the
        member setups (a bridge takes 1023 ports: N members and N plain containers at once
        would not fit). Its setup and poststop are timed at the same member count."""
        key = f"p{next(plains)}"
        ok, t, err = nh.setup(key, cs.pid(key), {"nethook.network": "svcnet"})
        rec.add(n_members, "plain_setup", ok, t, err)
        return key

    def plain_stop(key, n_members, op):
        eps.update(nh.ls())
        ok, t, err = poststop(b, nh, cs, eps, key, rec)
        rec.add(n_members, op, ok, t, err)

    t_start = b.now()
    members = []
    for i in range(n):
        key = f"m{i}"
        # Every second member is paired with a plain sample; which goes first alternates.
        sample = i % 2 == 1
        plain_first = sample and i % 4 == 3
        if plain_first:
            pk = plain_sample(i)
        ok, t, err = nh.setup(key, cs.pid(key), member)
        rec.add(i + 1, "member_setup", ok, t, err)
        if ok:
            members.append(key)
        if sample and not plain_first:
            pk = plain_sample(i + 1)
        if sample:
            plain_stop(pk, i + 1, "plain_teardown_growing")
        b.progress("svc", "setup", i, n, t_start, a.every)
    rec.notes["members_after_setup"] = len(json.loads(nh.cli("service", "inspect", "web"))["members"])
    eps = nh.ls()
    rec.notes["endpoints_after_setup"] = len(eps)

    can_ab = bool(busybox and shutil.which("ab") and members)
    rec.notes["rps"] = {} if can_ab else "skipped: needs busybox and ab (apache2-utils)"
    rec.notes["ab"] = f"ab -n {a.svc_ab_requests} -c 8 (no keep-alive), {a.svc_ab_rounds} rounds each, alternating"
    checkpoints = {n, 100, 1}
    if can_ab:
        measure_rps(a, b, rec, vip, eps[members[0]]["ipv4"].split("/")[0], n)

    eps.update(nh.ls())
    t_start = b.now()
    for j, i in enumerate(reversed(range(n))):
        ok, t, err = poststop(b, nh, cs, eps, f"m{i}", rec)
        rec.add(i + 1, "member_teardown", ok, t, err)
        if i % 2 == 0:
            plain_stop(plain_sample_quiet(nh, cs, plains, rec, i), i, "plain_teardown")
        if can_ab and i in checkpoints and i < n:
            measure_rps(a, b, rec, vip, eps[members[0]]["ipv4"].split("/")[0], i)
        b.progress("svc", "teardown", j, n, t_start, a.every)
    rec.notes["endpoints_after_teardown"] = len(nh.ls())
    rec.notes["members_after_teardown"] = len(json.loads(nh.cli("service", "inspect", "web"))["members"])
    nh.cli("service", "rm", "web")
    cs.kill_all()
    rec.dump(out)


def plain_sample_quiet(nh, cs, plains, rec, n_members):
    """A plain container set up (not timed: the setups are timed in the setup loop) for a
    plain poststop sample next to the member poststops."""
    key = f"p{next(plains)}"
    ok, _, err = nh.setup(key, cs.pid(key), {"nethook.network": "svcnet"})
    if not ok:
        rec.add(n_members, "plain_setup_for_teardown", ok, 0.0, err)
    return key


def poststop(b, nh, cs, eps, key, rec):
    """A poststop as a runtime runs it: the container is gone first (its process killed,
    its host veth removed by the kernel with the netns), then the hook, timed. The veth
    delete of a teardown with the netns alive costs ~16 ms in this VM's kernel (the floor
    rows of phase nethook) and would hide everything else."""
    cs.kill(key)
    host_if = eps.get(key, {}).get("host_interface", "none")
    if not b.wait_gone(host_if):
        rec.notes.setdefault("veth_not_gone", []).append(key)
    r = nh.teardown(key)
    # The kernel's deferred work after a teardown (the namespace's destruction, the
    # nftables transaction's release) would otherwise land in whichever op is timed next,
    # and the plain samples make the sequence uneven; every op gets the same quiet start.
    time.sleep(0.02)
    return r


def arp_table_fulls(b):
    """The kernel's count of neighbour-table-full events: one table for every namespace,
    whose statistics only the initial namespace shows (the machine's pid 1's
    net/stat/arp_cache, read through bench.py's descriptor of the machine's /proc)."""
    try:
        fd = os.open("1/net/stat/arp_cache", os.O_RDONLY, dir_fd=b.PROC_FD)
        with os.fdopen(fd) as f:
            rows = [line.split() for line in f]
        col = rows[0].index("table_fulls")
        return sum(int(r[col], 16) for r in rows[1:])
    except (OSError, ValueError):
        return 0


def measure_rps(a, b, rec, vip, direct, members):
    """Requests per second through the VIP (MEMBERS members, every one a busybox httpd)
    and direct to the first member, alternating; a round that fails keeps ab's error and
    how often the kernel's neighbour table was full meanwhile."""
    rps = {"vip": [], "direct": [], "direct_ip": direct}
    # Warm-up of both paths (neighbour entries, the first fork of each httpd).
    for url in (f"http://{direct}/", f"http://{vip}/"):
        ab_rps(url, 200, 4)
    for rnd in range(a.svc_ab_rounds):
        for target in (("direct", "vip") if rnd % 2 == 0 else ("vip", "direct")):
            fulls = arp_table_fulls(b)
            res, err = ab_rps(f"http://{direct if target == 'direct' else vip}/", a.svc_ab_requests, 8)
            got = res if res else {"error": err}
            got["neigh_table_fulls"] = arp_table_fulls(b) - fulls
            rps[target].append(got)
            log_rps(b, f"{target} ({members} members)", res, err)
    rec.notes["rps"][str(members)] = rps


def log_rps(b, target, res, err):
    if res:
        b.log(f"  svc rps {target}: {res['rps']:.0f}/s (failed {res['failed']}, non-2xx {res['non2xx']})")
    else:
        b.log(f"  svc rps {target}: ab failed: {err.splitlines()[-1] if err else '?'}")


# --------------------------------------------------------------------------------------
# dns


def dns_query(name, qid):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def ask(sock, server, name, qid):
    """One A query over UDP; (ok, ms): ok when the answer is ours, NOERROR, with a record."""
    t0 = time.perf_counter()
    sock.sendto(dns_query(name, qid), (server, 53))
    try:
        while True:
            data = sock.recv(4096)
            if struct.unpack("!H", data[:2])[0] == qid:
                break
    except socket.timeout:
        return False, (time.perf_counter() - t0) * 1000
    t = (time.perf_counter() - t0) * 1000
    flags, _, an = struct.unpack("!HHH", data[2:8])
    return (flags & 0xF) == 0 and an > 0, t


def rss_kib(pid):
    """VmRSS and VmHWM of PID, KiB."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                got[k] = int(v.split()[0])
    return got


def socket_in_netns(pid):
    """A UDP socket created inside PID's network namespace (a socket acts in the namespace
    it was made in), so queries come from a container's address like a real client's."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(fd)
        os.close(home)
    s.settimeout(2.0)
    return s


def own_resolv_conf(state, upstream):
    """This phase's own mount namespace, with a resolv.conf naming the upstream bound over
    /etc/resolv.conf: the resolver forwards to the servers it names."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    path = f"{state}/resolv.conf"
    with open(path, "w") as f:
        f.write(f"nameserver {upstream}\n")
    subprocess.run(["mount", "--bind", path, "/etc/resolv.conf"], check=True)


def start_upstream(b, cs, upstream):
    """An outside namespace behind a veth, with scripts/dns/upstream.py on UPSTREAM."""
    cs.start("outside", ["sleep", "100000"])
    cs.wait_ready()
    pid = cs.pid("outside")
    ip = lambda *args: subprocess.run(["ip", *args], check=True, capture_output=True)  # noqa: E731
    inside = lambda *args: subprocess.run(["nsenter", "-t", str(pid), "-n", *args],  # noqa: E731
                                          check=True, capture_output=True)
    ip("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", str(pid))
    ip("addr", "add", "192.0.2.1/24", "dev", "up0")
    ip("link", "set", "up0", "up")
    inside("ip", "addr", "add", f"{upstream}/24", "dev", "eth0")
    inside("ip", "link", "set", "eth0", "up")
    inside("ip", "link", "set", "lo", "up")
    p = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "python3", UPSTREAM_PY, upstream],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b.ALL_PROCS.append(p)
    time.sleep(0.5)


def resolver_pid(nh):
    try:
        with open(f"{nh.env['NETHOOK_RUN_DIR']}/dns/pid") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/stat") as f:
            # An exited resolver not yet reaped is a zombie: gone all the same.
            return None if f.read().rsplit(")", 1)[1].split()[0] == "Z" else pid
    except (OSError, ValueError, IndexError):
        return None


def phase_dns(a, out, b):
    b.lo_up()
    rec = b.Recorder("dns")
    n = a.n
    upstream = "192.0.2.53"
    nh = Hook(b, a.nethook_bin, f"{a.state}/dns")
    os.makedirs(f"{a.state}/dns", exist_ok=True)
    own_resolv_conf(f"{a.state}/dns", upstream)
    outside = Fakes(b)
    start_upstream(b, outside, upstream)
    nh.cli("network", "create", "dnsnet", "--subnet", "10.211.0.0/16", "--dns")
    gw = "10.211.0.1"
    cs = Fakes(b)
    for i in range(n):
        cs.start(f"c{i}", ["sleep", "100000"])
    cs.wait_ready()
    checkpoints = {1, max(1, n // 10), n // 2, n}
    rss = {}
    t_start = b.now()
    done = []
    rpid = None
    for i in range(n):
        key = f"c{i}"
        ok, t, err = nh.setup(key, cs.pid(key), {"nethook.network": "dnsnet", "nethook.name": f"name{i}"})
        rec.add(i + 1, "setup", ok, t, err)
        if ok:
            done.append(key)
        if i + 1 in checkpoints:
            rpid = resolver_pid(nh)
            if rpid:
                rss[i + 1] = rss_kib(rpid)
        b.progress("dns", "setup", i, n, t_start, a.every)
    rec.notes["resolver_pid"] = rpid
    rec.notes["resolver_rss_kib_by_names"] = rss
    if rpid is None:
        rec.notes["error"] = "no resolver runs after the setups"

    # Queries from inside the first container, one at a time, local and forwarded
    # alternately; forwarded names are all different so no cache could answer them.
    sock = socket_in_netns(cs.pid("c0"))
    rng = random.Random(22)
    local_ok = fwd_ok = 0
    for j in range(50):  # warm-up: ARP, the upstream's first answers
        ask(sock, gw, "name0", 60000 + j)
        ask(sock, gw, f"warm{j}.example.test", 61000 + j)
    for j in range(a.dns_queries):
        ok, t = ask(sock, gw, f"name{rng.randrange(len(done))}", (2 * j) % 65536)
        rec.add(j + 1, "query_local", ok, t, "local query failed or unanswered")
        local_ok += ok
        ok, t = ask(sock, gw, f"q{j}.example.test", (2 * j + 1) % 65536)
        rec.add(j + 1, "query_forwarded", ok, t, "forwarded query failed or unanswered")
        fwd_ok += ok
    sock.close()
    rec.notes["queries"] = {"each": a.dns_queries, "local_ok": local_ok, "forwarded_ok": fwd_ok}
    if rpid and resolver_pid(nh) == rpid:
        rec.notes["resolver_rss_kib_after_queries"] = rss_kib(rpid)

    eps = nh.ls()
    t_start = b.now()
    for j, key in enumerate(reversed(done)):
        ok, t, err = poststop(b, nh, cs, eps, key, rec)
        rec.add(len(done) - j, "teardown", ok, t, err)
        b.progress("dns", "teardown", j, len(done), t_start, a.every)
    rec.notes["endpoints_after_teardown"] = len(nh.ls())
    # The resolver exits by itself once no container of a DNS network is left.
    deadline = time.monotonic() + 5
    while rpid and resolver_pid(nh) == rpid and time.monotonic() < deadline:
        time.sleep(0.05)
    left = resolver_pid(nh)
    rec.notes["resolver_exited_after_last_teardown"] = left is None
    if left:
        os.kill(left, 9)  # ours, by its pid file
    cs.kill_all()
    outside.kill_all()
    rec.dump(out)
