//! The skeleton's part for services (issue 22, design P of /work/notes/h22-research-svc.md):
//! dispatch maps from a VIP (or a published host port) to the service's chain, the sets of
//! services without members (rejected in filter chains: a nat chain cannot reject), and the
//! affinity recorder. Per-service objects (chain `svc-NAME`, its maps) are `firewall::svc_plan`.

use std::ffi::CStr;

use super::expr::*;
use super::{ChainKind, ChainSpec, RuleSpec, SetSpec, TableFamily};
use crate::firewall::encode::{
    concat_type, HPORTS4_KEY_LEN, HPORTS4_KEY_TYPE, HPORTS6_KEY_LEN, HPORTS6_KEY_TYPE,
    PORTS4_KEY_LEN, PORTS4_KEY_TYPE, TYPE_IP6ADDR, TYPE_IPADDR, TYPE_NFPROTO,
};
use crate::sys::nft::RawExpr;

pub(crate) const SVC4: &CStr = c"svc4";
pub(crate) const SVC6: &CStr = c"svc6";
pub(crate) const SVCNONE4: &CStr = c"svcnone4";
pub(crate) const SVCNONE6: &CStr = c"svcnone6";
pub(crate) const SVCPORTS: &CStr = c"svcports";
pub(crate) const HSVCPORTS4: &CStr = c"hsvcports4";
pub(crate) const HSVCPORTS6: &CStr = c"hsvcports6";
pub(crate) const SVCAFF4: &CStr = c"svcaff4";
pub(crate) const SVCAFF6: &CStr = c"svcaff6";
/// The inet table's probe since services: a table without it is re-created on upgrade.
pub(crate) const PROBE_SVC: &CStr = c"probe_svc";

/// Map data of a verdict map (`: verdict`): nft sends length 0.
const VERDICT: Option<(u32, u32)> = Some((libc::NFT_DATA_VERDICT, 0));
const MAP: u32 = libc::NFT_SET_MAP as u32;
/// `ct state new`
const CT_STATE_NEW: u32 = 1 << 3;

const fn vmap(name: &'static CStr, id: u32, key_type: u32, key_len: u32) -> SetSpec {
    SetSpec {
        family: TableFamily::Inet,
        name,
        id,
        key_type,
        key_len,
        flags: MAP,
        data: VERDICT,
        concat: &[],
        key_byteorder: None,
        comment: None,
    }
}

const fn plain(name: &'static CStr, id: u32, key_type: u32, key_len: u32) -> SetSpec {
    SetSpec {
        data: None,
        flags: 0,
        ..vmap(name, id, key_type, key_len)
    }
}

/// The sets of the services part (ids after the rest of the skeleton's).
pub(crate) const SVC_SETS: [SetSpec; 10] = [
    vmap(SVC4, 20, HPORTS4_KEY_TYPE, HPORTS4_KEY_LEN),
    vmap(SVC6, 21, HPORTS6_KEY_TYPE, HPORTS6_KEY_LEN),
    plain(SVCNONE4, 22, HPORTS4_KEY_TYPE, HPORTS4_KEY_LEN),
    plain(SVCNONE6, 23, HPORTS6_KEY_TYPE, HPORTS6_KEY_LEN),
    vmap(SVCPORTS, 24, PORTS4_KEY_TYPE, PORTS4_KEY_LEN),
    vmap(HSVCPORTS4, 25, HPORTS4_KEY_TYPE, HPORTS4_KEY_LEN),
    vmap(HSVCPORTS6, 26, HPORTS6_KEY_TYPE, HPORTS6_KEY_LEN),
    vmap(SVCAFF4, 27, concat_type(&[TYPE_IPADDR]), 4),
    vmap(SVCAFF6, 28, concat_type(&[TYPE_IP6ADDR]), 16),
    SetSpec {
        family: TableFamily::Inet,
        name: PROBE_SVC,
        id: 29,
        key_type: TYPE_NFPROTO,
        key_len: 1,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: Some(0),
        comment: Some(
            c"version probe: tables without this set predate services and are re-created",
        ),
    },
];

