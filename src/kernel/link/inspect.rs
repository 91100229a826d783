//! Reading back what a container's interface has (CHECK of the CNI front end): its IPv4
//! and IPv6 addresses and the default routes through it, over a route socket made inside
//! the container's namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{is_errno, msg, LinkError};
use crate::kernel::netlink::route::{self, RouteSocket};
use crate::kernel::netns::Netns;
use crate::kernel::seam::ContainerError;

/// What the container's interface has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerView {
    /// IPv4 addresses on the interface, with their prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// Gateways of the default routes (main table) that leave through the interface.
    pub default_gateways: Vec<Ipv4Addr>,
    /// IPv6 addresses on the interface (link-local ones included), with prefix lengths.
    pub ipv6_addresses: Vec<(Ipv6Addr, u8)>,
    /// Gateways of the IPv6 default routes (main table) that leave through the interface.
    pub ipv6_default_gateways: Vec<Ipv6Addr>,
}

/// `None` when the namespace has no link called `ifname`.
pub fn inspect_container(
    netns: &Netns,
    ifname: &str,
) -> Result<Option<ContainerView>, ContainerError> {
    let sock = netns
        .enter_briefly(RouteSocket::open)?
        .map_err(LinkError::Open)?;
    let op = |op: String| move |source| LinkError::Netlink { op, source };
    let get = RouteNetlinkMessage::GetLink(msg::by_name(ifname));
    let index = match sock.get(get, |reply| route::decode_link(reply, &[])) {
        Ok(link) => link.header.index,
        Err(e) if is_errno(&e, libc::ENODEV) => return Ok(None),
        Err(e) => return Err(op(format!("look up {ifname} in the container"))(e).into()),
    };
    let mut view = ContainerView::default();
    // Both families in one dump.
    let mut dump = AddressMessage::default();
    dump.header.family = AddressFamily::Unspec;
    sock.dump(RouteNetlinkMessage::GetAddress(dump), |reply| {
        if let RouteNetlinkMessage::NewAddress(a) = route::decode(reply)? {
            if a.header.index == index {
                for attr in &a.attributes {
                    match attr {
                        AddressAttribute::Address(IpAddr::V4(ip)) => {
                            view.addresses.push((*ip, a.header.prefix_len))
                        }
                        AddressAttribute::Address(IpAddr::V6(ip)) => {
                            view.ipv6_addresses.push((*ip, a.header.prefix_len))
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    })
    .map_err(op(format!(
        "list the addresses of {ifname} in the container"
    )))?;
    for dump in [msg::ipv4_routes(), msg::ipv6_routes()] {
        sock.dump(RouteNetlinkMessage::GetRoute(dump), |reply| {
            if let RouteNetlinkMessage::NewRoute(r) = route::decode(reply)? {
                let main = r.header.table == RouteHeader::RT_TABLE_MAIN;
                let oif = r.attributes.contains(&RouteAttribute::Oif(index));
                if main && oif && r.header.destination_prefix_length == 0 {
                    for attr in &r.attributes {
                        match attr {
                            RouteAttribute::Gateway(RouteAddress::Inet(gw)) => {
                                view.default_gateways.push(*gw)
                            }
                            RouteAttribute::Gateway(RouteAddress::Inet6(gw)) => {
                                view.ipv6_default_gateways.push(*gw)
                            }
                            _ => {}
                        }
                    }
                }
            }
            Ok(())
        })
        .map_err(op("list the routes in the container".into()))?;
    }
    Ok(Some(view))
}
