#!/usr/bin/env python3
"""Plot bench.csv (N,tool,op,ms) as setup and teardown curves vs N.

usage: plot.py bench.csv bench.png
Points are every single operation; lines are a rolling median over 25 containers.
The veth-delete floors are the dashed teardown curves (samples taken among nethook's
teardowns, at the same N: `ip link del`, and RTM_DELLINK from the benchmark's own process);
without those, the floor phase's RTM_DELLINK median is a dotted line.
"""

import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    ("nethook", "setup"): ("nethook", "tab:green"),
    ("cni", "setup"): ("CNI bridge+portmap", "tab:blue"),
    ("netavark", "setup"): ("netavark 1.4 (iptables)", "tab:orange"),
    ("netavark2", "setup"): ("netavark 2.1 (nftables)", "tab:red"),
    ("nethook-cni", "setup"): ("nethook as CNI plugin (ADD)", "tab:purple"),
    ("routed", "setup"): ("nethook, routed driver", "tab:pink"),
    ("routed", "teardown_gone"): ("nethook, routed driver, netns gone", "tab:pink"),
    ("dual", "setup"): ("nethook, dual stack", "tab:brown"),
    ("dual", "teardown_gone"): ("nethook, dual stack, netns gone", "tab:brown"),
    ("floor", "veth_add_up"): ("kernel link work alone (raw netlink)", "tab:grey"),
    ("nethook", "teardown_alive"): ("nethook, netns alive", "tab:green"),
    ("nethook", "teardown_gone"): ("nethook, netns gone", "tab:olive"),
    ("nethook", "teardown_gone_burst"): ("nethook, netns gone, all stopped first", "tab:cyan"),
    ("cni", "teardown_alive"): ("CNI bridge+portmap (DEL)", "tab:blue"),
    ("netavark", "teardown_alive"): ("netavark 1.4 (iptables)", "tab:orange"),
    ("netavark2", "teardown_alive"): ("netavark 2.1 (nftables)", "tab:red"),
    ("nethook-cni", "teardown_alive"): ("nethook as CNI plugin (DEL, netns alive)", "tab:purple"),
    ("floor", "ip_link_del_same_n"): ("veth delete floor, same N (`ip link del`)", "tab:brown"),
    ("floor", "rtm_dellink_same_n"): ("veth delete, same N, in-process RTM_DELLINK", "tab:grey"),
}


# Which panel a curve goes in: setup unless its op is a teardown or a veth delete.
def panel(op):
    return "teardown" if op.startswith(("teardown", "rtm_dellink", "ip_link_del")) else "setup"


def rolling_median(xs, w=25):
    out = []
    for i in range(len(xs)):
        lo, hi = max(0, i - w // 2), min(len(xs), i + w // 2 + 1)
        out.append(statistics.median(xs[lo:hi]))
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = {}
    with open(src) as f:
        for row in csv.DictReader(f):
            data.setdefault((row["tool"], row["op"]), []).append((int(row["N"]), float(row["ms"])))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=False)
    for ax, kind in zip(axes, ("setup", "teardown")):
        for key, (label, color) in STYLE.items():
            if panel(key[1]) != kind or key not in data:
                continue
            rows = sorted(data[key])
            ns, ts = [n for n, _ in rows], [t for _, t in rows]
            style = "--" if key[1].startswith("teardown_gone") or key[0] == "floor" else "-"
            ax.scatter(ns, ts, s=3, color=color, alpha=0.25, linewidths=0)
            ax.plot(ns, rolling_median(ts), style, color=color, label=label, linewidth=1.8)
        if kind == "teardown" and ("floor", "rtm_dellink") in data and ("floor", "rtm_dellink_same_n") not in data:
            fl = statistics.median(t for _, t in data[("floor", "rtm_dellink")])
            ax.axhline(fl, color="grey", linestyle=":", linewidth=1.5,
                       label=f"veth delete floor (RTM_DELLINK, {fl:.1f} ms)")
        ax.set_yscale("log")
        ax.set_xlabel("containers on the bridge (N)")
        ax.set_ylabel("wall time per container, ms (log)")
        ax.set_title("setup (createRuntime / ADD)" if kind == "setup" else "teardown (poststop / DEL), reverse order")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("nethook vs CNI bridge+portmap vs netavark: one published port per container, masquerade on",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
