//! Network definitions: which driver and bridge, which subnets (IPv4, IPv6 or both),
//! whether to masquerade each. Pure data and rules; `store` persists them in the layout
//! of `file::NetworkFile`.

mod conflicts;
mod driver;
pub mod file;
mod ipv6;
mod range;
mod services;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

use crate::model::ids::validate_ifname;

/// The network a container gets when it names none; it needs no definition.
pub const DEFAULT_NETWORK: &str = "nethook";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("network name {name:?} {reason}")]
    BadName { name: String, reason: String },
    #[error("bridge name {name:?} {reason}")]
    BadBridge { name: String, reason: String },
    #[error("subnet {subnet}: {reason}")]
    BadSubnet { subnet: String, reason: String },
    #[error("gateway {gateway} is not a usable host address of {subnet}")]
    BadGateway {
        gateway: Ipv4Addr,
        subnet: Ipv4Network,
    },
    #[error("subnet {subnet} overlaps {other}; pick a subnet that does not")]
    Overlap { subnet: String, other: String },
    #[error("bridge {bridge} is already used by network {other}; pass another --bridge")]
    BridgeTaken { bridge: String, other: String },
    #[error("network {network} has no subnet; give --subnet, --subnet6 or both")]
    NoFamily { network: String },
    #[error("gateway6 {gateway} is beyond {last}: on an IPv6-only network MACs come from the addresses' last 32 bits, so the gateway must differ from the prefix only there; pick one up to {last}")]
    Gateway6OutsideMacWindow { gateway: Ipv6Addr, last: Ipv6Addr },
    #[error("subnet6 {subnet}: {reason}")]
    BadSubnet6 { subnet: String, reason: String },
    #[error("gateway6 {gateway} is not a usable address of {subnet}; pick one inside it other than {base} (the subnet-router anycast address)", base = subnet.network())]
    BadGateway6 {
        gateway: Ipv6Addr,
        subnet: Ipv6Network,
    },
    #[error("--no-masquerade-to {cidr}: {reason}")]
    BadNoMasquerade { cidr: String, reason: String },
    #[error("network {network} has no IPv4 subnet, which nethook needs; add an ipv4 part to its definition or recreate it with `nethook network create {network} --subnet CIDR`")]
    NoIpv4 { network: String },
    #[error("{option} does not go with --driver {driver}: {reason}")]
    DriverOption {
        option: &'static str,
        driver: DriverKind,
        reason: &'static str,
    },
    #[error(
        "--driver macvlan needs --parent IFACE: the host interface on the LAN the containers join"
    )]
    NoParent,
    #[error("parent {name:?} {reason}")]
    BadParent { name: String, reason: String },
    #[error("--service-range {range}: {reason}")]
    BadServiceRange { range: String, reason: String },
    #[error("--ip-range {range}: {reason}")]
    BadRange { range: String, reason: String },
}

/// The IPv4 side of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Config {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// Masquerade IPv4 traffic that leaves the subnet (SNAT to the host's address).
    pub masquerade: bool,
    /// The part of the subnet addresses are handed out from (`--ip-range`); `None`: all of
    /// it. A static `nethook.ip` may still be anywhere in the subnet.
    pub range: Option<Ipv4Network>,
}

/// The IPv6 side of a network (`--subnet6`); see `ipv6.rs` for what a subnet may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Config {
    pub subnet: Ipv6Network,
    pub gateway: Ipv6Addr,
    /// Masquerade IPv6 traffic that leaves the subnet.
    pub masquerade: bool,
}

pub use driver::{DriverKind, ROUTED_GATEWAY};
pub use services::{free_vip4, free_vip6, overlaps};

