//! Routes and addresses the host has: the routed driver's host routes, and the dumps
//! behind overlap checks and CHECK (`Rtnl` methods, beside the link ones in `mod.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::{inet_socket, is_errno, msg, LinkError, Rtnl};
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

    /// Makes sure the main table routes `dst` straight out of the link `dev` (a network's
    /// service range through its bridge, so host processes reach the service addresses).
    /// Idempotent: the same route there already is fine. The kernel refuses a second route
    /// to `dst` with the same metric out of another link (EEXIST): that is an error naming
    /// the other link, and the host's route stays. A link that is down has no routes (the
    /// kernel refuses them and flushes them when it goes down): `DeviceDown`. Cost (p50,
    /// release, 2-CPU VM): 12 µs to add, 22 µs when it is there (EEXIST, then a dump).
    pub fn ensure_device_route(&self, dev: &str, dst: IpNetwork) -> Result<(), LinkError> {
        let op = || format!("add the route to {dst} via {dev}");
        let sock = inet_socket()?;
        let index = ifconf::index(sock.as_fd(), dev)
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        self.ensure_route_by_index(dev, index, dst)
    }

    /// `ensure_device_route` for the link `dev` with `index` (known to `ensure_bridge`).
    pub(super) fn ensure_route_by_index(
        &self,
        dev: &str,
        index: u32,
        dst: IpNetwork,
    ) -> Result<(), LinkError> {
        // As the kernel keeps it (host bits cleared), to compare with the dump.
        let dst = IpNetwork::new(dst.network(), dst.prefix()).unwrap_or(dst);
        let add = RouteNetlinkMessage::NewRoute(msg::device_route(index, dst));
        match self.sock.ack(add, msg::CREATE) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => {
                let there = self.main_routes(dst)?;
                if there.contains(&(dst, Some(index))) {
                    return Ok(());
                }
                let other = there
                    .iter()
                    .find(|(d, _)| *d == dst)
                    .and_then(|(_, oif)| *oif)
                    .map(|i| {
                        nix::net::if_::if_indextoname(i)
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|_| format!("link #{i}"))
                    })
                    .unwrap_or_else(|| {
                        "a route with no single out link (a gateway, multipath)".into()
                    });
                Err(LinkError::RouteElsewhere {
                    dst,
                    dev: dev.to_owned(),
                    other,
                })
            }
            Err(e) if is_errno(&e, libc::ENETDOWN) => Err(LinkError::DeviceDown {
                dst,
                dev: dev.to_owned(),
            }),
            Err(source) => Err(LinkError::from_family(
                dst.is_ipv6(),
                format!("add the route to {dst} via {dev}"),
                source,
            )),
        }
    }

    /// Deletes the route to `dst` out of the link `dev` that `ensure_device_route` made;
    /// false when there was none (or `dev` is gone, which took its routes). Only a static
    /// route of that link is deleted, never another link's route to `dst` nor one added
    /// by hand with another protocol (`ip route add` makes `proto boot`).
    pub fn delete_device_route(&self, dev: &str, dst: IpNetwork) -> Result<bool, LinkError> {
        let op = || format!("delete the route to {dst} via {dev}");
        let sock = inet_socket()?;
        let index = match ifconf::index_if_present(sock.as_fd(), dev) {
            Ok(Some(index)) => index,
            Ok(None) => return Ok(false),
            Err(source) => return Err(LinkError::Netlink { op: op(), source }),
        };
        let del = RouteNetlinkMessage::DelRoute(msg::device_route(index, dst));
        match self.sock.ack(del, msg::CHANGE) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ESRCH) => Ok(false),
            Err(source) => Err(LinkError::from_family(dst.is_ipv6(), op(), source)),
        }
    }

    /// The destinations of the main table's unicast routes out of the link `dev`, both
    /// families, with the kernel's own (the subnet of an address) among them (CHECK: is
    /// the service range routed?). Empty when there is no such link.
    pub fn device_routes(&self, dev: &str) -> Result<Vec<IpNetwork>, LinkError> {
        let sock = inet_socket()?;
        let index = match ifconf::index_if_present(sock.as_fd(), dev) {
            Ok(Some(index)) => index,
            Ok(None) => return Ok(Vec::new()),
            Err(source) => {
                return Err(LinkError::Netlink {
                    op: format!("list the routes via {dev}"),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for request in [msg::ipv4_routes(), msg::ipv6_routes()] {
            out.extend(
                self.main_unicast_routes(request)?
                    .into_iter()
                    .filter(|(_, oif)| *oif == Some(index))
                    .map(|(dst, _)| dst),
            );
        }
        Ok(out)
    }

    /// The main table's unicast routes of `dst`'s family (destination, out link).
    fn main_routes(&self, dst: IpNetwork) -> Result<Vec<(IpNetwork, Option<u32>)>, LinkError> {
        self.main_unicast_routes(if dst.is_ipv4() {
            msg::ipv4_routes()
        } else {
            msg::ipv6_routes()
        })
    }

    /// A route dump of `request`'s family, keeping the main table's unicast routes as
    /// (destination, out link); a route without a destination attribute is the default one.
    fn main_unicast_routes(
        &self,
        request: RouteMessage,
    ) -> Result<Vec<(IpNetwork, Option<u32>)>, LinkError> {
        let mut routes = Vec::new();
        self.sock
            .dump(RouteNetlinkMessage::GetRoute(request), |reply| {
                let RouteNetlinkMessage::NewRoute(m) = route::decode(reply)? else {
                    return Ok(());
                };
                let main = m.header.table == RouteHeader::RT_TABLE_MAIN
                    && !m.attributes.iter().any(|a| matches!(a, RouteAttribute::Table(t) if *t != u32::from(RouteHeader::RT_TABLE_MAIN)));
                if !main || m.header.kind != netlink_packet_route::route::RouteType::Unicast {
                    return Ok(());
                }
                let prefix = m.header.destination_prefix_length;
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                        Ipv4Network::new(*d, prefix).ok().map(IpNetwork::V4)
                    }
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => {
                        Ipv6Network::new(*d, prefix).ok().map(IpNetwork::V6)
                    }
                    _ => None,
                });
                let dst = dst.or_else(|| match m.header.address_family {
                    netlink_packet_route::AddressFamily::Inet6 => {
                        Some(IpNetwork::V6(Ipv6Network::new(Ipv6Addr::UNSPECIFIED, 0).ok()?))
                    }
                    _ => Some(IpNetwork::V4(Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).ok()?)),
                });
                let oif = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                routes.extend(dst.map(|d| (d, oif)));
                Ok(())
            })
            .map_err(|source| LinkError::Netlink {
                op: "list routes".into(),
                source,
            })?;
        Ok(routes)
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
