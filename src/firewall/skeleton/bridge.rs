//! The rules of `table bridge nethook`: anti-spoofing at the host end of every container's
//! veth.

use super::expr::*;
use super::{RuleSpec, TableFamily, ADDRS4, L2OPEN, MACS};

/// Anti-spoofing (bridge prerouting): frames entering a bridge from a container's host veth must
/// carry the endpoint's MAC, and its IPv4 address in IPv4 and ARP. A host veth without elements
/// sends nothing (fail closed). IPv6 is dropped: nethook's networks are IPv4-only, and every new
/// link's duplicate-address probes, router solicitations and multicast reports would otherwise be
/// flooded to every other container, making each setup cost grow with the number running. Other
/// ethertypes (STP BPDUs, LLC/SNAP frames, PPPoE, ...) the host has no use for are dropped too,
/// unless the endpoint's host veth is in `l2open` (its network opted out; MAC and VLAN checks stay).
pub(super) fn antispoof_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let rule = |chain, comment, exprs| RuleSpec {
        family: TableFamily::Bridge,
        chain,
        comment,
        exprs,
    };
    vec![
        rule(
            c"prerouting",
            c"frames from a container's host veth (nh...), before bridging",
            cat(vec![
                ifname_prefix(libc::NFT_META_IIFNAME, libc::NFT_CMP_EQ, "nh").into(),
                vec![jump(c"antispoof")],
            ]),
        ),
        rule(
            c"antispoof",
            c"a container sends with its own MAC only (any ethertype, IPv6 included)",
            vec![
                meta(libc::NFT_META_IIFNAME, REG_1),
                payload(ll, ETH_SADDR, 6, REG_2),
                lookup(MACS, None, true),
                verdict(NF_DROP),
            ],
        ),
        rule(
            c"antispoof",
            c"IPv4 only from the container's own address",
            cat(vec![
                ether_type(ETH_P_IP).into(),
                addrs4_mismatch_drop(ADDRS4, ll, ETH_SADDR, IP4_SADDR),
            ]),
        ),
        rule(
            c"antispoof",
            c"ARP announces only the container's own MAC and address",
            cat(vec![
                ether_type(ETH_P_ARP).into(),
                addrs4_mismatch_drop(ADDRS4, nh, ARP_SHA, ARP_SPA),
            ]),
        ),
        rule(
            c"antispoof",
            c"IPv4-only networks carry no IPv6: a new container's link-local chatter is not flooded to all",
            cat(vec![ether_type(ETH_P_IPV6).into(), vec![verdict(NF_DROP)]]),
        ),
        rule(
            c"antispoof",
            c"no VLAN tags: they would carry IPv4 and ARP past the checks above",
            cat(vec![ether_type(ETH_P_8021Q).into(), vec![verdict(NF_DROP)]]),
        ),
        rule(
            c"antispoof",
            c"no QinQ tags either",
            cat(vec![
                ether_type(ETH_P_8021AD).into(),
                vec![verdict(NF_DROP)],
            ]),
        ),
        rule(
            c"antispoof",
            c"only IPv4 and ARP (no STP, LLC/SNAP, PPPoE...) unless the endpoint's network opted out (l2open)",
            cat(vec![
                ether_type_is_not(ETH_P_IP).into(),
                ether_type_is_not(ETH_P_ARP).into(),
                vec![
                    meta(libc::NFT_META_IIFNAME, REG_1),
                    lookup(L2OPEN, None, true),
                    verdict(NF_DROP),
                ],
            ]),
        ),
    ]
}
