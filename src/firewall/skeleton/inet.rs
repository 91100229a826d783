//! The rules of `table inet nethook`: published ports (DNAT), masquerade, the 127.0.0.1
//! guard, anti-spoofing of routed networks' host veths, and isolation between networks, for
//! IPv4 and IPv6 (each rule that reads an address checks the family first).

use super::expr::*;
use super::services::{jump_rule, publish_any_rule, publish_host_rule};
use super::{
    RuleSpec, TableFamily, FWD_GUARD, HPORTS4, HPORTS6, INTRA, INTRA4, MASQ4, MASQ6, NETS, NOMASQ4,
    NOMASQ6, PORTS4, PORTS6, RADDRS4,
};
use crate::model::ids::ROUTED_VETH_PREFIX as NR;
use crate::sys::nft::RawExpr;
use std::ffi::CStr;

pub(super) fn base_rules() -> Vec<RuleSpec> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    vec![
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"publish on one host address: hports4 maps host ip . proto . port to container ip . port",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_DADDR, 4, REG_1),
                    meta(libc::NFT_META_L4PROTO, REG32_01),
                    payload(th, 2, 2, REG32_02),
                    lookup(HPORTS4, Some(REG_1), false),
                    dnat4_from_regs(),
                ],
            ]),
        },
        publish_host_rule(false),
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"a port published on every address is not published on 127.0.0.0/8: host services there keep it",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_DADDR, 1, REG_1),
                    cmp(libc::NFT_CMP_EQ, vec![127]),
                    verdict_code(libc::NFT_RETURN),
                ],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"publish on every host IPv4 address: ports4 maps proto . port to container ip . port",
            // The family check is needed: `proto . port` says nothing of the family, and an
            // IPv6 connection to a port in ports4 would run `dnat ip` and time out (h21).
            exprs: cat(vec![
                is_ipv4().into(),
                vec![
                    meta(libc::NFT_META_L4PROTO, REG_1),
                    payload(th, 2, 2, REG32_01),
                    lookup(PORTS4, Some(REG_1), false),
                    dnat4_from_regs(),
                ],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"publish on one host IPv6 address: hports6 maps host ip . proto . port to container ip . port",
            exprs: cat(vec![
                is_ipv6().into(),
                vec![
                    payload(nh, IP6_DADDR, 16, REG_1),
                    meta(libc::NFT_META_L4PROTO, REG_2),
                    payload(th, 2, 2, REG32_05),
                    lookup(HPORTS6, Some(REG_1), false),
                    dnat6_from_regs(),
                ],
            ]),
        },
        publish_host_rule(true),
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"a port published on every address is not published on ::1 (which cannot be: no route_localnet for IPv6)",
            exprs: cat(vec![
                is_ipv6().into(),
                vec![
                    payload(nh, IP6_DADDR, 16, REG_1),
                    cmp(libc::NFT_CMP_EQ, std::net::Ipv6Addr::LOCALHOST.octets().to_vec()),
                    verdict_code(libc::NFT_RETURN),
                ],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"publish",
            comment: c"publish on every host IPv6 address: ports6 maps proto . port to container ip . port",
            exprs: cat(vec![
                is_ipv6().into(),
                vec![
                    meta(libc::NFT_META_L4PROTO, REG_1),
                    payload(th, 2, 2, REG32_01),
                    lookup(PORTS6, Some(REG_1), false),
                    dnat6_from_regs(),
                ],
            ]),
        },
        publish_any_rule(),
        jump_rule(c"prerouting"),
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"prerouting",
            comment: c"traffic to a host address may be for a published port",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        jump_rule(c"output"),
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"output",
            comment: c"host processes reach published ports too",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"postrouting",
            comment: c"host connection to a port published on 127.0.0.1 (bridge needs route_localnet=1): source becomes the bridge address",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![payload(nh, IP4_SADDR, 1, REG_1), cmp(libc::NFT_CMP_EQ, vec![127])],
                ct_status_dnat().into(),
                vec![masq()],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"postrouting",
            comment: c"hairpin: a container reaching a published port that leads back into a masq4 subnet",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![payload(nh, IP4_SADDR, 4, REG_1), lookup(MASQ4, None, false)],
                ct_status_dnat().into(),
                vec![payload(nh, IP4_DADDR, 4, REG_1), lookup(MASQ4, None, false), masq()],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"postrouting",
            comment: c"containers reaching anything outside the masq4 subnets, but for the destinations nomasq4 pairs with their subnet",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_SADDR, 4, REG_1),
                    lookup(MASQ4, None, false),
                    payload(nh, IP4_DADDR, 4, REG_1),
                    lookup(MASQ4, None, true),
                    // One lookup of saddr . daddr, only for what would be masqueraded.
                    payload(nh, IP4_SADDR, 4, REG_1),
                    payload(nh, IP4_DADDR, 4, REG32_01),
                    lookup(NOMASQ4, None, true),
                    masq(),
                ],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"postrouting",
            comment: c"hairpin: a container reaching a published port that leads back into a masq6 subnet",
            exprs: cat(vec![
                is_ipv6().into(),
                vec![payload(nh, IP6_SADDR, 16, REG_1), lookup(MASQ6, None, false)],
                ct_status_dnat().into(),
                vec![payload(nh, IP6_DADDR, 16, REG_1), lookup(MASQ6, None, false), masq()],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"postrouting",
            comment: c"containers reaching anything outside the masq6 subnets, but for the destinations nomasq6 pairs with their subnet",
            exprs: cat(vec![
                is_ipv6().into(),
                vec![
                    payload(nh, IP6_SADDR, 16, REG_1),
                    lookup(MASQ6, None, false),
                    payload(nh, IP6_DADDR, 16, REG_1),
                    lookup(MASQ6, None, true),
                    payload(nh, IP6_SADDR, 16, REG_1),
                    payload(nh, IP6_DADDR, 16, REG_2),
                    lookup(NOMASQ6, None, true),
                    masq(),
                ],
            ]),
        },
        RuleSpec {
            family: TableFamily::Inet,
            chain: c"guard",
            comment: c"CVE-2020-8558: route_localnet must not let other interfaces reach 127.0.0.0/8",
            exprs: cat(vec![
                // `iif != "lo"`: lo is ifindex 1 in every network namespace.
                vec![meta(libc::NFT_META_IIF, REG_1), cmp(libc::NFT_CMP_NEQ, 1u32.to_ne_bytes().to_vec())],
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_DADDR, 1, REG_1),
                    cmp(libc::NFT_CMP_EQ, vec![127]),
                    verdict(NF_DROP),
                ],
            ]),
        },
    ]
}

