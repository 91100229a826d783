//! The bridge, the veth pair, and the container side of the pair: route netlink requests
//! (typed messages, see `msg`) over one synchronous socket, and ioctls where those are
//! faster (see `kernel`). Decisions (names, addresses) come from the plan.
//!
//! A host veth carries its container's owner tag in its alias, and nothing here deletes a
//! veth an endpoint record names without checking it is that record's (see `owner`).

mod delete;
mod inspect;
mod macvlan;
mod msg;
mod owner;

pub use delete::{VethFate, VethState};

pub use owner::{Foreign, HostVeth};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ipnetwork::Ipv4Network;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::kernel::netlink::route::{self, RouteSocket};
use crate::kernel::netns::Netns;
use crate::model::mac::Mac;
use crate::sys::ifconf;

pub use inspect::{inspect_container, ContainerView};
pub use macvlan::{
    delete_macvlan, macvlan_state, ContainerMacvlan, DeviceRoute, MacvlanSpec, ParentView,
};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a route netlink socket")]
    Open(#[source] io::Error),
    #[error("cannot open an IPv4 socket for interface requests")]
    Socket(#[source] io::Error),
    #[error("host interface names {first} and {second} of container {id} are both held by other links ({why}); remove the stray link or use another container id")]
    HostNamesTaken {
        id: String,
        first: String,
        second: String,
        why: String,
    },
    #[error("{op}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Netlink { source, .. }
            | LinkError::Open(source)
            | LinkError::Socket(source) => source.raw_os_error(),
            LinkError::HostNamesTaken { .. } => None,
        }
    }
}

/// Whether `e` is the kernel's `errno`.
fn is_errno(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// An AF_INET datagram socket in the calling thread's namespace, for `configure_container`.
pub fn inet_socket() -> Result<OwnedFd, LinkError> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| LinkError::Socket(e.into()))
}

/// Whether a link called `name` exists in the calling thread's namespace. One ioctl (6 µs,
/// against 23 µs for a route socket and RTM_GETLINK): a poststop asks it before deciding
/// whether there is link work at all.
pub fn link_present(name: &str) -> Result<bool, LinkError> {
    let sock = inet_socket()?;
    ifconf::index_if_present(sock.as_fd(), name)
        .map(|index| index.is_some())
        .map_err(|source| LinkError::Netlink {
            op: format!("look up link {name}"),
            source,
        })
}

/// Inside the container's namespace, through `sock` (an AF_INET datagram socket created
/// there; see `sys::ifconf` for why not netlink): loopback up, `address/prefix` on
/// `ifname`, `ifname` up, and the default route via `gateway`.
pub fn configure_container(
    sock: BorrowedFd<'_>,
    ifname: &str,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), LinkError> {
    let op = |op: String| move |source| LinkError::Netlink { op, source };
    ifconf::set_up(sock, "lo").map_err(op("set lo up in the container".into()))?;
    ifconf::set_ipv4(sock, ifname, address, prefix)
        .map_err(op(format!("add {address}/{prefix} to {ifname}")))?;
    ifconf::set_up(sock, ifname).map_err(op(format!("set {ifname} up")))?;
    ifconf::add_default_route(sock, ifname, gateway)
        .map_err(op(format!("add default route via {gateway} on {ifname}")))
}

/// The container side of a routed network, on a socket made inside its namespace (see
/// `configure_container`): the address as a /32 with no broadcast, a link route to the
/// gateway (169.254.1.1, outside any subnet: the ioctl has no "onlink", so the default route
/// needs it first), the default route, and a permanent neighbour entry saying the gateway is
/// the host veth's MAC, so the container never asks for it and the host needs no proxy ARP.
pub fn configure_routed_container(
    sock: BorrowedFd<'_>,
    ifname: &str,
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    gateway_mac: Mac,
) -> Result<(), LinkError> {
    let op = |op: String| move |source| LinkError::Netlink { op, source };
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
    )))
}

/// A route netlink socket bound to the namespace of the thread that opened it.
pub struct Rtnl {
    sock: RouteSocket,
}

/// What the veth pair looks like; the plan fills it in.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    /// The bridge the host end becomes a port of; 0 for none (routed).
    pub bridge_index: u32,
    /// The host end's MAC (routed: the one the container's gateway entry names); `None`
    /// lets the kernel pick one.
    pub host_mac: Option<Mac>,
    pub peer_name: &'a str,
    pub peer_mac: Mac,
    /// The host end's alias: `ContainerId::owner_tag`.
    pub owner_tag: &'a str,
}

impl Rtnl {
    pub fn open() -> Result<Self, LinkError> {
        Ok(Self {
            sock: RouteSocket::open().map_err(LinkError::Open)?,
        })
    }

