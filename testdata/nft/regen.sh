#!/bin/sh
# Regenerate the golden references from skeleton.nft with the system's nft, inside a throwaway
# network namespace (never the host's). Needs root (or user namespaces) and nft.
set -eu
cd "$(dirname "$0")"
unshare --net -- nft --debug=netlink -f skeleton.nft > skeleton.debug.txt
# Keep only the rule blocks: a "<family> nethook <chain>" header and its indented "  [ ... ]" /
# userdata lines (the chain and set lines of the next table end a block too).
# nethook's ND rules look up addrs6 and macs with raw payload keys of the same layout, which nft
# 1.0.6 refuses to write (datatype mismatch); skeleton.nft uses the twins ndtgt and ndll for them.
awk '/^(inet|bridge) nethook [a-z0-9]+ *$/ {inrule=1; print; next} inrule && /^  / {print; next} {inrule=0}' skeleton.debug.txt \
  | sed -e 's/ set ndtgt / set addrs6 /' -e 's/ set ndll / set macs /' > skeleton.rules.txt
echo "wrote $(grep -Ec '^(inet|bridge) nethook' skeleton.rules.txt) rules"
# One service's chains (src/firewall/svc_plan.rs), from services.nft.
unshare --net -- nft --debug=netlink -f services.nft \
  | awk '/^inet nethook [a-z0-9-]+ *$/ {inrule=1; print; next} inrule && /^  / {print; next} {inrule=0}' > services.rules.txt
echo "wrote $(grep -Ec '^inet nethook' services.rules.txt) service rules"
