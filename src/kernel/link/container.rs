//! The container side of a veth (or macvlan): its addresses, its default routes and
//! loopback, configured from sockets made inside the container's namespace.
//!
//! IPv4 goes through the interface ioctls on an AF_INET socket (`sys::ifconf`), the fastest
//! way. IPv6 cannot: `struct in6_ifreq` has no flags, so an address added by ioctl runs
//! duplicate address detection and stays tentative (`bind()` fails) for about two seconds.
//! It goes over a route netlink socket opened in there, as one datagram of four requests
//! (h21 §1d): no link-local address, the address with `IFA_F_NODAD`, up, the default route.
//!
//! Nothing under /proc/sys is touched in there: each namespace that looks up
//! /proc/sys/net adds an entry that every later lookup of that path, on the host too, is
//! compared against, so the cost would grow with every container running. And no request
//! from the host names the container's namespace by id: `IFA_TARGET_NETNSID` is ignored on
//! RTM_NEWADDR (the address lands on the host link with that index) and
//! `IFLA_TARGET_NETNSID` on RTM_SETLINK moves the host's link into the container (h21 §1b).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_route::RouteNetlinkMessage;

use super::{inet_socket, msg, LinkError};
use crate::kernel::netlink::route::RouteSocket;
use crate::kernel::netns::Netns;
use crate::kernel::seam::ContainerError;
use crate::model::mac::Mac;
use crate::sys::ifconf;

/// One family's configuration of the container's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerIp<A> {
    pub address: A,
    pub prefix: u8,
    /// The default route's next hop.
    pub gateway: A,
}

/// What the container's interface gets: IPv4, IPv6 or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerAddrs {
    pub ipv4: Option<ContainerIp<Ipv4Addr>>,
    pub ipv6: Option<ContainerIp<Ipv6Addr>>,
}

