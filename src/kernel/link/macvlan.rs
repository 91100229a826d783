//! The macvlan driver's links. The container's interface is a macvlan of the network's
//! parent, made straight inside the container's namespace in one request; the host keeps
//! no link of its own for it. So its look-ups and its delete at teardown happen inside the
//! container's namespace, over a route socket made in there (as CHECK's `inspect`, and as
//! the IPv6 container side): that socket holds the namespace about one RCU grace period
//! after it is closed, measured within the noise of a namespace's own teardown (h21 §1c).
//!
//! Whose a container's interface is: the kernel ignores IFLA_IFALIAS when it creates a
//! link (see `owner`), and tagging it would cost a second request into the namespace, so a
//! link is the record's when it has the record's name, is a macvlan, and has the record's
//! MAC (derived from its address, or given by annotation and checked unique per network).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use ipnetwork::Ipv4Network;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType,
    LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::delete::{VethFate, VethState};
use super::owner::Foreign;
use super::{is_errno, msg, LinkError, Rtnl};
use crate::kernel::netlink::route::{self, RouteSocket};
use crate::kernel::netns::{Netns, NetnsError};
use crate::model::ids::ContainerId;
use crate::model::mac::Mac;

/// The container's interface to make: a macvlan of `parent` (looked up in the host's
/// namespace), mode bridge, named `name` with `mac`, born down in the container's namespace.
#[derive(Debug, Clone, Copy)]
pub struct MacvlanSpec<'a> {
    pub parent: &'a str,
    pub name: &'a str,
    pub mac: Mac,
}

/// A container's macvlan as its endpoint record describes it.
#[derive(Debug, Clone, Copy)]
pub struct ContainerMacvlan<'a> {
    /// The namespace path the record names (`/proc/<pid>/ns/net`, or CNI's).
    pub netns: &'a Path,
    pub name: &'a str,
    pub mac: Mac,
    pub owner: &'a ContainerId,
}

/// What `network create` needs to know of a would-be parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentView {
    pub index: u32,
    /// The bridge or bond it is a port of (IFLA_MASTER): the kernel refuses a macvlan on it.
    pub master: Option<u32>,
    pub loopback: bool,
    /// Its IPv4 addresses: the host's own on that LAN, never to be handed to a container.
    pub addresses: Vec<Ipv4Addr>,
}

/// One IPv4 route of the host: its destination and the device it leaves by (`None` for a
/// route with no single device: multipath, blackhole, unreachable).
pub type DeviceRoute = (Ipv4Network, Option<u32>);

fn netlink(op: String) -> impl FnOnce(io::Error) -> LinkError {
    move |source| LinkError::Netlink { op, source }
}

/// The request that makes the container's interface (see `Rtnl::create_macvlan`).
pub(super) fn macvlan_message(
    name: &str,
    mac: Mac,
    parent_index: u32,
    netns_fd: i32,
) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Address(mac.0.to_vec()),
        LinkAttribute::Link(parent_index),
        LinkAttribute::NetNsFd(netns_fd),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])),
        ]),
    ];
    link
}

