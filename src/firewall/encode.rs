//! Pure byte encoding of set/map keys, map data and interval elements (no kernel, no unsafe).
//!
//! nftables registers are 32-bit: every field of a concatenation occupies a multiple of 4 bytes,
//! the value left-aligned (network byte order for addresses and ports) and zero padded.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::sys::nft::ElemSpec;

/// Transport protocol of a published port.
pub use crate::model::ports::Proto;

// nftables datatype ids (nftables' `enum datatypes`) and the concatenation encoding
// (`TYPE_BITS` = 6: each component shifted in from the right).
pub(crate) const TYPE_NFPROTO: u32 = 2;
pub(crate) const TYPE_IPADDR: u32 = 7;
pub(crate) const TYPE_IP6ADDR: u32 = 8;
pub(crate) const TYPE_ETHERADDR: u32 = 9;
pub(crate) const TYPE_INET_PROTOCOL: u32 = 12;
pub(crate) const TYPE_INET_SERVICE: u32 = 13;
pub(crate) const TYPE_IFNAME: u32 = 41;

/// An interface name in a key: `IFNAMSIZ` bytes, NUL padded (as `meta iifname` loads it).
pub(crate) const IFNAME_LEN: usize = 16;

pub(crate) const fn concat_type(types: &[u32]) -> u32 {
    let mut t = 0;
    let mut i = 0;
    while i < types.len() {
        t = (t << 6) | types[i];
        i += 1;
    }
    t
}

/// `inet_proto . inet_service`
pub(crate) const PORTS4_KEY_TYPE: u32 = concat_type(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]);
pub(crate) const PORTS4_KEY_LEN: u32 = 8;
/// `ipv4_addr . inet_proto . inet_service`
pub(crate) const HPORTS4_KEY_TYPE: u32 =
    concat_type(&[TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]);
pub(crate) const HPORTS4_KEY_LEN: u32 = 12;
/// `ipv4_addr . inet_service` (map data of ports4/hports4)
pub(crate) const DNAT4_DATA_TYPE: u32 = concat_type(&[TYPE_IPADDR, TYPE_INET_SERVICE]);
pub(crate) const DNAT4_DATA_LEN: u32 = 8;
/// `ifname` (set `nets`: the bridge of every network)
pub(crate) const NETS_KEY_TYPE: u32 = TYPE_IFNAME;
pub(crate) const NETS_KEY_LEN: u32 = IFNAME_LEN as u32;
/// `ifname . ifname` (set `intra`: bridge . bridge)
pub(crate) const INTRA_KEY_TYPE: u32 = concat_type(&[TYPE_IFNAME, TYPE_IFNAME]);
pub(crate) const INTRA_KEY_LEN: u32 = 2 * IFNAME_LEN as u32;
/// `ifname . ether_addr` (set `macs`: host veth . MAC)
pub(crate) const MACS_KEY_TYPE: u32 = concat_type(&[TYPE_IFNAME, TYPE_ETHERADDR]);
pub(crate) const MACS_KEY_LEN: u32 = IFNAME_LEN as u32 + 8;
/// `ifname . ether_addr . ipv4_addr` (set `addrs4`: host veth . MAC . IPv4)
pub(crate) const ADDRS4_KEY_TYPE: u32 = concat_type(&[TYPE_IFNAME, TYPE_ETHERADDR, TYPE_IPADDR]);
pub(crate) const ADDRS4_KEY_LEN: u32 = IFNAME_LEN as u32 + 8 + 4;

/// `ipv4_addr . ipv4_addr` (set `nomasq4`: source subnet . destination, both intervals)
pub(crate) const NOMASQ4_KEY_TYPE: u32 = concat_type(&[TYPE_IPADDR, TYPE_IPADDR]);
pub(crate) const NOMASQ4_KEY_LEN: u32 = 8;
/// The field lengths of `nomasq4`'s key (`NFTA_SET_DESC_CONCAT`).
pub(crate) const NOMASQ4_FIELDS: [u8; 2] = [4, 4];

