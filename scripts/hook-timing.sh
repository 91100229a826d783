#!/usr/bin/env bash
# Step timings (NETHOOK_TIMING=1) of two nethook binaries, interleaved, in a throwaway
# network+mount namespace: fake containers (`unshare --net sleep`), one published TCP port
# each, setup then teardown. Prints the median of every step for each binary.
#
#   sudo scripts/hook-timing.sh OLD_BINARY NEW_BINARY [ROUNDS]
set -euo pipefail
if [[ ${NH_TIMING_IN_SANDBOX:-} != 1 ]]; then
    [[ $# -ge 2 ]] || { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 2; }
    exec env NH_TIMING_IN_SANDBOX=1 unshare --net --mount "$0" "$@"
fi
mount --make-rprivate /
ip link set lo up
old=$(realpath "$1") new=$(realpath "$2") rounds=${3:-40}
dir=$(mktemp -d) && mount -t tmpfs tmpfs "$dir"
out="$dir/timing"
for ((i = 1; i <= rounds; i++)); do
    for v in old new; do
        bin=$old; [[ $v == new ]] && bin=$new
        unshare --net sleep 60 & pid=$!
        sleep 0.05
        state="{\"ociVersion\":\"1.0.2\",\"id\":\"$v-$i\",\"status\":\"creating\",\"pid\":$pid,\"bundle\":\"/x\",\"annotations\":{\"nethook.ports\":\"$((20000 + i)):80\"}}"
        echo "$state" | env -i NETHOOK_TIMING=1 NETHOOK_RUN_DIR="$dir/run-$v" NETHOOK_CONFIG_DIR="$dir/etc-$v" "$bin" hook 2>&1 | sed -n "s/^nethook: timing /$v /p" >>"$out"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        sleep 0.05
        echo "{\"ociVersion\":\"1.0.2\",\"id\":\"$v-$i\",\"status\":\"stopped\",\"pid\":0,\"bundle\":\"/x\"}" |
            env -i NETHOOK_TIMING=1 NETHOOK_RUN_DIR="$dir/run-$v" NETHOOK_CONFIG_DIR="$dir/etc-$v" "$bin" hook 2>&1 | sed -n "s/^nethook: timing /$v /p" >>"$out"
    done
done
python3 - "$out" <<'PY'
import re, statistics, sys
steps = {}
for i, line in enumerate(open(sys.argv[1])):
    if i < 4:  # the first round creates the bridge and tables
        continue
    who, op = line.split()[:2]
    for k, v in re.findall(r'([a-z+]+) ([0-9.]+)ms', line):
        steps.setdefault((who, op.rstrip(':'), k), []).append(float(v))
for (who, op, k), v in sorted(steps.items()):
    print(f"{who:4} {op:9} {k:14} {statistics.median(v):6.3f} ms  (n={len(v)})")
PY
