//! Every request, byte for byte as the `rtnetlink` crate (0.24) built it when the link
//! operations went through it: the same messages now go over our socket, so the kernel
//! sees no change. (Sequence number 0; the socket numbers its requests.)

use netlink_packet_route::RouteNetlinkMessage;

use super::*;
use crate::kernel::netlink::route::{ack_request, batch_request, dump_request, get_request};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ack(msg: RouteNetlinkMessage, flags: u16) -> String {
    hex(&ack_request(msg, flags, 0))
}

const MAC: Mac = Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x01]);

#[test]
fn bridge() {
    assert_eq!(
        ack(
            RouteNetlinkMessage::NewLink(super::bridge("nethook0", MAC)),
            CREATE
        ),
        "58000000100005060000000000000000000000000000000001000000010000000d0003006e6574686f6f6b30\
         000000000a0001000242ac11000100001c0012000b00010062726964676500000c00020005001700000000\
         00"
    );
}

#[test]
fn veth_with_its_peer_in_the_container_namespace() {
    let v = Veth {
        host: "nh-abc",
        bridge_index: 7,
        host_mac: None,
        peer: "eth0",
        peer_mac: Mac([0x02, 0, 0, 0, 0, 9]),
        netns_fd: 5,
    };
    assert_eq!(
        ack(RouteNetlinkMessage::NewLink(super::veth(&v)), CREATE),
        "9c000000100005060000000000000000000000000000000001000000010000000b0003006e682d6162630000\
         08000a000700000008001f00010000000800200001000000580012000900010076657468000000004800020044\
         000100000000000000000000000000000000000900030065746830000000000a000100020000000009000008\
         001c000500000008001f00010000000800200001000000"
    );
}

#[test]
fn owner_tag_and_hairpin() {
    assert_eq!(
        ack(
            RouteNetlinkMessage::NewLink(tag_and_hairpin("nh-abc", "nethook:web")),
            CHANGE
        ),
        "4c000000100005000000000000000000000000000000000000000000000000000b0003006e682d6162630000\
         100014006e6574686f6f6b3a77656200100012000c0005000500040001000000"
    );
    assert_eq!(
        ack(
            RouteNetlinkMessage::NewLink(alias("nethook0", "nethook:net")),
            CHANGE
        ),
        "40000000100005000000000000000000000000000000000000000000000000000d0003006e6574686f6f6b30\
         00000000100014006e6574686f6f6b3a6e657400"
    );
}

#[test]
fn gateway_address() {
    let gw = Ipv4Addr::new(10, 77, 0, 1);
    assert_eq!(
        ack(
            RouteNetlinkMessage::NewAddress(ipv4_address(7, gw, 24)),
            CREATE
        ),
        "300000001400050600000000000000000218000007000000080001000a4d0001080002000a4d00010800\
         04000a4d00ff"
    );
    // No broadcast address on a point-to-point prefix.
    let msg = ipv4_address(7, gw, 31);
    assert!(!msg
        .attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
}

#[test]
fn lookups_and_deletes() {
    assert_eq!(
        hex(&get_request(
            RouteNetlinkMessage::GetLink(by_name("nh-abc")),
            0
        )),
        "2c000000120001000000000000000000000000000000000000000000000000000b0003006e682d6162630000"
    );
    assert_eq!(
        hex(&get_request(
            RouteNetlinkMessage::GetLink(loopback_in(3)),
            0
        )),
        "280000001200010000000000000000000000000001000000000000000000000008002e0003000000"
    );
    assert_eq!(
        ack(RouteNetlinkMessage::DelLink(by_index(12)), CHANGE),
        "20000000110005000000000000000000000000000c0000000000000000000000"
    );
    assert_eq!(
        ack(RouteNetlinkMessage::DelLink(by_name("nethook0")), CHANGE),
        "30000000110005000000000000000000000000000000000000000000000000000d0003006e6574686f6f6b30\
         00000000"
    );
    assert_eq!(
        hex(&dump_request(
            RouteNetlinkMessage::GetRoute(ipv4_routes()),
            0
        )),
        "1c0000001a000103000000000000000002000000fe04000100000000"
    );
}

#[test]
fn a_routed_veth_is_no_bridge_port_and_has_the_gateway_mac() {
    use netlink_packet_route::link::LinkAttribute;
    let mac = Mac([0x02, 0x4e, 0xa9, 0xfe, 1, 1]);
    let link = super::veth(&Veth {
        host: "nr-abc",
        bridge_index: 0,
        host_mac: Some(mac),
        peer: "eth0",
        peer_mac: Mac([0x02, 0, 0, 0, 0, 9]),
        netns_fd: 5,
    });
    assert!(!link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Controller(_))));
    assert!(link
        .attributes
        .contains(&LinkAttribute::Address(mac.0.to_vec())));
}

