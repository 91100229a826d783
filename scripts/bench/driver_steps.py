#!/usr/bin/env python3
"""Step timings (NETHOOK_TIMING=1) of setups on a bridge network and on a routed network,
alternating, in a throwaway namespace: what each driver's steps cost, side by side.

    sudo unshare --net --mount python3 scripts/bench/driver_steps.py BINARY [ROUNDS]
"""
import subprocess, os, sys, json, re, statistics, tempfile, time
B=sys.argv[1]; N=int(sys.argv[2]) if len(sys.argv) > 2 else 40
subprocess.run("mount --make-rprivate / && ip link set lo up && ip addr add 192.0.2.250/32 dev lo", shell=True, check=True)
d=tempfile.mkdtemp(); subprocess.run(["mount","-t","tmpfs","tmpfs",d],check=True)
env={"NETHOOK_RUN_DIR":d+"/run","NETHOOK_CONFIG_DIR":d+"/etc","NETHOOK_TIMING":"1"}
subprocess.run([B,"network","create","flat","--subnet","10.200.0.0/20","--driver","routed"],env=env,check=True,capture_output=True)
steps={"bridge":{}, "routed":{}}
procs=[]
for i in range(N):
    for kind in ("bridge","routed"):
        p=subprocess.Popen(["unshare","--net","sleep","600"]); procs.append(p)
        me=os.readlink("/proc/self/ns/net")
        while os.readlink(f"/proc/{p.pid}/ns/net")==me: time.sleep(0.001)
        ann={"nethook.ports":f"{20000+2*i+(kind=='routed')}:80"}
        if kind=="routed": ann["nethook.network"]="flat"
        st=json.dumps({"ociVersion":"1.0.2","id":f"{kind}-{i}","status":"creating","pid":p.pid,"bundle":"/x","annotations":ann})
        r=subprocess.run([B,"hook"],input=st.encode(),env=env,capture_output=True)
        m=re.search(r"timing setup: (.*)", r.stderr.decode())
        for part in m.group(1).split(", "):
            k,v=part.rsplit(" ",1); steps[kind].setdefault(k,[]).append(float(v[:-2]))
for kind in steps:
    print(kind, ", ".join(f"{k} {statistics.median(v):.2f}" for k,v in steps[kind].items()))
for p in procs: p.kill()