/// A network definition. Read and written as `file::NetworkFile` (the layout older
/// versions wrote, with an optional IPv6 part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "file::NetworkFile", try_from = "file::NetworkFile")]
pub struct Network {
    pub name: String,
    pub driver: DriverKind,
    /// The bridge driver's bridge; empty for the other drivers.
    pub bridge: String,
    /// The macvlan driver's parent: the host interface whose LAN the containers join.
    pub parent: Option<String>,
    pub ipv4: Option<Ipv4Config>,
    pub ipv6: Option<Ipv6Config>,
    /// Containers send only IPv4 and ARP frames (false: any ethertype, for protocols such
    /// as LLDP or STP a network needs; still only from their own MAC, never VLAN-tagged).
    pub ethertype_filter: bool,
    /// IPv4 destinations that traffic from the subnet reaches with its own source address
    /// although the network masquerades: a cluster CIDR whose other node subnets are routed
    /// between hosts, so pod-to-pod traffic keeps the pod's address. Host bits cleared, each
    /// once; empty unless the network masquerades.
    pub no_masquerade_to: Vec<Ipv4Network>,
    /// A resolver answers the network's names at its gateway addresses (`--dns`).
    pub dns: bool,
    /// Where services' virtual IPs come from, per family (`--service-range`): outside the
    /// subnet, since containers reach a VIP through the gateway. Chosen at the first
    /// `service create` when not given.
    pub service_range4: Option<Ipv4Network>,
    pub service_range6: Option<Ipv6Network>,
}

impl Network {
    /// The network every container gets when it names none and no file overrides it.
    pub fn builtin_default() -> Self {
        Network {
            name: DEFAULT_NETWORK.to_owned(),
            driver: DriverKind::Bridge,
            bridge: "nethook0".to_owned(),
            ipv4: Some(Ipv4Config {
                // Invariant: a literal, valid /16.
                subnet: Ipv4Network::new(Ipv4Addr::new(10, 77, 0, 0), 16)
                    .expect("valid literal subnet"),
                gateway: Ipv4Addr::new(10, 77, 0, 1),
                masquerade: true,
                range: None,
            }),
            ipv6: None,
            ethertype_filter: true,
            no_masquerade_to: Vec::new(),
            parent: None,
            dns: false,
            service_range4: None,
            service_range6: None,
        }
    }

    /// Builds and validates an IPv4 definition from CLI input; `gateway` and `bridge`
    /// default to the first host address and `nh-<name>` (see `named`).
    pub fn new(
        name: &str,
        subnet: &str,
        gateway: Option<Ipv4Addr>,
        bridge: Option<&str>,
        masquerade: bool,
    ) -> Result<Self, NetworkError> {
        let mut net = Self::named(name, bridge)?;
        net.set_ipv4(subnet, gateway, masquerade)?;
        Ok(net)
    }

    /// A bridge network of that name with no address family yet: `set_ipv4`, `set_ipv6`
    /// (or both) give it its subnets. The bridge defaults to `nh-<name>`, or `nethook0` for
    /// the default network, whose definition a file may replace (to give it IPv6).
    pub fn named(name: &str, bridge: Option<&str>) -> Result<Self, NetworkError> {
        validate_name(name).map_err(|reason| NetworkError::BadName {
            name: name.to_owned(),
            reason,
        })?;
        let bridge = match bridge {
            Some(b) => b.to_owned(),
            None => derived_bridge(name),
        };
        validate_ifname(&bridge).map_err(|reason| NetworkError::BadBridge {
            name: bridge.clone(),
            reason: format!("{reason} (pass --bridge with a shorter name)"),
        })?;
        Ok(Network {
            name: name.to_owned(),
            driver: DriverKind::Bridge,
            bridge,
            ipv4: None,
            ipv6: None,
            ethertype_filter: true,
            no_masquerade_to: Vec::new(),
            parent: None,
            dns: false,
            service_range4: None,
            service_range6: None,
        })
    }

    /// Gives the network its IPv4 subnet (`--subnet`), the gateway defaulting to the first
    /// host address.
    pub fn set_ipv4(
        &mut self,
        subnet: &str,
        gateway: Option<Ipv4Addr>,
        masquerade: bool,
    ) -> Result<(), NetworkError> {
        let parsed: Ipv4Network = subnet.parse().map_err(|_| NetworkError::BadSubnet {
            subnet: subnet.to_owned(),
            reason: "not an IPv4 CIDR like 10.88.0.0/24".into(),
        })?;
        if parsed.prefix() > 30 {
            return Err(NetworkError::BadSubnet {
                subnet: subnet.to_owned(),
                reason: "too small; use /30 or larger".into(),
            });
        }
        if parsed.ip() != parsed.network() {
            return Err(NetworkError::BadSubnet {
                subnet: subnet.to_owned(),
                reason: format!(
                    "has host bits set; did you mean {}/{}?",
                    parsed.network(),
                    parsed.prefix()
                ),
            });
        }
        let first_host = Ipv4Addr::from(u32::from(parsed.network()) + 1);
        let gateway = gateway.unwrap_or(first_host);
        let before = self.ipv4.replace(Ipv4Config {
            subnet: parsed,
            gateway,
            masquerade,
            range: None,
        });
        if !self.is_host_address(gateway) {
            self.ipv4 = before;
            return Err(NetworkError::BadGateway {
                gateway,
                subnet: parsed,
            });
        }
        Ok(())
    }