/// `ifname . ether_addr . ipv4_addr` (set `raddrs4`: routed host veth . MAC . IPv4), the key
/// of `addrs4` in the inet table.
pub(crate) const RADDRS4_KEY_TYPE: u32 = ADDRS4_KEY_TYPE;
pub(crate) const RADDRS4_KEY_LEN: u32 = ADDRS4_KEY_LEN;

/// `ipv4_addr . ipv4_addr` (set `intra4`: a routed network's subnet twice, both intervals),
/// the shape of `nomasq4`.
pub(crate) const INTRA4_KEY_TYPE: u32 = NOMASQ4_KEY_TYPE;
pub(crate) const INTRA4_KEY_LEN: u32 = NOMASQ4_KEY_LEN;
pub(crate) const INTRA4_FIELDS: [u8; 2] = NOMASQ4_FIELDS;

/// `ifname` (set `l2open`: host veths that may send any ethertype)
pub(crate) const L2OPEN_KEY_TYPE: u32 = TYPE_IFNAME;
pub(crate) const L2OPEN_KEY_LEN: u32 = IFNAME_LEN as u32;

/// `meta nfproto` value of IPv4 (`NFPROTO_IPV4`), the key of set `fwd_guard`.
pub(crate) const NFPROTO_IPV4: u8 = 2;
/// `meta nfproto` value of IPv6 (`NFPROTO_IPV6`), the other key of set `fwd_guard`.
pub(crate) const NFPROTO_IPV6: u8 = 10;

/// `ipv6_addr . inet_proto . inet_service` (map `hports6`; `ports6` has the key of `ports4`)
pub(crate) const HPORTS6_KEY_TYPE: u32 =
    concat_type(&[TYPE_IP6ADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]);
pub(crate) const HPORTS6_KEY_LEN: u32 = 24;
/// `ipv6_addr . inet_service` (map data of ports6/hports6)
pub(crate) const DNAT6_DATA_TYPE: u32 = concat_type(&[TYPE_IP6ADDR, TYPE_INET_SERVICE]);
pub(crate) const DNAT6_DATA_LEN: u32 = 20;
/// `ipv6_addr . ipv6_addr` (set `nomasq6`, both intervals)
pub(crate) const NOMASQ6_KEY_TYPE: u32 = concat_type(&[TYPE_IP6ADDR, TYPE_IP6ADDR]);
pub(crate) const NOMASQ6_KEY_LEN: u32 = 32;
pub(crate) const NOMASQ6_FIELDS: [u8; 2] = [16, 16];
/// `ifname . ether_addr . ipv6_addr` (set `addrs6`: host veth . MAC . IPv6)
pub(crate) const ADDRS6_KEY_TYPE: u32 = concat_type(&[TYPE_IFNAME, TYPE_ETHERADDR, TYPE_IP6ADDR]);
pub(crate) const ADDRS6_KEY_LEN: u32 = IFNAME_LEN as u32 + 8 + 16;

/// One field padded to a whole number of 32-bit registers.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Key of `ports4`: `inet_proto . inet_service`.
pub(crate) fn ports4_key(proto: Proto, port: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(8);
    push_field(&mut k, &[proto.number()]);
    push_field(&mut k, &port.to_be_bytes());
    k
}

/// Key of `hports4`: `ipv4_addr . inet_proto . inet_service`.
pub(crate) fn hports4_key(addr: Ipv4Addr, proto: Proto, port: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    push_field(&mut k, &addr.octets());
    push_field(&mut k, &[proto.number()]);
    push_field(&mut k, &port.to_be_bytes());
    k
}

/// Data of both maps: `ipv4_addr . inet_service` (the DNAT target).
pub(crate) fn dnat4_data(addr: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut d = Vec::with_capacity(8);
    push_field(&mut d, &addr.octets());
    push_field(&mut d, &port.to_be_bytes());
    d
}