    /// The link called `name` with the attributes an ownership check reads
    /// (`msg::LOOKUP_ATTRS`); `None` when there is none.
    fn link(&self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let get = RouteNetlinkMessage::GetLink(msg::by_name(name));
        match self
            .sock
            .get(get, |reply| route::decode_link(reply, &msg::LOOKUP_ATTRS))
        {
            Ok(link) => Ok(Some(link)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(source) => Err(LinkError::Netlink {
                op: format!("look up link {name}"),
                source,
            }),
        }
    }

    pub fn exists(&self, name: &str) -> Result<bool, LinkError> {
        Ok(self.link(name)?.is_some())
    }

    /// Makes sure the bridge exists, carries the gateway address and is up; returns its
    /// index. The common case (bridge present, up, with its gateway) costs four ioctls.
    ///
    /// The bridge gets its own MAC: without one the kernel lends it the lowest MAC of its
    /// ports, so the gateway's MAC would change whenever that container stops and every
    /// other container would lose its gateway until its ARP entry expired.
    ///
    /// It does not snoop multicast. The bridge's own querier is off, and without a querier
    /// on the segment a snooping bridge floods multicast to every port anyway; but snooping
    /// re-arms a query timer on every port whenever any port comes up, which made a setup
    /// ~0.3 ms slower with 1000 containers running.
    ///
    /// A bridge it creates gets `owner_tag` as its alias (a request of its own, once per
    /// bridge), so `network rm` later deletes only a bridge nethook made.
    pub fn ensure_bridge(
        &self,
        name: &str,
        mac: Mac,
        gateway: Ipv4Addr,
        prefix: u8,
        owner_tag: &str,
    ) -> Result<u32, LinkError> {
        let op = |what: &str| format!("{what} bridge {name}");
        // The ioctls answer from one small struct each; a link message carries every
        // attribute and statistic of the bridge, and parsing it cost more than the request.
        let sock = inet_socket()?;
        let index = match ifconf::index_if_present(sock.as_fd(), name) {
            Ok(Some(index)) => index,
            Ok(None) => {
                let create = RouteNetlinkMessage::NewLink(msg::bridge(name, mac));
                match self.sock.ack(create, msg::CREATE) {
                    Err(source) if !is_errno(&source, libc::EEXIST) => {
                        return Err(LinkError::Netlink {
                            op: op("create"),
                            source,
                        })
                    }
                    _ => {}
                }
                self.set_alias(name, owner_tag)?;
                ifconf::index(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
                    op: op("find the new"),
                    source,
                })?
            }
            Err(source) => {
                return Err(LinkError::Netlink {
                    op: op("look up"),
                    source,
                })
            }
        };
        // Only the primary address is visible this way; anything else than the gateway
        // there (or an error) goes the long way, where the kernel's EEXIST decides.
        if !matches!(ifconf::primary_ipv4(sock.as_fd(), name), Ok(Some(a)) if a == (gateway, prefix))
        {
            let add = RouteNetlinkMessage::NewAddress(msg::ipv4_address(index, gateway, prefix));
            match self.sock.ack(add, msg::CREATE) {
                Err(source) if !is_errno(&source, libc::EEXIST) => {
                    return Err(LinkError::Netlink {
                        op: format!("add gateway {gateway}/{prefix} to bridge {name}"),
                        source,
                    })
                }
                _ => {}
            }
        }
        // Just a read of its flags when it is up, as it is unless someone set it down.
        ifconf::set_up(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
            op: op("bring up"),
            source,
        })?;
        Ok(index)
    }

    /// Creates the veth pair in one request: the host end up and attached to the bridge,
    /// the peer created directly inside the container's namespace with its name and MAC
    /// (moving a link between namespaces afterwards costs the kernel 20–40 ms). Both ends
    /// get one TX and one RX queue: with the default of one queue per CPU, veth setup waits
    /// for two expedited RCU grace periods while it trims them.
    ///
    /// The peer is created down (the kernel refuses an up peer in another namespace,
    /// ENOTCONN), so the host end has no carrier: the bridge port stays disabled and IPv6
    /// configures nothing on it until the container side comes up, by which time IPv6 is
    /// off on it. Bringing it up here rather than in a request of its own spares the
    /// kernel two link notifications, and each one walks the host's list of namespace ids,
    /// one per running container.
    ///
    /// Then a second request gives the host end its owner tag and turns hairpin on (see
    /// `tag_and_hairpin`). On EEXIST nothing was created; on any later error the pair is
    /// deleted again before returning, so the caller has nothing to undo.
    pub fn create_veth(&self, spec: &VethSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        let veth = msg::veth(&msg::Veth {
            host: spec.host_name,
            bridge_index: spec.bridge_index,
            host_mac: spec.host_mac,
            peer: spec.peer_name,
            peer_mac: spec.peer_mac,
            netns_fd: netns.file().as_raw_fd(),
        });
        self.sock
            .ack(RouteNetlinkMessage::NewLink(veth), msg::CREATE)
            .map_err(|source| LinkError::Netlink {
                op: format!(
                    "create veth {} (peer {} in {})",
                    spec.host_name,
                    spec.peer_name,
                    netns.path().display()
                ),
                source,
            })?;
        // A veth with no bridge (routed) has no port flag to set: the alias alone.
        let tagged = if spec.bridge_index == 0 {
            self.set_alias(spec.host_name, spec.owner_tag)
        } else {
            self.tag_and_hairpin(spec.host_name, spec.owner_tag)
        };
        if let Err(e) = tagged {
            // Deleting the host end takes the peer with it.
            let _ = self.delete(spec.host_name);
            return Err(e);
        }
        Ok(())
    }

    /// Sets the owner tag as `port`'s alias and turns hairpin mode on for it, in one
    /// RTM_NEWLINK on the existing link.
    ///
    /// The kernel ignores IFLA_IFALIAS in the request that creates a link (only changing a
    /// link sets it), so the tag costs a request of its own; bridge port flags cannot be
    /// set at creation either. Both go in one request: the alias makes the kernel send a
    /// full link notification whatever else the request does, and the port flag rides
    /// along (IFLA_INFO_PORT_DATA, applied by the bridge it is a port of) instead of a
    /// RTM_SETLINK to the bridge (AF_BRIDGE, IFLA_PROTINFO) of its own, which is how it was set
    /// before the tag existed.
    fn tag_and_hairpin(&self, port: &str, tag: &str) -> Result<(), LinkError> {
        self.change(msg::tag_and_hairpin(port, tag), || {
            format!("set the owner alias and hairpin mode of bridge port {port}")
        })
    }

    /// Sets a link's alias (IFLA_IFALIAS), which the kernel takes only on an existing link.
    fn set_alias(&self, name: &str, alias: &str) -> Result<(), LinkError> {
        self.change(msg::alias(name, alias), || {
            format!("set the owner alias of {name}")
        })
    }

    /// One RTM_NEWLINK that changes an existing link; `op` says what, for the error.
    fn change(&self, link: LinkMessage, op: impl FnOnce() -> String) -> Result<(), LinkError> {
        self.sock
            .ack(RouteNetlinkMessage::NewLink(link), msg::CHANGE)
            .map_err(|source| LinkError::Netlink { op: op(), source })
    }

    /// Whose the link named `name` is, for a network's bridge: `None` when there is none,
    /// else whether it is a bridge and its alias.
    pub fn bridge_owner(&self, name: &str) -> Result<Option<(bool, Option<String>)>, LinkError> {
        let Some(link) = self.link(name)? else {
            return Ok(None);
        };
        Ok(Some(owner::bridge_facts(&link)))
    }

    /// Deletes a link by name, whatever it is; `Ok(false)` when it is already gone. Only
    /// for links this process has just created or that are not a record's host veth (a
    /// network's bridge): a veth an endpoint record names goes through `delete_veth`,
    /// which checks it is that record's.
    pub fn delete(&self, name: &str) -> Result<bool, LinkError> {
        self.delete_link(msg::by_name(name), name)
    }

    /// Deletes the link `link` names (by name or index; `name` is for the message);
    /// `Ok(false)` when it is already gone.
    fn delete_link(&self, link: LinkMessage, name: &str) -> Result<bool, LinkError> {
        match self
            .sock
            .ack(RouteNetlinkMessage::DelLink(link), msg::CHANGE)
        {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(source) => Err(LinkError::Netlink {
                op: format!("delete link {name}"),
                source,
            }),
        }
    }

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

    /// Destinations of every IPv4 route in every table, for overlap checks.
    pub fn ipv4_routes(&self) -> Result<Vec<Ipv4Network>, LinkError> {
        let mut routes = Vec::new();
        let dump = RouteNetlinkMessage::GetRoute(msg::ipv4_routes());
        self.sock
            .dump(dump, |reply| {
                if let RouteNetlinkMessage::NewRoute(msg) = route::decode(reply)? {
                    let prefix = msg.header.destination_prefix_length;
                    for attr in &msg.attributes {
                        if let RouteAttribute::Destination(RouteAddress::Inet(dst)) = attr {
                            if let Ok(net) = Ipv4Network::new(*dst, prefix) {
                                routes.push(net);
                            }
                        }
                    }
                }
                Ok(())
            })
            .map_err(|source| LinkError::Netlink {
                op: "list IPv4 routes".into(),
                source,
            })?;
        Ok(routes)
    }
}
