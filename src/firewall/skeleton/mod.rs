//! The static part of nethook's two tables, described as data: `table inet nethook` (NAT for
//! published ports and masquerade of both families, the 127.0.0.1 guard, isolation between
//! networks, anti-spoofing of routed networks' host veths) and
//! `table bridge nethook` (anti-spoofing at the host end of every container's veth, IPv6 and
//! neighbour discovery included; no router advertisements from the host into containers).
//!
//! Versions: each table has a probe set ([`PROBES`]), the newest object of that table. A table
//! without its probe was made by an older nethook and is re-created whole (see `tables.rs`).
//! **Whenever the skeleton of a table changes, give it a new probe** (a new set that every
//! element batch touches, or a renamed one), or hosts running an older nethook keep old rules.
//!
//! The bytecode of every rule is pinned by golden tests against `nft --debug=netlink` output
//! (testdata/nft/). The nft source the references were generated from is testdata/nft/skeleton.nft.

use std::ffi::CStr;

mod bridge;
pub(crate) mod expr;
mod inet;
mod services;

pub(crate) use services::{
    HSVCPORTS4, HSVCPORTS6, PROBE_SVC, SVC4, SVC6, SVCAFF4, SVCAFF6, SVCNONE4, SVCNONE6, SVCPORTS,
};

use super::encode::{
    ADDRS4_KEY_LEN, ADDRS4_KEY_TYPE, ADDRS6_KEY_LEN, ADDRS6_KEY_TYPE, DNAT4_DATA_LEN,
    DNAT4_DATA_TYPE, DNAT6_DATA_LEN, DNAT6_DATA_TYPE, HPORTS4_KEY_LEN, HPORTS4_KEY_TYPE,
    HPORTS6_KEY_LEN, HPORTS6_KEY_TYPE, INTRA4_FIELDS, INTRA4_KEY_LEN, INTRA4_KEY_TYPE,
    INTRA_KEY_LEN, INTRA_KEY_TYPE, L2OPEN_KEY_LEN, L2OPEN_KEY_TYPE, MACS_KEY_LEN, MACS_KEY_TYPE,
    NETS_KEY_LEN, NETS_KEY_TYPE, NOMASQ4_FIELDS, NOMASQ4_KEY_LEN, NOMASQ4_KEY_TYPE, NOMASQ6_FIELDS,
    NOMASQ6_KEY_LEN, NOMASQ6_KEY_TYPE, PORTS4_KEY_LEN, PORTS4_KEY_TYPE, RADDRS4_KEY_LEN,
    RADDRS4_KEY_TYPE, TYPE_IP6ADDR, TYPE_IPADDR, TYPE_NFPROTO,
};
use super::types::TableFamily;
use crate::sys::nft::RawExpr;

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
pub(crate) const NOMASQ4: &CStr = c"nomasq4";
pub(crate) const RADDRS4: &CStr = c"raddrs4";
pub(crate) const INTRA4: &CStr = c"intra4";
pub(crate) const MASQ6: &CStr = c"masq6";
pub(crate) const PORTS6: &CStr = c"ports6";
pub(crate) const HPORTS6: &CStr = c"hports6";
pub(crate) const NOMASQ6: &CStr = c"nomasq6";
pub(crate) const ADDRS6: &CStr = c"addrs6";
/// The probe set of both tables (one in each, of the table's key type).
pub(crate) const PROBE_IPV6: &CStr = c"probe_ipv6";

/// The newest set of each table: present means the table has today's skeleton. Every batch
/// that adds elements to a table touches its probe (see `probe.rs`), so the first
/// setup after an upgrade fails with ENOENT and re-creates the old table.
///
/// Both tables' newest objects are IPv6's (`masq6`, `ports6`, `hports6`, `nomasq6`; `addrs6`,
/// chains `antispoof6`, `nd6` and `output`), but each probe is a hash set of its own
/// (`probe_ipv6`), as `probe_routed` (inet) and `l2open` (bridge) were before: `masq6` and
/// `nomasq6` are interval sets, where even re-adding an element that is there makes the kernel
/// clone the set's lookup tables, a cost every setup would pay. `probe_ipv6` replaced
/// `probe_routed` and `l2open` as probes: a table without it predates IPv6. In the inet table,
/// `probe_svc` (services, `skeleton/services.rs`) replaced `probe_ipv6`.
pub(crate) const PROBES: [(TableFamily, &CStr); 2] = [
    (TableFamily::Inet, PROBE_SVC),
    (TableFamily::Bridge, PROBE_IPV6),
];

