//! The rules of `table bridge nethook`: anti-spoofing at the host end of every container's
//! veth, for IPv4/ARP and IPv6 (with neighbour discovery), and no router advertisements from
//! the host into containers.

use std::ffi::CStr;

use super::expr::*;
use super::{RuleSpec, TableFamily, ADDRS4, ADDRS6, L2OPEN, MACS};
use crate::sys::nft::RawExpr;

/// ICMPv6 types (RFC 4443, 4861, 2710, 3810).
const MLD_QUERY: u8 = 130;
const MLD_DONE: u8 = 132;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const MLD2_REPORT: u8 = 143;
/// ND messages in the transport header: the target address at 8, the first option's type
/// and length at 24, its link-layer address at 26. An NS or NA with one link-layer option
/// has an IPv6 payload of 32 bytes, an NA without one 24.
const ND_TARGET: u32 = 8;
const ND_OPTION: u32 = 24;
const ND_OPTION_LLADDR: u32 = 26;
const ND_LEN_OPTION: [u8; 2] = [0, 32];
const ND_LEN_BARE: [u8; 2] = [0, 24];
/// Option type . length (in 8-byte units): source (1) or target (2) link-layer address.
const ND_OPT_SLLA: [u8; 2] = [1, 1];
const ND_OPT_TLLA: [u8; 2] = [2, 1];
const DHCPV6_SERVER_PORT: u16 = 547;
const DHCPV6_CLIENT_PORT: u16 = 546;

/// Offsets of the UDP header's source and destination ports.
const UDP_SPORT: u32 = 0;
const UDP_DPORT: u32 = 2;

/// Drops UDP whose port at `offset` (`UDP_SPORT`, `UDP_DPORT`) is `port`.
fn udp_port_drop(offset: u32, port: u16) -> Vec<RawExpr> {
    vec![
        meta(libc::NFT_META_L4PROTO, REG_1),
        cmp(libc::NFT_CMP_EQ, vec![IPPROTO_UDP]),
        payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2, REG_1),
        cmp(libc::NFT_CMP_EQ, port.to_be_bytes().to_vec()),
        verdict(NF_DROP),
    ]
}

fn rule(chain: &'static CStr, comment: &'static CStr, exprs: Vec<RawExpr>) -> RuleSpec {
    RuleSpec {
        family: TableFamily::Bridge,
        chain,
        comment,
        exprs,
    }
}

/// `icmpv6 type <t>` as nft writes it in the bridge family: ethertype, `meta l4proto`, type.
fn icmpv6_type(op: i32, t: u8) -> Vec<RawExpr> {
    cat(vec![
        ether_type(ETH_P_IPV6).into(),
        vec![
            meta(libc::NFT_META_L4PROTO, REG_1),
            cmp(libc::NFT_CMP_EQ, vec![IPPROTO_ICMPV6]),
            payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, REG_1),
            cmp(op, vec![t]),
        ],
    ])
}

/// `icmpv6 type <from>-<to>`: nft compiles a range to two comparisons.
fn icmpv6_type_range(from: u8, to: u8) -> Vec<RawExpr> {
    let mut e = icmpv6_type(libc::NFT_CMP_GTE, from);
    e.push(cmp(libc::NFT_CMP_LTE, vec![to]));
    e
}

/// The dependency nft puts before an `ip6` header match in the bridge family.
fn meta_protocol_ipv6() -> Vec<RawExpr> {
    vec![
        meta(libc::NFT_META_PROTOCOL, REG_1),
        cmp(libc::NFT_CMP_EQ, ETH_P_IPV6.to_vec()),
    ]
}

/// `ip6 length <op> <len>` (the payload length field), after its dependency.
fn ip6_length(op: i32, len: [u8; 2]) -> Vec<RawExpr> {
    vec![
        payload(libc::NFT_PAYLOAD_NETWORK_HEADER, IP6_PAYLOAD_LEN, 2, REG_1),
        cmp(op, len.to_vec()),
    ]
}

