//! Expression constructors for the skeleton's rules, each named after the nft syntax it
//! stands for, and the constants they use. Registers: 1 = 128-bit reg 1, 9/10 = 32-bit
//! reg32_01/02.

use std::ffi::{CStr, CString};

use nftnl::nftnl_sys as sys;

use crate::sys::nft::{RawExpr, Val};

pub(crate) const REG_VERDICT: u32 = 0;
pub(crate) const REG_1: u32 = 1;
/// The 128-bit register after REG_1 (= reg32_04): second field of a concatenation after an ifname.
pub(crate) const REG_2: u32 = 2;
pub(crate) const REG32_01: u32 = 9;
pub(crate) const REG32_02: u32 = 10;
/// reg32_05: third field after a 16-byte one and a 4-byte one (ipv6_addr . inet_proto).
pub(crate) const REG32_05: u32 = 13;
/// reg32_06: third field after ifname (16 bytes) and ether_addr (6 bytes, padded to 8).
pub(crate) const REG32_06: u32 = 14;

pub(crate) const NF_DROP: u32 = 0;
pub(crate) const NF_ACCEPT: u32 = 1;
pub(crate) const IPS_DST_NAT_BIT: u32 = 1 << 5;
/// `ct state` bits (NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)).
pub(crate) const CT_STATE_ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
/// Ethertypes, as the bytes on the wire.
pub(crate) const ETH_P_IP: [u8; 2] = [0x08, 0x00];
pub(crate) const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
pub(crate) const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
pub(crate) const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
pub(crate) const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];
/// Offsets: Ethernet header (source MAC, ethertype); ARP (Ethernet/IPv4) sender MAC and address.
pub(crate) const ETH_SADDR: u32 = 6;
pub(crate) const ETH_TYPE: u32 = 12;
pub(crate) const ARP_SHA: u32 = 8;
pub(crate) const ARP_SPA: u32 = 14;
pub(crate) const NFPROTO_IPV4: u8 = 2;
pub(crate) const NFPROTO_IPV6: u8 = 10;
/// `meta iiftype ether` (ARPHRD_ETHER, a u16 in host order).
pub(crate) const ARPHRD_ETHER: u16 = 1;
pub(crate) const RTN_LOCAL: u32 = 2;
pub(crate) const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub(crate) const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// Offsets in the IPv4 header.
pub(crate) const IP4_SADDR: u32 = 12;
pub(crate) const IP4_DADDR: u32 = 16;
/// Offsets in the IPv6 header: payload length, next header, source, destination.
pub(crate) const IP6_PAYLOAD_LEN: u32 = 4;
pub(crate) const IP6_NEXTHDR: u32 = 6;
pub(crate) const IP6_SADDR: u32 = 8;
pub(crate) const IP6_DADDR: u32 = 24;
/// IP protocol numbers (`meta l4proto`).
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

pub(crate) fn e(name: &'static CStr, attrs: Vec<(u32, Val)>) -> RawExpr {
    RawExpr { name, attrs }
}

pub(crate) fn meta(key: i32, dreg: u32) -> RawExpr {
    e(
        c"meta",
        vec![
            (sys::NFTNL_EXPR_META_KEY, Val::U32(key as u32)),
            (sys::NFTNL_EXPR_META_DREG, Val::U32(dreg)),
        ],
    )
}

