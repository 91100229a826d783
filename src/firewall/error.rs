//! The firewall's one error type, what a message of a batch was about ([`Object`], so an error
//! names the element or rule the kernel refused), and which of a batch's errors to report.

use std::fmt;
use std::io;
use std::net::IpAddr;

use ipnetwork::{Ipv4Network, Ipv6Network};
use nix::errno::Errno;

use super::encode::Proto;
use super::types::{TableFamily, TABLE_NAME};

/// What a netlink message in a batch was about (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table(TableFamily),
    /// A set or map (names are unique across both tables).
    Set(&'static str),
    Chain {
        family: TableFamily,
        name: &'static str,
    },
    /// Rule `index` of the skeleton (in `nft list` order) in `chain`.
    Rule {
        family: TableFamily,
        chain: &'static str,
        index: usize,
    },
    Masq4(Ipv4Network),
    /// A masquerade exception: traffic from the subnet to the destination (set `nomasq4`).
    NoMasq4 {
        subnet: Ipv4Network,
        destination: Ipv4Network,
    },
    Masq6(Ipv6Network),
    /// An IPv6 masquerade exception (set `nomasq6`).
    NoMasq6 {
        subnet: Ipv6Network,
        destination: Ipv6Network,
    },
    /// A routed network's subnet in set `intra4` (as `subnet . subnet`).
    Intra4(Ipv4Network),
    /// A message holding several elements of one set.
    Elements {
        set: &'static str,
        count: usize,
    },
    /// The forwarding guard's element (`ipv4`, or `ipv6`, in set `fwd_guard`).
    ForwardGuard {
        ipv6: bool,
    },
    /// A network's bridge in set `set` (`nets` or `intra`).
    Bridge {
        set: &'static str,
        bridge: String,
    },
    /// An endpoint's anti-spoofing element in set `set` (`macs`, `addrs4`, or `raddrs4` for
    /// a routed endpoint).
    Source {
        set: &'static str,
        host_interface: String,
    },
    /// A published port: IPv4 (`ports4`, or `hports4` with a host address) or IPv6
    /// (`ports6`, `hports6`; `ipv6` tells them apart when no host address does).
    Port {
        proto: Proto,
        host_ip: Option<IpAddr>,
        host_port: u16,
        ipv6: bool,
    },
    /// A part of a service (`what`: "chain svc-web", "VIP 10.89.0.10 port 80/tcp", ...).
    Service {
        service: String,
        what: String,
    },
    /// A VIP port or host port a new service claims: EEXIST means another service has it.
    ServiceKey {
        service: String,
        what: String,
    },
    /// Batch begin/end message.
    Batch,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Table(family) => write!(f, "table {family} {TABLE_NAME}"),
            Object::Set(s) => write!(f, "set {s}"),
            Object::Chain { family, name } => {
                write!(f, "chain {name} of table {family} {TABLE_NAME}")
            }
            Object::Rule {
                family,
                chain,
                index,
            } => write!(
                f,
                "rule #{index} of chain {chain} of table {family} {TABLE_NAME}"
            ),
            Object::Masq4(n) => write!(f, "masq4 element {n}"),
            Object::NoMasq4 {
                subnet,
                destination,
            } => write!(f, "nomasq4 element {subnet} . {destination}"),
            Object::Masq6(n) => write!(f, "masq6 element {n}"),
            Object::NoMasq6 {
                subnet,
                destination,
            } => write!(f, "nomasq6 element {subnet} . {destination}"),
            Object::Intra4(n) => write!(f, "intra4 element {n} . {n}"),
            Object::Elements { set, count } => write!(f, "{count} elements of set {set}"),
            Object::ForwardGuard { ipv6: false } => f.write_str("fwd_guard element ipv4"),
            Object::ForwardGuard { ipv6: true } => f.write_str("fwd_guard element ipv6"),
            Object::Bridge { set, bridge } => write!(f, "{set} element for bridge {bridge}"),
            Object::Source {
                set,
                host_interface,
            } => write!(f, "{set} element for host interface {host_interface}"),
            Object::Port {
                proto,
                host_ip,
                host_port,
                ipv6,
            } => {
                let family = if *ipv6 { 6 } else { 4 };
                match host_ip {
                    Some(ip) => write!(f, "hports{family} element {ip} . {proto} . {host_port}"),
                    None => write!(f, "ports{family} element {proto} . {host_port}"),
                }
            }
            Object::Service { service, what } | Object::ServiceKey { service, what } => {
                if service.is_empty() {
                    write!(f, "{what}")
                } else {
                    write!(f, "{what} of service {service}")
                }
            }
            Object::Batch => f.write_str("batch control message"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A host port is already published (by another container): the whole batch was rejected.
    #[error("host port {}{host_port}/{proto} is already published", host_ip.map(host_prefix).unwrap_or_default())]
    PortTaken {
        proto: Proto,
        host_ip: Option<IpAddr>,
        host_port: u16,
    },
    /// The kernel rejected a message of a batch (the whole batch was rolled back).
    #[error("nftables: {op} {object} failed")]
    Kernel {
        op: &'static str,
        object: Object,
        #[source]
        errno: Errno,
    },
    /// Netlink socket trouble (open, send, receive, parse).
    #[error("nftables: netlink {op}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A bridge or host veth name that cannot be an interface name, so no element can name it.
    #[error("nftables: {what} {name:?} is not a valid interface name (1 to 15 bytes, no NUL); fix the network definition or endpoint record, or run `nethook gc`")]
    InterfaceName { what: &'static str, name: String },
    /// A service that no batch can express (bad name, no VIP, a port with two targets...).
    #[error("service {name}: {why}")]
    BadService { name: String, why: String },
    /// A VIP port or host port another service already has: the whole batch was rejected.
    #[error("service {service}: {what} is already another service's; choose another, or remove that service first")]
    ServiceTaken { service: String, what: String },
    /// A routed endpoint with an IPv6 address: routed networks are IPv4-only. Nothing was sent.
    #[error("nftables: routed host interface {host_interface} has IPv6 address {address}, but routed networks are IPv4-only; give the routed network IPv4 only")]
    RoutedIpv6 {
        host_interface: String,
        address: std::net::Ipv6Addr,
    },
}

/// `ip:` / `[ip]:` before a port.
fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:"),
        IpAddr::V6(ip) => format!("[{ip}]:"),
    }
}

