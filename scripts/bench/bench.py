#!/usr/bin/env python3
"""nethook benchmark driver (run by scripts/bench.sh inside its sandbox; never directly).

Every measurement phase runs in a child process with a fresh network namespace of
its own (`unshare --net`), so the tools never see each other's bridges, veths or
firewall rules. Fake containers are `unshare --net sleep` processes. Wall times
are taken with time.perf_counter() around subprocess.run(), so they include the
process start of every binary a runtime would start, for every tool alike.

Phases (each writes RUN_DIR/<phase>.json):
  floor      veth-delete cost: RTM_DELLINK over a raw netlink socket, and `ip link del`
             as a process, for bridge-port veths whose peer sits in a live netns
  kernel     the link work of N setups alone (veth, IPv6 off, both ends up) over raw
             netlink from this process, N accumulating: how the kernel's part grows
  nethook    N setups, peak RSS, N teardowns with the container netns alive
  nethook2   N setups, then per container (reverse order): kill it, wait until
             its host veth vanished, time the poststop (netns gone)
  cni        bridge+host-local+portmap chain: N ADD, N DEL
  nhcni      nethook as a CNI plugin: N ADD (portMappings), N DEL with the netns alive
  netavark   N setup, N teardown (Debian's netavark 1.4, iptables driver)
  netavark2  N setup, N teardown (netavark 2.1 built from crates.io, nftables driver)
  conc       64 nethook setups started at once
  runc       `runc run` of a trivial container with nethook hooks vs /bin/true
  profile    strace -T -f of nethook setup/teardown at the end of the curve
  svc, dns   issue 22, services and names (opt-in): see svc_dns.py
"""

import argparse
import ctypes
import gc
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cni_tools import NethookCni  # noqa: E402
import svc_dns  # noqa: E402
CNI_PATH = "/usr/lib/cni"
NETAVARK = shutil.which("netavark") or "/usr/lib/podman/netavark"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PORT_BASE = 20000
SLEEP = "100000"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def now():
    return time.perf_counter()


def ms(t0, t1):
    return (t1 - t0) * 1000.0


# --------------------------------------------------------------------------------------
# fake containers


ALL_PROCS = []  # every fake container of this phase, killed in child_main's finally


class Containers:
    """Processes in their own network namespace, killed on exit."""

    def __init__(self):
        self.procs = {}

    def start(self, key):
        p = subprocess.Popen(["unshare", "--net", "sleep", SLEEP],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        ALL_PROCS.append(p)
        self.procs[key] = p
        return p.pid

    def wait_ready(self):
        # unshare(2) happens before exec: once /proc/PID/exe is sleep, the netns is ours.
        me = os.readlink("/proc/self/ns/net")
        for key, p in self.procs.items():
            deadline = now() + 10
            while True:
                try:
                    if os.readlink(f"/proc/{p.pid}/ns/net") != me and \
                            os.path.basename(os.readlink(f"/proc/{p.pid}/exe")) == "sleep":
                        break
                except OSError:
                    pass
                if now() > deadline:
                    raise RuntimeError(f"fake container {key} did not start")
                time.sleep(0.001)

    def kill(self, key):
        p = self.procs.pop(key, None)
        if p is not None:
            p.kill()
            p.wait()

    def kill_all(self):
        for key in list(self.procs):
            self.kill(key)


def make_containers(n, prefix):
    c = Containers()
    for i in range(n):
        c.start(f"{prefix}{i}")
    c.wait_ready()
    time.sleep(0.5)  # let the kernel finish any deferred netns work before timing
    return c


# --------------------------------------------------------------------------------------
# tools: each returns (ok, ms, stderr)


def run(argv, stdin=b"", env=None):
    t0 = now()
    r = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    t1 = now()
    return r, ms(t0, t1)


class Nethook:
    def __init__(self, bin_, state, network=None):
        self.bin = bin_
        self.env = {"NETHOOK_RUN_DIR": f"{state}/run", "NETHOOK_CONFIG_DIR": f"{state}/etc"}
        self.network = network

    def state(self, cid, pid=None, port=None):
        s = {"ociVersion": "1.0.2", "id": cid, "bundle": "/nonexistent"}
        if pid is not None:
            annotations = {"nethook.ports": f"{port}:80"}
            if self.network:
                annotations["nethook.network"] = self.network
            s.update(status="creating", pid=pid, annotations=annotations)
        else:
            s["status"] = "stopped"
        return json.dumps(s).encode()

    def setup(self, cid, pid, port, wrap=()):
        r, t = run(list(wrap) + [self.bin, "hook"], self.state(cid, pid, port), self.env)
        return r.returncode == 0, t, r.stderr.decode(errors="replace")

    def teardown(self, cid, wrap=()):
        r, t = run(list(wrap) + [self.bin, "hook"], self.state(cid), self.env)
        return r.returncode == 0, t, r.stderr.decode(errors="replace")

    def ls(self):
        r = subprocess.run([self.bin, "ls", "--json"], env=self.env, capture_output=True, check=True)
        return json.loads(r.stdout)


class Cni:
    """What a CNI runtime (libcni) does for a chain bridge -> portmap."""

    NAME = "benchnet"

    def __init__(self, state):
        self.state = state
        os.makedirs(f"{state}/ipam", exist_ok=True)
        self.results = {}
        self.bridge_conf = {
            "cniVersion": "1.0.0", "name": self.NAME, "type": "bridge",
            "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{state}/ipam"},
        }
        self.portmap_conf = {
            "cniVersion": "1.0.0", "name": self.NAME, "type": "portmap",
            "capabilities": {"portMappings": True}, "snat": True,
        }

    def env(self, cmd, cid, pid):
        return {"PATH": PATH_ENV, "CNI_COMMAND": cmd, "CNI_CONTAINERID": cid,
                "CNI_NETNS": f"/proc/{pid}/ns/net", "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH}

    def _portmap(self, port, prev):
        c = dict(self.portmap_conf)
        c["runtimeConfig"] = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}
        c["prevResult"] = prev
        return c

    def setup(self, cid, pid, port):
        t0 = now()
        r = subprocess.run([f"{CNI_PATH}/bridge"], input=json.dumps(self.bridge_conf).encode(),
                           env=self.env("ADD", cid, pid), capture_output=True)
        if r.returncode != 0:
            return False, ms(t0, now()), "bridge ADD: " + r.stdout.decode() + r.stderr.decode()
        prev = json.loads(r.stdout)
        r = subprocess.run([f"{CNI_PATH}/portmap"], input=json.dumps(self._portmap(port, prev)).encode(),
                           env=self.env("ADD", cid, pid), capture_output=True)
        t1 = now()
        if r.returncode != 0:
            return False, ms(t0, t1), "portmap ADD: " + r.stdout.decode() + r.stderr.decode()
        self.results[cid] = (json.loads(r.stdout), port)
        return True, ms(t0, t1), ""

    def teardown(self, cid, pid):
        prev, port = self.results.pop(cid)
        t0 = now()
        r1 = subprocess.run([f"{CNI_PATH}/portmap"], input=json.dumps(self._portmap(port, prev)).encode(),
                            env=self.env("DEL", cid, pid), capture_output=True)
        b = dict(self.bridge_conf)
        b["prevResult"] = prev
        r2 = subprocess.run([f"{CNI_PATH}/bridge"], input=json.dumps(b).encode(),
                            env=self.env("DEL", cid, pid), capture_output=True)
        t1 = now()
        ok = r1.returncode == 0 and r2.returncode == 0
        return ok, ms(t0, t1), (r1.stdout + r1.stderr + r2.stdout + r2.stderr).decode(errors="replace")


