//! The route netlink messages the link operations send, as `netlink-packet-route` values.
//! Pure functions, so what goes to the kernel is tested byte for byte without it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ipnetwork::IpNetwork;
use netlink_packet_core::DefaultNla;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkProtoInfoBridge,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;

use crate::model::mac::Mac;

/// Flags that make RTM_NEWLINK/RTM_NEWADDR create, and fail with EEXIST when the object is
/// there already.
pub(super) const CREATE: u16 = netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL;
/// Flags of a request that changes an existing link (and creates nothing).
pub(super) const CHANGE: u16 = 0;

/// The attributes a lookup keeps (see `netlink::route::decode_link`): kind, bridge, alias,
/// peer namespace.
pub(super) const LOOKUP_ATTRS: [u16; 4] = [
    libc::IFLA_LINKINFO,
    libc::IFLA_MASTER,
    libc::IFLA_IFALIAS,
    libc::IFLA_LINK_NETNSID,
];

fn up(link: &mut LinkMessage) {
    link.header.flags |= LinkFlags::Up;
    link.header.change_mask |= LinkFlags::Up;
}

fn with_attrs(attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.attributes = attributes;
    link
}

/// A link named `name`: to look up or delete by name.
pub(super) fn by_name(name: &str) -> LinkMessage {
    with_attrs(vec![LinkAttribute::IfName(name.to_owned())])
}

/// The link with `index`: to delete by index.
pub(super) fn by_index(index: u32) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link
}

/// A lookup of the loopback device (index 1, in every namespace) in the namespace with id
/// `nsid`: it fails with EINVAL once that namespace is dying.
pub(super) fn loopback_in(nsid: i32) -> LinkMessage {
    let mut link = by_index(1);
    link.attributes.push(LinkAttribute::IfNetnsId(nsid));
    link
}

/// A new bridge, up, with its own MAC and multicast snooping off (see `Rtnl::ensure_bridge`).
pub(super) fn bridge(name: &str, mac: Mac) -> LinkMessage {
    let mut link = with_attrs(vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Address(mac.0.to_vec()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
        ]),
    ]);
    up(&mut link);
    link
}

/// What a new veth pair looks like (see `Rtnl::create_veth`).
pub(super) struct Veth<'a> {
    pub host: &'a str,
    /// The bridge the host end becomes a port of; 0 for none (routed).
    pub bridge_index: u32,
    /// The host end's MAC; `None` lets the kernel pick one.
    pub host_mac: Option<Mac>,
    pub peer: &'a str,
    pub peer_mac: Mac,
    /// The container's namespace, where the peer is born.
    pub netns_fd: RawFd,
}

/// A new veth pair: the host end up and a port of the bridge, the peer in the container's
/// namespace with its name and MAC; one TX and one RX queue on both ends.
pub(super) fn veth(v: &Veth<'_>) -> LinkMessage {
    let peer = with_attrs(vec![
        LinkAttribute::IfName(v.peer.to_owned()),
        LinkAttribute::Address(v.peer_mac.0.to_vec()),
        LinkAttribute::NetNsFd(v.netns_fd),
        LinkAttribute::NumTxQueues(1),
        LinkAttribute::NumRxQueues(1),
    ]);
    let mut attributes = vec![LinkAttribute::IfName(v.host.to_owned())];
    if v.bridge_index != 0 {
        attributes.push(LinkAttribute::Controller(v.bridge_index));
    }
    if let Some(mac) = v.host_mac {
        attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    attributes.extend([
        LinkAttribute::NumTxQueues(1),
        LinkAttribute::NumRxQueues(1),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ]);
    let mut link = with_attrs(attributes);
    up(&mut link);
    link
}

/// A route to `dst`/32 straight out of the link with `index` (main table, scope link, no
/// gateway): how the host reaches a routed network's container. Created exclusively: a
/// route that is there already means another link has the address.
pub(super) fn host_route(index: u32, dst: Ipv4Addr) -> RouteMessage {
    let mut msg = static_route(AddressFamily::Inet, RouteScope::Link);
    msg.header.destination_prefix_length = 32;
    msg.attributes = vec![
        RouteAttribute::Destination(RouteAddress::Inet(dst)),
        RouteAttribute::Oif(index),
    ];
    msg
}

/// `port`'s alias set to `tag` and hairpin mode on (see `Rtnl::tag_and_hairpin`).
pub(super) fn tag_and_hairpin(port: &str, tag: &str) -> LinkMessage {
    with_attrs(vec![
        LinkAttribute::IfName(port.to_owned()),
        LinkAttribute::IfAlias(tag.to_owned()),
        LinkAttribute::LinkInfo(vec![LinkInfo::PortData(InfoPortData::BridgePort(vec![
            InfoBridgePort::HairpinMode(true),
        ]))]),
    ])
}

/// IFLA_BRPORT_MODE, the hairpin flag inside a bridge port's IFLA_PROTINFO.
const IFLA_BRPORT_MODE: u16 = 4;

/// Hairpin mode of the bridge port with `index` turned `on` or off: RTM_SETLINK to the
/// bridge (AF_BRIDGE) with the flag in IFLA_PROTINFO (nested), as `ip link set … type
/// bridge_slave hairpin on` sends it. The crate has no variant for the flag, so it goes as
/// a raw one-byte attribute.
pub(super) fn hairpin(index: u32, on: bool) -> LinkMessage {
    let mut link = by_index(index);
    link.header.interface_family = AddressFamily::Bridge;
    link.attributes = vec![LinkAttribute::ProtoInfoBridge(vec![
        LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![u8::from(on)])),
    ])];
    link
}

