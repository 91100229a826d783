//! Every request, byte for byte as the `rtnetlink` crate (0.24) built it when the link
//! operations went through it: the same messages now go over our socket, so the kernel
//! sees no change. (Sequence number 0; the socket numbers its requests.)

use netlink_packet_route::RouteNetlinkMessage;

use super::*;
use crate::kernel::netlink::route::{ack_request, dump_request, get_request};

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
