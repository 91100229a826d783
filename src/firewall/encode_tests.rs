//! Unit tests of `encode.rs`: every key, data and interval layout against what nft sends.

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