/// A route to `dst` straight out of the link with `index` (main table, no gateway): how the
/// host reaches a network's service range through its bridge. IPv4 routes without a gateway
/// are scope link (as `ip route add … dev` makes them); IPv6 routes have no scope.
pub(super) fn device_route(index: u32, dst: IpNetwork) -> RouteMessage {
    let (mut msg, address) = match dst {
        IpNetwork::V4(n) => (
            static_route(AddressFamily::Inet, RouteScope::Link),
            RouteAddress::Inet(n.network()),
        ),
        IpNetwork::V6(n) => (
            static_route(AddressFamily::Inet6, RouteScope::Universe),
            RouteAddress::Inet6(n.network()),
        ),
    };
    msg.header.destination_prefix_length = dst.prefix();
    msg.attributes = vec![
        RouteAttribute::Destination(address),
        RouteAttribute::Oif(index),
    ];
    msg
}

/// `name`'s alias set to `alias`.
pub(super) fn alias(name: &str, alias: &str) -> LinkMessage {
    with_attrs(vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::IfAlias(alias.to_owned()),
    ])
}

/// `address/prefix` on the link with `index`, with the subnet's broadcast address (as `ip
/// address add … brd +` does) below /31.
pub(super) fn ipv4_address(index: u32, address: Ipv4Addr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes = vec![
        AddressAttribute::Address(address.into()),
        AddressAttribute::Local(address.into()),
    ];
    if prefix < 31 {
        let broadcast = Ipv4Addr::from(u32::MAX >> prefix | u32::from(address));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
    }
    msg
}

/// The link with `index` set up (IFF_UP in both the flags and the change mask).
pub(super) fn up_by_index(index: u32) -> LinkMessage {
    let mut link = by_index(index);
    up(&mut link);
    link
}

/// The link with `index` told to make no IPv6 link-local address of its own
/// (`IFLA_INET6_ADDR_GEN_MODE` = NONE): no link-local, so no DAD for it, no router
/// solicitation and no MLD from it. It must reach the kernel before the link first goes up
/// (that is when the link-local is made), and in a message without IFF_UP: the kernel
/// applies the flags before `IFLA_AF_SPEC` (h21 §1d). One `IFLA_AF_SPEC` per message: the
/// kernel reads only one.
pub(super) fn no_link_local(index: u32) -> LinkMessage {
    let mut link = by_index(index);
    link.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
        vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
    )])];
    link
}

/// `address/prefix` on the link with `index`, usable at once: `IFA_F_NODAD` (in the u32
/// `IFA_FLAGS`) skips duplicate address detection, during which the address is tentative
/// and `bind()` to it fails. Nethook hands the prefix's addresses out itself, so there is
/// no one to collide with.
pub(super) fn ipv6_address(index: u32, address: Ipv6Addr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes = vec![
        AddressAttribute::Address(address.into()),
        AddressAttribute::Local(address.into()),
        AddressAttribute::Flags(AddressFlags::Nodad),
    ];
    msg
}

/// The IPv6 default route via `gateway` out of the link with `index` (main table).
pub(super) fn ipv6_default_route(index: u32, gateway: Ipv6Addr) -> RouteMessage {
    let mut msg = static_route(AddressFamily::Inet6, RouteScope::Universe);
    msg.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet6(gateway)),
        RouteAttribute::Oif(index),
    ];
    msg
}

/// A dump request for IPv6 addresses.
pub(super) fn ipv6_addresses() -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg
}

/// A dump request for IPv6 routes (as `ipv4_routes`, for the other family).
pub(super) fn ipv6_routes() -> RouteMessage {
    static_route(AddressFamily::Inet6, RouteScope::Universe)
}

/// A dump request for IPv4 routes. Without strict checking (which this socket does not ask
/// for) the kernel reads only the family and dumps every table; the rest of the header is as
/// the `rtnetlink` crate sent it before, so the request did not change.
pub(super) fn ipv4_routes() -> RouteMessage {
    static_route(AddressFamily::Inet, RouteScope::Universe)
}

/// The header every route message here starts from: main table, protocol static, unicast.
fn static_route(family: AddressFamily, scope: RouteScope) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = scope;
    msg.header.kind = RouteType::Unicast;
    msg
}

#[cfg(test)]
mod tests;
