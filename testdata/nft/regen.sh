#!/bin/sh
# Regenerate the golden references from skeleton.nft with the system's nft, inside a throwaway
# network namespace (never the host's). Needs root (or user namespaces) and nft.
set -eu
cd "$(dirname "$0")"
unshare --net -- nft --debug=netlink -f skeleton.nft > skeleton.debug.txt
# Keep only the rule blocks: a "inet nethook <chain>" header and its "  [ ... ]" / userdata lines.
awk '/^inet nethook [a-z]+ *$/ {inrule=1} inrule {print} /^$/ {inrule=0}' skeleton.debug.txt > skeleton.rules.txt
echo "wrote $(grep -c '^inet nethook' skeleton.rules.txt) rules"
