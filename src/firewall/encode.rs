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
mod tests {
    use super::*;

    #[test]
    fn concat_type_ids_match_nft() {
        // Values nft 1.0.6 sends (seen with `nft --debug=mnl`): 0x30d, 0x730d, 0x1cd.
        assert_eq!(PORTS4_KEY_TYPE, 0x30d);
        assert_eq!(HPORTS4_KEY_TYPE, 0x730d);
        assert_eq!(DNAT4_DATA_TYPE, 0x1cd);
        // nft --debug=mnl for the isolation and anti-spoofing sets: 0x29, 0xa69, 0xa49, 0x29247.
        assert_eq!(NETS_KEY_TYPE, 0x29);
        assert_eq!(INTRA_KEY_TYPE, 0xa69);
        assert_eq!(MACS_KEY_TYPE, 0xa49);
        assert_eq!(ADDRS4_KEY_TYPE, 0x29247);
        assert_eq!(
            (NETS_KEY_LEN, INTRA_KEY_LEN, MACS_KEY_LEN, ADDRS4_KEY_LEN),
            (16, 32, 24, 28)
        );
    }

    /// The 32-bit words nft --debug=netlink prints for an element key (host order, x86).
    fn words(key: &[u8]) -> String {
        key.chunks(4)
            .map(|w| format!("{:08x}", u32::from_le_bytes(w.try_into().unwrap())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn isolation_and_antispoof_keys_match_nft() {
        let br = ifname("nethook0").unwrap();
        // nft --debug=netlink add element inet nethook nets { "nethook0" }
        assert_eq!(words(&nets_key(&br)), "6874656e 306b6f6f 00000000 00000000");
        // ... intra { "nethook0" . "nethook0" }
        assert_eq!(
            words(&intra_key(&br)),
            "6874656e 306b6f6f 00000000 00000000 6874656e 306b6f6f 00000000 00000000"
        );
        let veth = ifname("nh0123456789ab").unwrap();
        let mac = [0x02, 0x4e, 10, 77, 0, 2];
        // ... bridge nethook macs { "nh0123456789ab" . 02:4e:0a:4d:00:02 }
        assert_eq!(
            words(&macs_key(&veth, mac)),
            "3130686e 35343332 39383736 00006261 4d0a4e02 00000200"
        );
        // ... addrs4 { "nh0123456789ab" . 02:4e:0a:4d:00:02 . 10.77.0.2 }
        assert_eq!(
            words(&addrs4_key(&veth, mac, Ipv4Addr::new(10, 77, 0, 2))),
            "3130686e 35343332 39383736 00006261 4d0a4e02 00000200 02004d0a"
        );
        assert_eq!(macs_key(&veth, mac).len() as u32, MACS_KEY_LEN);
        assert_eq!(
            addrs4_key(&veth, mac, Ipv4Addr::UNSPECIFIED).len() as u32,
            ADDRS4_KEY_LEN
        );
    }

    #[test]
    fn nomasq4_elements_match_nft() {
        // nft --debug=netlink add element inet t nomasq4 { 10.244.1.0/24 . 10.244.0.0/16 }:
        // "element 0001f40a 0000f40a  - ff01f40a fffff40a"
        let n = |s: &str| s.parse::<Ipv4Network>().unwrap();
        let e = nomasq4_elem(n("10.244.1.7/24"), n("10.244.0.0/16"));
        assert_eq!(words(&e.key), "0001f40a 0000f40a");
        assert_eq!(words(e.key_end.as_deref().unwrap()), "ff01f40a fffff40a");
        assert_eq!((e.flags, e.data), (0, None));
        assert_eq!(NOMASQ4_KEY_TYPE, 0x1c7);
        assert_eq!(e.key.len() as u32, NOMASQ4_KEY_LEN);
        assert_eq!(
            NOMASQ4_FIELDS.iter().map(|f| u32::from(*f)).sum::<u32>(),
            NOMASQ4_KEY_LEN
        );
    }

    #[test]
    fn routed_keys_match_nft() {
        // nft --debug=netlink add element inet nethook intra4 { 10.88.0.0/24 . 10.88.0.0/24 }:
        // "element 0000580a 0000580a  - ff00580a ff00580a"
        let n = |s: &str| s.parse::<Ipv4Network>().unwrap();
        let e = intra4_elem(n("10.88.0.7/24"));
        assert_eq!(words(&e.key), "0000580a 0000580a");
        assert_eq!(words(e.key_end.as_deref().unwrap()), "ff00580a ff00580a");
        assert_eq!((e.flags, e.data), (0, None));
        assert_eq!(e.key.len() as u32, INTRA4_KEY_LEN);
        // raddrs4 { "nr0123456789ab" . 02:4e:0a:58:00:02 . 10.88.0.2 }: addrs4's layout.
        let veth = ifname("nr0123456789ab").unwrap();
        let key = addrs4_key(
            &veth,
            [0x02, 0x4e, 10, 88, 0, 2],
            Ipv4Addr::new(10, 88, 0, 2),
        );
        assert_eq!(
            words(&key),
            "3130726e 35343332 39383736 00006261 580a4e02 00000200 0200580a"
        );
        assert_eq!(key.len() as u32, RADDRS4_KEY_LEN);
        assert_eq!((RADDRS4_KEY_TYPE, INTRA4_KEY_TYPE), (0x29247, 0x1c7));
    }

    #[test]
    fn ipv6_keys_match_nft() {
        // nft --debug=netlink (h21, nethook6.debug.txt): ports6 { tcp . 8080 : fd00:1::2 . 80 }
        // "element 00000006 0000901f  : 010000fd 00000000 00000000 02000000 00005000"
        let c: Ipv6Addr = "fd00:1::2".parse().unwrap();
        assert_eq!(words(&ports4_key(Proto::Tcp, 8080)), "00000006 0000901f");
        assert_eq!(
            words(&dnat6_data(c, 80)),
            "010000fd 00000000 00000000 02000000 00005000"
        );
        // hports6 { 2001:db8:9::1 . tcp . 8081 : ... }
        // "element b80d0120 00000900 00000000 01000000 00000006 0000911f"
        assert_eq!(
            words(&hports6_key(
                "2001:db8:9::1".parse().unwrap(),
                Proto::Tcp,
                8081
            )),
            "b80d0120 00000900 00000000 01000000 00000006 0000911f"
        );
        // masq6 { fd00:1::/64 }: "element 010000fd 00000000 00000000 00000000 : 0 [end]
        // element 010000fd 01000000 00000000 00000000 : 1 [end]" (start, end flag 1)
        let e = interval6_elems("fd00:1::5/64".parse().unwrap());
        assert_eq!(words(&e[0].key), "010000fd 00000000 00000000 00000000");
        assert_eq!(words(&e[1].key), "010000fd 01000000 00000000 00000000");
        assert_eq!((e[0].flags, e[1].flags), (0, 1));
        assert_eq!(interval6_elems("::/0".parse().unwrap()).len(), 1);
        let top = interval6_elems("ffff::/16".parse().unwrap());
        assert_eq!(top.len(), 1, "runs to the end of the address space");
        let one = interval6_elems("fd00::1/128".parse().unwrap());
        assert_eq!(one[1].key, "fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        let veth = ifname("nh0123456789ab").unwrap();
        let k = addrs6_key(&veth, [0x02, 0x4e, 10, 77, 0, 2], c);
        assert_eq!(k.len() as u32, ADDRS6_KEY_LEN);
        assert_eq!(&k[24..], &c.octets());
        let n = nomasq6_elem("fd00:1::/64".parse().unwrap(), "fd00::/8".parse().unwrap());
        assert_eq!(n.key.len() as u32, NOMASQ6_KEY_LEN);
        assert_eq!(
            n.key_end.unwrap()[16..],
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
                .octets()
        );
        // nft --debug=mnl: set types of hports6, its data, addrs6, nomasq6.
        assert_eq!(
            (
                HPORTS6_KEY_TYPE,
                DNAT6_DATA_TYPE,
                ADDRS6_KEY_TYPE,
                NOMASQ6_KEY_TYPE
            ),
            (0x830d, 0x20d, 0x29248, 0x208)
        );
    }

    #[test]
    fn interface_names_must_fit() {
        assert_eq!(&ifname("a").unwrap()[..2], b"a\0");
        assert!(ifname("fifteen-bytes-x").is_some());
        assert!(ifname("sixteen-bytes-xx").is_none());
        assert!(ifname("").is_none());
        assert!(ifname("a\0b").is_none());
    }

    #[test]
    fn set_udata_tlvs() {
        // nft --debug=mnl for `set nets { type ifname; comment "bridges"; }`: 00 04 01 00 00 00 07 08 "bridges\0"
        let mut v = udata_key_byteorder(1);
        v.extend(udata_set_comment(c"bridges").unwrap());
        assert_eq!(v, b"\x00\x04\x01\x00\x00\x00\x07\x08bridges\x00");
        let long = std::ffi::CString::new(vec![b'x'; 255]).unwrap();
        assert!(udata_set_comment(&long).is_none());
    }

    #[test]
    fn keys_are_padded_to_registers() {
        // nft --debug=netlink: "element 00000006 0000901f : 02004d0a 00005000"
        assert_eq!(
            ports4_key(Proto::Tcp, 8080),
            vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
        assert_eq!(
            dnat4_data(Ipv4Addr::new(10, 77, 0, 2), 80),
            vec![10, 77, 0, 2, 0, 80, 0, 0]
        );
        // "element 0100007f 00000011 00003500 : 02004d0a 0000e914"
        assert_eq!(
            hports4_key(Ipv4Addr::LOCALHOST, Proto::Udp, 53),
            vec![127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]
        );
        assert_eq!(
            dnat4_data(Ipv4Addr::new(10, 77, 0, 2), 5353),
            vec![10, 77, 0, 2, 0x14, 0xe9, 0, 0]
        );
        assert_eq!(ports4_key(Proto::Sctp, 1).len() as u32, PORTS4_KEY_LEN);
        assert_eq!(
            hports4_key(Ipv4Addr::UNSPECIFIED, Proto::Sctp, 1).len() as u32,
            HPORTS4_KEY_LEN
        );
    }

    #[test]
    fn interval_end_computation() {
        let n = |s: &str| s.parse::<Ipv4Network>().unwrap();
        assert_eq!(
            interval_end(n("10.77.0.0/16")),
            Some(Ipv4Addr::new(10, 78, 0, 0))
        );
        assert_eq!(
            interval_end(n("10.77.255.255/32")),
            Some(Ipv4Addr::new(10, 78, 0, 0))
        );
        assert_eq!(interval_end(n("255.255.255.0/24")), None);
        assert_eq!(interval_end(n("0.0.0.0/0")), None);
        // Host bits are cleared on the start element.
        let e = interval_elems(n("10.77.3.4/16"));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, vec![10, 77, 0, 0]);
        assert_eq!(e[0].flags, 0);
        assert_eq!(e[1].key, vec![10, 78, 0, 0]);
        assert_eq!(e[1].flags, 1);
        // Open interval: one element with nft's "interval open" user data (01 04 01 00 00 00).
        let e = interval_elems(n("255.255.255.0/24"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].userdata, vec![1, 4, 1, 0, 0, 0]);
    }

    #[test]
    fn proto_numbers() {
        for p in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            assert_eq!(Proto::from_number(p.number()), Some(p));
        }
        assert_eq!(Proto::from_number(1), None);
    }
}