/// `NFT_SET_CONCAT` (linux/netfilter/nf_tables.h; not in libc): a set of concatenations with
/// intervals, which the kernel serves with its pipapo backend.
const NFT_SET_CONCAT: u32 = 0x80;

/// nftables' `NFTNL_UDATA_SET_KEYBYTEORDER` values.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// A named set or map of the skeleton.
pub(crate) struct SetSpec {
    pub family: TableFamily,
    pub name: &'static CStr,
    /// `NFTA_SET_ID`: unique within the batch.
    pub id: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub flags: u32,
    /// Map data (type, length).
    pub data: Option<(u32, u32)>,
    /// Field lengths of an interval concatenation (`NFTA_SET_DESC_CONCAT`); empty otherwise.
    pub concat: &'static [u8],
    /// Key byte order in the set's user data, as nft records it for single-type sets (nft needs
    /// it to print interval sets); `None` for maps and concatenations, as before.
    pub key_byteorder: Option<u32>,
    /// Shown by `nft list`.
    pub comment: Option<&'static CStr>,
}

pub(crate) const SETS: [SetSpec; 18] = [
    SetSpec {
        family: TableFamily::Inet,
        name: MASQ4,
        id: 1,
        key_type: TYPE_IPADDR,
        key_len: 4,
        flags: libc::NFT_SET_INTERVAL as u32,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_BIG),
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: PORTS4,
        id: 2,
        key_type: PORTS4_KEY_TYPE,
        key_len: PORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
        concat: &[],
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: HPORTS4,
        id: 3,
        key_type: HPORTS4_KEY_TYPE,
        key_len: HPORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT4_DATA_TYPE, DNAT4_DATA_LEN)),
        concat: &[],
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: NETS,
        id: 4,
        key_type: NETS_KEY_TYPE,
        key_len: NETS_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_HOST),
        comment: Some(c"bridge of every nethook network"),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: INTRA,
        id: 5,
        key_type: INTRA_KEY_TYPE,
        key_len: INTRA_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: None,
        comment: Some(c"bridge . bridge of every nethook network: its containers talk freely"),
    },
    SetSpec {
        family: TableFamily::Bridge,
        name: MACS,
        id: 6,
        key_type: MACS_KEY_TYPE,
        key_len: MACS_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: None,
        comment: Some(c"host veth . MAC of every endpoint"),
    },
    SetSpec {
        family: TableFamily::Bridge,
        name: ADDRS4,
        id: 7,
        key_type: ADDRS4_KEY_TYPE,
        key_len: ADDRS4_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: None,
        comment: Some(c"host veth . MAC . IPv4 address of every endpoint"),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: FWD_GUARD,
        id: 8,
        key_type: TYPE_NFPROTO,
        key_len: 1,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_INVALID),
        comment: Some(
            c"ipv4/ipv6 when nethook turned that family's forwarding on: forward only what touches its networks",
        ),
    },
    SetSpec {
        family: TableFamily::Bridge,
        name: L2OPEN,
        id: 9,
        key_type: L2OPEN_KEY_TYPE,
        key_len: L2OPEN_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_HOST),
        comment: Some(c"host veth of every endpoint whose network lets it send any ethertype"),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: NOMASQ4,
        id: 10,
        key_type: NOMASQ4_KEY_TYPE,
        key_len: NOMASQ4_KEY_LEN,
        flags: libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT,
        data: None,
        concat: &NOMASQ4_FIELDS,
        key_byteorder: None,
        comment: Some(
            c"subnet . CIDR it is routed to and from with its own addresses (--no-masquerade-to)",
        ),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: RADDRS4,
        id: 11,
        key_type: RADDRS4_KEY_TYPE,
        key_len: RADDRS4_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: None,
        comment: Some(c"routed host veth . container MAC . IPv4 address of every routed endpoint"),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: INTRA4,
        id: 12,
        key_type: INTRA4_KEY_TYPE,
        key_len: INTRA4_KEY_LEN,
        flags: libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT,
        data: None,
        concat: &INTRA4_FIELDS,
        key_byteorder: None,
        comment: Some(c"subnet . subnet of every routed network: its containers talk freely"),
    },
    SetSpec {
        family: TableFamily::Inet,
        name: MASQ6,
        id: 13,
        key_type: TYPE_IP6ADDR,
        key_len: 16,
        flags: libc::NFT_SET_INTERVAL as u32,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_BIG),
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: PORTS6,
        id: 14,
        key_type: PORTS4_KEY_TYPE,
        key_len: PORTS4_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT6_DATA_TYPE, DNAT6_DATA_LEN)),
        concat: &[],
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: HPORTS6,
        id: 15,
        key_type: HPORTS6_KEY_TYPE,
        key_len: HPORTS6_KEY_LEN,
        flags: libc::NFT_SET_MAP as u32,
        data: Some((DNAT6_DATA_TYPE, DNAT6_DATA_LEN)),
        concat: &[],
        key_byteorder: None,
        comment: None,
    },
    SetSpec {
        family: TableFamily::Inet,
        name: NOMASQ6,
        id: 16,
        key_type: NOMASQ6_KEY_TYPE,
        key_len: NOMASQ6_KEY_LEN,
        flags: libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT,
        data: None,
        concat: &NOMASQ6_FIELDS,
        key_byteorder: None,
        comment: Some(c"IPv6 subnet . CIDR it is routed to and from with its own addresses"),
    },
    SetSpec {
        family: TableFamily::Bridge,
        name: ADDRS6,
        id: 18,
        key_type: ADDRS6_KEY_TYPE,
        key_len: ADDRS6_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: None,
        comment: Some(
            c"host veth . MAC . IPv6 address (global, and fe80:: EUI-64 of the MAC) of every endpoint",
        ),
    },
    SetSpec {
        family: TableFamily::Bridge,
        name: PROBE_IPV6,
        id: 19,
        key_type: L2OPEN_KEY_TYPE,
        key_len: L2OPEN_KEY_LEN,
        flags: 0,
        data: None,
        concat: &[],
        key_byteorder: Some(BYTEORDER_HOST),
        comment: Some(c"version probe: tables without this set predate IPv6 and are re-created"),
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
    pub family: TableFamily,
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
        regular(TableFamily::Inet, c"publish"),
        base(
            TableFamily::Inet,
            c"prerouting",
            T::Nat,
            H::PreRouting,
            PRIO_DSTNAT,
        ),
        base(TableFamily::Inet, c"output", T::Nat, H::Out, PRIO_DSTNAT),
        base(
            TableFamily::Inet,
            c"postrouting",
            T::Nat,
            H::PostRouting,
            PRIO_SRCNAT,
        ),
        base(
            TableFamily::Inet,
            c"guard",
            T::Filter,
            H::PreRouting,
            PRIO_RAW,
        ),
        regular(TableFamily::Inet, c"rantispoof"),
        base(
            TableFamily::Inet,
            c"forward",
            T::Filter,
            H::Forward,
            PRIO_FILTER,
        ),
        regular(TableFamily::Inet, c"isolate"),
    ]
    .into_iter()
    .chain(services::chains())
    .chain([
        // Bridge family: NF_BR_PRE_ROUTING has the value of NF_INET_PRE_ROUTING. At -200 this runs
        // before br_netfilter (priority 0) hands bridged IPv4 to the inet hooks.
        base(
            TableFamily::Bridge,
            c"prerouting",
            T::Filter,
            H::PreRouting,
            PRIO_BRIDGE_FILTER,
        ),
        // NF_BR_LOCAL_OUT has the value of NF_INET_LOCAL_OUT.
        base(
            TableFamily::Bridge,
            c"output",
            T::Filter,
            H::Out,
            PRIO_BRIDGE_FILTER,
        ),
        regular(TableFamily::Bridge, c"antispoof"),
        regular(TableFamily::Bridge, c"antispoof6"),
        regular(TableFamily::Bridge, c"nd6"),
    ])
    .collect()
}

/// Every set of the skeleton, both tables (services' last).
pub(crate) fn all_sets() -> impl Iterator<Item = &'static SetSpec> {
    SETS.iter().chain(services::SVC_SETS.iter())
}

/// One rule: its table's family, chain, comment (shown by `nft list`), expressions.
pub(crate) struct RuleSpec {
    pub family: TableFamily,
    pub chain: &'static CStr,
    pub comment: &'static CStr,
    pub exprs: Vec<RawExpr>,
}

/// All rules of the skeleton, in chain order. Mirrors testdata/nft/skeleton.nft exactly.
pub(crate) fn rules() -> Vec<RuleSpec> {
    let mut all = inet::base_rules();
    all.extend(inet::routed_antispoof_rules());
    all.extend(inet::isolation_rules());
    all.extend(services::rules());
    all.extend(bridge::antispoof_rules());
    all.extend(bridge::antispoof6_rules());
    all.extend(bridge::nd6_rules());
    all
}
