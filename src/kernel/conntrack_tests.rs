//! Unit tests of `conntrack.rs`: parsing and encoding of entries of both families, and
//! which entries a flush selects.

use super::*;

fn tuple(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: Some(Ipv4Addr::from(src).into()),
        dst: Some(Ipv4Addr::from(dst).into()),
        proto,
        sport: Some(sport),
        dport: Some(dport),
    }
}

fn tuple6(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: Some(src.parse().unwrap()),
        dst: Some(dst.parse().unwrap()),
        proto,
        sport: Some(sport),
        dport: Some(dport),
    }
}

/// A tuple as the kernel sends it (ctnetlink_dump_tuples_ip: CTA_IP_V4_* or CTA_IP_V6_*).
fn encode_tuple(t: &Tuple) -> Vec<u8> {
    let mut m = MsgBuilder::raw(0, 0, 0);
    m.nest_begin(CTA_TUPLE_IP);
    match (t.src.unwrap(), t.dst.unwrap()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => m
            .attr(CTA_IP_V4_SRC, &s.octets())
            .attr(CTA_IP_V4_DST, &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => m
            .attr(CTA_IP_V6_SRC, &s.octets())
            .attr(CTA_IP_V6_DST, &d.octets()),
        _ => panic!("mixed families"),
    };
    m.nest_end()
        .nest_begin(CTA_TUPLE_PROTO)
        .attr(CTA_PROTO_NUM, &[t.proto]);
    m.attr(CTA_PROTO_SRC_PORT, &t.sport.unwrap().to_be_bytes());
    m.attr(CTA_PROTO_DST_PORT, &t.dport.unwrap().to_be_bytes())
        .nest_end();
    m.finish()[netlink::NLMSG_HDRLEN..].to_vec()
}

fn entry(orig: Tuple, reply: Tuple, status: u32) -> Entry {
    let mut m = MsgBuilder::raw(0, 0, 0);
    m.nest_begin(CTA_TUPLE_ORIG)
        .bytes(&encode_tuple(&orig))
        .nest_end();
    m.nest_begin(CTA_TUPLE_REPLY)
        .bytes(&encode_tuple(&reply))
        .nest_end();
    m.attr(CTA_STATUS, &status.to_be_bytes())
        .attr(CTA_ID, &[0, 0, 0, 9]);
    let bytes = m.finish();
    let family = match orig.src {
        Some(IpAddr::V6(_)) => libc::AF_INET6,
        _ => libc::AF_INET,
    };
    parse_entry(family as u8, &bytes[netlink::NLMSG_HDRLEN..])
}

#[test]
fn parse_roundtrip() {
    let o = tuple([192, 0, 2, 9], [192, 168, 50, 1], 17, 4000, 5353);
    let r = tuple([10, 77, 0, 2], [192, 0, 2, 9], 17, 53, 4000);
    let e = entry(o, r, IPS_DST_NAT);
    assert_eq!(
        (e.orig, e.reply, e.status, e.id),
        (o, r, IPS_DST_NAT, Some([0, 0, 0, 9]))
    );
    // The delete message carries the original tuple verbatim.
    let del = delete_msg(&e, 5);
    let payload = &del[netlink::NLMSG_HDRLEN + 4..];
    let attrs: Vec<_> = Attrs::new(payload).collect();
    assert_eq!(attrs[0], (CTA_TUPLE_ORIG, &e.orig_raw[..]));
    assert_eq!(attrs[1], (CTA_ID, &[0u8, 0, 0, 9][..]));
}

#[test]
fn selection() {
    let c = [IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))];
    let host = [192, 168, 50, 1];
    let ports: HashSet<_> = [(17u8, 5353u16)].into();
    let local = |a: IpAddr| a == IpAddr::from(host) || a.is_loopback();
    let m = |e: &Entry| matches(e, &c, &ports, &local);
    // Container's own outgoing connection.
    assert!(m(&entry(
        tuple([10, 77, 0, 2], [192, 0, 2, 1], 6, 1, 80),
        tuple([192, 0, 2, 1], host, 6, 80, 1),
        0
    )));
    // DNATed to the container: only the reply tuple names it.
    assert!(m(&entry(
        tuple([192, 0, 2, 9], host, 6, 5, 8080),
        tuple([10, 77, 0, 2], [192, 0, 2, 9], 6, 80, 5),
        IPS_DST_NAT
    )));
    // Stale entry to the host's own published port (no DNAT).
    assert!(m(&entry(
        tuple([192, 0, 2, 9], host, 17, 4000, 5353),
        tuple(host, [192, 0, 2, 9], 17, 5353, 4000),
        0
    )));
    // Same port, but the host's own connection to a remote server: kept.
    assert!(!m(&entry(
        tuple(host, [192, 0, 2, 7], 17, 4444, 5353),
        tuple([192, 0, 2, 7], host, 17, 5353, 4444),
        0
    )));
    // Same port DNATed to another container: kept.
    assert!(!m(&entry(
        tuple([192, 0, 2, 9], host, 17, 4000, 5353),
        tuple([10, 77, 0, 3], [192, 0, 2, 9], 17, 5353, 4000),
        IPS_DST_NAT
    )));
    // Another container: kept.
    assert!(!m(&entry(
        tuple([10, 77, 0, 3], [192, 0, 2, 1], 6, 1, 80),
        tuple([192, 0, 2, 1], host, 6, 80, 1),
        0
    )));
}

