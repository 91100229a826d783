//! nftables layer of nethook: two tables whose static skeleton (sets, maps, chains, rules) is
//! created once, and per-container set/map elements added and deleted in one atomic batch each.
//!
//! - `table inet nethook`: published ports (DNAT maps), masquerade, the 127.0.0.1 guard,
//!   isolation between networks (forward hook: into a nethook bridge only replies, published
//!   ports and traffic within the same network), and the forwarding guard (when nethook turned
//!   IPv4 forwarding on, nothing that neither enters nor leaves a nethook network is forwarded).
//! - `table bridge nethook`: anti-spoofing where a container's frames enter the bridge (the host
//!   end of its veth): its MAC, and its IPv4 address in IPv4 and ARP, must be its own; only IPv4
//!   and ARP pass unless its network opted out.
//!
//! Every function opens a fresh netlink socket in the calling thread, so it acts on the network
//! namespace that thread is in. Nothing here ever calls `setns`.
//!
//! Callers serialise mutations with the nethook lock (flock): `ensure_skeleton` is a
//! check-then-create, and rule adds are not idempotent.
//!
//! Upgrades and firewall reloads: each table carries a probe set (its newest object), and every
//! element batch touches the probe of each table it adds to, so a table that is missing (`nft
//! flush ruleset`) or was made by an older nethook makes the batch fail with ENOENT; then
//! [`ensure_skeleton`] (re-)creates that table whole and returns true, and the caller restores
//! the elements of every live endpoint with [`restore`] (and the forwarding guard). See
//! `tables.rs`.
//!
//! Sizes: elements of one set share messages, batches are sent with buffers sized to fit, so
//! thousands of ports add in one atomic batch; deletes cost one batch, two when something is
//! missing (see `elements.rs`).

mod batch;
mod delete;
mod elements;
mod encode;

mod prune;
mod readback;
mod skeleton;
mod tables;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use nftnl::ProtoFamily;
use nix::errno::Errno;

pub use crate::kernel::netlink::defer_netfilter_release;
pub use batch::batches_sent;
pub use delete::assume_no_destroy;
pub use encode::Proto;
pub use prune::prune;
pub use tables::{delete_table, ensure_skeleton, missing_skeleton, table_exists};

/// Ends deferring (see `defer_netfilter_release`): the sockets kept so far are closed by a
/// child process after this one exits. Call it last, when the process is single-threaded.
/// Should no child start, it says so; the sockets then go with this process's exit.
pub fn release_deferred_sockets() {
    if let Err(e) = crate::sys::process::close_after_exit(crate::kernel::netlink::take_deferred()) {
        crate::log::line(&format!("could not hand netfilter sockets to a child ({e}); exiting waits for the kernel instead"));
    }
}

use crate::model::mac::Mac;

/// The tables' name as `nft` shows it (`table inet nethook`, `table bridge nethook`).
pub const TABLE_NAME: &str = "nethook";

/// The address family of one of nethook's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `table inet nethook`: NAT, guard, isolation.
    Inet,
    /// `table bridge nethook`: anti-spoofing.
    Bridge,
}

impl Family {
    fn proto(self) -> ProtoFamily {
        match self {
            Family::Inet => ProtoFamily::Inet,
            Family::Bridge => ProtoFamily::Bridge,
        }
    }

    fn nfproto(self) -> u8 {
        match self {
            Family::Inet => libc::NFPROTO_INET as u8,
            Family::Bridge => libc::NFPROTO_BRIDGE as u8,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        })
    }
}

/// One published port (ranges are expanded by the caller: one mapping per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// `None` (or 0.0.0.0): every host address (map `ports4`); `Some(ip)`: only `ip` (`hports4`).
    /// `Some(127.0.0.1)` needs `net.ipv4.conf.<bridge>.route_localnet=1`, set by the caller.
    pub host_ip: Option<Ipv4Addr>,
    pub proto: Proto,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

