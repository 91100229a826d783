//! The bridge, the veth pair, and the container side of the pair: route netlink requests
//! (typed messages, see `msg`) over one synchronous socket, and ioctls where those are
//! faster (see `kernel`). Decisions (names, addresses) come from the plan.
//!
//! A host veth carries its container's owner tag in its alias, and nothing here deletes a
//! veth an endpoint record names without checking it is that record's (see `owner`).

mod container;
mod delete;
mod error;
mod inspect;
mod macvlan;
mod msg;
mod owner;
mod port;
mod routes;

pub use container::{configure_container, configure_routed_container, ContainerAddrs, ContainerIp};
pub use delete::{VethFate, VethState};
pub use error::LinkError;

pub use owner::{Foreign, HostVeth};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::kernel::netlink::route::{self, RouteSocket};
use crate::kernel::netns::Netns;
use crate::kernel::sysctl;
use crate::model::mac::Mac;
use crate::sys::ifconf;

pub use inspect::{inspect_container, ContainerView};
pub use macvlan::{
    delete_macvlan, macvlan_state, ContainerMacvlan, DeviceRoute, MacvlanSpec, ParentView,
};

/// Makes the new bridge `name` ignore router advertisements (`accept_ra=0`), once, at
/// creation. Its containers' RAs are dropped by the bridge table, and with forwarding on
/// the kernel ignores RAs on links with `accept_ra=1`; but a host that set
/// `default.accept_ra=2` (so hot-plugged uplinks keep their RA routes under forwarding)
/// would hand new bridges that too, and with the ruleset flushed by another tool a
/// container could then give the host a default route through itself.
fn no_router_adverts(name: &str) -> Result<(), LinkError> {
    sysctl::ensure(&format!("net/ipv6/conf/{name}/accept_ra"), "0")
        .map(|_| ())
        .map_err(|source| LinkError::BridgeSetting {
            bridge: name.to_owned(),
            what: "turn router advertisements off",
            source,
        })
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

/// A route netlink socket bound to the namespace of the thread that opened it.
pub struct Rtnl {
    sock: RouteSocket,
}

/// What a network's bridge looks like (see `Rtnl::ensure_bridge`).
#[derive(Debug, Clone, Copy)]
pub struct BridgeSpec<'a> {
    pub name: &'a str,
    pub mac: Mac,
    /// The IPv4 gateway address and prefix length, when the network has IPv4.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The IPv6 gateway address and prefix length, when the network has IPv6.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// The network's `owner_tag`, the alias of a bridge nethook creates.
    pub owner_tag: &'a str,
    /// Routes out of the bridge the host must have (a network's service ranges); empty for
    /// none. Added when the bridge is created or repaired, not checked on the cheap path.
    pub routes: &'a [ipnetwork::IpNetwork],
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

    /// Makes sure the bridge exists, carries the gateway addresses and is up; returns its
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
    ///
    /// The IPv6 gateway has no ioctl to read it back, so it is added (EEXIST is fine) only
    /// when the cheap checks saw cause: the bridge was just created, its IPv4 gateway was
    /// missing, or it was down (the kernel drops a link's IPv6 addresses when it goes down,
    /// unlike IPv4's). A setup that finds the bridge as it left it pays nothing for IPv6;
    /// the price is that a network that gains IPv6 while its bridge stays needs
    /// `add_bridge_ipv6`, and that an IPv6 gateway deleted by hand from a bridge that stayed
    /// up is not put back (CHECK names it).
    ///
    /// `spec.routes` (a network's service ranges) are (re)added for the same causes: the
    /// kernel drops a link's routes when it goes down, and a new bridge has none. A route
    /// deleted by hand from a bridge that stayed up is likewise left to CHECK
    /// (`device_routes`) and `ensure_device_route`.
    pub fn ensure_bridge(&self, spec: &BridgeSpec<'_>) -> Result<u32, LinkError> {
        let name = spec.name;
        // The ioctls answer from one small struct each; a link message carries every
        // attribute and statistic of the bridge, and parsing it cost more than the request.
        let sock = inet_socket()?;
        let found =
            ifconf::index_if_present(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
                op: format!("look up bridge {name}"),
                source,
            })?;
        if let Some(index) = found {
            return self.settle_bridge(spec, &sock, index, false);
        }
        let create = RouteNetlinkMessage::NewLink(msg::bridge(name, spec.mac));
        let made_here = match self.sock.ack(create, msg::CREATE) {
            Ok(()) => true,
            Err(e) if is_errno(&e, libc::EEXIST) => false,
            Err(source) => {
                return Err(LinkError::Netlink {
                    op: format!("create bridge {name}"),
                    source,
                })
            }
        };
        let settled = self.set_alias(name, spec.owner_tag).and_then(|()| {
            let index = ifconf::index(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
                op: format!("find the new bridge {name}"),
                source,
            })?;
            self.settle_bridge(spec, &sock, index, true)
        });
        if settled.is_err() && made_here {
            // Half made, it would stay so: the next setup finds it and, by the cheap checks,
            // never adds its IPv6 gateway or alias. Setups run one at a time (the store's
            // lock), so no container uses it yet, and the next one makes it whole.
            let _ = self.delete(name);
        }
        settled
    }

    /// The rest of `ensure_bridge` for the bridge with `index`: the IPv4 gateway, up, and
    /// the IPv6 gateway when the bridge is `new` or the checks found cause.
    fn settle_bridge(
        &self,
        spec: &BridgeSpec<'_>,
        sock: &OwnedFd,
        index: u32,
        new: bool,
    ) -> Result<u32, LinkError> {
        let name = spec.name;
        let mut refresh_ipv6 = new;
        if let Some((gateway, prefix)) = spec.ipv4 {
            // Only the primary address is visible this way; anything else than the gateway
            // there (or an error) goes the long way, where the kernel's EEXIST decides.
            if !matches!(ifconf::primary_ipv4(sock.as_fd(), name), Ok(Some(a)) if a == (gateway, prefix))
            {
                refresh_ipv6 = true;
                let add =
                    RouteNetlinkMessage::NewAddress(msg::ipv4_address(index, gateway, prefix));
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
        }
        // Just a read of its flags when it is up, as it is unless someone set it down.
        let was_down = ifconf::set_up(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
            op: format!("bring up bridge {name}"),
            source,
        })?;
        if let Some((gateway, prefix)) = spec.ipv6 {
            if refresh_ipv6 || was_down {
                self.add_ipv6_gateway(name, index, gateway, prefix)?;
            }
            if new {
                no_router_adverts(name)?;
            }
        }
        // A bridge that was down lost its routes with it, and a new one has none; one that
        // stayed up keeps them, so the cheap path sends nothing for them.
        if refresh_ipv6 || was_down {
            for dst in spec.routes {
                self.ensure_route_by_index(name, index, *dst)?;
            }
        }
        Ok(index)
    }

    /// Adds the IPv6 gateway to the existing bridge `name` (EEXIST is fine) and makes it
    /// ignore router advertisements, as `ensure_bridge` does for a bridge it creates: for a
    /// network that gained IPv6 while its bridge stayed (`nethook network update`), which
    /// setup's cheap checks would not notice. False when there is no such link: the first
    /// setup creates the bridge with the gateway.
    pub fn add_bridge_ipv6(
        &self,
        name: &str,
        gateway: Ipv6Addr,
        prefix: u8,
    ) -> Result<bool, LinkError> {
        let sock = inet_socket()?;
        let index = match ifconf::index_if_present(sock.as_fd(), name) {
            Ok(Some(index)) => index,
            Ok(None) => return Ok(false),
            Err(source) => {
                return Err(LinkError::Netlink {
                    op: format!("look up bridge {name}"),
                    source,
                })
            }
        };
        self.add_ipv6_gateway(name, index, gateway, prefix)?;
        no_router_adverts(name)?;
        Ok(true)
    }

    /// Adds the IPv6 gateway to the bridge, never tentative (`IFA_F_NODAD`: with no port
    /// carrying a carrier yet, DAD would keep it tentative, and unusable, until the first
    /// container came up and a second more). EEXIST: it is there.
    ///
    /// EACCES means IPv6 is off on the bridge: a host with
    /// `net.ipv6.conf.default.disable_ipv6=1` gives every new link that setting, ours too.
    /// The network asks for IPv6, so it is turned on for this bridge alone (its own
    /// `disable_ipv6`, in the host's namespace); the host's default and its other links
    /// stay as they are.
    fn add_ipv6_gateway(
        &self,
        name: &str,
        index: u32,
        gateway: Ipv6Addr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        let add = || {
            let msg = RouteNetlinkMessage::NewAddress(msg::ipv6_address(index, gateway, prefix));
            match self.sock.ack(msg, msg::CREATE) {
                Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
                other => other,
            }
        };
        let result = match add() {
            Err(e) if is_errno(&e, libc::EACCES) => {
                sysctl::ensure(&format!("net/ipv6/conf/{name}/disable_ipv6"), "0").map_err(
                    |source| LinkError::BridgeSetting {
                        bridge: name.to_owned(),
                        what: "turn IPv6 on (the host's net.ipv6.conf.default.disable_ipv6=1 leaves it off on new links)",
                        source,
                    },
                )?;
                add()
            }
            other => other,
        };
        result.map_err(|source| {
            LinkError::from_ipv6(
                format!("add gateway {gateway}/{prefix} to bridge {name}"),
                source,
            )
        })
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
}
