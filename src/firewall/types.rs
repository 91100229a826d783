//! What callers hand the firewall: one container's [`Elements`], split per address family, and
//! the table family an object lives in. Plain data: how it becomes set elements is `units.rs`.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use nftnl::ProtoFamily;

use super::encode::Proto;
use crate::model::mac::Mac;

/// The tables' name as `nft` shows it (`table inet nethook`, `table bridge nethook`).
pub const TABLE_NAME: &str = "nethook";

/// The nftables family of one of nethook's two tables (not an address family: `inet` holds
/// both IPv4 and IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TableFamily {
    /// `table inet nethook`: NAT, guard, isolation.
    Inet,
    /// `table bridge nethook`: anti-spoofing.
    Bridge,
}

impl TableFamily {
    pub(super) fn proto(self) -> ProtoFamily {
        match self {
            TableFamily::Inet => ProtoFamily::Inet,
            TableFamily::Bridge => ProtoFamily::Bridge,
        }
    }

    pub(super) fn nfproto(self) -> u8 {
        match self {
            TableFamily::Inet => libc::NFPROTO_INET as u8,
            TableFamily::Bridge => libc::NFPROTO_BRIDGE as u8,
        }
    }
}

impl fmt::Display for TableFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableFamily::Inet => "inet",
            TableFamily::Bridge => "bridge",
        })
    }
}

/// One published port of one address family (ranges are expanded by the caller: one mapping
/// per port). `A` is `Ipv4Addr` (maps `ports4`, `hports4`; the default) or `Ipv6Addr` (maps
/// `ports6`, `hports6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping<A = Ipv4Addr> {
    /// `None` (or the unspecified address): every host address (map `ports4`); `Some(ip)`:
    /// only `ip` (`hports4`). `Some(127.0.0.1)` needs `net.ipv4.conf.<bridge>.route_localnet=1`,
    /// set by the caller.
    pub host_ip: Option<A>,
    pub proto: Proto,
    pub host_port: u16,
    pub container_ip: A,
    pub container_port: u16,
}

/// A published IPv4 port (`ports4`, `hports4`).
pub type PortMapping4 = PortMapping<Ipv4Addr>;
/// A published IPv6 port (`ports6`, `hports6`).
pub type PortMapping6 = PortMapping<Ipv6Addr>;

impl<A: Copy + Into<IpAddr>> PortMapping<A> {
    /// The host address it is bound to; `None` for every address (unspecified included).
    pub(super) fn host_ip(&self) -> Option<A> {
        self.host_ip.filter(|ip| !(*ip).into().is_unspecified())
    }
}

/// Who may send from one host veth (anti-spoofing): frames entering the bridge from
/// `host_interface` must carry `mac`, and IPv4/ARP one of `ipv4`. A host veth (`nh…`) with no
/// element sends nothing. As a routed source ([`Elements::routed_sources`], host veth `nr…`):
/// IPv4 packets from it must carry `mac` and one of `ipv4` (set `raddrs4`); with no `ipv4` it
/// sends nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Host end of the container's veth (≤ 15 bytes).
    pub host_interface: String,
    pub mac: Mac,
    /// The container's IPv4 addresses (set `addrs4`); empty: no IPv4 or ARP at all.
    pub ipv4: Vec<Ipv4Addr>,
    /// The container's IPv6 addresses (set `addrs6`: its global address and its EUI-64
    /// link-local); empty: no IPv6 at all. Must be empty for a routed source (routed
    /// networks are IPv4-only).
    pub ipv6: Vec<Ipv6Addr>,
}