/// The chains of the services part, after the rest of table inet's.
pub(crate) fn chains() -> Vec<ChainSpec> {
    use nftnl::{ChainType as T, Hook as H};
    let regular = |name| ChainSpec {
        family: TableFamily::Inet,
        name,
        kind: ChainKind::Regular,
    };
    let filter = |name, hook, priority| ChainSpec {
        family: TableFamily::Inet,
        name,
        kind: ChainKind::Base {
            ty: T::Filter,
            hook,
            priority,
        },
    };
    vec![
        regular(c"services"),
        regular(c"svcnone"),
        regular(c"svcreject"),
        // dstnat - 10: before NAT would look at the packet; output's must be numeric in nft.
        filter(c"svcpre", H::PreRouting, -110),
        filter(c"svcout", H::Out, -110),
        regular(c"svcaff"),
        // After NAT chose the member (prio > dstnat), before the forward filter (0).
        filter(c"svcaffwd", H::Forward, -1),
        filter(c"svcaffout", H::Out, -1),
    ]
}

fn rule(chain: &'static CStr, comment: &'static CStr, exprs: Vec<RawExpr>) -> RuleSpec {
    RuleSpec {
        family: TableFamily::Inet,
        chain,
        comment,
        exprs,
    }
}

/// `ip daddr . meta l4proto . th dport` into registers (after `meta nfproto ipv4`).
fn daddr_proto_port4() -> Vec<RawExpr> {
    let (nh, th) = (
        libc::NFT_PAYLOAD_NETWORK_HEADER,
        libc::NFT_PAYLOAD_TRANSPORT_HEADER,
    );
    cat(vec![
        is_ipv4().into(),
        vec![
            payload(nh, IP4_DADDR, 4, REG_1),
            meta(libc::NFT_META_L4PROTO, REG32_01),
            payload(th, 2, 2, REG32_02),
        ],
    ])
}

/// `ip6 daddr . meta l4proto . th dport` into registers (after `meta nfproto ipv6`).
fn daddr_proto_port6() -> Vec<RawExpr> {
    let (nh, th) = (
        libc::NFT_PAYLOAD_NETWORK_HEADER,
        libc::NFT_PAYLOAD_TRANSPORT_HEADER,
    );
    cat(vec![
        is_ipv6().into(),
        vec![
            payload(nh, IP6_DADDR, 16, REG_1),
            meta(libc::NFT_META_L4PROTO, REG_2),
            payload(th, 2, 2, REG32_05),
        ],
    ])
}

fn ct_state_new() -> [RawExpr; 3] {
    ct_any_bit(libc::NFT_CT_STATE, CT_STATE_NEW)
}

/// `reject` in the inet family: `with tcp reset` (type 1 code 0), or icmpx port-unreachable.
fn reject(ty: i32, code: i32) -> RawExpr {
    e(
        c"reject",
        vec![
            (
                nftnl::nftnl_sys::NFTNL_EXPR_REJECT_TYPE,
                Val::U32(ty as u32),
            ),
            (
                nftnl::nftnl_sys::NFTNL_EXPR_REJECT_CODE,
                Val::U32(code as u32),
            ),
        ],
    )
}

/// `ct original ip daddr` / `ct original ip6 daddr`
fn ct_original_daddr(key: i32) -> RawExpr {
    use nftnl::nftnl_sys as sys;
    e(
        c"ct",
        vec![
            (sys::NFTNL_EXPR_CT_KEY, Val::U32(key as u32)),
            (sys::NFTNL_EXPR_CT_DIR, Val::U32(0)),
            (sys::NFTNL_EXPR_CT_DREG, Val::U32(REG_1)),
        ],
    )
}

use crate::sys::nft::Val;

/// The rules of chain `publish` for services on one host address (each after its container
/// twin `hports4`/`hports6`, so before the loopback returns: as for containers, a port
/// published on 127.0.0.1 itself is meant).
pub(crate) fn publish_host_rule(ipv6: bool) -> RuleSpec {
    if ipv6 {
        rule(
            c"publish",
            c"service published on one host IPv6 address: hsvcports6 goes to its chain",
            cat(vec![
                daddr_proto_port6(),
                vec![lookup(HSVCPORTS6, Some(REG_VERDICT), false)],
            ]),
        )
    } else {
        rule(
            c"publish",
            c"service published on one host address: hsvcports4 goes to its chain",
            cat(vec![
                daddr_proto_port4(),
                vec![lookup(HSVCPORTS4, Some(REG_VERDICT), false)],
            ]),
        )
    }
}

