//! Which driver makes a network's links, and what each driver's definition may hold.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Network, NetworkError};
use crate::model::ids::validate_ifname;

/// Which driver makes a network's links (see `driver`). Written only when not the
/// bridge, so definitions of a bridge network read as they always did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A Linux bridge per network, a veth per container (`driver::bridge`).
    #[default]
    Bridge,
    /// No bridge: a veth per container and a /32 route to it; the host routes between
    /// containers (`driver::routed`).
    Routed,
    /// The container's interface is a macvlan of a host interface (`parent`): it sits on
    /// that LAN with a MAC of its own (`driver::macvlan`).
    Macvlan,
}

/// The gateway a routed network's containers use: link-local, never an address of the
/// subnet, answered by a permanent neighbour entry naming the host veth's MAC.
pub const ROUTED_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

impl DriverKind {
    pub fn is_bridge(&self) -> bool {
        *self == DriverKind::Bridge
    }

    pub fn name(&self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::Routed => "routed",
            DriverKind::Macvlan => "macvlan",
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DriverKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(DriverKind::Bridge),
            "routed" => Ok(DriverKind::Routed),
            "macvlan" => Ok(DriverKind::Macvlan),
            other => Err(format!(
                "unknown driver {other:?}; use bridge, routed or macvlan"
            )),
        }
    }
}

impl Network {
    /// Makes a definition from `new` one of `driver`'s, refusing what the driver has no use
    /// for. `gateway_given`, `bridge_given`: whether the user named them. Call it last, after
    /// the other options are set: it checks them.
    pub fn set_driver(
        &mut self,
        driver: DriverKind,
        parent: Option<&str>,
        gateway_given: bool,
        bridge_given: bool,
    ) -> Result<(), NetworkError> {
        let refuse = |option, reason| {
            Err(NetworkError::DriverOption {
                option,
                driver,
                reason,
            })
        };
        match driver {
            DriverKind::Bridge => {
                if parent.is_some() {
                    return refuse(
                        "--parent",
                        "a bridge network makes its own bridge; --parent is for --driver macvlan",
                    );
                }
            }
            DriverKind::Routed => {
                if self.ipv6.is_some() {
                    return refuse("--subnet6", "IPv6 is built for bridge networks only so far; use --driver bridge for IPv6, or drop --subnet6");
                }
                if parent.is_some() {
                    return refuse("--parent", "a routed network has no parent interface; --parent is for --driver macvlan");
                }
                if bridge_given {
                    return refuse("--bridge", "a routed network has no bridge; drop --bridge");
                }
                if gateway_given {
                    return refuse("--gateway", "the containers of a routed network use 169.254.1.1, which the host answers; drop --gateway");
                }
                if !self.ethertype_filter {
                    return refuse(
                        "--any-ethertype",
                        "the host routes only IP between routed containers; drop --any-ethertype",
                    );
                }
                self.bridge.clear();
                if let Some(v4) = &mut self.ipv4 {
                    v4.gateway = ROUTED_GATEWAY;
                }
            }
            DriverKind::Macvlan => {
                let Some(parent) = parent else {
                    return Err(NetworkError::NoParent);
                };
                if self.ipv6.is_some() {
                    return refuse("--subnet6", "IPv6 is built for bridge networks only so far; use --driver bridge for IPv6, or drop --subnet6");
                }
                validate_ifname(parent).map_err(|reason| NetworkError::BadParent {
                    name: parent.to_owned(),
                    reason,
                })?;
                if bridge_given {
                    return refuse(
                        "--bridge",
                        "a macvlan network has no bridge; name the LAN's interface with --parent",
                    );
                }
                if !self.no_masquerade_to.is_empty() {
                    return refuse("--no-masquerade-to", "macvlan containers are hosts of the LAN with addresses of its own: nothing is masqueraded");
                }
                if !self.ethertype_filter {
                    return refuse("--any-ethertype", "macvlan frames never pass nethook's bridge table, so there is no filter to open");
                }
                self.bridge.clear();
                self.parent = Some(parent.to_owned());
                if let Some(v4) = &mut self.ipv4 {
                    v4.masquerade = false;
                }
            }
        }
        self.driver = driver;
        Ok(())
    }
}