impl PortMapping {
    fn host_ip(&self) -> Option<Ipv4Addr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// Who may send from one host veth (anti-spoofing): frames entering the bridge from
/// `host_interface` must carry `mac`, and IPv4/ARP one of `ipv4`. A host veth (`nh…`) with no
/// element sends nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Host end of the container's veth (≤ 15 bytes).
    pub host_interface: String,
    pub mac: Mac,
    /// The container's IPv4 addresses (set `addrs4`); empty: no IPv4 or ARP at all.
    pub ipv4: Vec<Ipv4Addr>,
}

/// Everything one container owns in the tables, and the per-network elements it relies on.
///
/// Per network (shared by the containers of a network: adding an existing one succeeds; delete
/// them only when the network's last endpoint goes): `masq4`, `bridges`.
/// Per container (see [`Elements::own`]): `ports`, `sources`, `any_ethertype`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// Subnets whose outgoing traffic is masqueraded (set `masq4`).
    pub masq4: Vec<Ipv4Network>,
    /// Bridges of nethook networks (sets `nets` and `intra`): isolation between networks.
    pub bridges: Vec<String>,
    /// Published ports (maps `ports4`, `hports4`), added exclusively.
    pub ports: Vec<PortMapping>,
    /// Anti-spoofing (sets `macs`, `addrs4` of `table bridge nethook`).
    pub sources: Vec<Source>,
    /// Host veths of endpoints whose network opted out of the ethertype filter: their frames
    /// may carry other ethertypes than IPv4 and ARP (set `l2open`; MAC, IPv6 and VLAN checks
    /// stay). Per container: keyed by the host veth, because `meta ibrname` needs the
    /// nft_meta_bridge module, which kernels may lack (CONFIG_NFT_BRIDGE_META).
    pub any_ethertype: Vec<String>,
}

impl Elements {
    pub fn is_empty(&self) -> bool {
        self.masq4.is_empty()
            && self.bridges.is_empty()
            && self.ports.is_empty()
            && self.sources.is_empty()
            && self.any_ethertype.is_empty()
    }

    /// Only what belongs to this container alone (ports, sources, any_ethertype): what a
    /// rollback or teardown deletes. The per-network elements (masq4, bridges) go with the
    /// network's last endpoint.
    pub fn own(&self) -> Elements {
        Elements {
            ports: self.ports.clone(),
            sources: self.sources.clone(),
            any_ethertype: self.any_ethertype.clone(),
            ..Elements::default()
        }
    }

    /// Only the per-network elements (masq4, bridges).
    pub fn shared(&self) -> Elements {
        Elements {
            masq4: self.masq4.clone(),
            bridges: self.bridges.clone(),
            ..Elements::default()
        }
    }

    /// Merge `other` in (e.g. the elements of every live endpoint, for [`restore`]), leaving
    /// out what is already there: the endpoints of a network share its subnet and bridge.
    pub fn extend(&mut self, other: Elements) {
        fn merge<T: PartialEq + Clone + Eq + std::hash::Hash>(into: &mut Vec<T>, from: Vec<T>) {
            let mut seen: HashSet<T> = into.iter().cloned().collect();
            into.extend(from.into_iter().filter(|x| seen.insert(x.clone())));
        }
        let norm = |n: Ipv4Network| Ipv4Network::new(n.network(), n.prefix()).unwrap_or(n);
        let mut masq4: Vec<Ipv4Network> = self.masq4.drain(..).map(norm).collect();
        let mut seen = HashSet::new();
        masq4.retain(|n| seen.insert(*n));
        merge(&mut masq4, other.masq4.into_iter().map(norm).collect());
        self.masq4 = masq4;
        merge(&mut self.bridges, other.bridges);
        merge(&mut self.ports, other.ports);
        for src in other.sources {
            if !self.sources.contains(&src) {
                self.sources.push(src);
            }
        }
        merge(&mut self.any_ethertype, other.any_ethertype);
    }
}