/// Everything one container owns in the tables, and the per-network elements it relies on,
/// each address family in fields of its own (`…4`, `…6`).
///
/// Per network (shared by the containers of a network: adding an existing one succeeds; delete
/// them only when the network's last endpoint goes): `masq4`, `masq6`, `nomasq4`, `nomasq6`,
/// `bridges`.
/// Per container (see [`Elements::own`]): `ports4`, `ports6`, `sources`, `any_ethertype`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// IPv4 subnets whose outgoing traffic is masqueraded (set `masq4`).
    pub masq4: Vec<Ipv4Network>,
    /// IPv6 subnets whose outgoing traffic is masqueraded (set `masq6`).
    pub masq6: Vec<Ipv6Network>,
    /// Exceptions to masquerade (set `nomasq4`): traffic from a `masq4` subnet (first) to a
    /// destination (second) keeps its source address.
    pub nomasq4: Vec<(Ipv4Network, Ipv4Network)>,
    /// IPv6 exceptions to masquerade (set `nomasq6`).
    pub nomasq6: Vec<(Ipv6Network, Ipv6Network)>,
    /// Bridges of nethook networks (sets `nets` and `intra`): isolation between networks, for
    /// both address families.
    pub bridges: Vec<String>,
    /// Subnets of routed networks (set `intra4`, as `subnet . subnet`): their containers
    /// reach each other through the host. Per network.
    pub intra4: Vec<Ipv4Network>,
    /// Published IPv4 ports (maps `ports4`, `hports4`), added exclusively.
    pub ports4: Vec<PortMapping4>,
    /// Published IPv6 ports (maps `ports6`, `hports6`), added exclusively.
    pub ports6: Vec<PortMapping6>,
    /// Anti-spoofing (sets `macs`, `addrs4`, `addrs6` of `table bridge nethook`).
    pub sources: Vec<Source>,
    /// Anti-spoofing of routed endpoints (set `raddrs4` of `table inet nethook`: host veth .
    /// MAC . IPv4 address); their host veths (`nr…`) are no bridge ports, so the bridge
    /// table never sees them. Per container.
    pub routed_sources: Vec<Source>,
    /// Host veths of endpoints whose network opted out of the ethertype filter: their frames
    /// may carry other ethertypes than IPv4 and ARP (set `l2open`; MAC, IPv6 and VLAN checks
    /// stay). Per container: keyed by the host veth, because `meta ibrname` needs the
    /// nft_meta_bridge module, which kernels may lack (CONFIG_NFT_BRIDGE_META).
    pub any_ethertype: Vec<String>,
    /// Member changes of services this container joins or leaves, in the same batch as the
    /// rest (see `firewall::service`). Per container. [`Elements::extend`] leaves them out:
    /// each change is relative to one state of its service's slots, so merged changes would
    /// apply twice; a restore puts services back with `restore_services` instead.
    pub services: Vec<super::service::MemberChange>,
}

impl Elements {
    pub fn is_empty(&self) -> bool {
        self.masq4.is_empty()
            && self.masq6.is_empty()
            && self.nomasq4.is_empty()
            && self.nomasq6.is_empty()
            && self.bridges.is_empty()
            && self.intra4.is_empty()
            && self.ports4.is_empty()
            && self.ports6.is_empty()
            && self.sources.is_empty()
            && self.routed_sources.is_empty()
            && self.any_ethertype.is_empty()
            && self.services.is_empty()
    }

    /// Only what belongs to this container alone (ports, sources, routed_sources,
    /// any_ethertype): what a rollback or teardown deletes, with the member changes it then
    /// sets itself (never copied: see [`Elements::services`]). The per-network elements (masq4,
    /// masq6, nomasq4, nomasq6, bridges, intra4) go with the network's last endpoint.
    pub fn own(&self) -> Elements {
        Elements {
            ports4: self.ports4.clone(),
            ports6: self.ports6.clone(),
            sources: self.sources.clone(),
            routed_sources: self.routed_sources.clone(),
            any_ethertype: self.any_ethertype.clone(),
            // Not `services`: a member change says which way it goes (a teardown's leave, a
            // rollback's inverse); the caller sets the one it means.
            ..Elements::default()
        }
    }

    /// Only the per-network elements (masq4, masq6, nomasq4, nomasq6, bridges, intra4).
    pub fn shared(&self) -> Elements {
        Elements {
            masq4: self.masq4.clone(),
            masq6: self.masq6.clone(),
            nomasq4: self.nomasq4.clone(),
            nomasq6: self.nomasq6.clone(),
            bridges: self.bridges.clone(),
            intra4: self.intra4.clone(),
            ..Elements::default()
        }
    }