/// The last rule of `publish`, after both loopback returns: a service on every host address.
pub(crate) fn publish_any_rule() -> RuleSpec {
    rule(
        c"publish",
        c"service published on every host address: svcports goes to its chain (either family)",
        vec![
            meta(libc::NFT_META_L4PROTO, REG_1),
            payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG32_01),
            lookup(SVCPORTS, Some(REG_VERDICT), false),
        ],
    )
}

/// `jump services` in nat prerouting and output, before `publish`: a VIP is never a host
/// address, so the order changes no verdict, and this way traffic to a VIP skips the fib lookup.
pub(crate) fn jump_rule(chain: &'static CStr) -> RuleSpec {
    rule(
        chain,
        c"traffic to a service VIP goes to the service's chain (svc4/svc6)",
        vec![jump(c"services")],
    )
}

/// The rules of the services part's own chains.
pub(crate) fn rules() -> Vec<RuleSpec> {
    let l4 = libc::NFT_META_L4PROTO;
    vec![
        rule(
            c"services",
            c"IPv4 VIP . proto . port of a service with members: goto its chain",
            cat(vec![daddr_proto_port4(), vec![lookup(SVC4, Some(REG_VERDICT), false)]]),
        ),
        rule(
            c"services",
            c"IPv6 VIP . proto . port of a service with members: goto its chain",
            cat(vec![daddr_proto_port6(), vec![lookup(SVC6, Some(REG_VERDICT), false)]]),
        ),
        rule(
            c"svcnone",
            c"IPv4 VIP . proto . port of a service without members: refused",
            cat(vec![daddr_proto_port4(), vec![lookup(SVCNONE4, None, false), jump(c"svcreject")]]),
        ),
        rule(
            c"svcnone",
            c"IPv6 VIP . proto . port of a service without members: refused",
            cat(vec![daddr_proto_port6(), vec![lookup(SVCNONE6, None, false), jump(c"svcreject")]]),
        ),
        rule(
            c"svcreject",
            c"TCP: a reset, as a closed port answers",
            vec![meta(l4, REG_1), cmp(libc::NFT_CMP_EQ, vec![6]), reject(libc::NFT_REJECT_TCP_RST, 0)],
        ),
        rule(
            c"svcreject",
            c"anything else: port unreachable",
            vec![reject(libc::NFT_REJECT_ICMPX_UNREACH, libc::NFT_REJECT_ICMPX_PORT_UNREACH)],
        ),
        rule(
            c"svcpre",
            c"new connections to a service without members (not lo: unpatched kernels warn on reject of looped packets here)",
            cat(vec![
                vec![meta(libc::NFT_META_IIF, REG_1), cmp(libc::NFT_CMP_NEQ, 1u32.to_ne_bytes().to_vec())],
                ct_state_new().into(),
                vec![jump(c"svcnone")],
            ]),
        ),
        rule(
            c"svcout",
            c"host connections to a service without members",
            cat(vec![ct_state_new().into(), vec![jump(c"svcnone")]]),
        ),
        rule(
            c"svcaff",
            c"a new connection to an IPv4 VIP of a service with affinity: record the member chosen",
            cat(vec![
                is_ipv4().into(),
                vec![ct_original_daddr(libc::NFT_CT_DST_IP), lookup(SVCAFF4, Some(REG_VERDICT), false)],
            ]),
        ),
        rule(
            c"svcaff",
            c"a new connection to an IPv6 VIP of a service with affinity: record the member chosen",
            cat(vec![
                is_ipv6().into(),
                vec![ct_original_daddr(libc::NFT_CT_DST_IP6), lookup(SVCAFF6, Some(REG_VERDICT), false)],
            ]),
        ),
        rule(
            c"svcaffwd",
            c"forwarded new DNATed connections: affinity recorder",
            cat(vec![ct_state_new().into(), ct_status_dnat().into(), vec![jump(c"svcaff")]]),
        ),
        rule(
            c"svcaffout",
            c"the host's new DNATed connections: affinity recorder",
            cat(vec![ct_state_new().into(), ct_status_dnat().into(), vec![jump(c"svcaff")]]),
        ),
    ]
}
