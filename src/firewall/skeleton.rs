//! The static part of `table inet nethook`: sets, maps, chains and rules, described as data.
//!
//! The bytecode of every rule is pinned by golden tests against `nft --debug=netlink` output
//! (testdata/nft/). The nft source the references were generated from is testdata/nft/skeleton.nft.

use std::ffi::{CStr, CString};

use nftnl::nftnl_sys as sys;

use super::encode::{
    DNAT4_DATA_LEN, DNAT4_DATA_TYPE, HPORTS4_KEY_LEN, HPORTS4_KEY_TYPE, PORTS4_KEY_LEN,
    PORTS4_KEY_TYPE, TYPE_IPADDR,
};
use super::nft_sys::{RawExpr, Val};

pub(crate) const TABLE: &CStr = c"nethook";
pub(crate) const MASQ4: &CStr = c"masq4";
pub(crate) const PORTS4: &CStr = c"ports4";
pub(crate) const HPORTS4: &CStr = c"hports4";

/// A named set or map of the skeleton.
pub(crate) struct SetSpec {
    pub name: &'static CStr,
    pub id: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub flags: u32,
    /// Map data (type, length).
    pub data: Option<(u32, u32)>,
}

pub(crate) const SETS: [SetSpec; 3] = [
    SetSpec {
        name: MASQ4,
        id: 1,
        key_type: TYPE_IPADDR,
        key_len: 4,
        flags: libc::NFT_SET_INTERVAL as u32,
        data: None,
    },
    SetSpec {
        name: PORTS4,
        id: 2,
        key_type: PORTS4_KEY_TYPE,
        key_len: PORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
    },
    SetSpec {
        name: HPORTS4,
        id: 3,
        key_type: HPORTS4_KEY_TYPE,
        key_len: HPORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
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
    pub name: &'static CStr,
    pub kind: ChainKind,
}

// Standard priorities (nft names): raw -300, dstnat -100, filter 0, srcnat 100.
const PRIO_RAW: i32 = -300;
const PRIO_DSTNAT: i32 = -100;
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;

/// Chains in creation order: `publish` first, since base chains jump to it.
pub(crate) fn chains() -> Vec<ChainSpec> {
    use nftnl::{ChainType as T, Hook as H};
    let base = |name, ty, hook, priority| ChainSpec {
        name,
        kind: ChainKind::Base { ty, hook, priority },
    };
    vec![
        ChainSpec {
            name: c"publish",
            kind: ChainKind::Regular,
        },
        base(c"prerouting", T::Nat, H::PreRouting, PRIO_DSTNAT),
        base(c"output", T::Nat, H::Out, PRIO_DSTNAT),
        base(c"postrouting", T::Nat, H::PostRouting, PRIO_SRCNAT),
        base(c"guard", T::Filter, H::PreRouting, PRIO_RAW),
        base(c"forward", T::Filter, H::Forward, PRIO_FILTER),
    ]
}

/// One rule: chain, comment (shown by `nft list`), expressions.
pub(crate) struct RuleSpec {
    pub chain: &'static CStr,
    pub comment: &'static CStr,
    pub exprs: Vec<RawExpr>,
}

// ---- expression constructors (registers: 1 = 128-bit reg 1, 9/10 = 32-bit reg32_01/02) ----

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG32_01: u32 = 9;
const REG32_02: u32 = 10;

const NF_DROP: u32 = 0;
const NFPROTO_IPV4: u8 = 2;
const RTN_LOCAL: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const IPS_DST_NAT: u32 = 1 << 5;
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
    [
        e(
            c"ct",
            vec![
                (sys::NFTNL_EXPR_CT_KEY, Val::U32(libc::NFT_CT_STATUS as u32)),
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
                    Val::Data(IPS_DST_NAT.to_ne_bytes().to_vec()),
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
        e(
            c"immediate",
            vec![
                (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
                (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(libc::NFT_JUMP as u32)),
                (sys::NFTNL_EXPR_IMM_CHAIN, Val::Str(CString::from(chain))),
            ],
        ),
    ]
}

fn cat(parts: Vec<Vec<RawExpr>>) -> Vec<RawExpr> {
    parts.into_iter().flatten().collect()
}

/// All rules of the skeleton, in chain order. Mirrors testdata/nft/skeleton.nft exactly.
pub(crate) fn rules() -> Vec<RuleSpec> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    vec![
        RuleSpec {
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
            chain: c"prerouting",
            comment: c"traffic to a host address may be for a published port",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        RuleSpec {
            chain: c"output",
            comment: c"host processes reach published ports too",
            exprs: fib_daddr_local_jump(c"publish"),
        },
        RuleSpec {
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
            chain: c"guard",
            comment: c"CVE-2020-8558: route_localnet must not let other interfaces reach 127.0.0.0/8",
            exprs: cat(vec![
                // `iif != "lo"`: lo is ifindex 1 in every network namespace.
                vec![meta(libc::NFT_META_IIF, REG_1), cmp(libc::NFT_CMP_NEQ, 1u32.to_ne_bytes().to_vec())],
                is_ipv4().into(),
                vec![
                    payload(nh, IP4_DADDR, 1, REG_1),
                    cmp(libc::NFT_CMP_EQ, vec![127]),
                    e(
                        c"immediate",
                        vec![
                            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
                            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(NF_DROP)),
                        ],
                    ),
                ],
            ]),
        },
    ]
}