/// Anti-spoofing (bridge prerouting): frames entering a bridge from a container's host veth must
/// carry the endpoint's MAC, and its IPv4 address in IPv4 and ARP. A host veth without elements
/// sends nothing (fail closed). IPv6 goes to `antispoof6` ([`antispoof6_rules`]): only from the
/// endpoint's own addresses (`addrs6`), which an IPv4-only endpoint has none of, so its new
/// link's duplicate-address probes, router solicitations and multicast reports are not flooded
/// to every other container. Other
/// ethertypes (STP BPDUs, LLC/SNAP frames, PPPoE, ...) the host has no use for are dropped too,
/// unless the endpoint's host veth is in `l2open` (its network opted out; MAC, IPv6 and VLAN
/// checks stay).
pub(super) fn antispoof_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    vec![
        rule(
            c"prerouting",
            c"frames from a container's host veth (nh...), before bridging",
            cat(vec![
                ifname_prefix(libc::NFT_META_IIFNAME, libc::NFT_CMP_EQ, "nh").into(),
                vec![jump(c"antispoof")],
            ]),
        ),
        // RAs the host sends (a radvd on every link, say) would give containers SLAAC
        // addresses and routes, which addr_gen_mode none does not prevent (h21).
        rule(
            c"output",
            c"the host sends no router advertisements into containers (say, a radvd on all links)",
            cat(vec![
                ifname_prefix(libc::NFT_META_OIFNAME, libc::NFT_CMP_EQ, "nh").into(),
                icmpv6_type(libc::NFT_CMP_EQ, ND_ROUTER_ADVERT),
                vec![verdict(NF_DROP)],
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
        // goto, not jump: what antispoof6 lets through must not come back to the ethertype
        // rule at the end of this chain, which would drop IPv6 of endpoints without l2open.
        rule(
            c"antispoof",
            c"IPv6: own addresses only, no router/MLD/DHCPv6 server messages (goto: the ethertype rule below is IPv4's)",
            cat(vec![ether_type(ETH_P_IPV6).into(), vec![goto(c"antispoof6")]]),
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

/// IPv6 from a container (chain `antispoof6`, reached by goto from `antispoof`): no router
/// advertisements, redirects, MLD or DHCPv6 server replies, only its own addresses as the
/// source (its global address and the EUI-64 link-local of its MAC, set `addrs6`; `::`, the
/// source of DAD probes and of MLD without a link-local, is in no element), and neighbour
/// discovery checked in `nd6`.
pub(super) fn antispoof6_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let drop = || vec![verdict(NF_DROP)];
    vec![
        rule(
            c"antispoof6",
            c"no router advertisements: a container is no router (SLAAC would follow them)",
            cat(vec![
                icmpv6_type(libc::NFT_CMP_EQ, ND_ROUTER_ADVERT),
                drop(),
            ]),
        ),
        rule(
            c"antispoof6",
            c"no redirects",
            cat(vec![icmpv6_type(libc::NFT_CMP_EQ, ND_REDIRECT), drop()]),
        ),
        rule(
            c"antispoof6",
            c"no MLD (v1 query, report, done): nobody snoops, it would only be flooded",
            cat(vec![icmpv6_type_range(MLD_QUERY, MLD_DONE), drop()]),
        ),
        rule(
            c"antispoof6",
            c"no MLDv2 reports",
            cat(vec![icmpv6_type(libc::NFT_CMP_EQ, MLD2_REPORT), drop()]),
        ),
        rule(
            c"antispoof6",
            c"no DHCPv6 server or relay replies",
            udp_port_drop(UDP_SPORT, DHCPV6_SERVER_PORT),
        ),
        rule(
            c"antispoof6",
            c"nothing to DHCPv6 clients, whatever its source port",
            udp_port_drop(UDP_DPORT, DHCPV6_CLIENT_PORT),
        ),
        rule(
            c"antispoof6",
            c"IPv6 only from the container's own address or link-local (:: too: no DAD, MLD)",
            cat(vec![
                meta_protocol_ipv6(),
                vec![
                    meta(libc::NFT_META_IIFNAME, REG_1),
                    payload(ll, ETH_SADDR, 6, REG_2),
                    payload(nh, IP6_SADDR, 16, REG32_06),
                    lookup(ADDRS6, None, true),
                    verdict(NF_DROP),
                ],
            ]),
        ),
        rule(
            c"antispoof6",
            c"neighbour solicitations and advertisements: checked in nd6",
            cat(vec![
                icmpv6_type_range(ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT),
                vec![jump(c"nd6")],
            ]),
        ),
    ]
}

/// Neighbour discovery from a container (chain `nd6`): an advertisement only about its own
/// address, a link-layer option only with its own MAC, and the fixed layouts Linux sends (so
/// the offsets hold). The target is looked up in `addrs6` and the option's MAC in `macs`:
/// nft 1.0.6 cannot write a raw payload lookup in sets of those types, but the keys have
/// their layout, and the kernel compares bytes.
pub(super) fn nd6_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    let option_is = |t: u8, opt: [u8; 2]| {
        cat(vec![
            meta_protocol_ipv6(),
            ip6_length(libc::NFT_CMP_EQ, ND_LEN_OPTION),
            vec![
                meta(libc::NFT_META_L4PROTO, REG_1),
                cmp(libc::NFT_CMP_EQ, vec![IPPROTO_ICMPV6]),
                payload(th, 0, 1, REG_1),
                cmp(libc::NFT_CMP_EQ, vec![t]),
                payload(th, ND_OPTION, 2, REG_1),
                cmp(libc::NFT_CMP_NEQ, opt.to_vec()),
                verdict(NF_DROP),
            ],
        ])
    };
    vec![
        rule(
            c"nd6",
            c"ND with extension headers: the offsets below would not hold",
            cat(vec![
                meta_protocol_ipv6(),
                vec![
                    payload(nh, IP6_NEXTHDR, 1, REG_1),
                    cmp(libc::NFT_CMP_NEQ, vec![IPPROTO_ICMPV6]),
                    verdict(NF_DROP),
                ],
            ]),
        ),
        rule(
            c"nd6",
            c"NA target: the sender's own address only",
            cat(vec![
                icmpv6_type(libc::NFT_CMP_EQ, ND_NEIGHBOR_ADVERT),
                vec![
                    meta(libc::NFT_META_IIFNAME, REG_1),
                    payload(ll, ETH_SADDR, 6, REG_2),
                    payload(th, ND_TARGET, 16, REG32_06),
                    lookup(ADDRS6, None, true),
                    verdict(NF_DROP),
                ],
            ]),
        ),
        rule(
            c"nd6",
            c"NS from a real source: target and one source link-layer option",
            cat(vec![
                icmpv6_type(libc::NFT_CMP_EQ, ND_NEIGHBOR_SOLICIT),
                ip6_length(libc::NFT_CMP_NEQ, ND_LEN_OPTION),
                vec![verdict(NF_DROP)],
            ]),
        ),
        rule(
            c"nd6",
            c"NA: target with (32) or without (24: reply to a unicast probe) its link-layer option",
            cat(vec![
                meta_protocol_ipv6(),
                ip6_length(libc::NFT_CMP_NEQ, ND_LEN_BARE),
                ip6_length(libc::NFT_CMP_NEQ, ND_LEN_OPTION),
                vec![verdict(NF_DROP)],
            ]),
        ),
        rule(
            c"nd6",
            c"NS option: source link-layer address, length 1",
            option_is(ND_NEIGHBOR_SOLICIT, ND_OPT_SLLA),
        ),
        rule(
            c"nd6",
            c"NA option: target link-layer address, length 1",
            option_is(ND_NEIGHBOR_ADVERT, ND_OPT_TLLA),
        ),
        rule(
            c"nd6",
            c"the option's MAC is the sender's own",
            cat(vec![
                meta_protocol_ipv6(),
                ip6_length(libc::NFT_CMP_EQ, ND_LEN_OPTION),
                vec![
                    meta(libc::NFT_META_IIFNAME, REG_1),
                    payload(th, ND_OPTION_LLADDR, 6, REG_2),
                    lookup(MACS, None, true),
                    verdict(NF_DROP),
                ],
            ]),
        ),
    ]
}
