//! Pure byte encoding of set/map keys, map data and interval elements (no kernel, no unsafe).
//!
//! nftables registers are 32-bit: every field of a concatenation occupies a multiple of 4 bytes,
//! the value left-aligned (network byte order for addresses and ports) and zero padded.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::nft_sys::ElemSpec;

/// Transport protocol of a published port.
pub use crate::ports::Proto;

// nftables datatype ids (nftables' `enum datatypes`) and the concatenation encoding
// (`TYPE_BITS` = 6: each component shifted in from the right).
pub(crate) const TYPE_IPADDR: u32 = 7;
pub(crate) const TYPE_INET_PROTOCOL: u32 = 12;
pub(crate) const TYPE_INET_SERVICE: u32 = 13;

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

/// `NFTNL_UDATA_SET_KEYBYTEORDER` = big endian, as nft sets on `type ipv4_addr` sets.
pub(crate) fn udata_key_big_endian() -> Vec<u8> {
    udata_u32(0, 2)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_type_ids_match_nft() {
        // Values nft 1.0.6 sends (seen with `nft --debug=mnl`): 0x30d, 0x730d, 0x1cd.
        assert_eq!(PORTS4_KEY_TYPE, 0x30d);
        assert_eq!(HPORTS4_KEY_TYPE, 0x730d);
        assert_eq!(DNAT4_DATA_TYPE, 0x1cd);
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