impl ContainerAddrs {
    pub fn ipv4(address: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Self {
        ContainerAddrs {
            ipv4: Some(ContainerIp {
                address,
                prefix,
                gateway,
            }),
            ipv6: None,
        }
    }
}

fn op(op: String) -> impl FnOnce(std::io::Error) -> LinkError {
    move |source| LinkError::Netlink { op, source }
}

/// Inside `netns`: loopback up, then on `ifname` the addresses, the link up and the default
/// routes of `addrs`. IPv4 only is the ioctl path alone (one AF_INET socket); with IPv6 a
/// route netlink socket is opened in there too (an IPv6-only container needs no AF_INET
/// socket: the interface ioctls work on the netlink socket as well).
pub fn configure_container(
    netns: &Netns,
    ifname: &str,
    addrs: &ContainerAddrs,
) -> Result<(), ContainerError> {
    let Some(v6) = addrs.ipv6 else {
        let Some(v4) = addrs.ipv4 else {
            return Ok(());
        };
        let sock = netns.enter_briefly(inet_socket)??;
        return Ok(configure_ipv4(sock.as_fd(), ifname, v4)?);
    };
    let (inet, rtnl) = netns.enter_briefly(|| -> Result<_, LinkError> {
        let inet = addrs.ipv4.map(|_| inet_socket()).transpose()?;
        let rtnl = RouteSocket::open().map_err(LinkError::Open)?;
        Ok((inet, rtnl))
    })??;
    let ioctl = inet.as_ref().map_or(rtnl.fd(), |s| s.as_fd());
    ifconf::set_up(ioctl, "lo").map_err(op("set lo up in the container".into()))?;
    let index =
        ifconf::index(ioctl, ifname).map_err(op(format!("look up {ifname} in the container")))?;
    // IPv4's address goes on while the link is down (see `ifconf::set_ipv4`); the batch
    // below brings it up, after it told the link to make no link-local address.
    if let Some(v4) = addrs.ipv4 {
        ifconf::set_ipv4(ioctl, ifname, v4.address, v4.prefix)
            .map_err(op(format!("add {}/{} to {ifname}", v4.address, v4.prefix)))?;
    }
    configure_ipv6(&rtnl, ifname, index, v6)?;
    if let Some(v4) = addrs.ipv4 {
        ifconf::add_default_route(ioctl, ifname, v4.gateway).map_err(op(format!(
            "add default route via {} on {ifname}",
            v4.gateway
        )))?;
    }
    Ok(())
}

/// The IPv4-only container side, through `sock` (an AF_INET datagram socket created in its
/// namespace): loopback up, `address/prefix` on `ifname`, `ifname` up, the default route.
fn configure_ipv4(
    sock: BorrowedFd<'_>,
    ifname: &str,
    v4: ContainerIp<Ipv4Addr>,
) -> Result<(), LinkError> {
    let ContainerIp {
        address,
        prefix,
        gateway,
    } = v4;
    ifconf::set_up(sock, "lo").map_err(op("set lo up in the container".into()))?;
    ifconf::set_ipv4(sock, ifname, address, prefix)
        .map_err(op(format!("add {address}/{prefix} to {ifname}")))?;
    ifconf::set_up(sock, ifname).map_err(op(format!("set {ifname} up")))?;
    ifconf::add_default_route(sock, ifname, gateway)
        .map_err(op(format!("add default route via {gateway} on {ifname}")))?;
    Ok(())
}

/// The four requests of the IPv6 container side, in the order the kernel must see them:
/// no link-local (before the first up, which is when the kernel makes it), the address with
/// no DAD, up, the default route (which needs the link up).
pub(super) fn ipv6_batch(index: u32, v6: ContainerIp<Ipv6Addr>) -> Vec<(RouteNetlinkMessage, u16)> {
    vec![
        (
            RouteNetlinkMessage::NewLink(msg::no_link_local(index)),
            msg::CHANGE,
        ),
        (
            RouteNetlinkMessage::NewAddress(msg::ipv6_address(index, v6.address, v6.prefix)),
            msg::CREATE,
        ),
        (
            RouteNetlinkMessage::NewLink(msg::up_by_index(index)),
            msg::CHANGE,
        ),
        (
            RouteNetlinkMessage::NewRoute(msg::ipv6_default_route(index, v6.gateway)),
            msg::CREATE,
        ),
    ]
}

/// Sends `ipv6_batch` in one datagram and names the first request the kernel refused.
fn configure_ipv6(
    rtnl: &RouteSocket,
    ifname: &str,
    index: u32,
    v6: ContainerIp<Ipv6Addr>,
) -> Result<(), LinkError> {
    rtnl.batch(ipv6_batch(index, v6)).map_err(|(at, source)| {
        let what = match at {
            Some(0) => format!("turn off the IPv6 link-local address of {ifname}"),
            // IPv6 off on the link: the runtime set disable_ipv6 (an OCI sysctl), or the host
            // copies its own settings into new namespaces (net.core.devconf_inherit_init_net
            // 1 or 3), which otherwise start with the kernel's defaults.
            Some(1) if source.raw_os_error() == Some(libc::EACCES) => format!(
                "add {}/{} to {ifname}: IPv6 is turned off in the container (disable_ipv6=1, from the container's sysctls or copied from the host by net.core.devconf_inherit_init_net); let the container have IPv6 or use a network without it",
                v6.address, v6.prefix
            ),
            Some(1) => format!("add {}/{} to {ifname}", v6.address, v6.prefix),
            Some(2) => format!("set {ifname} up"),
            Some(_) => format!("add IPv6 default route via {} on {ifname}", v6.gateway),
            None => format!("configure IPv6 on {ifname}"),
        };
        LinkError::from_ipv6(what, source)
    })
}

/// The container side of a routed network, on a socket made inside its namespace (see
/// `configure_container`): the address as a /32 with no broadcast, a link route to the
/// gateway (169.254.1.1, outside any subnet: the ioctl has no "onlink", so the default route
/// needs it first), the default route, and a permanent neighbour entry saying the gateway is
/// the host veth's MAC, so the container never asks for it and the host needs no proxy ARP.
pub fn configure_routed_container(
    netns: &Netns,
    ifname: &str,
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    gateway_mac: Mac,
) -> Result<(), ContainerError> {
    let sock = netns.enter_briefly(inet_socket)??;
    let sock = sock.as_fd();
    ifconf::set_up(sock, "lo").map_err(op("set lo up in the container".into()))?;
    ifconf::set_ipv4(sock, ifname, address, 32)
        .map_err(op(format!("add {address}/32 to {ifname}")))?;
    ifconf::set_broadcast(sock, ifname, Ipv4Addr::UNSPECIFIED)
        .map_err(op(format!("clear the broadcast address of {ifname}")))?;
    ifconf::set_up(sock, ifname).map_err(op(format!("set {ifname} up")))?;
    ifconf::add_link_route(sock, ifname, gateway)
        .map_err(op(format!("add the route to {gateway} on {ifname}")))?;
    ifconf::add_default_route(sock, ifname, gateway)
        .map_err(op(format!("add default route via {gateway} on {ifname}")))?;
    ifconf::set_permanent_neighbour(sock, ifname, gateway, gateway_mac.0).map_err(op(format!(
        "add the neighbour entry of {gateway} on {ifname}"
    )))?;
    Ok(())
}