    /// Whether the network has at least one address family (a definition needs one).
    pub fn has_family(&self) -> Result<(), NetworkError> {
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Err(NetworkError::NoFamily {
                network: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Sets the destinations excluded from masquerade (`--no-masquerade-to`, repeatable):
    /// IPv4 CIDRs without host bits, refused on a network that does not masquerade (they
    /// would change nothing there). Duplicates are kept once.
    pub fn set_no_masquerade_to<S: AsRef<str>>(&mut self, cidrs: &[S]) -> Result<(), NetworkError> {
        let mut out: Vec<Ipv4Network> = Vec::new();
        for cidr in cidrs {
            let parsed = parse_no_masquerade(cidr.as_ref())?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        if !out.is_empty() && !self.masquerades_ipv4() {
            return Err(NetworkError::BadNoMasquerade {
                cidr: out[0].to_string(),
                reason: "the network does not masquerade, so there is nothing to exclude; drop --no-masquerade or --no-masquerade-to".into(),
            });
        }
        self.no_masquerade_to = out;
        Ok(())
    }

    /// The alias nethook gives the bridge it creates for this network.
    pub fn owner_tag(&self) -> String {
        format!("nethook-network:{}", self.name)
    }

    /// Is a link of the bridge's name, a bridge or not (`is_bridge`) with `alias`, this
    /// network's, made by nethook? A bridge without an alias is, under the name nethook
    /// derives for the network (`nh-NAME`, or `nethook0` for the default): versions before
    /// the tag made those.
    pub fn owns_bridge(&self, is_bridge: bool, alias: Option<&str>) -> bool {
        let derived = derived_bridge(&self.name);
        is_bridge
            && (alias == Some(self.owner_tag().as_str())
                || (alias.is_none() && self.bridge == derived))
    }

    /// The IPv4 side, for what needs one (the routed and macvlan drivers; see
    /// `NetworkError::NoIpv4`).
    pub fn ipv4(&self) -> Result<&Ipv4Config, NetworkError> {
        self.ipv4.as_ref().ok_or_else(|| NetworkError::NoIpv4 {
            network: self.name.clone(),
        })
    }

    /// Whether IPv4 traffic leaving the subnet is masqueraded.
    pub fn masquerades_ipv4(&self) -> bool {
        self.ipv4.is_some_and(|v4| v4.masquerade)
    }

    /// True for addresses a container or the gateway may hold: inside the IPv4 subnet,
    /// not the network or broadcast address.
    pub fn is_host_address(&self, ip: Ipv4Addr) -> bool {
        self.ipv4.is_some_and(|v4| {
            let s = v4.subnet;
            s.contains(ip) && ip != s.network() && ip != s.broadcast()
        })
    }
}

/// The bridge name nethook derives for a network: `nethook0` for the default one.
fn derived_bridge(name: &str) -> String {
    if name == DEFAULT_NETWORK {
        "nethook0".to_owned()
    } else {
        format!("nh-{name}")
    }
}

/// One `--no-masquerade-to` value: an IPv4 CIDR (a bare address is a /32) with no host bits.
fn parse_no_masquerade(cidr: &str) -> Result<Ipv4Network, NetworkError> {
    let bad = |reason: String| NetworkError::BadNoMasquerade {
        cidr: cidr.to_owned(),
        reason,
    };
    let parsed: Ipv4Network = cidr
        .trim()
        .parse()
        .map_err(|_| bad("not an IPv4 CIDR like 10.244.0.0/16".into()))?;
    if parsed.ip() != parsed.network() {
        return Err(bad(format!(
            "has host bits set; did you mean {}/{}?",
            parsed.network(),
            parsed.prefix()
        )));
    }
    Ok(parsed)
}

/// Network names become file names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !b[0].is_ascii_alphanumeric()
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err(
            "may only use letters, digits, '_', '.', '-' and must start with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_matches_the_design() {
        let n = Network::builtin_default();
        assert_eq!(n.name, "nethook");
        assert_eq!(n.bridge, "nethook0");
        let v4 = n.ipv4.unwrap();
        assert_eq!(v4.subnet.to_string(), "10.77.0.0/16");
        assert_eq!(v4.gateway, Ipv4Addr::new(10, 77, 0, 1));
        assert!(v4.masquerade);
        assert!(n.ipv6.is_none());
    }

    #[test]
    fn new_network_defaults_gateway_and_bridge() {
        let n = Network::new("backend", "10.88.0.0/24", None, None, true).unwrap();
        assert_eq!(n.ipv4.unwrap().gateway, Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(n.bridge, "nh-backend");
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(Network::new("x", "10.88.0.5/24", None, None, true).is_err());
        assert!(Network::new("x", "10.88.0.0/31", None, None, true).is_err());
        assert!(Network::new("x", "nonsense", None, None, true).is_err());
        assert!(Network::new(
            "x",
            "10.88.0.0/24",
            Some("10.88.0.255".parse().unwrap()),
            None,
            true
        )
        .is_err());
        assert!(Network::new(
            "x",
            "10.88.0.0/24",
            Some("10.99.0.1".parse().unwrap()),
            None,
            true
        )
        .is_err());
        assert!(
            Network::new("a-very-long-network-name", "10.88.0.0/24", None, None, true).is_err()
        );
        assert!(Network::new("../etc", "10.88.0.0/24", None, None, true).is_err());
    }

    #[test]
    fn no_masquerade_to_takes_ipv4_cidrs_once() {
        let mut n = Network::new("pods", "10.244.1.0/24", None, None, true).unwrap();
        n.set_no_masquerade_to(&["10.244.0.0/16", "192.168.7.9", "10.244.0.0/16"])
            .unwrap();
        let want: Vec<Ipv4Network> = vec![
            "10.244.0.0/16".parse().unwrap(),
            "192.168.7.9/32".parse().unwrap(),
        ];
        assert_eq!(n.no_masquerade_to, want);
        n.set_no_masquerade_to::<&str>(&[]).unwrap();
        assert!(n.no_masquerade_to.is_empty());
    }

    #[test]
    fn bad_no_masquerade_to_values_are_refused_in_one_line() {
        let mut n = Network::new("pods", "10.244.1.0/24", None, None, true).unwrap();
        for (bad, says) in [
            ("10.244.0.0/33", "not an IPv4 CIDR"),
            ("fd00::/64", "not an IPv4 CIDR"),
            ("cluster", "not an IPv4 CIDR"),
            ("10.244.1.0/16", "did you mean 10.244.0.0/16?"),
        ] {
            let e = n.set_no_masquerade_to(&[bad]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--no-masquerade-to {bad}: ")), "{e}");
            assert!(e.contains(says) && !e.contains('\n'), "{e}");
        }
        assert!(
            n.no_masquerade_to.is_empty(),
            "a refused list changes nothing"
        );
        let mut plain = Network::new("flat", "10.245.0.0/24", None, None, false).unwrap();
        let e = plain.set_no_masquerade_to(&["10.244.0.0/16"]).unwrap_err();
        assert!(e.to_string().contains("does not masquerade"), "{e}");
    }

    #[test]
    fn overlapping_subnets_and_shared_bridges_conflict() {
        let a = Network::builtin_default();
        let b = Network::new("b", "10.77.5.0/24", None, None, true).unwrap();
        assert!(matches!(
            b.check_conflicts([&a]),
            Err(NetworkError::Overlap { .. })
        ));
        let c = Network::new("c", "10.78.0.0/24", None, Some("nethook0"), true).unwrap();
        assert!(matches!(
            c.check_conflicts([&a]),
            Err(NetworkError::BridgeTaken { .. })
        ));
        let d = Network::new("d", "10.78.0.0/24", None, None, true).unwrap();
        assert!(d.check_conflicts([&a]).is_ok());
    }
}