/// What a netlink message in a batch was about (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table(Family),
    /// A set or map (names are unique across both tables).
    Set(&'static str),
    Chain {
        family: Family,
        name: &'static str,
    },
    /// Rule `index` of the skeleton (in `nft list` order) in `chain`.
    Rule {
        family: Family,
        chain: &'static str,
        index: usize,
    },
    Masq4(Ipv4Network),
    /// A message holding several elements of one set.
    Elements {
        set: &'static str,
        count: usize,
    },
    /// The forwarding guard's element (`ipv4` in set `fwd_guard`).
    ForwardGuard,
    /// A network's bridge in set `set` (`nets` or `intra`).
    Bridge {
        set: &'static str,
        bridge: String,
    },
    /// An endpoint's anti-spoofing element in set `set` (`macs` or `addrs4`).
    Source {
        set: &'static str,
        host_interface: String,
    },
    Port {
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
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
            Object::Elements { set, count } => write!(f, "{count} elements of set {set}"),
            Object::ForwardGuard => f.write_str("fwd_guard element ipv4"),
            Object::Bridge { set, bridge } => write!(f, "{set} element for bridge {bridge}"),
            Object::Source {
                set,
                host_interface,
            } => write!(f, "{set} element for host interface {host_interface}"),
            Object::Port {
                proto,
                host_ip,
                host_port,
            } => match host_ip {
                Some(ip) => write!(f, "hports4 element {ip} . {proto} . {host_port}"),
                None => write!(f, "ports4 element {proto} . {host_port}"),
            },
            Object::Batch => f.write_str("batch control message"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A host port is already published (by another container): the whole batch was rejected.
    #[error("host port {}{host_port}/{proto} is already published", host_ip.map(|ip| format!("{ip}:")).unwrap_or_default())]
    PortTaken {
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
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
}

impl FirewallError {
    /// The errno behind the error, when the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            FirewallError::PortTaken { .. } => Some(Errno::EEXIST),
            FirewallError::Kernel { errno, .. } => Some(*errno),
            FirewallError::Netlink { source, .. } => source.raw_os_error().map(Errno::from_raw),
            FirewallError::InterfaceName { .. } => None,
        }
    }
}

fn nl_err(op: &'static str) -> impl FnOnce(io::Error) -> FirewallError {
    move |source| FirewallError::Netlink { op, source }
}

/// Add all of one container's elements in ONE atomic batch (spanning both tables), however many
/// ports it publishes.
///
/// Per-network elements (masq4, bridges) and sources may already be there; a host port that is
/// already published fails the whole batch with [`FirewallError::PortTaken`] naming it, and
/// nothing of it is applied. ENOENT: a table is missing or out of date: run [`ensure_skeleton`].
pub fn add(elems: &Elements) -> Result<(), FirewallError> {
    elements::add_units(&elements::element_units(elems, true)?, false)
}

/// Like [`add`], but elements that are already there (ports included) are fine: re-creates the
/// elements of live endpoints after [`ensure_skeleton`] (re-)created a table. Takes the merged
/// elements of every live endpoint at once (see [`Elements::extend`]), in one batch. A port
/// mapped to another target fails with [`FirewallError::PortTaken`].
pub fn restore(elems: &Elements) -> Result<(), FirewallError> {
    elements::add_units(&elements::element_units(elems, false)?, true)
}

/// Delete elements. Elements that are already gone, and missing sets and tables, do not fail.
/// Costs one batch, or two when something was missing, whatever the number of elements.
pub fn delete(elems: &Elements) -> Result<(), FirewallError> {
    delete::delete_units(elements::element_units(elems, false)?)
}

/// Turn the forwarding guard on or off (idempotent): while on, the host forwards no IPv4
/// traffic that neither comes from nor goes to a nethook network's bridge. For when nethook
/// turned `net.ipv4.ip_forward` on itself. The element lives in `table inet nethook`: after
/// [`ensure_skeleton`] returned true it is gone and must be turned on again. Turning it on
/// without the table fails with ENOENT; turning it off then succeeds.
pub fn guard_forwarding(on: bool) -> Result<(), FirewallError> {
    if on {
        elements::add_units(&elements::guard_units(), false)
    } else {
        delete::delete_units(elements::guard_units())
    }
}

#[cfg(test)]
mod tests {
    use super::batch::first_error;
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
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 53,
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
        let e = first_error("add", vec![(Object::Table(Family::Inet), Errno::EEXIST)]).unwrap_err();
        assert!(matches!(
            e,
            FirewallError::Kernel {
                errno: Errno::EEXIST,
                ..
            }
        ));
    }

    #[test]
    fn unspecified_host_ip_means_every_address() {
        let m = PortMapping {
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            proto: Proto::Tcp,
            host_port: 80,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: 80,
        };
        assert_eq!(m.host_ip(), None);
    }

    pub(super) fn source(veth: &str, last: u8) -> Source {
        Source {
            host_interface: veth.into(),
            mac: Mac([0x02, 0x4e, 10, 77, 0, last]),
            ipv4: vec![Ipv4Addr::new(10, 77, 0, last)],
        }
    }

    #[test]
    fn own_and_shared_split_per_container_from_per_network() {
        let e = Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports: vec![],
            sources: vec![source("nh0123456789ab", 2)],
            any_ethertype: vec![],
        };
        assert!(!e.is_empty() && Elements::default().is_empty());
        let own = e.own();
        assert!(own.masq4.is_empty() && own.bridges.is_empty());
        assert_eq!(own.sources, e.sources);
        let shared = e.shared();
        assert!(shared.sources.is_empty() && shared.ports.is_empty());
        assert_eq!(
            (shared.masq4, shared.bridges),
            (e.masq4.clone(), e.bridges.clone())
        );
        let with_l2 = Elements {
            any_ethertype: vec!["nh0123456789ab".into()],
            ..e.clone()
        };
        assert_eq!(with_l2.own().any_ethertype, with_l2.any_ethertype);
        assert!(with_l2.shared().any_ethertype.is_empty());
    }

    #[test]
    fn extend_merges_without_duplicates() {
        let port = |p| PortMapping {
            host_ip: None,
            proto: Proto::Tcp,
            host_port: p,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: 80,
        };
        let mut all = Elements {
            masq4: vec!["10.77.0.2/16".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports: vec![port(80)],
            sources: vec![source("nh0123456789ab", 2)],
            any_ethertype: vec![],
        };
        all.extend(Elements {
            masq4: vec![
                "10.77.0.0/16".parse().unwrap(),
                "10.78.0.0/16".parse().unwrap(),
            ],
            bridges: vec!["nethook0".into(), "nethook1".into()],
            ports: vec![port(80), port(81)],
            sources: vec![source("nh0123456789ab", 2), source("nh0123456789ac", 3)],
            any_ethertype: vec!["nh0123456789ac".into()],
        });
        assert_eq!(
            all.masq4,
            vec![
                "10.77.0.0/16".parse().unwrap(),
                "10.78.0.0/16".parse::<Ipv4Network>().unwrap()
            ]
        );
        assert_eq!(all.bridges, vec!["nethook0", "nethook1"]);
        assert_eq!(all.ports, vec![port(80), port(81)]);
        assert_eq!(all.sources.len(), 2);
        assert_eq!(all.any_ethertype, vec!["nh0123456789ac"]);
    }

    #[test]
    fn skeleton_objects_name_their_table() {
        assert_eq!(
            Object::Table(Family::Bridge).to_string(),
            "table bridge nethook"
        );
        assert_eq!(
            Object::Rule {
                family: Family::Bridge,
                chain: "antispoof",
                index: 2
            }
            .to_string(),
            "rule #2 of chain antispoof of table bridge nethook"
        );
    }
}

#[cfg(test)]
mod golden;