/// An interface name as a key field: at most 15 bytes, no NUL, NUL padded to 16 bytes.
/// `None` when the name cannot be an interface name (it could never match `iifname`).
pub(crate) fn ifname(name: &str) -> Option<[u8; IFNAME_LEN]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= IFNAME_LEN || b.contains(&0) {
        return None;
    }
    let mut out = [0u8; IFNAME_LEN];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// Key of `nets`: `ifname` (a network's bridge).
pub(crate) fn nets_key(bridge: &[u8; IFNAME_LEN]) -> Vec<u8> {
    bridge.to_vec()
}

/// Key of `intra`: `ifname . ifname` (the bridge twice: iif = oif).
pub(crate) fn intra_key(bridge: &[u8; IFNAME_LEN]) -> Vec<u8> {
    let mut k = Vec::with_capacity(INTRA_KEY_LEN as usize);
    push_field(&mut k, bridge);
    push_field(&mut k, bridge);
    k
}

/// Key of `macs`: `ifname . ether_addr` (host veth . the container's MAC).
pub(crate) fn macs_key(veth: &[u8; IFNAME_LEN], mac: [u8; 6]) -> Vec<u8> {
    let mut k = Vec::with_capacity(MACS_KEY_LEN as usize);
    push_field(&mut k, veth);
    push_field(&mut k, &mac);
    k
}

/// Key of `addrs4`: `ifname . ether_addr . ipv4_addr` (host veth . MAC . the container's IPv4).
pub(crate) fn addrs4_key(veth: &[u8; IFNAME_LEN], mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    let mut k = macs_key(veth, mac);
    push_field(&mut k, &addr.octets());
    k
}

/// Key of `hports6`: `ipv6_addr . inet_proto . inet_service`.
pub(crate) fn hports6_key(addr: Ipv6Addr, proto: Proto, port: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(HPORTS6_KEY_LEN as usize);
    push_field(&mut k, &addr.octets());
    push_field(&mut k, &[proto.number()]);
    push_field(&mut k, &port.to_be_bytes());
    k
}

/// Data of `ports6`/`hports6`: `ipv6_addr . inet_service` (the DNAT target).
pub(crate) fn dnat6_data(addr: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut d = Vec::with_capacity(DNAT6_DATA_LEN as usize);
    push_field(&mut d, &addr.octets());
    push_field(&mut d, &port.to_be_bytes());
    d
}

/// Key of `addrs6`: `ifname . ether_addr . ipv6_addr` (host veth . MAC . one IPv6 address).
pub(crate) fn addrs6_key(veth: &[u8; IFNAME_LEN], mac: [u8; 6], addr: Ipv6Addr) -> Vec<u8> {
    let mut k = macs_key(veth, mac);
    push_field(&mut k, &addr.octets());
    k
}

/// The last address of an IPv6 prefix.
fn last6(net: Ipv6Network) -> Ipv6Addr {
    let host_mask = u128::MAX.checked_shr(u32::from(net.prefix())).unwrap_or(0);
    Ipv6Addr::from(u128::from(net.network()) | host_mask)
}

/// The elements of `masq6` for one prefix: as [`interval_elems`] for IPv4.
pub(crate) fn interval6_elems(net: Ipv6Network) -> Vec<ElemSpec> {
    let start = ElemSpec {
        key: net.network().octets().to_vec(),
        ..Default::default()
    };
    match u128::from(last6(net)).checked_add(1) {
        Some(end) => vec![
            start,
            ElemSpec {
                key: Ipv6Addr::from(end).octets().to_vec(),
                flags: libc::NFT_SET_ELEM_INTERVAL_END as u32,
                ..Default::default()
            },
        ],
        None => vec![ElemSpec {
            userdata: udata_interval_open(),
            ..start
        }],
    }
}

/// The element of `nomasq6` for (subnet, destination): first addresses as the key, last ones
/// as the inclusive end, as for `nomasq4`.
pub(crate) fn nomasq6_elem(subnet: Ipv6Network, destination: Ipv6Network) -> ElemSpec {
    let mut key = subnet.network().octets().to_vec();
    key.extend_from_slice(&destination.network().octets());
    let mut end = last6(subnet).octets().to_vec();
    end.extend_from_slice(&last6(destination).octets());
    ElemSpec {
        key,
        key_end: Some(end),
        ..Default::default()
    }
}