/// A rule of `table inet nethook`.
fn rule(chain: &'static CStr, comment: &'static CStr, exprs: Vec<RawExpr>) -> RuleSpec {
    RuleSpec {
        family: TableFamily::Inet,
        chain,
        comment,
        exprs,
    }
}

/// Anti-spoofing of routed networks (raw-priority prerouting, before conntrack: a spoofed
/// packet leaves no connection behind). A routed host veth (`nr…`) is no bridge port, so the
/// bridge table never sees its frames; here every IPv4 packet from it must carry the
/// endpoint's MAC and address (`raddrs4`), and IPv6 is dropped (routed networks are
/// IPv4-only). A routed veth without elements sends nothing (fail closed). ARP is not
/// filtered (inet hooks never see it): on a point-to-point veth only the host hears it, and the
/// host routes each address by its /32 to its own veth, so a lie only misleads the liar.
/// The jump is on the prefix, not on every host veth: with br_netfilter, bridged IPv4 of bridge
/// networks passes here with iif = the bridge port (`nh…`), which has no `raddrs4` element.
pub(super) fn routed_antispoof_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    vec![
        rule(
            c"guard",
            c"packets from a routed container's host veth (nr...)",
            cat(vec![
                ifname_prefix(libc::NFT_META_IIFNAME, libc::NFT_CMP_EQ, NR).into(),
                vec![jump(c"rantispoof")],
            ]),
        ),
        rule(
            c"rantispoof",
            c"routed networks are IPv4-only: no IPv6 from their containers",
            cat(vec![is_ipv6().into(), vec![verdict(NF_DROP)]]),
        ),
        rule(
            c"rantispoof",
            c"a routed container sends from its own MAC and address only",
            cat(vec![
                inet_ether_ipv4().into(),
                addrs4_mismatch_drop(RADDRS4, ll, ETH_SADDR, IP4_SADDR),
            ]),
        ),
    ]
}