class Netavark:
    """netavark setup/teardown as Podman drives it. netavark does no IPAM of its own for
    host-local networks (Podman allocates in-process and passes static_ips), so the
    driver allocates addresses like Podman would; that part is not timed."""

    NET = "benchnet"

    def __init__(self, state, fw, binary=NETAVARK, tag="netavark"):
        self.bin = binary
        self.config = f"{state}/{tag}"
        os.makedirs(self.config, exist_ok=True)
        self.env = {"PATH": PATH_ENV, "NETAVARK_FW": fw}
        self.opts = {}

    def options(self, cid, i, port):
        ip = f"10.89.{(i + 2) // 256}.{(i + 2) % 256}"
        return {
            "container_id": cid, "container_name": cid,
            "port_mappings": [{"host_ip": "", "container_port": 80, "host_port": port,
                               "range": 1, "protocol": "tcp"}],
            "networks": {self.NET: {"static_ips": [ip], "interface_name": "eth0",
                                    "aliases": [cid[:12]]}},
            "network_info": {self.NET: {
                "name": self.NET, "id": "b" * 64, "driver": "bridge",
                "network_interface": "nvbench0", "created": "2024-01-01T00:00:00Z",
                "subnets": [{"subnet": "10.89.0.0/16", "gateway": "10.89.0.1"}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"}}},
        }

    def setup(self, cid, pid, port, i):
        o = json.dumps(self.options(cid, i, port)).encode()
        self.opts[cid] = o
        r, t = run([self.bin, "--config", self.config, "setup", f"/proc/{pid}/ns/net"], o, self.env)
        return r.returncode == 0, t, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")

    def teardown(self, cid, pid):
        o = self.opts.pop(cid)
        r, t = run([self.bin, "--config", self.config, "teardown", f"/proc/{pid}/ns/net"], o, self.env)
        return r.returncode == 0, t, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


# --------------------------------------------------------------------------------------
# phase helpers


def lo_up():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class Recorder:
    def __init__(self, tool):
        self.tool = tool
        self.rows = []  # (n, op, ms)
        self.failures = []
        self.notes = {}

    def add(self, n, op, ok, t, err):
        if ok:
            self.rows.append((n, op, t))
        else:
            self.failures.append({"n": n, "op": op, "ms": t, "error": err.strip()[-500:]})
            if len(self.failures) <= 3:
                log(f"  {self.tool} {op} #{n} FAILED: {err.strip()[-300:]}")

    def dump(self, path):
        with open(path, "w") as f:
            json.dump({"tool": self.tool, "rows": self.rows, "failures": self.failures,
                       "notes": self.notes}, f)


def progress(tool, op, i, n, t_start, every):
    if (i + 1) % every == 0 or i + 1 == n:
        log(f"  {tool} {op}: {i + 1}/{n}  ({now() - t_start:.0f}s)")


def budget_hit(rec, op, i, t_start, budget):
    if budget and now() - t_start > budget:
        rec.notes[f"{op}_stopped_at"] = i + 1
        log(f"  {rec.tool} {op}: time budget {budget}s used up after {i + 1} containers; stopping there")
        return True
    return False


# --------------------------------------------------------------------------------------
# raw rtnetlink, for the floors: one request, its ACK


def nlattr(typ, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, typ) + payload + b"\0" * (-length % 4)


def rtnl_request(sock, typ, flags, body, seq):
    NLM_F_REQUEST, NLM_F_ACK = 1, 4
    sock.send(struct.pack("=IHHII", 16 + len(body), typ, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body)
    data = sock.recv(65536)
    _, t, _, _, _ = struct.unpack("=IHHII", data[:16])
    return struct.unpack("=i", data[16:20])[0] == 0 if t == 2 else False


# --------------------------------------------------------------------------------------
# floor: RTM_DELLINK of a veth whose peer is in a live netns


def rtnl_dellink(sock, ifindex, seq):
    RTM_DELLINK = 17
    t0 = now()
    ok = rtnl_request(sock, RTM_DELLINK, 0, struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, 0, 0), seq)
    return ok, ms(t0, now())


def phase_floor(a, out):
    lo_up()
    rec = Recorder("floor")
    k = a.floor_n
    ip = lambda *args: subprocess.run(["ip", *args], check=True, capture_output=True)  # noqa: E731
    ip("link", "add", "flr0", "type", "bridge")
    ip("addr", "add", "10.66.0.1/16", "dev", "flr0")
    ip("link", "set", "flr0", "up")
    cs = make_containers(2 * k, "f")
    pids = [p.pid for p in cs.procs.values()]
    for i, pid in enumerate(pids):
        ip("link", "add", f"flr{i + 1}", "type", "veth", "peer", "name", "eth0", "netns", str(pid))
        ip("link", "set", f"flr{i + 1}", "master", "flr0", "up")
        subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "link", "set", "eth0", "up"],
                       check=True, capture_output=True)
    time.sleep(0.5)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.bind((0, 0))
    for i in range(k):
        idx = socket.if_nametoindex(f"flr{i + 1}")
        ok, t = rtnl_dellink(sock, idx, i + 1)
        rec.add(i + 1, "rtm_dellink", ok, t, "RTM_DELLINK failed")
    for i in range(k, 2 * k):
        r, t = run(["ip", "link", "del", f"flr{i + 1}"])
        rec.add(i + 1 - k, "ip_link_del", r.returncode == 0, t, r.stderr.decode())
    cs.kill_all()
    # nftables element add/delete, one `nft` process each. Deleting an element leaves a
    # transaction for the kernel's destroy work (freed after an RCU grace period), and the
    # next release of any nfnetlink socket waits for it (nft_rcv_nl_event -> flush_work):
    # delete − add ≈ that wait, a floor for every tool that deletes nftables state.
    if shutil.which("nft"):
        subprocess.run(["nft", "-f", "-"], check=True, input=b"""
            table inet flr {
              map p { type inet_proto . inet_service : ipv4_addr . inet_service; }
              chain pre { type nat hook prerouting priority dstnat; dnat ip to meta l4proto . th dport map @p; }
            }""")
        for i in range(k):
            r, t = run(["nft", "add", "element", "inet", "flr", "p", f"{{ tcp . {PORT_BASE + i} : 10.66.0.{i + 2} . 80 }}"])
            rec.add(i + 1, "nft_add_element", r.returncode == 0, t, r.stderr.decode())
        for i in range(k):
            r, t = run(["nft", "delete", "element", "inet", "flr", "p", f"{{ tcp . {PORT_BASE + i} }}"])
            rec.add(i + 1, "nft_delete_element", r.returncode == 0, t, r.stderr.decode())
    for argv in (["/bin/true"], [a.nethook_bin, "--version"]):
        for i in range(k):
            r, t = run(argv)
            rec.add(i + 1, "process_" + os.path.basename(argv[0]), r.returncode == 0, t, "")
    rec.dump(out)


# --------------------------------------------------------------------------------------
# kernel: how the kernel's own part of a setup grows with N


def phase_kernel(a, out):
    """The link work of a nethook setup, done by a long-lived process over raw netlink
    sockets (no process start, no state, no nftables, no addresses), with N containers
    accumulating on one bridge (multicast snooping off, as nethook makes it): the veth
    created with its peer inside the container's netns, the bridge as master and the host
    end up, IPv6 off on the host end, hairpin mode on through the bridge, the container end
    up. Its growth from N≤20 to the last 20 is the kernel's, and bounds what
    any tool that wires a veth to a bridge can reach."""
    lo_up()
    rec = Recorder("floor")
    RTM_NEWLINK, RTM_SETLINK, NLM_F_CREATE, NLM_F_EXCL = 16, 19, 0x400, 0x200
    IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_PID = 1, 3, 10, 12, 18, 19
    IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 31, 32
    IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
    VETH_INFO_PEER, IFLA_BRPORT_MODE, IFF_UP, CLONE_NEWNET, NLA_F_NESTED = 1, 4, 1, 0x40000000, 0x8000
    ifinfo = lambda index=0, flags=0, change=0, family=socket.AF_UNSPEC: struct.pack(  # noqa: E731
        "=BxHiII", family, 0, index, flags, change)
    u32 = lambda v: struct.pack("=I", v)  # noqa: E731
    one_queue = nlattr(IFLA_NUM_TX_QUEUES, u32(1)) + nlattr(IFLA_NUM_RX_QUEUES, u32(1))
    hairpin = nlattr(IFLA_PROTINFO | NLA_F_NESTED, nlattr(IFLA_BRPORT_MODE, b"\1"))
    subprocess.run(["ip", "link", "add", "kfl0", "type", "bridge", "mcast_snooping", "0"], check=True)
    subprocess.run(["ip", "link", "set", "kfl0", "up"], check=True)
    bridge = socket.if_nametoindex("kfl0")
    cs = make_containers(a.n, "k")
    host = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    host.bind((0, 0))
    # One socket inside each container's netns, opened before timing (a socket acts in the
    # namespace it was created in).
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    inside = []
    for proc in cs.procs.values():
        fd = os.open(f"/proc/{proc.pid}/ns/net", os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        sk.bind((0, 0))
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(fd)
        inside.append(sk)
    os.close(home)
    t_start = now()
    for i, (proc, sk) in enumerate(zip(cs.procs.values(), inside)):
        name = f"kfl{i + 1}"
        peer = (ifinfo() + nlattr(IFLA_IFNAME, b"eth0\0") + nlattr(IFLA_NET_NS_PID, u32(proc.pid))
                + nlattr(IFLA_ADDRESS, bytes([2, 0x4E, 10, 0x42, i >> 8, i & 0xFF])) + one_queue)
        linkinfo = nlattr(IFLA_INFO_KIND, b"veth\0") + nlattr(IFLA_INFO_DATA, nlattr(VETH_INFO_PEER, peer))
        create = (ifinfo(0, IFF_UP, IFF_UP) + nlattr(IFLA_IFNAME, name.encode() + b"\0")
                  + nlattr(IFLA_MASTER, u32(bridge)) + one_queue + nlattr(IFLA_LINKINFO, linkinfo))
        t0 = now()
        ok = rtnl_request(host, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, create, 2 * i + 1)
        if ok:
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                f.write("1")
            port = ifinfo(socket.if_nametoindex(name), family=socket.AF_BRIDGE)
            ok = rtnl_request(host, RTM_SETLINK, 0, port + hairpin, 2 * i + 2)
        ok = ok and rtnl_request(sk, RTM_NEWLINK, 0, ifinfo(0, IFF_UP, IFF_UP) + nlattr(IFLA_IFNAME, b"eth0\0"), 1)
        rec.add(i + 1, "veth_add_up", ok, ms(t0, now()), f"creating or raising {name} failed")
        progress("kernel", "veth_add_up", i, a.n, t_start, a.every)
        # A hook's process start and exit leave the kernel ~3 ms for the work it defers
        # (linkwatch, under the rtnl lock); without that the next op would be timed with it.
        time.sleep(0.003)
    for sk in inside:
        sk.close()
    cs.kill_all()
    rec.dump(out)


# --------------------------------------------------------------------------------------
# nethook


def host_veths(nh):
    return {e["id"]: e["host_interface"] for e in nh.ls()}


def link_exists(ifname):
    # Not /sys/class/net: sysfs shows the namespace of whoever mounted it (the host).
    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False


def wait_gone(ifname, timeout=10.0):
    deadline = now() + timeout
    while link_exists(ifname):
        if now() > deadline:
            return False
        time.sleep(0.0005)
    return True


# Two of every FLOOR_EVERY teardowns of the netns-alive run delete the container's veth
# another way instead, timed, as the veth-delete floor at that N (50 samples each at
# N=1000): one RTM_DELLINK over this process's raw netlink socket, and one `ip link del`,
# a process that does nothing but the delete, started and timed like every tool.
FLOOR_EVERY = 20


def phase_nethook(a, out, gone, baseline=False):
    lo_up()
    tool = "baseline" if baseline else "nethook"
    rec = Recorder(tool)
    state = ("base" if baseline else "nethook") + ("2" if gone else "")
    nh = Nethook(a.baseline_bin if baseline else a.nethook_bin, f"{a.state}/{state}")
    n = a.n
    cs = make_containers(n, "nh")
    keys = list(cs.procs)
    setup_op = "setup_run2" if gone else "setup"
    t_start = now()
    done = []
    for i, key in enumerate(keys):
        ok, t, err = nh.setup(key, cs.procs[key].pid, PORT_BASE + i)
        rec.add(i + 1, setup_op, ok, t, err)
        if ok:
            done.append(key)
        progress(tool, setup_op, i, n, t_start, a.every)
    eps = host_veths(nh)
    rec.notes["endpoints_after_setup"] = len(eps)
    rec.notes["distinct_ips"] = len({e["ipv4"] for e in nh.ls()})

    if not gone:
        # Peak RSS of the hook, measured with the full state of N containers in place.
        extra = make_containers(a.rss_runs, "rss")
        rss_setup, rss_teardown = [], []
        for j, key in enumerate(list(extra.procs)):
            tf = f"{a.state}/time.out"
            ok, _, err = nh.setup(key, extra.procs[key].pid, PORT_BASE + n + j,
                                  wrap=("/usr/bin/time", "-f", "%M", "-o", tf))
            if ok:
                rss_setup.append(int(open(tf).read().split()[-1]))
            ok, _, err = nh.teardown(key, wrap=("/usr/bin/time", "-f", "%M", "-o", tf))
            if ok:
                rss_teardown.append(int(open(tf).read().split()[-1]))
        extra.kill_all()
        time.sleep(2)  # let the kernel tear those netns down before anything else is timed
        rec.notes["rss_kib_setup"] = rss_setup
        rec.notes["rss_kib_teardown"] = rss_teardown
        if a.profile:
            profile_nethook(a, nh, n)

    # The floor measured in the floor phase has a few dozen ports on its bridge and another
    # moment of the machine; deleting a port costs the kernel more on a bridge with 1000.
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.bind((0, 0))
    # Those floor samples leave nethook's record, address and elements behind; a teardown
    # of them right away would put its own nftables release next to the next timed
    # teardown (see sys::process::close_after_exit), so they are forgotten after the loop.
    floored = []
    t_start = now()
    for i, key in enumerate(reversed(done)):
        nth = len(done) - i
        floor_op = {FLOOR_EVERY // 2: "rtm_dellink_same_n", 0: "ip_link_del_same_n"}.get(i % FLOOR_EVERY)
        if not gone and not baseline and i > 0 and floor_op and key in eps:
            if floor_op == "rtm_dellink_same_n":
                try:
                    ok, t = rtnl_dellink(sock, socket.if_nametoindex(eps[key]), nth)
                except OSError:
                    ok, t = False, 0.0
                err = "RTM_DELLINK failed"
            else:
                r, t = run(["ip", "link", "del", eps[key]])
                ok, err = r.returncode == 0, r.stderr.decode(errors="replace")
            rec.add(nth, floor_op, ok, t, err)
            floored.append(key)
            continue
        if gone:
            cs.kill(key)
            t0 = now()
            if not wait_gone(eps.get(key, "none")):
                rec.notes.setdefault("veth_not_gone", []).append(key)
            rec.notes.setdefault("kernel_free_wait_ms", []).append(round(ms(t0, now()), 2))
            ok, t, err = nh.teardown(key)
            rec.add(nth, "teardown_gone", ok, t, err)
        else:
            ok, t, err = nh.teardown(key)
            rec.add(nth, "teardown_alive", ok, t, err)
        progress(tool, "teardown_gone" if gone else "teardown_alive", i, len(done), t_start, a.every)
    for key in floored:
        nh.teardown(key)
    rec.notes["endpoints_after_teardown"] = len(nh.ls())
    cs.kill_all()
    if gone and a.burst:
        teardown_burst(a, nh, rec)
    rec.dump(out)


def teardown_burst(a, nh, rec):
    """Poststop of many stopped containers one right after the other (`podman stop -a`, a
    host going down): the namespaces are all gone first, then the hooks run back to back, so
    each one's nftables release meets the next one's commit (see
    sys::process::close_after_exit). Not a target; the loop above waits for each
    namespace, so it cannot show this."""
    n = min(a.burst, a.n)
    cs = make_containers(n, "burst")
    keys = list(cs.procs)
    for i, key in enumerate(keys):
        ok, _, err = nh.setup(key, cs.procs[key].pid, PORT_BASE + i)
        if not ok:
            rec.add(i + 1, "setup_burst", ok, 0.0, err)
    eps = host_veths(nh)
    cs.kill_all()
    for key in keys:
        if not wait_gone(eps.get(key, "none"), 60):
            rec.notes.setdefault("veth_not_gone", []).append(key)
    settle()
    for i, key in enumerate(reversed(keys)):
        ok, t, err = nh.teardown(key)
        rec.add(n - i, "teardown_gone_burst", ok, t, err)
    rec.notes["endpoints_after_burst"] = len(nh.ls())


def profile_nethook(a, nh, n):
    """strace -T -f of a few setups/teardowns with N containers in place."""
    if not shutil.which("strace"):
        return
    pdir = f"{a.run_dir}/profile"
    os.makedirs(pdir, exist_ok=True)
    extra = make_containers(3, "prof")
    for j, key in enumerate(list(extra.procs)):
        wrap = ("strace", "-f", "-T", "-tt", "-o", f"{pdir}/setup-{j}.strace")
        nh.setup(key, extra.procs[key].pid, PORT_BASE + n + 100 + j, wrap=wrap)
        wrap = ("strace", "-f", "-T", "-tt", "-o", f"{pdir}/teardown_alive-{j}.strace")
        nh.teardown(key, wrap=wrap)
    extra.kill_all()
    time.sleep(2)


# --------------------------------------------------------------------------------------
# peers


def phase_peer(a, out, name):
    lo_up()
    rec = Recorder(name)
    if name == "cni":
        tool = Cni(f"{a.state}/cni")
        rec.notes["portmap_backend"] = "iptables (" + os.path.basename(os.path.realpath(shutil.which("iptables") or "?")) + ")"
    elif name == "nhcni":
        tool = NethookCni(a.nethook_bin, f"{a.state}/nhcni")
    elif name == "netavark2":
        tool = Netavark(f"{a.state}", "nftables", a.netavark2_bin, "netavark2")
        r = subprocess.run([a.netavark2_bin, "--version"], capture_output=True)
        rec.notes["version"] = r.stdout.decode(errors="replace").strip()
        rec.notes["firewall_driver"] = "nftables"
    else:
        fw = "iptables"
        tool = Netavark(f"{a.state}", fw)
        rec.notes["firewall_driver"] = fw + " (" + os.path.basename(os.path.realpath(shutil.which("iptables") or "?")) + ")"
    n = a.n
    cs = make_containers(n, "c")
    keys = list(cs.procs)
    t_start = now()
    done = []
    for i, key in enumerate(keys):
        pid = cs.procs[key].pid
        if name in ("cni", "nhcni"):
            ok, t, err = tool.setup(key, pid, PORT_BASE + i)
        else:
            ok, t, err = tool.setup(key, pid, PORT_BASE + i, i)
        rec.add(i + 1, "setup", ok, t, err)
        if ok:
            done.append(key)
        progress(name, "setup", i, n, t_start, a.every)
        if budget_hit(rec, "setup", i, t_start, a.peer_budget):
            break
    rec.notes["reached_n"] = len(done)
    if name == "netavark2":
        # Proof that the nftables driver did the work: its table, and no iptables NAT rule.
        r = subprocess.run(["nft", "list", "tables"], capture_output=True)
        rec.notes["nft_tables"] = r.stdout.decode(errors="replace").split("\n")[:-1]
    if name == "nhcni":
        rec.notes["endpoints_after_setup"] = tool.count()
    t_start = now()
    for i, key in enumerate(reversed(done)):
        ok, t, err = tool.teardown(key, cs.procs[key].pid)
        rec.add(len(done) - i, "teardown_alive", ok, t, err)
        progress(name, "teardown_alive", i, len(done), t_start, a.every)
    if name == "nhcni":
        rec.notes["endpoints_after_teardown"] = tool.count()
    cs.kill_all()
    rec.dump(out)


# --------------------------------------------------------------------------------------
# 64 at once


def phase_conc(a, out):
    lo_up()
    rec = Recorder("conc")
    k = a.conc
    nh = Nethook(a.nethook_bin, f"{a.state}/conc")
    cs = make_containers(k, "cc")
    keys = list(cs.procs)
    t0 = now()
    procs = []
    for i, key in enumerate(keys):
        p = subprocess.Popen([nh.bin, "hook"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=nh.env)
        procs.append(p)
    # Write every stdin only once all are started, so they all race for the lock.
    for i, (key, p) in enumerate(zip(keys, procs)):
        p.stdin.write(nh.state(key, cs.procs[key].pid, PORT_BASE + i))
        p.stdin.close()
    errs = []
    for p in procs:
        err = p.stderr.read()
        if p.wait() != 0:
            errs.append(err.decode(errors="replace").strip())
    t1 = now()
    eps = nh.ls()
    rec.notes.update(
        started=k, succeeded=k - len(errs), wall_ms=ms(t0, t1), errors=errs[:5],
        endpoints=len(eps), distinct_ips=len({e["ipv4"] for e in eps}),
        links=sum(1 for e in eps if link_exists(e["host_interface"])))
    for key in keys:
        nh.teardown(key)
    rec.notes["left_after_teardown"] = len(nh.ls())
    cs.kill_all()
    rec.dump(out)


# --------------------------------------------------------------------------------------
# runc


def make_bundle(path, rootfs, hook_path, hook_args, hook_env):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["runc", "spec"], cwd=path, check=True, capture_output=True)
    with open(f"{path}/config.json") as f:
        spec = json.load(f)
    spec["process"]["args"] = ["true"]
    spec["process"]["terminal"] = False
    spec["root"] = {"path": rootfs, "readonly": True}
    spec["annotations"] = {"nethook.ports": "18080:80"}
    ns = spec["linux"].setdefault("namespaces", [])
    if not any(x.get("type") == "network" for x in ns):
        ns.append({"type": "network"})
    for x in ns:
        if x.get("type") == "network":
            x.pop("path", None)
    hook = {"path": hook_path, "args": hook_args, "env": hook_env}
    spec["hooks"] = {"createRuntime": [hook], "poststop": [hook]}
    with open(f"{path}/config.json", "w") as f:
        json.dump(spec, f)


def phase_runc(a, out):
    lo_up()
    rec = Recorder("runc")
    base = f"{a.state}/runc"
    rootfs = f"{base}/rootfs"
    os.makedirs(f"{rootfs}/bin", exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(f"{rootfs}/{d}", exist_ok=True)
    bb = shutil.which("busybox")
    shutil.copy(bb, f"{rootfs}/bin/busybox")
    os.symlink("busybox", f"{rootfs}/bin/true")
    st = f"{a.state}/runc-nethook"
    env = [f"NETHOOK_RUN_DIR={st}/run", f"NETHOOK_CONFIG_DIR={st}/etc"]
    make_bundle(f"{base}/b-nethook", rootfs, a.nethook_bin, ["nethook", "hook"], env)
    make_bundle(f"{base}/b-noop", rootfs, "/bin/true", ["true"], [])
    root = f"{base}/root"
    times = {"nethook": [], "noop": []}
    errs = []
    for i in range(a.runc_runs + 2):  # 2 warm-up rounds, not recorded
        for variant in ("noop", "nethook") if i % 2 == 0 else ("nethook", "noop"):
            cid = f"r{i}{variant}"
            r, t = run(["runc", "--root", root, "run", "--bundle", f"{base}/b-{variant}", cid],
                       env={"PATH": PATH_ENV})
            if r.returncode != 0:
                errs.append(f"{variant}: {r.stderr.decode(errors='replace').strip()[-300:]}")
                subprocess.run(["runc", "--root", root, "delete", "-f", cid], capture_output=True)
                continue
            if i >= 2:
                times[variant].append(t)
                rec.rows.append((i - 1, f"runc_{variant}", t))
    nh = Nethook(a.nethook_bin, st)
    rec.notes["endpoints_left"] = len(nh.ls()) if os.path.isdir(f"{st}/run") else 0
    rec.notes["errors"] = errs[:5]
    rec.dump(out)


# --------------------------------------------------------------------------------------
# orchestration


def phase_routed(a, out):
    """nethook's routed driver: 2×N containers (2000 by default) on one routed network, each
    with a published port, then the usual poststop (namespace gone first)."""
    # A host without any global IPv4 address makes the kernel walk every device for a
    # source address at each route add (a sandbox artifact: real hosts have an uplink).
    lo_up()
    subprocess.run(["ip", "addr", "add", "192.0.2.250/32", "dev", "lo"], check=True)
    phase_network(a, out, "routed", "flat", ["--subnet", "10.200.0.0/20", "--driver", "routed"],
                  a.routed_n or 2 * a.n, "rt")


def phase_dual(a, out):
    """A dual-stack bridge network (issue 21): N containers, each with a port published over
    both families, then the usual poststop; compared with phase nethook's IPv4-only setup."""
    lo_up()
    phase_network(a, out, "dual", "dual", ["--subnet", "10.201.0.0/16", "--subnet6", "fd00:201::/64"],
                  a.n, "ds")


def phase_network(a, out, phase, network, create_args, n, prefix):
    """N containers on one network made with `network create NETWORK CREATE_ARGS`, each with
    a published port, set up in turn, then torn down after their namespace is gone."""
    rec = Recorder(phase)
    nh = Nethook(a.nethook_bin, f"{a.state}/{phase}", network=network)
    subprocess.run([nh.bin, "network", "create", network, *create_args],
                   env=nh.env, check=True, capture_output=True)
    cs = make_containers(n, prefix)
    keys = list(cs.procs)
    t_start = now()
    done = []
    for i, key in enumerate(keys):
        ok, t, err = nh.setup(key, cs.procs[key].pid, PORT_BASE + i)
        rec.add(i + 1, "setup", ok, t, err)
        if ok:
            done.append(key)
        progress(phase, "setup", i, n, t_start, a.every)
    eps = host_veths(nh)
    rec.notes["endpoints_after_setup"] = len(eps)
    t_start = now()
    for i, key in enumerate(reversed(done)):
        cs.kill(key)
        wait_gone(eps.get(key, "none"))
        ok, t, err = nh.teardown(key)
        rec.add(len(done) - i, "teardown_gone", ok, t, err)
        progress(phase, "teardown_gone", i, len(done), t_start, a.every)
    rec.notes["endpoints_after_teardown"] = len(nh.ls())
    cs.kill_all()
    rec.dump(out)


PHASES = {
    "routed": phase_routed,
    "dual": phase_dual,
    "floor": phase_floor,
    "kernel": phase_kernel,
    "nethook": lambda a, o: phase_nethook(a, o, gone=False),
    "nethook2": lambda a, o: phase_nethook(a, o, gone=True),
    # The same two phases with another nethook binary (--baseline-bin), to compare two
    # builds in one run: the VM's speed moves between runs more than a change costs.
    "base": lambda a, o: phase_nethook(a, o, gone=False, baseline=True),
    "base2": lambda a, o: phase_nethook(a, o, gone=True, baseline=True),
    "cni": lambda a, o: phase_peer(a, o, "cni"),
    "netavark": lambda a, o: phase_peer(a, o, "netavark"),
    "nhcni": lambda a, o: phase_peer(a, o, "nhcni"),
    "netavark2": lambda a, o: phase_peer(a, o, "netavark2"),
    "conc": phase_conc,
    "runc": phase_runc,
    # Issue 22 (scripts/bench/svc_dns.py): services and names.
    "svc": lambda a, o: svc_dns.phase_svc(a, o, sys.modules[__name__]),
    "dns": lambda a, o: svc_dns.phase_dns(a, o, sys.modules[__name__]),
}


def child_main(a):
    gc.disable()
    out = f"{a.run_dir}/{a.phase}.json"
    try:
        PHASES[a.phase](a, out)
    finally:
        # Whatever happened, no fake container outlives its phase (the sandbox's pid
        # namespace is the second line of defence).
        for p in ALL_PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()


# The sandbox's /proc shows the sandbox's processes only, and kernel workers are not among
# them: bench.sh passes a descriptor of the machine's /proc for looking at those (run
# directly, this process's own /proc is all there is).
HOST_PROC_FD = int(os.environ["NETHOOK_BENCH_HOST_PROC_FD"]) if os.environ.get("NETHOOK_BENCH_HOST_PROC_FD") else None
PROC_FD = HOST_PROC_FD if HOST_PROC_FD is not None else os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)


def netns_cleanup_running():
    """Whether a kernel worker is destroying network namespaces right now (a worker's name
    carries the workqueue it is running, `kworker/u8:2+netns`)."""
    for pid in os.listdir(PROC_FD):
        if pid.isdigit():
            try:
                fd = os.open(f"{pid}/comm", os.O_RDONLY, dir_fd=PROC_FD)
                try:
                    if os.read(fd, 64).decode(errors="replace").rstrip().endswith("+netns"):
                        return True
                finally:
                    os.close(fd)
            except OSError:
                pass
    return False


def settle(limit=180):
    """Waits until the namespaces a previous phase left behind are destroyed: the kernel
    does that on a workqueue, in batches, for seconds after their processes die (with
    their veths: unregistering, RCU waits under the rtnl lock), and would otherwise be
    timed as part of the next phase. Done once no worker has been at it for 2 s."""
    t0 = now()
    quiet_since = now()
    while now() - t0 < limit and now() - quiet_since < 2:
        time.sleep(0.1)
        if netns_cleanup_running():
            quiet_since = now()
    if now() - t0 > 3:
        log(f"   (waited {now() - t0:.0f}s for the kernel to destroy the previous phase's namespaces)")


def run_phase(a, phase, argv):
    log(f"== phase {phase}")
    t0 = now()
    r = subprocess.run(["unshare", "--net", "--", sys.executable, os.path.abspath(__file__),
                        "--phase", phase] + argv,
                       pass_fds=() if HOST_PROC_FD is None else (HOST_PROC_FD,))
    log(f"== phase {phase}: {'ok' if r.returncode == 0 else 'rc=%d' % r.returncode} ({now() - t0:.0f}s)")
    return r.returncode


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--state", default=None)
    p.add_argument("--docs", default=None, help="write bench.csv/bench.png here")
    p.add_argument("--nethook-bin", required=True)
    p.add_argument("--baseline-bin", default=None,
                   help="another nethook binary, run in phases base/base2 beside nethook/nethook2")
    p.add_argument("--phases", default="floor,kernel,nethook,nethook2,routed,dual,nhcni,cni,netavark,netavark2,conc,runc")
    p.add_argument("--routed-n", type=int, default=0, help="containers of the routed phase (0 = 2×N)")
    p.add_argument("--netavark2-bin", default=None, help="netavark 2.1 (phase netavark2)")
    p.add_argument("--peer-budget", type=float, default=200, help="seconds per peer setup loop (0 = none)")
    p.add_argument("--floor-n", type=int, default=40)
    p.add_argument("--rss-runs", type=int, default=5)
    p.add_argument("--conc", type=int, default=64)
    p.add_argument("--burst", type=int, default=300, help="containers in the poststop burst (0 = none)")
    p.add_argument("--runc-runs", type=int, default=150,
                   help="runc runs per variant; runc alone varies by ±5 ms from run to run, so the median of 40 moved the overhead by ±2 ms")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--svc-ab-requests", type=int, default=5000, help="ab requests per round (phase svc)")
    p.add_argument("--svc-ab-rounds", type=int, default=3, help="ab rounds per target, VIP and direct (phase svc)")
    p.add_argument("--dns-queries", type=int, default=2000, help="queries of each kind (phase dns)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--skip", default="", help="phases skipped (peer unavailable), with reasons: name=reason;...")
    p.add_argument("--phase", default=None)
    a = p.parse_args()
    if a.quick and a.n == 1000:
        a.n = 50
    # State on tmpfs, like /run/nethook in production (bench.sh mounts a tmpfs on /run in
    # the sandbox): on ext4 every temp file + rename costs ~1 ms of inode allocation.
    a.state = a.state or ("/run/nethook-bench" if os.environ.get("NETHOOK_BENCH_IN_SANDBOX") == "1"
                          else f"{a.run_dir}/state")
    if a.phase:
        return child_main(a)
    if a.baseline_bin and "base" not in a.phases:
        # Each baseline phase right before its nethook phase, so both see the same moment.
        a.phases = a.phases.replace("nethook2", "base2,nethook2")
        a.phases = ",".join("base,nethook" if ph == "nethook" else ph for ph in a.phases.split(","))

    os.makedirs(a.run_dir, exist_ok=True)
    os.makedirs(a.state, exist_ok=True)
    forward = ["--n", str(a.n), "--run-dir", a.run_dir, "--state", a.state,
               "--nethook-bin", a.nethook_bin] + (["--baseline-bin", a.baseline_bin] if a.baseline_bin else []) + [
               "--floor-n", str(a.floor_n),
               "--rss-runs", str(a.rss_runs), "--conc", str(a.conc), "--burst", str(a.burst),
               "--runc-runs", str(a.runc_runs), "--every", str(a.every), "--routed-n", str(a.routed_n),
               "--svc-ab-requests", str(a.svc_ab_requests), "--svc-ab-rounds", str(a.svc_ab_rounds),
               "--dns-queries", str(a.dns_queries),
               "--peer-budget", str(a.peer_budget)] + (["--profile"] if a.profile else []) + (
               ["--netavark2-bin", a.netavark2_bin] if a.netavark2_bin else [])
    skipped = dict(x.split("=", 1) for x in a.skip.split(";") if "=" in x)
    t0 = now()
    for ph in a.phases.split(","):
        if ph in skipped:
            log(f"== phase {ph}: skipped ({skipped[ph]})")
            continue
        settle()
        run_phase(a, ph, forward)
    log(f"== all phases: {now() - t0:.0f}s")
    with open(f"{a.run_dir}/meta.json", "w") as f:
        json.dump({"n": a.n, "skipped": skipped, "wall_s": now() - t0}, f)
    r = subprocess.run([sys.executable, f"{HERE}/report.py", a.run_dir] +
                       (["--docs", a.docs] if a.docs else []))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main() or 0)
