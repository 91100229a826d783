//! The static part of nethook's two tables, described as data: `table inet nethook` (NAT for
//! published ports and masquerade, the 127.0.0.1 guard, isolation between networks) and
//! `table bridge nethook` (anti-spoofing at the host end of every container's veth).
//!
//! Versions: each table has a probe set ([`PROBES`]), the newest object of that table. A table
//! without its probe was made by an older nethook and is re-created whole (see `tables.rs`).
//! **Whenever the skeleton of a table changes, give it a new probe** (a new set that every
//! element batch touches, or a renamed one), or hosts running an older nethook keep old rules.
//!
//! The bytecode of every rule is pinned by golden tests against `nft --debug=netlink` output
//! (testdata/nft/). The nft source the references were generated from is testdata/nft/skeleton.nft.

use std::ffi::{CStr, CString};

use nftnl::nftnl_sys as sys;

use super::encode::{
    ADDRS4_KEY_LEN, ADDRS4_KEY_TYPE, DNAT4_DATA_LEN, DNAT4_DATA_TYPE, HPORTS4_KEY_LEN,
    HPORTS4_KEY_TYPE, INTRA_KEY_LEN, INTRA_KEY_TYPE, L2OPEN_KEY_LEN, L2OPEN_KEY_TYPE, MACS_KEY_LEN,
    MACS_KEY_TYPE, NETS_KEY_LEN, NETS_KEY_TYPE, PORTS4_KEY_LEN, PORTS4_KEY_TYPE, TYPE_IPADDR,
    TYPE_NFPROTO,
};
use super::Family;
use crate::sys::nft::{RawExpr, Val};

pub(crate) const TABLE: &CStr = c"nethook";
pub(crate) const MASQ4: &CStr = c"masq4";
pub(crate) const PORTS4: &CStr = c"ports4";
pub(crate) const HPORTS4: &CStr = c"hports4";
pub(crate) const NETS: &CStr = c"nets";
pub(crate) const INTRA: &CStr = c"intra";
pub(crate) const MACS: &CStr = c"macs";
pub(crate) const ADDRS4: &CStr = c"addrs4";
pub(crate) const FWD_GUARD: &CStr = c"fwd_guard";
pub(crate) const L2OPEN: &CStr = c"l2open";

/// The newest set of each table: present means the table has today's skeleton. Every batch
/// that adds elements to a table touches its probe (see `elements::probe_units`), so the first
/// setup after an upgrade fails with ENOENT and re-creates the old table.
pub(crate) const PROBES: [(Family, &CStr); 2] =
    [(Family::Inet, FWD_GUARD), (Family::Bridge, L2OPEN)];

/// nftables' `NFTNL_UDATA_SET_KEYBYTEORDER` values.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// A named set or map of the skeleton.
pub(crate) struct SetSpec {
    pub family: Family,
    pub name: &'static CStr,
    /// `NFTA_SET_ID`: unique within the batch.
    pub id: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub flags: u32,
    /// Map data (type, length).
    pub data: Option<(u32, u32)>,
    /// Key byte order in the set's user data, as nft records it for single-type sets (nft needs
    /// it to print interval sets); `None` for maps and concatenations, as before.
    pub key_byteorder: Option<u32>,
    /// Shown by `nft list`.
    pub comment: Option<&'static CStr>,
}