#[test]
fn ipv6_entries_parse_and_are_deleted_with_their_family() {
    let o = tuple6("2001:db8:9::2", "2001:db8:9::1", 17, 4000, 5353);
    let r = tuple6("fd00:1::2", "2001:db8:9::2", 17, 53, 4000);
    let e = entry(o, r, IPS_DST_NAT);
    assert_eq!((e.family, e.orig, e.reply), (libc::AF_INET6 as u8, o, r));
    let del = delete_msg(&e, 5);
    // nfgenmsg: family AF_INET6, so the kernel reads CTA_IP_V6_SRC/DST from the tuple.
    assert_eq!(del[netlink::NLMSG_HDRLEN], libc::AF_INET6 as u8);
    let attrs: Vec<_> = Attrs::new(&del[netlink::NLMSG_HDRLEN + 4..]).collect();
    assert_eq!(attrs[0], (CTA_TUPLE_ORIG, &e.orig_raw[..]));
    // The tuple holds the 16-byte addresses as types 3 and 4 (conntrack -D -f ipv6 sends the same).
    let ip: Vec<_> = Attrs::new(&e.orig_raw)
        .find(|(ty, _)| *ty == CTA_TUPLE_IP)
        .map(|(_, v)| Attrs::new(v).map(|(ty, v)| (ty, v.len())).collect())
        .unwrap();
    assert_eq!(ip, vec![(CTA_IP_V6_SRC, 16), (CTA_IP_V6_DST, 16)]);
    // An IPv4 entry keeps AF_INET.
    let v4 = entry(
        tuple([192, 0, 2, 9], [192, 168, 50, 1], 17, 4000, 5353),
        tuple([10, 77, 0, 2], [192, 0, 2, 9], 17, 53, 4000),
        0,
    );
    assert_eq!(
        delete_msg(&v4, 6)[netlink::NLMSG_HDRLEN],
        libc::AF_INET as u8
    );
}

#[test]
fn ipv6_selection_mirrors_ipv4() {
    let c = [
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)),
        "fd00:1::2".parse().unwrap(),
    ];
    let host6: IpAddr = "2001:db8:9::1".parse().unwrap();
    let ports: HashSet<_> = [(17u8, 5353u16)].into();
    let local = |a: IpAddr| a == host6 || a.is_loopback();
    let m = |e: &Entry| matches(e, &c, &ports, &local);
    // DNATed to the container's IPv6 address.
    assert!(m(&entry(
        tuple6("2001:db8:9::2", "2001:db8:9::1", 17, 4000, 5353),
        tuple6("fd00:1::2", "2001:db8:9::2", 17, 5353, 4000),
        IPS_DST_NAT
    )));
    // Stale entry to the host's own IPv6 address on the published port (no DNAT), and to ::1.
    assert!(m(&entry(
        tuple6("2001:db8:9::2", "2001:db8:9::1", 17, 4000, 5353),
        tuple6("2001:db8:9::1", "2001:db8:9::2", 17, 5353, 4000),
        0
    )));
    assert!(m(&entry(
        tuple6("::1", "::1", 17, 4000, 5353),
        tuple6("::1", "::1", 17, 5353, 4000),
        0
    )));
    // The host's own connection to a remote IPv6 server on that port: kept.
    assert!(!m(&entry(
        tuple6("2001:db8:9::1", "2001:db8:7::7", 17, 4444, 5353),
        tuple6("2001:db8:7::7", "2001:db8:9::1", 17, 5353, 4444),
        0
    )));
    // Another container's IPv6 address: kept.
    assert!(!m(&entry(
        tuple6("fd00:1::3", "2001:db8:7::7", 6, 1, 80),
        tuple6("2001:db8:7::7", "2001:db8:9::1", 6, 80, 1),
        0
    )));
}

#[test]
fn the_dump_covers_the_families_of_the_container_addresses() {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    let v6: IpAddr = "fd00:1::2".parse().unwrap();
    assert_eq!(dump_family(&[v4]), Some(libc::AF_INET as u8));
    assert_eq!(dump_family(&[v6]), Some(libc::AF_INET6 as u8));
    // Both in one walk of the kernel's table.
    assert_eq!(dump_family(&[v4, v6]), Some(libc::AF_UNSPEC as u8));
    assert_eq!(dump_family(&[]), None);
    assert_eq!(
        dump_request(libc::AF_INET6 as u8)[netlink::NLMSG_HDRLEN],
        10
    );
    // Without addresses nothing is dumped (no socket opened).
    assert_eq!(flush_for(&[], &[(Proto::Udp, 53)]).unwrap(), 0);
}

#[test]
fn the_address_dump_request_is_the_one_built_by_hand_before() {
    // nlmsghdr (24 bytes, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq 1) + ifaddrmsg
    // for AF_INET, all else zero.
    let mut old = MsgBuilder::raw(22, netlink::NLM_F_DUMP, 1);
    old.bytes(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        route::dump_request(addresses(AddressFamily::Inet), 1),
        old.finish()
    );
}

#[test]
fn an_address_is_its_local_one_else_its_address() {
    let addr = |attrs: Vec<AddressAttribute>| {
        let mut m = AddressMessage::default();
        m.attributes = attrs;
        m
    };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let p2p = addr(vec![
        AddressAttribute::Address(b.into()),
        AddressAttribute::Local(a.into()),
    ]);
    assert_eq!(own_address(&p2p), Some(a.into()));
    assert_eq!(
        own_address(&addr(vec![AddressAttribute::Address(b.into())])),
        Some(b.into())
    );
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        own_address(&addr(vec![AddressAttribute::Address(v6)])),
        Some(v6)
    );
}
