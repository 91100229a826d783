//! A bridge port's hairpin flag, on its own: set it and read it back (`Rtnl` methods).
//!
//! `create_veth` already turns hairpin on for every bridged host veth, in the request that
//! tags it. These are for a port that was made otherwise or changed by hand: a service
//! member must have it, because a member reaching its own service address is DNAT'd back to
//! itself, and with br_netfilter the bridge sends that frame back out the port it came in on
//! only when the port has hairpin on (h22 research: without it a member's connections to
//! itself time out).

use std::os::fd::AsFd;

use netlink_packet_route::link::{InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo};
use netlink_packet_route::RouteNetlinkMessage;

use super::{inet_socket, is_errno, msg, LinkError, Rtnl};
use crate::sys::ifconf;

impl Rtnl {
    /// Turns hairpin mode of the bridge port `ifname` on or off: one RTM_SETLINK to its
    /// bridge. Setting it to what it is changes nothing (no notification is sent then).
    /// A link that is no bridge port is refused by the kernel (EOPNOTSUPP/EINVAL), which
    /// the error names. Cost: 12 µs p50 with the index ioctl (release, 2-CPU VM), whether
    /// it changes the flag or not.
    pub fn set_hairpin(&self, ifname: &str, on: bool) -> Result<(), LinkError> {
        let state = if on { "on" } else { "off" };
        let op = || format!("turn hairpin mode {state} on bridge port {ifname}");
        let sock = inet_socket()?;
        let index = ifconf::index(sock.as_fd(), ifname)
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        self.sock
            .ack(
                RouteNetlinkMessage::SetLink(msg::hairpin(index, on)),
                msg::CHANGE,
            )
            .map_err(|source| {
                if is_errno(&source, libc::EOPNOTSUPP) || is_errno(&source, libc::EINVAL) {
                    LinkError::NotABridgePort {
                        ifname: ifname.to_owned(),
                        source,
                    }
                } else {
                    LinkError::Netlink { op: op(), source }
                }
            })
    }

    /// Whether the bridge port `ifname` has hairpin mode on (CHECK); `None` when there is
    /// no such link or it is not a bridge port. One RTM_GETLINK, keeping only its
    /// IFLA_LINKINFO, where the bridge reports its port's settings.
    pub fn hairpin(&self, ifname: &str) -> Result<Option<bool>, LinkError> {
        let get = RouteNetlinkMessage::GetLink(msg::by_name(ifname));
        let link = match self.sock.get(get, |reply| {
            crate::kernel::netlink::route::decode_link(reply, &[libc::IFLA_LINKINFO])
        }) {
            Ok(link) => link,
            Err(e) if is_errno(&e, libc::ENODEV) => return Ok(None),
            Err(source) => {
                return Err(LinkError::Netlink {
                    op: format!("look up bridge port {ifname}"),
                    source,
                })
            }
        };
        Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                    port.iter().find_map(|p| match p {
                        InfoBridgePort::HairpinMode(on) => Some(*on),
                        _ => None,
                    })
                }
                _ => None,
            }),
            _ => None,
        }))
    }
}