    /// Merge `other` in (e.g. the elements of every live endpoint, for [`restore`]), leaving
    /// out what is already there: the endpoints of a network share its subnets and bridge.
    /// `other.services` is dropped, never merged (see [`Elements::services`]).
    ///
    /// [`restore`]: super::restore
    pub fn extend(&mut self, other: Elements) {
        let norm4 = |n: Ipv4Network| Ipv4Network::new(n.network(), n.prefix()).unwrap_or(n);
        let norm6 = |n: Ipv6Network| Ipv6Network::new(n.network(), n.prefix()).unwrap_or(n);
        merge_normalised(&mut self.masq4, other.masq4, norm4);
        merge_normalised(&mut self.masq6, other.masq6, norm6);
        let pair4 = |(a, b)| (norm4(a), norm4(b));
        let pair6 = |(a, b)| (norm6(a), norm6(b));
        merge_normalised(&mut self.nomasq4, other.nomasq4, pair4);
        merge_normalised(&mut self.nomasq6, other.nomasq6, pair6);
        merge(&mut self.bridges, other.bridges);
        merge_normalised(&mut self.intra4, other.intra4, norm4);
        merge(&mut self.ports4, other.ports4);
        merge(&mut self.ports6, other.ports6);
        for src in other.sources {
            if !self.sources.contains(&src) {
                self.sources.push(src);
            }
        }
        for src in other.routed_sources {
            if !self.routed_sources.contains(&src) {
                self.routed_sources.push(src);
            }
        }
        merge(&mut self.any_ethertype, other.any_ethertype);
        // `other.services` is dropped on purpose (see the field's docs).
    }
}

/// Append what `into` does not hold yet.
fn merge<T: Eq + Hash + Clone>(into: &mut Vec<T>, from: Vec<T>) {
    let mut seen: HashSet<T> = into.iter().cloned().collect();
    into.extend(from.into_iter().filter(|x| seen.insert(x.clone())));
}

/// Subnets with their host bits cleared (as nft shows them), each once.
fn merge_normalised<T: Eq + Hash + Clone>(into: &mut Vec<T>, from: Vec<T>, norm: impl Fn(T) -> T) {
    let mut all: Vec<T> = into.drain(..).map(&norm).collect();
    let mut seen = HashSet::new();
    all.retain(|n| seen.insert(n.clone()));
    merge(&mut all, from.into_iter().map(norm).collect());
    *into = all;
}

/// A source for tests: host veth `veth`, MAC and IPv4 address ending in `last`.
#[cfg(test)]
pub(super) fn source(veth: &str, last: u8) -> Source {
    Source {
        host_interface: veth.into(),
        mac: Mac([0x02, 0x4e, 10, 77, 0, last]),
        ipv4: vec![Ipv4Addr::new(10, 77, 0, last)],
        ipv6: vec![],
    }
}

/// A published TCP port for tests: `host_port` on every host address to 10.77.0.2:80.
#[cfg(test)]
pub(super) fn port(host_port: u16) -> PortMapping {
    PortMapping {
        host_ip: None,
        proto: Proto::Tcp,
        host_port,
        container_ip: Ipv4Addr::new(10, 77, 0, 2),
        container_port: 80,
    }
}