impl Rtnl {
    /// Makes the container's interface in one RTM_NEWLINK: the parent is resolved here, in
    /// the host's namespace, and the link is born in the container's, down (the container
    /// side brings it up, as the veth peer). Mode bridge: siblings on one parent reach each
    /// other without the LAN's switch. The errno is kept: ENODEV (no parent), EBUSY (the
    /// parent is a bridge or bond port), EEXIST (the name is taken in the container).
    pub fn create_macvlan(&self, spec: &MacvlanSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        let Some(parent) = self.link(spec.parent)? else {
            return Err(LinkError::Netlink {
                op: format!("look up parent {}", spec.parent),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        };
        let create = macvlan_message(
            spec.name,
            spec.mac,
            parent.header.index,
            netns.file().as_raw_fd(),
        );
        self.sock
            .ack(RouteNetlinkMessage::NewLink(create), msg::CREATE)
            .map_err(netlink(format!(
                "create macvlan {} of {} in {}",
                spec.name,
                spec.parent,
                netns.path().display()
            )))
    }

    /// The parent's index, port flag, type and IPv4 addresses; `None` when there is no
    /// link of that name.
    pub fn parent_view(&self, name: &str) -> Result<Option<ParentView>, LinkError> {
        let get = RouteNetlinkMessage::GetLink(msg::by_name(name));
        let link = match self
            .sock
            .get(get, |reply| route::decode_link(reply, &[libc::IFLA_MASTER]))
        {
            Ok(link) => link,
            Err(e) if is_errno(&e, libc::ENODEV) => return Ok(None),
            Err(e) => return Err(netlink(format!("look up parent {name}"))(e)),
        };
        let index = link.header.index;
        let mut view = ParentView {
            index,
            master: link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(m) => Some(*m),
                _ => None,
            }),
            loopback: link.header.link_layer_type == LinkLayerType::Loopback
                || link.header.flags.contains(LinkFlags::Loopback),
            addresses: Vec::new(),
        };
        let mut dump = AddressMessage::default();
        dump.header.family = AddressFamily::Inet;
        self.sock
            .dump(RouteNetlinkMessage::GetAddress(dump), |reply| {
                if let RouteNetlinkMessage::NewAddress(a) = route::decode(reply)? {
                    if a.header.index == index {
                        for attr in &a.attributes {
                            if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                                view.addresses.push(*ip);
                            }
                        }
                    }
                }
                Ok(())
            })
            .map_err(netlink(format!("list the addresses of {name}")))?;
        Ok(Some(view))
    }

    /// Every IPv4 route of every table with the device it leaves by (see `ipv4_routes`).
    pub fn ipv4_device_routes(&self) -> Result<Vec<DeviceRoute>, LinkError> {
        let mut routes = Vec::new();
        let dump = RouteNetlinkMessage::GetRoute(msg::ipv4_routes());
        self.sock
            .dump(dump, |reply| {
                if let RouteNetlinkMessage::NewRoute(m) = route::decode(reply)? {
                    let prefix = m.header.destination_prefix_length;
                    let dst = m.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    });
                    let oif = m.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    let dst = dst.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    if let Ok(net) = Ipv4Network::new(dst, prefix) {
                        routes.push((net, oif));
                    }
                }
                Ok(())
            })
            .map_err(netlink("list IPv4 routes".into()))?;
        Ok(routes)
    }
}

/// Whose the link called `c.name` in `c.netns` is, read over `sock` (made in there).
/// `Some(index)` with `Ours`.
fn look(sock: &RouteSocket, c: &ContainerMacvlan<'_>) -> Result<(VethState, u32), LinkError> {
    let get = RouteNetlinkMessage::GetLink(msg::by_name(c.name));
    let keep = [libc::IFLA_LINKINFO, libc::IFLA_ADDRESS];
    let link = match sock.get(get, |reply| route::decode_link(reply, &keep)) {
        Ok(link) => link,
        Err(e) if is_errno(&e, libc::ENODEV) => return Ok((VethState::Gone, 0)),
        Err(e) => return Err(netlink(format!("look up {} in the container", c.name))(e)),
    };
    Ok((judge(&link, c), link.header.index))
}

/// Whether `link` (found under the record's name) is the record's macvlan.
pub(super) fn judge(link: &LinkMessage, c: &ContainerMacvlan<'_>) -> VethState {
    let kind = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    });
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    });
    let why = if kind != Some(InfoKind::MacVlan) {
        format!("it is not a macvlan but {kind:?}")
    } else if mac.as_deref() != Some(&c.mac.0[..]) {
        format!("its MAC is not {}", c.mac)
    } else {
        return VethState::Ours;
    };
    VethState::NotOurs(Foreign {
        name: format!("{} in {}", c.name, c.netns.display()),
        owner: c.owner.to_string(),
        why,
        other_owner: None,
    })
}

