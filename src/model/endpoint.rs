//! The endpoint record: everything teardown needs, written before any kernel work
//! so a crash mid-setup leaves something `gc` can act on.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::model::ids::ContainerId;
use crate::model::mac::Mac;
use crate::model::network::DriverKind;
use crate::model::ports::PortSpec;

/// The IPv4 side of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Attachment {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// The IPv6 side of an endpoint (a network with `--subnet6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Attachment {
    pub address: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Ipv6Addr,
    /// Whether the network masquerades IPv6 (IPv4's is the record's `masquerade`).
    #[serde(default)]
    pub masquerade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(with = "id_as_string")]
    pub id: ContainerId,
    pub network: String,
    /// The network's driver when the endpoint was made: teardown asks it, not the network
    /// definition, which may have changed or gone since.
    #[serde(default, skip_serializing_if = "DriverKind::is_bridge")]
    pub driver: DriverKind,
    pub bridge: String,
    /// Host end of the veth pair.
    pub host_interface: String,
    /// Container end, inside the container's netns.
    pub interface: String,
    pub mac: Mac,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Attachment>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Whether the network masquerades IPv4 (the name predates IPv6); teardown drops the
    /// subnet from the masquerade set when the last endpoint of a masquerading network goes.
    #[serde(default)]
    pub masquerade: bool,
    /// IPv4 destinations the network does not masquerade traffic to (its
    /// `no_masquerade_to` when the endpoint was made): teardown deletes the exceptions it
    /// added, whatever the definition says by then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_masquerade_to: Vec<Ipv4Network>,
    /// The network lets this container send any ethertype (set `l2open`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_ethertype: bool,
    /// The namespace path setup configured (`/proc/<pid>/ns/net`). Teardown looks at
    /// whether that process still holds it (see `teardown::namespace_grace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Its name on the network (`nethook.name`, the CNI pod name, or its id when that is a
    /// DNS label), lower case; the resolver answers it and `NAME.NETWORK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More names (`nethook.aliases`), lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The services it is a member of (`nethook.service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

impl Endpoint {
    /// The prefix length the container's address has inside it: the subnet's, but a routed
    /// network's container holds its address alone (/32). The record's `ipv4.prefix` stays
    /// the subnet's, which the firewall's per-network elements are made from.
    pub fn container_prefix(&self) -> Option<u8> {
        let v4 = self.ipv4?;
        Some(if self.driver == DriverKind::Routed {
            32
        } else {
            v4.prefix
        })
    }
}

impl Endpoint {
    /// Its name and aliases: what the resolver answers for it.
    pub fn names(&self) -> Vec<String> {
        self.name.iter().chain(&self.aliases).cloned().collect()
    }

    /// Its addresses, IPv4 first.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        let v4 = self.ipv4.map(|a| std::net::IpAddr::V4(a.address));
        let v6 = self.ipv6.map(|a| std::net::IpAddr::V6(a.address));
        [v4, v6].into_iter().flatten().collect()
    }

    /// Its addresses for messages and tables: `10.77.0.2`, `fd00::2` or
    /// `10.77.0.2, fd00::2`.
    pub fn address_text(&self) -> String {
        let v4 = self.ipv4.map(|a| a.address.to_string());
        let v6 = self.ipv6.map(|a| a.address.to_string());
        [v4, v6]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

mod id_as_string {
    use super::ContainerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &ContainerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ContainerId, D::Error> {
        let raw = String::deserialize(d)?;
        ContainerId::parse_key(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_an_ipv6_part_loads_and_keeps_it() {
        let text = r#"{"id":"c1","network":"nethook","bridge":"nethook0",
            "host_interface":"nh0","interface":"eth0","mac":"02:00:00:00:00:01",
            "ipv6":{"address":"fd00::2","prefix":64,"gateway":"fd00::1"}}"#;
        let ep: Endpoint = serde_json::from_str(text).unwrap();
        let v6 = ep.ipv6.unwrap();
        assert_eq!(v6.address, "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert!(!v6.masquerade);
        assert!(ep.ipv4.is_none());
        let again: Endpoint = serde_json::from_str(&serde_json::to_string(&ep).unwrap()).unwrap();
        assert_eq!(again, ep);
    }
}
