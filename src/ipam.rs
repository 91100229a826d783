//! Address allocation for one network. Pure: `store` loads and saves the pool under
//! the lock; nothing here touches files or the kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::ContainerId;
use crate::network::Network;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("address {ip} is outside network {network}'s subnet {subnet}; pick one inside it or drop nethook.ip")]
    OutsideSubnet { ip: Ipv4Addr, network: String, subnet: String },
    #[error("address {ip} is the {what} of network {network}; pick another nethook.ip")]
    Reserved { ip: Ipv4Addr, what: &'static str, network: String },
    #[error("address {ip} is already used by container {owner}; pick another nethook.ip or stop that container")]
    Taken { ip: Ipv4Addr, owner: String },
    #[error("network {network} ({subnet}) has no free address left; stop containers, run `nethook gc`, or use a larger subnet")]
    Exhausted { network: String, subnet: String },
}

/// Allocations of one network's IPv4 subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Address → container id.
    #[serde(default)]
    pub allocations: BTreeMap<Ipv4Addr, String>,
    /// The address handed out last. Allocation resumes after it, so a just-freed
    /// address is not reused at once (stale ARP and conntrack entries age out first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Ipv4Addr>,
}

impl Pool {
    pub fn allocate(&mut self, net: &Network, id: &ContainerId, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let ip = match requested {
            Some(ip) => {
                self.check_requested(net, ip)?;
                ip
            }
            None => self.next_free(net)?,
        };
        self.allocations.insert(ip, id.as_str().to_owned());
        if requested.is_none() {
            self.last = Some(ip);
        }
        Ok(ip)
    }

    /// Frees `ip` only if `id` still holds it, so a late teardown of an old container
    /// cannot free an address that was handed to a new one.
    pub fn release(&mut self, ip: Ipv4Addr, id: &ContainerId) -> bool {
        if self.owner(ip) == Some(id.as_str()) {
            self.allocations.remove(&ip);
            true
        } else {
            false
        }
    }

    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.allocations.get(&ip).map(String::as_str)
    }

    fn check_requested(&self, net: &Network, ip: Ipv4Addr) -> Result<(), IpamError> {
        let s = net.ipv4.subnet;
        if !s.contains(ip) {
            return Err(IpamError::OutsideSubnet { ip, network: net.name.clone(), subnet: s.to_string() });
        }
        let reserved = |what| Err(IpamError::Reserved { ip, what, network: net.name.clone() });
        if ip == s.network() {
            return reserved("network address");
        }
        if ip == s.broadcast() {
            return reserved("broadcast address");
        }
        if ip == net.ipv4.gateway {
            return reserved("gateway");
        }
        if let Some(owner) = self.owner(ip) {
            return Err(IpamError::Taken { ip, owner: owner.to_owned() });
        }
        Ok(())
    }

    fn next_free(&self, net: &Network) -> Result<Ipv4Addr, IpamError> {
        let s = net.ipv4.subnet;
        let first = u32::from(s.network()) + 1;
        let last = u32::from(s.broadcast()) - 1;
        let size = last - first + 1;
        let start = match self.last.map(u32::from) {
            Some(l) if (first..=last).contains(&l) => l - first + 1,
            _ => 0,
        };
        let gateway = u32::from(net.ipv4.gateway);
        (0..size)
            .map(|i| first + (start + i) % size)
            .map(Ipv4Addr::from)
            .find(|ip| u32::from(*ip) != gateway && !self.allocations.contains_key(ip))
            .ok_or_else(|| IpamError::Exhausted { network: net.name.clone(), subnet: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ContainerId {
        ContainerId::parse(s).unwrap()
    }

    fn small() -> Network {
        Network::new("small", "192.168.50.0/29", None, None, true).unwrap()
    }

    #[test]
    fn first_allocation_skips_network_and_gateway() {
        let mut p = Pool::default();
        let net = Network::builtin_default();
        assert_eq!(p.allocate(&net, &id("a"), None).unwrap(), Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(p.allocate(&net, &id("b"), None).unwrap(), Ipv4Addr::new(10, 77, 0, 3));
    }

    #[test]
    fn freed_address_is_not_reused_until_the_pool_wraps() {
        let mut p = Pool::default();
        let net = small(); // hosts .1-.6, gateway .1 → .2..=.6 usable
        let a = p.allocate(&net, &id("a"), None).unwrap();
        assert!(p.release(a, &id("a")));
        let b = p.allocate(&net, &id("b"), None).unwrap();
        assert_ne!(a, b);
        for n in ["c", "d", "e"] {
            p.allocate(&net, &id(n), None).unwrap();
        }
        // Only .2 is free now; the scan wraps around to it.
        assert_eq!(p.allocate(&net, &id("f"), None).unwrap(), a);
        assert!(matches!(p.allocate(&net, &id("g"), None), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn release_only_frees_the_owners_address() {
        let mut p = Pool::default();
        let net = small();
        let a = p.allocate(&net, &id("a"), None).unwrap();
        assert!(!p.release(a, &id("intruder")));
        assert_eq!(p.owner(a), Some("a"));
    }

    #[test]
    fn requested_addresses_are_checked() {
        let mut p = Pool::default();
        let net = small();
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.allocate(&net, &id("a"), ip("192.168.50.5")).unwrap(), Ipv4Addr::new(192, 168, 50, 5));
        assert!(matches!(p.allocate(&net, &id("b"), ip("192.168.50.5")), Err(IpamError::Taken { .. })));
        assert!(matches!(p.allocate(&net, &id("b"), ip("192.168.50.1")), Err(IpamError::Reserved { what: "gateway", .. })));
        assert!(matches!(p.allocate(&net, &id("b"), ip("192.168.50.0")), Err(IpamError::Reserved { .. })));
        assert!(matches!(p.allocate(&net, &id("b"), ip("192.168.50.7")), Err(IpamError::Reserved { .. })));
        assert!(matches!(p.allocate(&net, &id("b"), ip("10.0.0.1")), Err(IpamError::OutsideSubnet { .. })));
        // A static address does not move the round-robin cursor.
        assert_eq!(p.last, None);
    }

    #[test]
    fn pool_roundtrips_through_json() {
        let mut p = Pool::default();
        p.allocate(&Network::builtin_default(), &id("a"), None).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Pool>(&text).unwrap(), p);
    }
}
