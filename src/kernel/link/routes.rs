//! Routes and addresses the host has: the routed driver's host routes, and the dumps
//! behind overlap checks and CHECK (`Rtnl` methods, beside the link ones in `mod.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use ipnetwork::{Ipv4Network, Ipv6Network};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::{inet_socket, msg, LinkError, Rtnl};
use crate::kernel::netlink::route;
use crate::sys::ifconf;

impl Rtnl {
    /// Adds the route to `dst`/32 out of the link `ifname` (routed networks). The route goes
    /// with the link: teardown has nothing to remove. EEXIST: another link has the route.
    pub fn add_host_route(&self, ifname: &str, dst: Ipv4Addr) -> Result<(), LinkError> {
        let op = || format!("add the route to {dst}/32 via {ifname}");
        let sock = inet_socket()?;
        let index = ifconf::index(sock.as_fd(), ifname)
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        let add = RouteNetlinkMessage::NewRoute(msg::host_route(index, dst));
        self.sock
            .ack(add, msg::CREATE)
            .map_err(|source| LinkError::Netlink { op: op(), source })
    }

    /// Whether the link `name` has the IPv6 address `address`; false when there is no such
    /// link. A dump of the host's IPv6 addresses (few: host veths have IPv6 off).
    pub fn has_ipv6_address(&self, name: &str, address: Ipv6Addr) -> Result<bool, LinkError> {
        let op = || format!("list the IPv6 addresses of {name}");
        let sock = inet_socket()?;
        let index = match ifconf::index_if_present(sock.as_fd(), name) {
            Ok(Some(index)) => index,
            Ok(None) => return Ok(false),
            Err(source) => return Err(LinkError::Netlink { op: op(), source }),
        };
        let mut found = false;
        self.sock
            .dump(
                RouteNetlinkMessage::GetAddress(msg::ipv6_addresses()),
                |reply| {
                    if let RouteNetlinkMessage::NewAddress(a) = route::decode(reply)? {
                        found |= a.header.index == index
                            && a.attributes
                                .contains(&AddressAttribute::Address(IpAddr::V6(address)));
                    }
                    Ok(())
                },
            )
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        Ok(found)
    }

    /// Destinations of every IPv4 route in every table, for overlap checks.
    pub fn ipv4_routes(&self) -> Result<Vec<Ipv4Network>, LinkError> {
        self.route_destinations(
            msg::ipv4_routes(),
            "list IPv4 routes",
            |dst, prefix| match dst {
                RouteAddress::Inet(dst) => Ipv4Network::new(*dst, prefix).ok(),
                _ => None,
            },
        )
    }

    /// Destinations of the host's IPv6 routes (every table), for overlap checks.
    pub fn ipv6_routes(&self) -> Result<Vec<Ipv6Network>, LinkError> {
        self.route_destinations(
            msg::ipv6_routes(),
            "list IPv6 routes",
            |dst, prefix| match dst {
                RouteAddress::Inet6(dst) => Ipv6Network::new(*dst, prefix).ok(),
                _ => None,
            },
        )
    }

    /// The destinations of a route dump, as `pick` reads them.
    fn route_destinations<T>(
        &self,
        request: RouteMessage,
        op: &str,
        pick: impl Fn(&RouteAddress, u8) -> Option<T>,
    ) -> Result<Vec<T>, LinkError> {
        let mut routes = Vec::new();
        self.sock
            .dump(RouteNetlinkMessage::GetRoute(request), |reply| {
                if let RouteNetlinkMessage::NewRoute(msg) = route::decode(reply)? {
                    let prefix = msg.header.destination_prefix_length;
                    for attr in &msg.attributes {
                        if let RouteAttribute::Destination(dst) = attr {
                            routes.extend(pick(dst, prefix));
                        }
                    }
                }
                Ok(())
            })
            .map_err(|source| LinkError::Netlink {
                op: op.into(),
                source,
            })?;
        Ok(routes)
    }
}