#[test]
fn a_host_route_is_a_scope_link_slash_32_out_of_the_veth() {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
    let r = super::host_route(42, Ipv4Addr::new(10, 60, 0, 7));
    assert_eq!(r.header.destination_prefix_length, 32);
    assert_eq!(r.header.scope, RouteScope::Link);
    assert_eq!(
        r.attributes,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 60, 0, 7))),
            RouteAttribute::Oif(42),
        ]
    );
}

/// The IPv6 container side: one datagram of four requests, byte for byte the one the h21
/// research built by hand and ran (`exp9.py`: four acks, all 0; no link-local; the default
/// route in place). Address attributes in the crate's order (IFA_ADDRESS, IFA_LOCAL).
#[test]
fn the_ipv6_container_batch_is_no_link_local_then_address_then_up_then_route() {
    let v6 = crate::kernel::link::ContainerIp {
        address: "fd00:9::2".parse().unwrap(),
        prefix: 64,
        gateway: "fd00:9::1".parse().unwrap(),
    };
    let batch = batch_request(super::super::container::ipv6_batch(2, v6), 1);
    let expected = [
        // RTM_NEWLINK seq 1, index 2, IFLA_AF_SPEC { AF_INET6 { ADDR_GEN_MODE = 1 (NONE) } }
        "3000000010000500010000000000000000000000020000000000000000000000",
        "10001a000c000a000500080001000000",
        // RTM_NEWADDR seq 2 CREATE|EXCL, AF_INET6 /64 index 2, IFA_ADDRESS, IFA_LOCAL,
        // IFA_FLAGS = IFA_F_NODAD
        "48000000140005060200000000000000",
        "0a40000002000000",
        "14000100fd000009000000000000000000000002",
        "14000200fd000009000000000000000000000002",
        "0800080002000000",
        // RTM_NEWLINK seq 3, index 2, IFF_UP in the flags and the change mask
        "2000000010000500030000000000000000000000020000000100000001000000",
        // RTM_NEWROUTE seq 4 CREATE|EXCL, AF_INET6 ::/0 main static universe unicast,
        // RTA_GATEWAY, RTA_OIF 2
        "38000000180005060400000000000000",
        "0a000000fe04000100000000",
        "14000500fd000009000000000000000000000001",
        "0800040002000000",
    ]
    .concat();
    assert_eq!(hex(&batch), expected);
}

/// Each frame's type and the types of its top-level attributes.
fn attribute_types(bytes: &[u8]) -> Vec<(u16, Vec<u16>)> {
    use crate::kernel::netlink::{Attrs, Messages};
    Messages::new(bytes)
        .map(|m| {
            let m = m.unwrap();
            let header = match m.ty {
                16 => 16, // ifinfomsg
                20 => 8,  // ifaddrmsg
                _ => 12,  // rtmsg
            };
            (
                m.ty,
                Attrs::new(&m.payload[header..]).map(|(t, _)| t).collect(),
            )
        })
        .collect()
}