pub(crate) const SETS: [SetSpec; 9] = [
    SetSpec {
        family: Family::Inet,
        name: MASQ4,
        id: 1,
        key_type: TYPE_IPADDR,
        key_len: 4,
        flags: libc::NFT_SET_INTERVAL as u32,
        data: None,
        key_byteorder: Some(BYTEORDER_BIG),
        comment: None,
    },
    SetSpec {
        family: Family::Inet,
        name: PORTS4,
        id: 2,
        key_type: PORTS4_KEY_TYPE,
        key_len: PORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: Family::Inet,
        name: HPORTS4,
        id: 3,
        key_type: HPORTS4_KEY_TYPE,
        key_len: HPORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: Family::Inet,
        name: NETS,
        id: 4,
        key_type: NETS_KEY_TYPE,
        key_len: NETS_KEY_LEN,
        flags: 0,
        data: None,
        key_byteorder: Some(BYTEORDER_HOST),
        comment: Some(c"bridge of every nethook network"),
    },
    SetSpec {
        family: Family::Inet,
        name: INTRA,
        id: 5,
        key_type: INTRA_KEY_TYPE,
        key_len: INTRA_KEY_LEN,
        flags: 0,
        data: None,
        key_byteorder: None,
        comment: Some(c"bridge . bridge of every nethook network: its containers talk freely"),
    },
    SetSpec {
        family: Family::Bridge,
        name: MACS,
        id: 6,
        key_type: MACS_KEY_TYPE,
        key_len: MACS_KEY_LEN,
        flags: 0,
        data: None,
        key_byteorder: None,
        comment: Some(c"host veth . MAC of every endpoint"),
    },
    SetSpec {
        family: Family::Bridge,
        name: ADDRS4,
        id: 7,
        key_type: ADDRS4_KEY_TYPE,
        key_len: ADDRS4_KEY_LEN,
        flags: 0,
        data: None,
        key_byteorder: None,
        comment: Some(c"host veth . MAC . IPv4 address of every endpoint"),
    },
    SetSpec {
        family: Family::Inet,
        name: FWD_GUARD,
        id: 8,
        key_type: TYPE_NFPROTO,
        key_len: 1,
        flags: 0,
        data: None,
        key_byteorder: Some(BYTEORDER_INVALID),
        comment: Some(
            c"ipv4 when nethook turned IPv4 forwarding on: forward only what touches its networks",
        ),
    },
    SetSpec {
        family: Family::Bridge,
        name: L2OPEN,
        id: 9,
        key_type: L2OPEN_KEY_TYPE,
        key_len: L2OPEN_KEY_LEN,
        flags: 0,
        data: None,
        key_byteorder: Some(BYTEORDER_HOST),
        comment: Some(c"host veth of every endpoint whose network lets it send any ethertype"),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainKind {
    /// A regular chain, reached by jumps.
    Regular,
    Base {
        ty: nftnl::ChainType,
        hook: nftnl::Hook,
        priority: i32,
    },
}

pub(crate) struct ChainSpec {
    pub family: Family,
    pub name: &'static CStr,
    pub kind: ChainKind,
}

// Standard priorities (nft names): raw -300, dstnat -100, filter 0, srcnat 100; in the bridge
// family "filter" is -200.
const PRIO_RAW: i32 = -300;
const PRIO_DSTNAT: i32 = -100;
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;
const PRIO_BRIDGE_FILTER: i32 = -200;

/// Chains in creation order (= `nft list` order; all chains of a batch exist before its rules, so
/// jumps may point forward).
pub(crate) fn chains() -> Vec<ChainSpec> {
    use nftnl::{ChainType as T, Hook as H};
    let base = |family, name, ty, hook, priority| ChainSpec {
        family,
        name,
        kind: ChainKind::Base { ty, hook, priority },
    };
    let regular = |family, name| ChainSpec {
        family,
        name,
        kind: ChainKind::Regular,
    };
    vec![
        regular(Family::Inet, c"publish"),
        base(
            Family::Inet,
            c"prerouting",
            T::Nat,
            H::PreRouting,
            PRIO_DSTNAT,
        ),
        base(Family::Inet, c"output", T::Nat, H::Out, PRIO_DSTNAT),
        base(
            Family::Inet,
            c"postrouting",
            T::Nat,
            H::PostRouting,
            PRIO_SRCNAT,
        ),
        base(Family::Inet, c"guard", T::Filter, H::PreRouting, PRIO_RAW),
        base(Family::Inet, c"forward", T::Filter, H::Forward, PRIO_FILTER),
        regular(Family::Inet, c"isolate"),
        // Bridge family: NF_BR_PRE_ROUTING has the value of NF_INET_PRE_ROUTING. At -200 this runs
        // before br_netfilter (priority 0) hands bridged IPv4 to the inet hooks.
        base(
            Family::Bridge,
            c"prerouting",
            T::Filter,
            H::PreRouting,
            PRIO_BRIDGE_FILTER,
        ),
        regular(Family::Bridge, c"antispoof"),
    ]
}

/// One rule: its table's family, chain, comment (shown by `nft list`), expressions.
pub(crate) struct RuleSpec {
    pub family: Family,
    pub chain: &'static CStr,
    pub comment: &'static CStr,
    pub exprs: Vec<RawExpr>,
}

// ---- expression constructors (registers: 1 = 128-bit reg 1, 9/10 = 32-bit reg32_01/02) ----

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
/// The 128-bit register after REG_1 (= reg32_04): second field of a concatenation after an ifname.
const REG_2: u32 = 2;
const REG32_01: u32 = 9;
const REG32_02: u32 = 10;
/// reg32_06: third field after ifname (16 bytes) and ether_addr (6 bytes, padded to 8).
const REG32_06: u32 = 14;

const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const IPS_DST_NAT_BIT: u32 = 1 << 5;
/// `ct state` bits (NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)).
const CT_STATE_ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
/// Ethertypes, as the bytes on the wire.
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];
/// Offsets: Ethernet header (source MAC, ethertype); ARP (Ethernet/IPv4) sender MAC and address.
const ETH_SADDR: u32 = 6;
const ETH_TYPE: u32 = 12;
const ARP_SHA: u32 = 8;
const ARP_SPA: u32 = 14;
const NFPROTO_IPV4: u8 = 2;
const RTN_LOCAL: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// Offsets in the IPv4 header.
const IP4_SADDR: u32 = 12;
const IP4_DADDR: u32 = 16;

fn e(name: &'static CStr, attrs: Vec<(u32, Val)>) -> RawExpr {
    RawExpr { name, attrs }
}

fn meta(key: i32, dreg: u32) -> RawExpr {
    e(
        c"meta",
        vec![
            (sys::NFTNL_EXPR_META_KEY, Val::U32(key as u32)),
            (sys::NFTNL_EXPR_META_DREG, Val::U32(dreg)),
        ],
    )
}

fn payload(base: i32, offset: u32, len: u32, dreg: u32) -> RawExpr {
    e(
        c"payload",
        vec![
            (sys::NFTNL_EXPR_PAYLOAD_DREG, Val::U32(dreg)),
            (sys::NFTNL_EXPR_PAYLOAD_BASE, Val::U32(base as u32)),
            (sys::NFTNL_EXPR_PAYLOAD_OFFSET, Val::U32(offset)),
            (sys::NFTNL_EXPR_PAYLOAD_LEN, Val::U32(len)),
        ],
    )
}

fn cmp(op: i32, data: Vec<u8>) -> RawExpr {
    e(
        c"cmp",
        vec![
            (sys::NFTNL_EXPR_CMP_SREG, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_CMP_OP, Val::U32(op as u32)),
            (sys::NFTNL_EXPR_CMP_DATA, Val::Data(data)),
        ],
    )
}

fn lookup(set: &CStr, dreg: Option<u32>, inverted: bool) -> RawExpr {
    let mut a = vec![
        (sys::NFTNL_EXPR_LOOKUP_SREG, Val::U32(REG_1)),
        (sys::NFTNL_EXPR_LOOKUP_SET, Val::Str(CString::from(set))),
    ];
    if let Some(d) = dreg {
        a.push((sys::NFTNL_EXPR_LOOKUP_DREG, Val::U32(d)));
    }
    if inverted {
        a.push((
            sys::NFTNL_EXPR_LOOKUP_FLAGS,
            Val::U32(libc::NFT_LOOKUP_F_INV as u32),
        ));
    }
    e(c"lookup", a)
}

/// `meta nfproto ipv4` (the dependency nft adds for `ip ...` matches in an inet table).
fn is_ipv4() -> [RawExpr; 2] {
    [
        meta(libc::NFT_META_NFPROTO, REG_1),
        cmp(libc::NFT_CMP_EQ, vec![NFPROTO_IPV4]),
    ]
}

/// `ct status dnat`
fn ct_status_dnat() -> [RawExpr; 3] {
    ct_any_bit(libc::NFT_CT_STATUS, IPS_DST_NAT_BIT)
}

/// `ct state established,related`
fn ct_state_established_related() -> [RawExpr; 3] {
    ct_any_bit(libc::NFT_CT_STATE, CT_STATE_ESTABLISHED_RELATED)
}

/// `ct <key> <flags>`: any of the bits in `mask` is set.
fn ct_any_bit(key: i32, mask: u32) -> [RawExpr; 3] {
    [
        e(
            c"ct",
            vec![
                (sys::NFTNL_EXPR_CT_KEY, Val::U32(key as u32)),
                (sys::NFTNL_EXPR_CT_DREG, Val::U32(REG_1)),
            ],
        ),
        e(
            c"bitwise",
            vec![
                (sys::NFTNL_EXPR_BITWISE_SREG, Val::U32(REG_1)),
                (sys::NFTNL_EXPR_BITWISE_DREG, Val::U32(REG_1)),
                (sys::NFTNL_EXPR_BITWISE_LEN, Val::U32(4)),
                (
                    sys::NFTNL_EXPR_BITWISE_MASK,
                    Val::Data(mask.to_ne_bytes().to_vec()),
                ),
                (
                    sys::NFTNL_EXPR_BITWISE_XOR,
                    Val::Data(0u32.to_ne_bytes().to_vec()),
                ),
            ],
        ),
        cmp(libc::NFT_CMP_NEQ, 0u32.to_ne_bytes().to_vec()),
    ]
}

/// `dnat ip to <addr in REG_1> : <port in REG32_01>`
fn dnat4_from_regs() -> RawExpr {
    e(
        c"nat",
        vec![
            (
                sys::NFTNL_EXPR_NAT_TYPE,
                Val::U32(libc::NFT_NAT_DNAT as u32),
            ),
            (
                sys::NFTNL_EXPR_NAT_FAMILY,
                Val::U32(u32::from(NFPROTO_IPV4)),
            ),
            (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, Val::U32(REG32_01)),
        ],
    )
}

fn masq() -> RawExpr {
    e(c"masq", vec![])
}

/// `accept` / `drop`
fn verdict(v: u32) -> RawExpr {
    e(
        c"immediate",
        vec![
            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(v)),
        ],
    )
}