/// A route socket inside the namespace the record names; `None` when it is gone.
fn socket_in(netns: &Path) -> Result<Option<RouteSocket>, LinkError> {
    let ns = match Netns::open(netns) {
        Ok(ns) => ns,
        Err(NetnsError::Gone { .. }) => return Ok(None),
        Err(e) => {
            return Err(LinkError::Netlink {
                op: e.to_string(),
                source: io::Error::from_raw_os_error(libc::EIO),
            })
        }
    };
    match ns.enter_briefly(RouteSocket::open) {
        Ok(sock) => sock.map(Some).map_err(LinkError::Open),
        Err(e) => Err(LinkError::Netlink {
            op: e.to_string(),
            source: io::Error::from_raw_os_error(libc::EIO),
        }),
    }
}

/// Whose the link under the record's name in its namespace is; `Gone` when the namespace
/// is gone (its macvlan went with it) or has no such link.
pub fn macvlan_state(c: &ContainerMacvlan<'_>) -> Result<VethState, LinkError> {
    let Some(sock) = socket_in(c.netns)? else {
        return Ok(VethState::Gone);
    };
    Ok(look(&sock, c)?.0)
}

/// Deletes the record's macvlan inside its namespace, by the index checked; one that is
/// not the record's is left alone. Idempotent: a gone namespace or link is `Gone`.
pub fn delete_macvlan(c: &ContainerMacvlan<'_>) -> Result<VethFate, LinkError> {
    let Some(sock) = socket_in(c.netns)? else {
        return Ok(VethFate::Gone);
    };
    let index = match look(&sock, c)? {
        (VethState::Gone, _) => return Ok(VethFate::Gone),
        (VethState::NotOurs(foreign), _) => return Ok(VethFate::NotOurs(foreign)),
        (VethState::Ours, index) => index,
    };
    match sock.ack(
        RouteNetlinkMessage::DelLink(msg::by_index(index)),
        msg::CHANGE,
    ) {
        Ok(()) => Ok(VethFate::Deleted),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(VethFate::Gone),
        Err(e) => Err(netlink(format!("delete {} in the container", c.name))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(id: &'a ContainerId) -> ContainerMacvlan<'a> {
        ContainerMacvlan {
            netns: Path::new("/proc/1/ns/net"),
            name: "eth0",
            mac: "02:4e:c0:a8:32:65".parse().unwrap(),
            owner: id,
        }
    }

    fn link(kind: InfoKind, mac: &str) -> LinkMessage {
        let mac: Mac = mac.parse().unwrap();
        let mut l = LinkMessage::default();
        l.attributes = vec![
            LinkAttribute::Address(mac.0.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]),
        ];
        l
    }

    #[test]
    fn a_macvlan_with_the_records_mac_is_the_records() {
        let id = ContainerId::parse("c1").unwrap();
        let c = record(&id);
        assert_eq!(
            judge(&link(InfoKind::MacVlan, "02:4e:c0:a8:32:65"), &c),
            VethState::Ours
        );
    }

    #[test]
    fn another_kind_or_mac_under_the_records_name_is_left_alone() {
        let id = ContainerId::parse("c1").unwrap();
        let c = record(&id);
        let VethState::NotOurs(f) = judge(&link(InfoKind::Veth, "02:4e:c0:a8:32:65"), &c) else {
            panic!("a veth was taken for the record's macvlan")
        };
        assert!(f.why.contains("not a macvlan"), "{f:?}");
        let VethState::NotOurs(f) = judge(&link(InfoKind::MacVlan, "02:00:00:00:00:09"), &c) else {
            panic!("a macvlan with another MAC was taken for the record's")
        };
        assert!(f.why.contains("MAC"), "{f:?}");
    }

    #[test]
    fn the_create_request_names_parent_namespace_mac_and_bridge_mode() {
        let m = macvlan_message("eth0", "02:4e:c0:a8:32:65".parse().unwrap(), 7, 42);
        assert!(m.attributes.contains(&LinkAttribute::Link(7)));
        assert!(m.attributes.contains(&LinkAttribute::NetNsFd(42)));
        assert!(m.attributes.contains(&LinkAttribute::IfName("eth0".into())));
        assert!(m.attributes.contains(&LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge
            )])),
        ])));
        assert!(!m.header.flags.contains(LinkFlags::Up));
    }
}