/// h21 §1b: the kernel ignores IFA_TARGET_NETNSID on RTM_NEWADDR (the address lands on the
/// host's link of that index) and IFLA_TARGET_NETNSID on a link change moves the host's
/// link. No write may carry either.
#[test]
fn no_ipv6_write_names_another_namespace() {
    const IFA_TARGET_NETNSID: u16 = 10;
    const IFLA_TARGET_NETNSID: u16 = 46;
    let v6 = crate::kernel::link::ContainerIp {
        address: "fd00:9::2".parse().unwrap(),
        prefix: 64,
        gateway: "fd00:9::1".parse().unwrap(),
    };
    let mut bytes = batch_request(super::super::container::ipv6_batch(2, v6), 1);
    bytes.extend(ack_request(
        RouteNetlinkMessage::NewAddress(ipv6_address(7, "fd00:1::1".parse().unwrap(), 64)),
        CREATE,
        5,
    ));
    let frames = attribute_types(&bytes);
    assert_eq!(frames.len(), 5);
    for (ty, attrs) in frames {
        let forbidden = if ty == 20 {
            IFA_TARGET_NETNSID
        } else {
            IFLA_TARGET_NETNSID
        };
        assert!(!attrs.contains(&forbidden), "type {ty}: {attrs:?}");
        if ty == 16 {
            // One IFLA_AF_SPEC at most: the kernel reads only one.
            assert!(attrs.iter().filter(|t| **t == 26).count() <= 1, "{attrs:?}");
        }
    }
}

#[test]
fn the_bridge_ipv6_gateway_is_never_tentative() {
    assert_eq!(
        ack(
            RouteNetlinkMessage::NewAddress(ipv6_address(7, "fd00:1::1".parse().unwrap(), 64)),
            CREATE
        ),
        "480000001400050600000000000000000a4000000700000014000100fd0000010000000000000000000000\
         0114000200fd0000010000000000000000000000010800080002000000"
    );
}

#[test]
fn the_ipv6_route_dump_asks_for_the_ipv6_family() {
    assert_eq!(
        hex(&dump_request(
            RouteNetlinkMessage::GetRoute(ipv6_routes()),
            0
        )),
        "1c0000001a00010300000000000000000a000000fe04000100000000"
    );
}

/// What `ip link set nh-abc type bridge_slave hairpin on` sends, but to the bridge
/// (AF_BRIDGE): RTM_SETLINK, the port's index, IFLA_PROTINFO (nested) holding
/// IFLA_BRPORT_MODE = 1.
#[test]
fn hairpin_is_a_bridge_setlink_with_the_port_mode_in_protinfo() {
    assert_eq!(
        ack(
            RouteNetlinkMessage::SetLink(super::hairpin(7, true)),
            CHANGE
        ),
        "2c000000130005000000000000000000\
         07000000070000000000000000000000\
         0c000c800500040001000000"
    );
    let off = ack(
        RouteNetlinkMessage::SetLink(super::hairpin(7, false)),
        CHANGE,
    );
    assert_eq!(&off[80..82], "00", "{off}");
}

#[test]
fn a_device_route_is_a_static_main_table_route_out_of_the_device_in_either_family() {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteScope};
    let v4 = super::device_route(9, "10.89.0.0/24".parse().unwrap());
    assert_eq!(
        (v4.header.destination_prefix_length, v4.header.scope),
        (24, RouteScope::Link)
    );
    assert_eq!(v4.header.table, RouteHeader::RT_TABLE_MAIN);
    assert_eq!(
        v4.attributes,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 89, 0, 0))),
            RouteAttribute::Oif(9),
        ]
    );
    // A network given with host bits names its network address.
    let v6 = super::device_route(9, "fd89::5/64".parse().unwrap());
    assert_eq!(
        (v6.header.destination_prefix_length, v6.header.scope),
        (64, RouteScope::Universe)
    );
    assert_eq!(
        v6.attributes[0],
        RouteAttribute::Destination(RouteAddress::Inet6("fd89::".parse().unwrap()))
    );
}