/// A verdict code that is not a netfilter one (`return`: NFT_RETURN, negative).
fn verdict_code(code: i32) -> RawExpr {
    verdict(code as u32)
}

/// `jump <chain>`
fn jump(chain: &CStr) -> RawExpr {
    e(
        c"immediate",
        vec![
            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(libc::NFT_JUMP as u32)),
            (sys::NFTNL_EXPR_IMM_CHAIN, Val::Str(CString::from(chain))),
        ],
    )
}

/// `ether type <t>` (bridge family: the link-layer header)
fn ether_type(t: [u8; 2]) -> [RawExpr; 2] {
    [
        payload(libc::NFT_PAYLOAD_LL_HEADER, ETH_TYPE, 2, REG_1),
        cmp(libc::NFT_CMP_EQ, t.to_vec()),
    ]
}

/// `ether type != <t>` (each comparison loads the field again, as nft does)
fn ether_type_is_not(t: [u8; 2]) -> [RawExpr; 2] {
    [
        payload(libc::NFT_PAYLOAD_LL_HEADER, ETH_TYPE, 2, REG_1),
        cmp(libc::NFT_CMP_NEQ, t.to_vec()),
    ]
}

/// `fib daddr type local jump publish`
fn fib_daddr_local_jump(chain: &CStr) -> Vec<RawExpr> {
    vec![
        e(
            c"fib",
            vec![
                (sys::NFTNL_EXPR_FIB_DREG, Val::U32(REG_1)),
                (
                    sys::NFTNL_EXPR_FIB_RESULT,
                    Val::U32(NFT_FIB_RESULT_ADDRTYPE),
                ),
                (sys::NFTNL_EXPR_FIB_FLAGS, Val::U32(NFTA_FIB_F_DADDR)),
            ],
        ),
        cmp(libc::NFT_CMP_EQ, RTN_LOCAL.to_ne_bytes().to_vec()),
        jump(chain),
    ]
}

