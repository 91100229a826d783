//! What can go wrong with a link operation, one line each that says what to do.

use std::io;

use super::is_errno;

use crate::kernel::sysctl::SysctlError;

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
    #[error("{op}: the kernel has IPv6 turned off (booted with ipv6.disable=1?); turn it on, or use a network without IPv6")]
    NoIpv6 {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{ifname} is not a bridge port, so it has no hairpin mode; is it a container's host veth on a bridge network?")]
    NotABridgePort {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("the route to {dst} already leaves by {other}, not {dev}; remove that route or give the network another service range")]
    RouteElsewhere {
        dst: ipnetwork::IpNetwork,
        dev: String,
        other: String,
    },
    #[error("cannot add the route to {dst} via {dev}: {dev} is down (the kernel drops a link's routes when it goes down); bring it up first (the next setup does, and adds the route)")]
    DeviceDown {
        dst: ipnetwork::IpNetwork,
        dev: String,
    },
    #[error("cannot {what} on bridge {bridge}")]
    BridgeSetting {
        bridge: String,
        what: &'static str,
        #[source]
        source: SysctlError,
    },
}

impl LinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Netlink { source, .. }
            | LinkError::NoIpv6 { source, .. }
            | LinkError::Open(source)
            | LinkError::Socket(source)
            | LinkError::NotABridgePort { source, .. } => source.raw_os_error(),
            LinkError::DeviceDown { .. } => Some(libc::ENETDOWN),
            LinkError::RouteElsewhere { .. } => Some(libc::EEXIST),
            LinkError::BridgeSetting { source, .. } => source.source.raw_os_error(),
            LinkError::HostNamesTaken { .. } => None,
        }
    }

    /// The error of a request of either family (`ipv6`: of IPv6, see `from_ipv6`).
    pub(super) fn from_family(ipv6: bool, op: String, source: io::Error) -> Self {
        if ipv6 {
            Self::from_ipv6(op, source)
        } else {
            LinkError::Netlink { op, source }
        }
    }

    /// The error of an IPv6 request: EAFNOSUPPORT means the kernel has no IPv6 at all.
    pub(super) fn from_ipv6(op: String, source: io::Error) -> Self {
        if is_errno(&source, libc::EAFNOSUPPORT) {
            LinkError::NoIpv6 { op, source }
        } else {
            LinkError::Netlink { op, source }
        }
    }
}
