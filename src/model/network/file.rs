//! The on-disk layout of a network definition (`/etc/nethook/networks/NAME.json`). It is
//! the layout every earlier version wrote, extended only by fields that are left out when
//! they hold their default, so a bridge network with IPv4 only reads and writes exactly
//! as before:
//!
//! ```json
//! {"name": "backend", "bridge": "nh-backend",
//!  "ipv4": {"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"},
//!  "masquerade": true}
//! ```
//!
//! `masquerade` at the top level is IPv4's (it predates the per-family parts); IPv6's sits
//! in its own part. `driver` is written when it is not `bridge`, `ethertype_filter` when
//! it is false, `no_masquerade_to` (IPv4's, like `masquerade`) when it is not empty, `ipv6` when the
//! network has IPv6 (`{"subnet": "fd00:88::/64", "gateway": "fd00:88::1", "masquerade":
//! true}`); an IPv6-only network has no `ipv4` part.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

use super::{DriverKind, Ipv4Config, Ipv6Config, Network, NetworkError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkFile {
    name: String,
    #[serde(default, skip_serializing_if = "DriverKind::is_bridge")]
    driver: DriverKind,
    bridge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv4: Option<Ipv4File>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv6: Option<Ipv6File>,
    /// IPv4's.
    #[serde(default = "default_true")]
    masquerade: bool,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    ethertype_filter: bool,
    /// IPv4 destinations not masqueraded (`--no-masquerade-to`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    no_masquerade_to: Vec<Ipv4Network>,
    /// The macvlan driver's parent interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// `--dns`: a resolver serves the network's names.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dns: bool,
    /// `--service-range`: where services' VIPs come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_range4: Option<Ipv4Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_range6: Option<Ipv6Network>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Ipv4File {
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    /// `--ip-range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<Ipv4Network>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Ipv6File {
    subnet: Ipv6Network,
    gateway: Ipv6Addr,
    #[serde(default = "default_true")]
    masquerade: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_true() -> bool {
    true
}

impl From<Network> for NetworkFile {
    fn from(n: Network) -> Self {
        NetworkFile {
            masquerade: n.masquerades_ipv4(),
            name: n.name,
            driver: n.driver,
            bridge: n.bridge,
            ipv4: n.ipv4.map(|v4| Ipv4File {
                subnet: v4.subnet,
                gateway: v4.gateway,
                range: v4.range,
            }),
            ipv6: n.ipv6.map(|v6| Ipv6File {
                subnet: v6.subnet,
                gateway: v6.gateway,
                masquerade: v6.masquerade,
            }),
            ethertype_filter: n.ethertype_filter,
            no_masquerade_to: n.no_masquerade_to,
            parent: n.parent,
            dns: n.dns,
            service_range4: n.service_range4,
            service_range6: n.service_range6,
        }
    }
}

impl TryFrom<NetworkFile> for Network {
    type Error = NetworkError;

    /// Validates the definition as the command line does, so a hand-edited file gets the
    /// same one-line errors.
    fn try_from(f: NetworkFile) -> Result<Self, NetworkError> {
        let mut net = Network {
            name: f.name,
            driver: f.driver,
            bridge: f.bridge,
            ipv4: f.ipv4.map(|v4| Ipv4Config {
                subnet: v4.subnet,
                gateway: v4.gateway,
                masquerade: f.masquerade,
                range: None,
            }),
            ipv6: f.ipv6.map(|v6| Ipv6Config {
                subnet: v6.subnet,
                gateway: v6.gateway,
                masquerade: v6.masquerade,
            }),
            ethertype_filter: f.ethertype_filter,
            no_masquerade_to: Vec::new(),
            parent: f.parent,
            dns: false,
            service_range4: None,
            service_range6: None,
        };
        net.has_family()?;
        net.check_ipv6()?;
        if net.ipv6.is_some() && !net.driver.is_bridge() {
            return Err(NetworkError::DriverOption {
                option: "an ipv6 part",
                driver: net.driver,
                reason: "IPv6 is built for bridge networks only so far; remove the ipv6 part",
            });
        }
        let cidrs: Vec<String> = f.no_masquerade_to.iter().map(|c| c.to_string()).collect();
        net.set_no_masquerade_to(&cidrs)?;
        if let Some(range) = f.ipv4.and_then(|v4| v4.range) {
            net.set_ip_range(&range.to_string())?;
        }
        net.set_dns(f.dns)?;
        if let Some(r) = f.service_range4 {
            net.set_service_range(&r.to_string())?;
        }
        if let Some(r) = f.service_range6 {
            net.set_service_range(&r.to_string())?;
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition as the version before dual-stack types wrote it (`network create
    /// backend --subnet 10.88.0.0/24`), byte for byte.
    const TODAYS_FILE: &str = r#"{
  "name": "backend",
  "bridge": "nh-backend",
  "ipv4": {
    "subnet": "10.88.0.0/24",
    "gateway": "10.88.0.1"
  },
  "masquerade": true
}"#;

    #[test]
    fn a_definition_written_by_the_previous_version_loads() {
        let n: Network = serde_json::from_str(TODAYS_FILE).unwrap();
        assert_eq!(
            n,
            Network::new("backend", "10.88.0.0/24", None, None, true).unwrap()
        );
        assert_eq!(n.driver, DriverKind::Bridge);
        assert!(n.ipv6.is_none());
    }

    #[test]
    fn an_ipv4_bridge_network_is_written_exactly_as_before() {
        let n = Network::new("backend", "10.88.0.0/24", None, None, true).unwrap();
        assert_eq!(serde_json::to_string_pretty(&n).unwrap(), TODAYS_FILE);
    }

    #[test]
    fn the_opt_outs_are_written_as_before() {
        let mut n = Network::new("lab", "10.89.0.0/24", None, Some("br-lab"), false).unwrap();
        n.ethertype_filter = false;
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(
            text,
            r#"{"name":"lab","bridge":"br-lab","ipv4":{"subnet":"10.89.0.0/24","gateway":"10.89.0.1"},"masquerade":false,"ethertype_filter":false}"#
        );
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), n);
    }

    #[test]
    fn no_masquerade_to_is_written_only_when_set_and_read_back() {
        let mut n = Network::new("pods", "10.244.1.0/24", None, None, true).unwrap();
        n.set_no_masquerade_to(&["10.244.0.0/16"]).unwrap();
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(
            text,
            r#"{"name":"pods","bridge":"nh-pods","ipv4":{"subnet":"10.244.1.0/24","gateway":"10.244.1.1"},"masquerade":true,"no_masquerade_to":["10.244.0.0/16"]}"#
        );
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), n);
    }

    #[test]
    fn a_hand_edited_no_masquerade_to_is_validated() {
        let e = serde_json::from_str::<Network>(
            r#"{"name":"p","bridge":"nh-p","ipv4":{"subnet":"10.244.1.0/24","gateway":"10.244.1.1"},
                "masquerade":false,"no_masquerade_to":["10.244.0.0/16"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not masquerade"), "{e}");
        let e = serde_json::from_str::<Network>(
            r#"{"name":"p","bridge":"nh-p","ipv4":{"subnet":"10.244.1.0/24","gateway":"10.244.1.1"},
                "no_masquerade_to":["10.244.1.0/16"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("did you mean 10.244.0.0/16"), "{e}");
    }

    #[test]
    fn older_definitions_without_masquerade_masquerade() {
        let n: Network = serde_json::from_str(
            r#"{"name":"old","bridge":"nh-old","ipv4":{"subnet":"10.90.0.0/24","gateway":"10.90.0.1"}}"#,
        )
        .unwrap();
        assert!(n.masquerades_ipv4());
        assert!(n.ethertype_filter);
    }

    #[test]
    fn a_dual_stack_definition_round_trips_and_an_ipv6_only_one_has_no_ipv4_part() {
        let mut n = Network::new("dual", "10.91.0.0/24", None, None, true).unwrap();
        n.set_ipv6("fd00:91::/64", None, false).unwrap();
        let text = serde_json::to_string(&n).unwrap();
        assert!(
            text.contains(
                r#""ipv6":{"subnet":"fd00:91::/64","gateway":"fd00:91::1","masquerade":false}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), n);
        let mut six = Network::named("six", None).unwrap();
        six.set_ipv6("fd00:92::/64", None, true).unwrap();
        let text = serde_json::to_string(&six).unwrap();
        assert!(!text.contains("ipv4"), "{text}");
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), six);
    }

    #[test]
    fn a_hand_edited_ipv6_part_is_validated() {
        let e = serde_json::from_str::<Network>(
            r#"{"name":"v6","bridge":"nh-v6","ipv6":{"subnet":"fd00:91::/64","gateway":"fd00:99::1"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("gateway6 fd00:99::1"), "{e}");
    }

    #[test]
    fn a_network_without_any_subnet_is_refused() {
        let e =
            serde_json::from_str::<Network>(r#"{"name":"none","bridge":"nh-none"}"#).unwrap_err();
        assert!(e.to_string().contains("has no subnet"), "{e}");
    }
}