pub(crate) fn payload(base: i32, offset: u32, len: u32, dreg: u32) -> RawExpr {
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

pub(crate) fn cmp(op: i32, data: Vec<u8>) -> RawExpr {
    e(
        c"cmp",
        vec![
            (sys::NFTNL_EXPR_CMP_SREG, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_CMP_OP, Val::U32(op as u32)),
            (sys::NFTNL_EXPR_CMP_DATA, Val::Data(data)),
        ],
    )
}

pub(crate) fn lookup(set: &CStr, dreg: Option<u32>, inverted: bool) -> RawExpr {
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
pub(crate) fn is_ipv4() -> [RawExpr; 2] {
    [
        meta(libc::NFT_META_NFPROTO, REG_1),
        cmp(libc::NFT_CMP_EQ, vec![NFPROTO_IPV4]),
    ]
}

/// `ct status dnat`
pub(crate) fn ct_status_dnat() -> [RawExpr; 3] {
    ct_any_bit(libc::NFT_CT_STATUS, IPS_DST_NAT_BIT)
}

/// `ct state established,related`
pub(crate) fn ct_state_established_related() -> [RawExpr; 3] {
    ct_any_bit(libc::NFT_CT_STATE, CT_STATE_ESTABLISHED_RELATED)
}

/// `ct <key> <flags>`: any of the bits in `mask` is set.
pub(crate) fn ct_any_bit(key: i32, mask: u32) -> [RawExpr; 3] {
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
pub(crate) fn dnat4_from_regs() -> RawExpr {
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

/// `dnat ip6 to <addr in REG_1> : <port in REG_2>` (the port follows the 16-byte address).
pub(crate) fn dnat6_from_regs() -> RawExpr {
    e(
        c"nat",
        vec![
            (
                sys::NFTNL_EXPR_NAT_TYPE,
                Val::U32(libc::NFT_NAT_DNAT as u32),
            ),
            (
                sys::NFTNL_EXPR_NAT_FAMILY,
                Val::U32(u32::from(NFPROTO_IPV6)),
            ),
            (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, Val::U32(REG_2)),
        ],
    )
}

pub(crate) fn masq() -> RawExpr {
    e(c"masq", vec![])
}

/// `accept` / `drop`
pub(crate) fn verdict(v: u32) -> RawExpr {
    e(
        c"immediate",
        vec![
            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(v)),
        ],
    )
}

/// A verdict code that is not a netfilter one (`return`: NFT_RETURN, negative).
pub(crate) fn verdict_code(code: i32) -> RawExpr {
    verdict(code as u32)
}

/// `jump <chain>`
pub(crate) fn jump(chain: &CStr) -> RawExpr {
    e(
        c"immediate",
        vec![
            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(libc::NFT_JUMP as u32)),
            (sys::NFTNL_EXPR_IMM_CHAIN, Val::Str(CString::from(chain))),
        ],
    )
}

/// `goto <chain>`
pub(crate) fn goto(chain: &CStr) -> RawExpr {
    e(
        c"immediate",
        vec![
            (sys::NFTNL_EXPR_IMM_DREG, Val::U32(REG_VERDICT)),
            (sys::NFTNL_EXPR_IMM_VERDICT, Val::U32(libc::NFT_GOTO as u32)),
            (sys::NFTNL_EXPR_IMM_CHAIN, Val::Str(CString::from(chain))),
        ],
    )
}

/// `iifname "<prefix>*"` / `oifname != "<prefix>*"` (`key`: NFT_META_IIFNAME or
/// NFT_META_OIFNAME; `op`: NFT_CMP_EQ or NFT_CMP_NEQ): nft compares only the prefix's bytes.
pub(crate) fn ifname_prefix(key: i32, op: i32, prefix: &str) -> [RawExpr; 2] {
    [meta(key, REG_1), cmp(op, prefix.as_bytes().to_vec())]
}

/// `iifname . <mac> . <ipv4> != @set drop`: the anti-spoofing check of both tables (the
/// bridge table's `addrs4`, the inet table's `raddrs4`), the MAC loaded from `base`+`mac_at`,
/// the address from the network header at `ip_at`.
pub(crate) fn addrs4_mismatch_drop(set: &CStr, base: i32, mac_at: u32, ip_at: u32) -> Vec<RawExpr> {
    vec![
        meta(libc::NFT_META_IIFNAME, REG_1),
        payload(base, mac_at, 6, REG_2),
        payload(libc::NFT_PAYLOAD_NETWORK_HEADER, ip_at, 4, REG32_06),
        lookup(set, None, true),
        verdict(NF_DROP),
    ]
}

/// `meta nfproto ipv6`
pub(crate) fn is_ipv6() -> [RawExpr; 2] {
    [
        meta(libc::NFT_META_NFPROTO, REG_1),
        cmp(libc::NFT_CMP_EQ, vec![NFPROTO_IPV6]),
    ]
}

/// The dependencies nft puts before `ether saddr` ... `ip saddr` in an inet table: the input
/// interface is Ethernet (`meta iiftype ether`), and the frame carries IPv4 (`ether type ip`,
/// which in an inet table nft takes instead of `meta nfproto ipv4`).
pub(crate) fn inet_ether_ipv4() -> [RawExpr; 4] {
    let [load_type, is_ip] = ether_type(ETH_P_IP);
    [
        meta(libc::NFT_META_IIFTYPE, REG_1),
        cmp(libc::NFT_CMP_EQ, ARPHRD_ETHER.to_ne_bytes().to_vec()),
        load_type,
        is_ip,
    ]
}

/// `ether type <t>` (bridge family: the link-layer header)
pub(crate) fn ether_type(t: [u8; 2]) -> [RawExpr; 2] {
    [
        payload(libc::NFT_PAYLOAD_LL_HEADER, ETH_TYPE, 2, REG_1),
        cmp(libc::NFT_CMP_EQ, t.to_vec()),
    ]
}

/// `ether type != <t>` (each comparison loads the field again, as nft does)
pub(crate) fn ether_type_is_not(t: [u8; 2]) -> [RawExpr; 2] {
    [
        payload(libc::NFT_PAYLOAD_LL_HEADER, ETH_TYPE, 2, REG_1),
        cmp(libc::NFT_CMP_NEQ, t.to_vec()),
    ]
}

/// `fib daddr type local jump publish`
pub(crate) fn fib_daddr_local_jump(chain: &CStr) -> Vec<RawExpr> {
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

pub(crate) fn cat(parts: Vec<Vec<RawExpr>>) -> Vec<RawExpr> {
    parts.into_iter().flatten().collect()
}