/// libnftnl user-data TLV: type (u8), length (u8), value.
pub(crate) fn udata_u32(ty: u8, val: u32) -> Vec<u8> {
    let mut v = vec![ty, 4];
    v.extend_from_slice(&val.to_ne_bytes());
    v
}

/// `NFTNL_UDATA_SET_ELEM_FLAGS` = `NFTNL_SET_ELEM_F_INTERVAL_OPEN`: what nft attaches to an
/// interval that runs to the end of the address space (no end element exists for it).
pub(crate) fn udata_interval_open() -> Vec<u8> {
    udata_u32(1, 1)
}

/// `NFTNL_UDATA_SET_KEYBYTEORDER`, as nft records it for sets of one type: big endian (2) for
/// `ipv4_addr` (nft needs it to print interval sets), host endian (1) for `ifname`.
pub(crate) fn udata_key_byteorder(order: u32) -> Vec<u8> {
    udata_u32(0, order)
}

/// `NFTNL_UDATA_SET_COMMENT`: the set's comment, NUL terminated (shown by `nft list`).
/// `None` when it does not fit a TLV (the length byte counts the NUL).
pub(crate) fn udata_set_comment(comment: &std::ffi::CStr) -> Option<Vec<u8>> {
    let text = comment.to_bytes_with_nul();
    let len = u8::try_from(text.len()).ok()?;
    let mut v = vec![7, len];
    v.extend_from_slice(text);
    Some(v)
}

/// The exclusive end of a prefix (first address after it), or `None` when the prefix reaches
/// 255.255.255.255.
pub(crate) fn interval_end(net: Ipv4Network) -> Option<Ipv4Addr> {
    u32::from(net.broadcast())
        .checked_add(1)
        .map(Ipv4Addr::from)
}

/// The elements an interval set holds for one prefix: the start (network address, host bits
/// cleared) and, unless the prefix reaches the top of the address space, an end marker at the first
/// address after it (`NFT_SET_ELEM_INTERVAL_END`).
pub(crate) fn interval_elems(net: Ipv4Network) -> Vec<ElemSpec> {
    let start = ElemSpec {
        key: net.network().octets().to_vec(),
        ..Default::default()
    };
    match interval_end(net) {
        Some(end) => vec![
            start,
            ElemSpec {
                key: end.octets().to_vec(),
                flags: libc::NFT_SET_ELEM_INTERVAL_END as u32,
                ..Default::default()
            },
        ],
        None => vec![ElemSpec {
            userdata: udata_interval_open(),
            ..start
        }],
    }
}

/// The element of an interval concatenation (`nomasq4`) for (subnet, destination): the first
/// address of each prefix as the key, the last of each as the inclusive end (`KEY_END`), as
/// nft sends `10.244.1.0/24 . 10.244.0.0/16`.
pub(crate) fn nomasq4_elem(subnet: Ipv4Network, destination: Ipv4Network) -> ElemSpec {
    subnet_pair_elem(subnet, destination)
}

/// The element of `intra4` for a routed network's subnet: `subnet . subnet`, so that a
/// packet whose source and destination are both in it matches.
pub(crate) fn intra4_elem(subnet: Ipv4Network) -> ElemSpec {
    subnet_pair_elem(subnet, subnet)
}

/// `a . b` of two prefixes in an interval concatenation of two `ipv4_addr` fields.
fn subnet_pair_elem(subnet: Ipv4Network, destination: Ipv4Network) -> ElemSpec {
    let mut key = subnet.network().octets().to_vec();
    key.extend_from_slice(&destination.network().octets());
    let mut end = subnet.broadcast().octets().to_vec();
    end.extend_from_slice(&destination.broadcast().octets());
    ElemSpec {
        key,
        key_end: Some(end),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
