//! Network definitions: which bridge, which subnet, whether to masquerade.
//! Pure data and rules; `store` persists them.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::core::options::DEFAULT_NETWORK;
use crate::model::ids::validate_ifname;

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
    Overlap { subnet: Ipv4Network, other: String },
    #[error("bridge {bridge} is already used by network {other}; pass another --bridge")]
    BridgeTaken { bridge: String, other: String },
}

/// The IPv4 side of a network. IPv6 will sit beside it as its own field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Config {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
}

/// Which driver makes a network's links (see `driver`). Written only when not the
/// bridge, so definitions of a bridge network read as they always did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A Linux bridge per network, a veth per container (`driver::bridge`).
    #[default]
    Bridge,
}

impl DriverKind {
    pub fn is_bridge(&self) -> bool {
        *self == DriverKind::Bridge
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    #[serde(default, skip_serializing_if = "DriverKind::is_bridge")]
    pub driver: DriverKind,
    pub bridge: String,
    pub ipv4: Ipv4Config,
    /// Masquerade traffic that leaves the subnet (SNAT to the host's address).
    #[serde(default = "default_true")]
    pub masquerade: bool,
    /// Containers send only IPv4 and ARP frames (false: any ethertype, for protocols such
    /// as LLDP or STP a network needs; still only from their own MAC, never VLAN-tagged).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub ethertype_filter: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_true() -> bool {
    true
}

impl Network {
    /// The network every container gets when it names none and no file overrides it.
    pub fn builtin_default() -> Self {
        Network {
            name: DEFAULT_NETWORK.to_owned(),
            driver: DriverKind::Bridge,
            bridge: "nethook0".to_owned(),
            ipv4: Ipv4Config {
                // Invariant: a literal, valid /16.
                subnet: Ipv4Network::new(Ipv4Addr::new(10, 77, 0, 0), 16)
                    .expect("valid literal subnet"),
                gateway: Ipv4Addr::new(10, 77, 0, 1),
            },
            masquerade: true,
            ethertype_filter: true,
        }
    }

    /// Builds and validates a definition from CLI input; `gateway` and `bridge` default
    /// to the first host address and `nh-<name>`.
    pub fn new(
        name: &str,
        subnet: &str,
        gateway: Option<Ipv4Addr>,
        bridge: Option<&str>,
        masquerade: bool,
    ) -> Result<Self, NetworkError> {
        validate_name(name).map_err(|reason| NetworkError::BadName {
            name: name.to_owned(),
            reason,
        })?;
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
        let bridge = match bridge {
            Some(b) => b.to_owned(),
            None => format!("nh-{name}"),
        };
        validate_ifname(&bridge).map_err(|reason| NetworkError::BadBridge {
            name: bridge.clone(),
            reason: format!("{reason} (pass --bridge with a shorter name)"),
        })?;
        let first_host = Ipv4Addr::from(u32::from(parsed.network()) + 1);
        let gateway = gateway.unwrap_or(first_host);
        let net = Network {
            name: name.to_owned(),
            driver: DriverKind::Bridge,
            bridge,
            ipv4: Ipv4Config {
                subnet: parsed,
                gateway,
            },
            masquerade,
            ethertype_filter: true,
        };
        if !net.is_host_address(gateway) {
            return Err(NetworkError::BadGateway {
                gateway,
                subnet: parsed,
            });
        }
        Ok(net)
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
        let derived = if self.name == DEFAULT_NETWORK {
            "nethook0".to_owned()
        } else {
            format!("nh-{}", self.name)
        };
        is_bridge
            && (alias == Some(self.owner_tag().as_str())
                || (alias.is_none() && self.bridge == derived))
    }

    /// True for addresses a container or the gateway may hold: inside the subnet,
    /// not the network or broadcast address.
    pub fn is_host_address(&self, ip: Ipv4Addr) -> bool {
        let s = self.ipv4.subnet;
        s.contains(ip) && ip != s.network() && ip != s.broadcast()
    }

    /// Refuses a new network that shares a subnet or bridge with an existing one.
    pub fn check_conflicts<'a>(
        &self,
        others: impl IntoIterator<Item = &'a Network>,
    ) -> Result<(), NetworkError> {
        for other in others {
            if other.name == self.name {
                continue;
            }
            if other.ipv4.subnet.overlaps(self.ipv4.subnet) {
                return Err(NetworkError::Overlap {
                    subnet: self.ipv4.subnet,
                    other: format!("network {} ({})", other.name, other.ipv4.subnet),
                });
            }
            if other.bridge == self.bridge {
                return Err(NetworkError::BridgeTaken {
                    bridge: self.bridge.clone(),
                    other: other.name.clone(),
                });
            }
        }
        Ok(())
    }
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
        assert_eq!(n.ipv4.subnet.to_string(), "10.77.0.0/16");
        assert_eq!(n.ipv4.gateway, Ipv4Addr::new(10, 77, 0, 1));
        assert!(n.masquerade);
    }

    #[test]
    fn new_network_defaults_gateway_and_bridge() {
        let n = Network::new("backend", "10.88.0.0/24", None, None, true).unwrap();
        assert_eq!(n.ipv4.gateway, Ipv4Addr::new(10, 88, 0, 1));
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
