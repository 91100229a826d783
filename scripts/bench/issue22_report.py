"""The summary of issue 22's phases (svc, dns; see svc_dns.py): lines for report.py's
summary.txt, and RUN_DIR/issue22.json.

    python3 scripts/bench/issue22_report.py RUN_DIR
"""

import json
import os

def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(run_dir):
    """Lines for summary.txt, and writes RUN_DIR/issue22.json; nothing when neither phase ran."""
    lines, S = [], {}
    f2 = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    f0 = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
    for phase in ("svc", "dns"):
        path = f"{run_dir}/{phase}.json"
        if not os.path.exists(path):
            continue
        with open(path) as f:
            d = json.load(f)
        rows = {}
        for n, op, t in d["rows"]:
            rows.setdefault(op, []).append((n, t))
        top = max((n for n, op, _ in d["rows"] if not op.startswith("query")), default=0)
        lines.append(f"== issue 22, phase {phase} (N={top})")
        lines.append(f"   {'op':18} {'p50':>7} {'p99':>7} {'p50 n≤20':>9} {'p50 last20':>10} {'count':>6}  (ms)")
        for op, xs in rows.items():
            ts = [t for _, t in xs]
            hi = max(n for n, _ in xs)
            st = {"p50": pct(ts, .5), "p99": pct(ts, .99), "count": len(ts),
                  "first20_p50": pct([t for n, t in xs if n <= 20], .5),
                  "last20_p50": pct([t for n, t in xs if n > hi - 20], .5)}
            S[f"{phase}/{op}"] = st
            lines.append(f"   {op:18} {f2(st['p50']):>7} {f2(st['p99']):>7} {f2(st['first20_p50']):>9} "
                         f"{f2(st['last20_p50']):>10} {st['count']:>6}")
        if phase == "svc" and "member_setup" in rows and "plain_setup" in rows:
            plain = dict(rows["plain_setup"])
            paired = [t - plain[n] for n, t in rows["member_setup"] if n in plain]
            d_p50 = S["svc/member_setup"]["p50"] - S["svc/plain_setup"]["p50"]
            S["svc/member_minus_plain"] = {"p50_diff": d_p50, "paired_median": pct(paired, .5)}
            ok = "MET" if d_p50 <= 0.5 else "MISSED"
            lines.append(f"   member setup p50 − plain setup p50: {d_p50:+.2f} ms (target ≤ +0.5: {ok}); "
                         f"median of pairwise differences {pct(paired, .5):+.2f} ms")
            plain_t = dict(rows.get("plain_teardown", []))
            paired_t = [t - plain_t[n] for n, t in rows.get("member_teardown", []) if n in plain_t]
            if paired_t:
                lines.append(f"   member teardown − plain teardown, median pairwise: {pct(paired_t, .5):+.2f} ms")
        rps = d["notes"].get("rps")
        if isinstance(rps, dict):
            for members, r in sorted(rps.items(), key=lambda kv: -int(kv[0])):
                med = {k: pct([x["rps"] for x in r[k] if "rps" in x], .5) for k in ("vip", "direct")}
                fails = {k: sum(1 for x in r[k] if "rps" not in x) for k in ("vip", "direct")}
                fulls = sum(x.get("neigh_table_fulls", 0) for k in ("vip", "direct") for x in r[k])
                S[f"svc/rps_{members}"] = {"median": med, "failed_rounds": fails, "neigh_table_fulls": fulls}
                ratio = f"{med['vip'] / med['direct']:.2f}" if med["vip"] and med["direct"] else "-"
                lines.append(f"   requests/s at {members} members: VIP {f0(med['vip'])}, direct {f0(med['direct'])} "
                             f"(VIP/direct {ratio}); rounds failed {fails}; neighbour table full {fulls}×")
            lines.append(f"   ({d['notes'].get('ab')})")
        elif rps:
            lines.append(f"   requests/s: {rps}")
        if phase == "dns":
            notes = d["notes"]
            rss = notes.get("resolver_rss_kib_by_names", {})
            if rss:
                worst = max(v.get("VmHWM", 0) for v in list(rss.values()) +
                            [notes.get("resolver_rss_kib_after_queries", {})])
                ok = "MET" if worst <= 10 * 1024 else "MISSED"
                lines.append("   resolver RSS (KiB) by names: " + ", ".join(
                    f"{k}: {v['VmRSS']}" for k, v in rss.items()) +
                    f"; after the queries {notes.get('resolver_rss_kib_after_queries')}"
                    f"; peak {worst} KiB (target ≤ 10 MiB: {ok})")
                S["dns/rss_peak_kib"] = worst
            lines.append(f"   queries: {notes.get('queries')}; resolver exited after the last teardown: "
                         f"{notes.get('resolver_exited_after_last_teardown')}")
        for k in ("endpoints_after_teardown", "members_after_teardown", "error"):
            if k in d["notes"]:
                lines.append(f"   {k}: {d['notes'][k]}")
        if d["failures"]:
            lines.append(f"   FAILURES: {len(d['failures'])}; first: {d['failures'][0]}")
    if S:
        with open(f"{run_dir}/issue22.json", "w") as f:
            json.dump(S, f, indent=1)
    return lines


if __name__ == "__main__":
    import sys

    print("\n".join(summarize(sys.argv[1])))
