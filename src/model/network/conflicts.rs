//! Networks that cannot live side by side: overlapping address space (subnets and service
//! ranges alike, each routed to one bridge) or one bridge for two networks.

use super::services::overlaps;
use super::{Network, NetworkError};

impl Network {
    /// Its subnets, IPv4 first.
    pub fn subnets(&self) -> Vec<ipnetwork::IpNetwork> {
        let v4 = self.ipv4.map(|c| ipnetwork::IpNetwork::V4(c.subnet));
        let v6 = self.ipv6.map(|c| ipnetwork::IpNetwork::V6(c.subnet));
        [v4, v6].into_iter().flatten().collect()
    }

    /// Its subnets and service ranges.
    fn address_spaces(&self) -> Vec<ipnetwork::IpNetwork> {
        let mut out = self.subnets();
        out.extend(self.service_ranges());
        out
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
            // Subnets and service ranges alike: each is routed to one bridge.
            for mine in self.address_spaces() {
                if let Some(theirs) = other
                    .address_spaces()
                    .into_iter()
                    .find(|t| overlaps(*t, mine))
                {
                    return Err(NetworkError::Overlap {
                        subnet: mine.to_string(),
                        other: format!("network {} ({theirs})", other.name),
                    });
                }
            }
            if !self.bridge.is_empty() && other.bridge == self.bridge {
                return Err(NetworkError::BridgeTaken {
                    bridge: self.bridge.clone(),
                    other: other.name.clone(),
                });
            }
        }
        Ok(())
    }
}
