//! Reading back what a container's interface has (CHECK of the CNI front end): its IPv4
//! addresses and the default routes through it, over a route socket made inside the
//! container's namespace. Only CHECK pays for it: a netlink socket made in there keeps
//! the namespace alive a grace period after it is closed, which setup avoids (see
//! `configure_container`).

use std::net::Ipv4Addr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
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
    let mut dump = AddressMessage::default();
    dump.header.family = AddressFamily::Inet;
    sock.dump(RouteNetlinkMessage::GetAddress(dump), |reply| {
        if let RouteNetlinkMessage::NewAddress(a) = route::decode(reply)? {
            if a.header.index == index {
                for attr in &a.attributes {
                    if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = attr {
                        view.addresses.push((*ip, a.header.prefix_len));
                    }
                }
            }
        }
        Ok(())
    })
    .map_err(op(format!(
        "list the addresses of {ifname} in the container"
    )))?;
    sock.dump(RouteNetlinkMessage::GetRoute(msg::ipv4_routes()), |reply| {
        if let RouteNetlinkMessage::NewRoute(r) = route::decode(reply)? {
            let main = r.header.table == netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
            if main && r.header.destination_prefix_length == 0 {
                let oif = r.attributes.contains(&RouteAttribute::Oif(index));
                let gw = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                });
                if let (true, Some(gw)) = (oif, gw) {
                    view.default_gateways.push(gw);
                }
            }
        }
        Ok(())
    })
    .map_err(op("list the routes in the container".into()))?;
    Ok(Some(view))
}