/// Isolation between networks (inet forward hook). Routed traffic between bridges, and with
/// br_netfilter bridged IPv4/IPv6 too (iif = oif = the bridge), passes the forward hook; traffic the
/// host itself sends to a container does not (output path), nor does traffic to the host.
pub(super) fn isolation_rules() -> Vec<RuleSpec> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    vec![
        rule(
            c"forward",
            c"isolation: what is routed or bridged into a nethook network passes chain isolate",
            vec![
                meta(libc::NFT_META_OIFNAME, REG_1),
                lookup(NETS, None, false),
                jump(c"isolate"),
            ],
        ),
        rule(
            c"forward",
            c"isolation: what is routed to a routed network's container (nr...) passes chain isolate",
            cat(vec![
                ifname_prefix(libc::NFT_META_OIFNAME, libc::NFT_CMP_EQ, NR).into(),
                vec![jump(c"isolate")],
            ]),
        ),
        rule(
            c"forward",
            c"forwarding nethook turned on (fwd_guard) is for its networks only: the host routes nothing else",
            cat(vec![
                vec![
                    meta(libc::NFT_META_NFPROTO, REG_1),
                    lookup(FWD_GUARD, None, false),
                    meta(libc::NFT_META_IIFNAME, REG_1),
                    lookup(NETS, None, true),
                ],
                ifname_prefix(libc::NFT_META_IIFNAME, libc::NFT_CMP_NEQ, NR).into(),
                vec![meta(libc::NFT_META_OIFNAME, REG_1), lookup(NETS, None, true)],
                ifname_prefix(libc::NFT_META_OIFNAME, libc::NFT_CMP_NEQ, NR).into(),
                vec![verdict(NF_DROP)],
            ]),
        ),
        rule(
            c"isolate",
            c"replies to connections the containers opened (to the outside, to published ports)",
            cat(vec![ct_state_established_related().into(), vec![verdict(NF_ACCEPT)]]),
        ),
        rule(
            c"isolate",
            c"published ports (DNAT in chain publish) from anywhere, other networks included",
            cat(vec![ct_status_dnat().into(), vec![verdict(NF_ACCEPT)]]),
        ),
        rule(
            c"isolate",
            c"within one network (br_netfilter shows bridged frames with iif = oif = the bridge)",
            vec![
                meta(libc::NFT_META_IIFNAME, REG_1),
                meta(libc::NFT_META_OIFNAME, REG_2),
                lookup(INTRA, None, false),
                verdict(NF_ACCEPT),
            ],
        ),
        rule(
            c"isolate",
            c"from where a network does not masquerade to (nomasq4: subnet . source), e.g. pods of other nodes",
            cat(vec![
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_DADDR, 4, REG_1),
                    payload(nh, IP4_SADDR, 4, REG32_01),
                    lookup(NOMASQ4, None, false),
                    verdict(NF_ACCEPT),
                ],
            ]),
        ),
        rule(
            c"isolate",
            c"from where a network does not masquerade IPv6 to (nomasq6: subnet . source)",
            cat(vec![
                is_ipv6().into(),
                vec![
                    payload(nh, IP6_DADDR, 16, REG_1),
                    payload(nh, IP6_SADDR, 16, REG_2),
                    lookup(NOMASQ6, None, false),
                    verdict(NF_ACCEPT),
                ],
            ]),
        ),
        rule(
            c"isolate",
            c"within one routed network: from a routed veth (rantispoof pinned the source), subnet . subnet in intra4",
            cat(vec![
                // The interface check keeps an outside host that claims a source in the subnet
                // out: only packets from routed veths had their source pinned.
                ifname_prefix(libc::NFT_META_IIFNAME, libc::NFT_CMP_EQ, NR).into(),
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_SADDR, 4, REG_1),
                    payload(nh, IP4_DADDR, 4, REG32_01),
                    lookup(INTRA4, None, false),
                    verdict(NF_ACCEPT),
                ],
            ]),
        ),
        rule(
            c"isolate",
            c"nothing else reaches a container address directly: not other networks, not outside hosts",
            vec![verdict(NF_DROP)],
        ),
    ]
}