/// Elements of every IPv4 kind for tests: a subnet and an exception to its masquerade, a bridge, a port, two endpoints' sources
/// (one without an address) and one l2open veth.
#[cfg(test)]
pub(super) fn sample() -> Elements {
    Elements {
        masq4: vec!["10.77.1.2/16".parse().unwrap()],
        nomasq4: vec![(
            "10.77.1.2/16".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        )],
        bridges: vec!["nethook0".into()],
        ports4: vec![port(8080)],
        sources: vec![
            source("nh0123456789ab", 2),
            Source {
                ipv4: vec![],
                ..source("nh0123456789ac", 3)
            },
        ],
        any_ethertype: vec!["nh0123456789ab".into()],
        ..Elements::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_host_ip_means_every_address() {
        let m = PortMapping {
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            ..port(80)
        };
        assert_eq!(m.host_ip(), None);
        let m6 = PortMapping6 {
            host_ip: Some(Ipv6Addr::UNSPECIFIED),
            proto: Proto::Tcp,
            host_port: 80,
            container_ip: "fd00::2".parse().unwrap(),
            container_port: 80,
        };
        assert_eq!(m6.host_ip(), None);
        let m6 = PortMapping6 {
            host_ip: Some(Ipv6Addr::LOCALHOST),
            ..m6
        };
        assert_eq!(m6.host_ip(), Some(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn own_and_shared_split_per_container_from_per_network() {
        let e = Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            masq6: vec!["fd00:77::/64".parse().unwrap()],
            nomasq4: vec![(
                "10.77.0.0/16".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            )],
            nomasq6: vec![("fd00:77::/64".parse().unwrap(), "fd00::/8".parse().unwrap())],
            bridges: vec!["nethook0".into()],
            sources: vec![source("nh0123456789ab", 2)],
            ..Elements::default()
        };
        assert!(!e.is_empty() && Elements::default().is_empty());
        let own = e.own();
        assert!(own.masq4.is_empty() && own.masq6.is_empty() && own.bridges.is_empty());
        assert!(own.nomasq4.is_empty() && own.nomasq6.is_empty());
        assert_eq!(own.sources, e.sources);
        let shared = e.shared();
        assert!(shared.sources.is_empty() && shared.ports4.is_empty());
        assert_eq!(
            (shared.masq4, shared.masq6, shared.bridges),
            (e.masq4.clone(), e.masq6.clone(), e.bridges.clone())
        );
        assert_eq!(
            (shared.nomasq4, shared.nomasq6),
            (e.nomasq4.clone(), e.nomasq6.clone())
        );
        let with_more = Elements {
            any_ethertype: vec!["nh0123456789ab".into()],
            ports4: vec![port(80)],
            ports6: vec![PortMapping6 {
                host_ip: None,
                proto: Proto::Udp,
                host_port: 53,
                container_ip: "fd00:77::2".parse().unwrap(),
                container_port: 53,
            }],
            ..e.clone()
        };
        let own = with_more.own();
        assert_eq!(own.any_ethertype, with_more.any_ethertype);
        assert_eq!(
            (&own.ports4, &own.ports6),
            (&with_more.ports4, &with_more.ports6)
        );
        let shared = with_more.shared();
        assert!(shared.any_ethertype.is_empty() && shared.ports6.is_empty());
        // Each IPv6 part alone makes the elements non-empty.
        for only6 in [
            Elements {
                masq6: e.masq6.clone(),
                ..Elements::default()
            },
            Elements {
                nomasq6: e.nomasq6.clone(),
                ..Elements::default()
            },
            Elements {
                ports6: with_more.ports6.clone(),
                ..Elements::default()
            },
        ] {
            assert!(!only6.is_empty());
        }
    }

    #[test]
    fn extend_merges_without_duplicates() {
        let mut all = Elements {
            masq4: vec!["10.77.0.2/16".parse().unwrap()],
            masq6: vec!["fd00:77::2/64".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports4: vec![port(80)],
            sources: vec![source("nh0123456789ab", 2)],
            ..Elements::default()
        };
        all.extend(Elements {
            masq4: vec![
                "10.77.0.0/16".parse().unwrap(),
                "10.78.0.0/16".parse().unwrap(),
            ],
            masq6: vec!["fd00:77::/64".parse().unwrap()],
            bridges: vec!["nethook0".into(), "nethook1".into()],
            ports4: vec![port(80), port(81)],
            sources: vec![source("nh0123456789ab", 2), source("nh0123456789ac", 3)],
            any_ethertype: vec!["nh0123456789ac".into()],
            ..Elements::default()
        });
        assert_eq!(
            all.masq4,
            vec![
                "10.77.0.0/16".parse().unwrap(),
                "10.78.0.0/16".parse::<Ipv4Network>().unwrap()
            ]
        );
        assert_eq!(
            all.masq6,
            vec!["fd00:77::/64".parse::<Ipv6Network>().unwrap()]
        );
        assert_eq!(all.bridges, vec!["nethook0", "nethook1"]);
        let pair = |a: &str, b: &str| (a.parse().unwrap(), b.parse().unwrap());
        all.extend(Elements {
            nomasq4: vec![pair("10.77.0.2/16", "10.0.0.0/8")],
            ..Elements::default()
        });
        all.extend(Elements {
            nomasq4: vec![
                pair("10.77.0.0/16", "10.0.0.0/8"),
                pair("10.78.0.0/16", "10.0.0.0/8"),
            ],
            ..Elements::default()
        });
        assert_eq!(
            all.nomasq4,
            vec![
                pair("10.77.0.0/16", "10.0.0.0/8"),
                pair("10.78.0.0/16", "10.0.0.0/8")
            ]
        );
        assert_eq!(all.ports4, vec![port(80), port(81)]);
        assert_eq!(all.sources.len(), 2);
        assert_eq!(all.any_ethertype, vec!["nh0123456789ac"]);
    }
}
