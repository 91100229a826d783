"""The CNI-era tools of the benchmark (imported by bench.py): nethook driven as a CNI
plugin, and netavark 2.1 with its nftables driver.

Both are timed like every other tool: wall time around subprocess.run() of the
binary a runtime would start, stdin written and stdout read in full.
"""

import json
import os
import subprocess
import time

PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _now():
    return time.perf_counter()


def _ms(t0, t1):
    return (t1 - t0) * 1000.0


class NethookCni:
    """nethook as a CNI plugin, called the way libcni calls the first plugin of a
    conflist: ADD with runtimeConfig.portMappings (the capability), DEL with the ADD's
    result as prevResult and the container's netns still alive, as kubelet calls it
    (the pod sandbox is torn down while its netns exists). Its own network, defined by
    `subnet` on first use, with state under the phase's directory."""

    NAME = "benchcni"

    def __init__(self, bin_, state, subnet="10.90.0.0/16"):
        self.bin = bin_
        self.results = {}
        self.conf = {
            "cniVersion": "1.0.0", "name": self.NAME, "type": "nethook",
            "network": self.NAME, "subnet": subnet,
            "runDir": f"{state}/run", "configDir": f"{state}/etc",
            "capabilities": {"portMappings": True},
        }

    def env(self, cmd, cid, pid):
        return {"PATH": PATH_ENV, "CNI_COMMAND": cmd, "CNI_CONTAINERID": cid,
                "CNI_NETNS": f"/proc/{pid}/ns/net", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}

    def setup(self, cid, pid, port):
        c = dict(self.conf)
        c["runtimeConfig"] = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}
        t0 = _now()
        r = subprocess.run([self.bin], input=json.dumps(c).encode(), env=self.env("ADD", cid, pid),
                           capture_output=True)
        t1 = _now()
        if r.returncode != 0:
            return False, _ms(t0, t1), "ADD: " + r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        self.results[cid] = (json.loads(r.stdout), port)
        return True, _ms(t0, t1), ""

    def teardown(self, cid, pid):
        prev, port = self.results.pop(cid)
        c = dict(self.conf)
        c["runtimeConfig"] = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}
        c["prevResult"] = prev
        t0 = _now()
        r = subprocess.run([self.bin], input=json.dumps(c).encode(), env=self.env("DEL", cid, pid),
                           capture_output=True)
        t1 = _now()
        return r.returncode == 0, _ms(t0, t1), (r.stdout + r.stderr).decode(errors="replace")

    def count(self):
        """Attachments `nethook ls` still lists (every DEL must have removed its own)."""
        env = {"PATH": PATH_ENV, "NETHOOK_RUN_DIR": self.conf["runDir"],
               "NETHOOK_CONFIG_DIR": self.conf["configDir"]}
        if not os.path.isdir(self.conf["runDir"]):
            return 0
        r = subprocess.run([self.bin, "ls", "--json"], env=env, capture_output=True)
        return len(json.loads(r.stdout)) if r.returncode == 0 else -1