fn cat(parts: Vec<Vec<RawExpr>>) -> Vec<RawExpr> {
    parts.into_iter().flatten().collect()
}

/// All rules of the skeleton, in chain order. Mirrors testdata/nft/skeleton.nft exactly.
pub(crate) fn rules() -> Vec<RuleSpec> {
    let mut all = base_rules();
    all.extend(isolation_rules());
    all.extend(antispoof_rules());
    all
}

fn base_rules() -> Vec<RuleSpec> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    vec![
        RuleSpec {
            family: Family::Inet,
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
        RuleSpec {
            family: Family::Inet,
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
            family: Family::Inet,
            chain: c"publish",
            comment: c"publish on every host address: ports4 maps proto . port to container ip . port",
            exprs: vec![
                meta(libc::NFT_META_L4PROTO, REG_1),
                payload(th, 2, 2, REG32_01),
                lookup(PORTS4, Some(REG_1), false),
                dnat4_from_regs(),
            ],
        },
        RuleSpec {
            family: Family::Inet,
            chain: c"prerouting",
            comment: c"traffic to a host address may be for a published port",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        RuleSpec {
            family: Family::Inet,
            chain: c"output",
            comment: c"host processes reach published ports too",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        RuleSpec {
            family: Family::Inet,
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
            family: Family::Inet,
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
            family: Family::Inet,
            chain: c"postrouting",
            comment: c"containers reaching anything outside the masq4 subnets",
            exprs: cat(vec![
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_SADDR, 4, REG_1),
                    lookup(MASQ4, None, false),
                    payload(nh, IP4_DADDR, 4, REG_1),
                    lookup(MASQ4, None, true),
                    masq(),
                ],
            ]),
        },
        RuleSpec {
            family: Family::Inet,
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

/// Isolation between networks (inet forward hook). Routed traffic between bridges, and with
/// br_netfilter bridged IPv4/IPv6 too (iif = oif = the bridge), passes the forward hook; traffic the
/// host itself sends to a container does not (output path), nor does traffic to the host.
fn isolation_rules() -> Vec<RuleSpec> {
    let rule = |chain, comment, exprs| RuleSpec {
        family: Family::Inet,
        chain,
        comment,
        exprs,
    };
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
            c"forwarding nethook turned on (fwd_guard) is for its networks only: the host routes nothing else",
            vec![
                meta(libc::NFT_META_NFPROTO, REG_1),
                lookup(FWD_GUARD, None, false),
                meta(libc::NFT_META_IIFNAME, REG_1),
                lookup(NETS, None, true),
                meta(libc::NFT_META_OIFNAME, REG_1),
                lookup(NETS, None, true),
                verdict(NF_DROP),
            ],
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
            c"nothing else reaches a container address directly: not other networks, not outside hosts",
            vec![verdict(NF_DROP)],
        ),
    ]
}

/// Anti-spoofing (bridge prerouting): frames entering a bridge from a container's host veth must
/// carry the endpoint's MAC, and its IPv4 address in IPv4 and ARP. A host veth without elements
/// sends nothing (fail closed). IPv6 is dropped: nethook's networks are IPv4-only, and every new
/// link's duplicate-address probes, router solicitations and multicast reports would otherwise be
/// flooded to every other container, making each setup cost grow with the number running. Other
/// ethertypes (STP BPDUs, LLC/SNAP frames, PPPoE, ...) the host has no use for are dropped too,
/// unless the endpoint's host veth is in `l2open` (its network opted out; MAC and VLAN checks stay).
fn antispoof_rules() -> Vec<RuleSpec> {
    let ll = libc::NFT_PAYLOAD_LL_HEADER;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let rule = |chain, comment, exprs| RuleSpec {
        family: Family::Bridge,
        chain,
        comment,
        exprs,
    };
    // `iifname . <mac> . <ipv4> != @addrs4 drop`, the MAC and address loaded from `base`+offsets.
    let addrs4_mismatch = |base: i32, mac_at: u32, ip_at: u32| {
        vec![
            meta(libc::NFT_META_IIFNAME, REG_1),
            payload(base, mac_at, 6, REG_2),
            payload(nh, ip_at, 4, REG32_06),
            lookup(ADDRS4, None, true),
            verdict(NF_DROP),
        ]
    };
    vec![
        rule(
            c"prerouting",
            c"frames from a container's host veth (nh...), before bridging",
            vec![
                meta(libc::NFT_META_IIFNAME, REG_1),
                // `iifname "nh*"`: a prefix compare of the first two bytes.
                cmp(libc::NFT_CMP_EQ, b"nh".to_vec()),
                jump(c"antispoof"),
            ],
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
                addrs4_mismatch(ll, ETH_SADDR, IP4_SADDR),
            ]),
        ),
        rule(
            c"antispoof",
            c"ARP announces only the container's own MAC and address",
            cat(vec![
                ether_type(ETH_P_ARP).into(),
                addrs4_mismatch(nh, ARP_SHA, ARP_SPA),
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