impl FirewallError {
    /// The errno behind the error, when the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            FirewallError::PortTaken { .. } => Some(Errno::EEXIST),
            FirewallError::Kernel { errno, .. } => Some(*errno),
            FirewallError::Netlink { source, .. } => source.raw_os_error().map(Errno::from_raw),
            FirewallError::ServiceTaken { .. } => Some(Errno::EEXIST),
            FirewallError::InterfaceName { .. }
            | FirewallError::RoutedIpv6 { .. }
            | FirewallError::BadService { .. } => None,
        }
    }
}

pub(super) fn nl_err(op: &'static str) -> impl FnOnce(io::Error) -> FirewallError {
    move |source| FirewallError::Netlink { op, source }
}

/// Map batch errors of an element add/delete to the one error to report.
pub(super) fn first_error(
    op: &'static str,
    errors: Vec<(Object, Errno)>,
) -> Result<(), FirewallError> {
    // A taken port is the interesting error; anything else (e.g. ENOENT: the skeleton is missing)
    // is reported as it is. Messages after a failure may be reported as failing too.
    if let Some((
        Object::Port {
            proto,
            host_ip,
            host_port,
            ..
        },
        _,
    )) = errors
        .iter()
        .find(|(o, e)| matches!(o, Object::Port { .. }) && *e == Errno::EEXIST)
    {
        return Err(FirewallError::PortTaken {
            proto: *proto,
            host_ip: *host_ip,
            host_port: *host_port,
        });
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some((object, errno)) => Err(FirewallError::Kernel { op, object, errno }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_taken_is_preferred_and_formatted() {
        let errors = vec![
            (
                Object::Masq4("10.77.0.0/16".parse().unwrap()),
                Errno::EINVAL,
            ),
            (
                Object::Port {
                    proto: Proto::Udp,
                    host_ip: Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                    host_port: 53,
                    ipv6: false,
                },
                Errno::EEXIST,
            ),
        ];
        let e = first_error("add", errors).unwrap_err();
        assert!(matches!(
            e,
            FirewallError::PortTaken {
                proto: Proto::Udp,
                host_port: 53,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "host port 127.0.0.1:53/udp is already published"
        );
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        let e = FirewallError::PortTaken {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 8080,
        };
        assert_eq!(e.to_string(), "host port 8080/tcp is already published");
        let e = FirewallError::PortTaken {
            proto: Proto::Tcp,
            host_ip: Some("2001:db8::1".parse().unwrap()),
            host_port: 8080,
        };
        assert_eq!(
            e.to_string(),
            "host port [2001:db8::1]:8080/tcp is already published"
        );
        let o = Object::Port {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 80,
            ipv6: true,
        };
        assert_eq!(o.to_string(), "ports6 element tcp . 80");
    }

    #[test]
    fn other_errors_keep_object_and_errno() {
        let errors = vec![(Object::Set("ports4"), Errno::ENOENT)];
        let e = first_error("add", errors).unwrap_err();
        assert_eq!(e.to_string(), "nftables: add set ports4 failed");
        let src = std::error::Error::source(&e).unwrap().to_string();
        assert!(src.contains("No such file"), "{src}");
        assert!(first_error("add", vec![]).is_ok());
        // EEXIST on something that is not a port is not "port taken".
        let e = first_error(
            "add",
            vec![(Object::Table(TableFamily::Inet), Errno::EEXIST)],
        )
        .unwrap_err();
        assert!(matches!(
            e,
            FirewallError::Kernel {
                errno: Errno::EEXIST,
                ..
            }
        ));
    }

    #[test]
    fn skeleton_objects_name_their_table() {
        assert_eq!(
            Object::Table(TableFamily::Bridge).to_string(),
            "table bridge nethook"
        );
        assert_eq!(
            Object::Rule {
                family: TableFamily::Bridge,
                chain: "antispoof",
                index: 2
            }
            .to_string(),
            "rule #2 of chain antispoof of table bridge nethook"
        );
    }
}
