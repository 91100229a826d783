//! The rules of a service's chains as expressions: the DNAT to a member (by slot or by
//! affinity) and the affinity recorder. Pinned against `nft --debug=netlink` by
//! `svc_plan_tests.rs` (testdata/nft/services.nft).

use std::ffi::CStr;

use super::skeleton::expr::*;
use crate::sys::nft::{RawExpr, Val};

/// The user data nft gives `typeof numgen random mod 1 : ip daddr` (`: ip6 daddr` for IPv6):
/// key and data byte order and the typeof expressions, so that `nft list` shows the slot
/// maps as written (copied from `nft --debug=mnl -f testdata/nft/services.nft`).
pub(super) fn slot_map_udata(ipv6: bool) -> Vec<u8> {
    const V4: &str = "000401000000010402000000031a00041700000001120004010000000104010000000204000000000414000407000000010c00040c00000001040c000000060400000000";
    const V6: &str = "000401000000010402000000031a00041700000001120004010000000104010000000204000000000414000407000000010c00040d000000010409000000060400000000";
    let hex = if ipv6 { V6 } else { V4 };
    (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// `NF_NAT_RANGE_PROTO_SPECIFIED`: the port comes from a register.
const NAT_PROTO_SPECIFIED: u32 = 2;

pub(super) enum Pick<'a> {
    /// `numgen random mod N map @m`
    Slot(u32, &'a CStr),
    /// `ip saddr map @a` (falls through on a miss)
    Affinity(&'a CStr),
}

/// `meta nfproto ipvX dnat ipX to <pick> : meta l4proto . th dport map @p`. nft itself
/// wants a transport match before a port mapping (`meta l4proto tcp`); the kernel does not,
/// and only tcp/udp/sctp keys dispatch here, so the rule has none (see the golden test).
pub(super) fn dnat_rule(ipv6: bool, pick: Pick<'_>, port_map: &CStr) -> Vec<RawExpr> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let mut x: Vec<RawExpr> = if ipv6 {
        is_ipv6().into()
    } else {
        is_ipv4().into()
    };
    match pick {
        Pick::Slot(n, m) => {
            x.push(numgen(n));
            x.push(lookup(m, Some(REG_1), false));
        }
        Pick::Affinity(a) => {
            let (at, len) = if ipv6 {
                (IP6_SADDR, 16)
            } else {
                (IP4_SADDR, 4)
            };
            x.push(payload(nh, at, len, REG_1));
            x.push(lookup(a, Some(REG_1), false));
        }
    }
    x.push(meta(libc::NFT_META_L4PROTO, REG_2));
    x.push(payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG32_05));
    let mut l = lookup(port_map, Some(REG_2), false);
    if let Some(sreg) = l
        .attrs
        .iter_mut()
        .find(|(a, _)| *a == nftnl::nftnl_sys::NFTNL_EXPR_LOOKUP_SREG)
    {
        sreg.1 = Val::U32(REG_2);
    }
    x.push(l);
    x.push(nat(ipv6));
    x
}

fn numgen(modulus: u32) -> RawExpr {
    use nftnl::nftnl_sys as sys;
    e(
        c"numgen",
        vec![
            (sys::NFTNL_EXPR_NG_DREG, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_NG_MODULUS, Val::U32(modulus)),
            (
                sys::NFTNL_EXPR_NG_TYPE,
                Val::U32(libc::NFT_NG_RANDOM as u32),
            ),
        ],
    )
}

fn nat(ipv6: bool) -> RawExpr {
    use nftnl::nftnl_sys as sys;
    let family = if ipv6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
    e(
        c"nat",
        vec![
            (
                sys::NFTNL_EXPR_NAT_TYPE,
                Val::U32(libc::NFT_NAT_DNAT as u32),
            ),
            (sys::NFTNL_EXPR_NAT_FAMILY, Val::U32(u32::from(family))),
            (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, Val::U32(REG_2)),
            (sys::NFTNL_EXPR_NAT_FLAGS, Val::U32(NAT_PROTO_SPECIFIED)),
        ],
    )
}

/// `update @a { ip saddr timeout Ts : ip daddr }` (after `meta nfproto`), run after NAT: the
/// destination is the member chosen, the source still the client.
pub(super) fn recorder_rule(ipv6: bool, set: &CStr, timeout_s: u32) -> Vec<RawExpr> {
    use nftnl::nftnl_sys as sys;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let (mut x, s, d, len): (Vec<RawExpr>, u32, u32, u32) = if ipv6 {
        (is_ipv6().into(), IP6_SADDR, IP6_DADDR, 16)
    } else {
        (is_ipv4().into(), IP4_SADDR, IP4_DADDR, 4)
    };
    x.push(payload(nh, s, len, REG_1));
    x.push(payload(nh, d, len, REG_2));
    x.push(e(
        c"dynset",
        vec![
            (sys::NFTNL_EXPR_DYNSET_SREG_KEY, Val::U32(REG_1)),
            (sys::NFTNL_EXPR_DYNSET_SREG_DATA, Val::U32(REG_2)),
            (
                sys::NFTNL_EXPR_DYNSET_OP,
                Val::U32(libc::NFT_DYNSET_OP_UPDATE as u32),
            ),
            (sys::NFTNL_EXPR_DYNSET_SET_NAME, Val::Str(set.into())),
            (
                sys::NFTNL_EXPR_DYNSET_TIMEOUT,
                Val::Data((u64::from(timeout_s) * 1000).to_ne_bytes().to_vec()),
            ),
        ],
    ));
    x
}
