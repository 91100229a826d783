//! Address allocation for one network. Pure: the choice reads a network's allocations
//! through `Allocations`, which `store` implements over its per-address files (and
//! `Pool` in memory, for tests); recording the choice is the store's job. Nothing here
//! touches files or the kernel.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::model::ids::ContainerId;
use crate::model::network::Network;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("address {ip} is outside network {network}'s subnet {subnet}; pick one inside it or drop nethook.ip")]
    OutsideSubnet {
        ip: Ipv4Addr,
        network: String,
        subnet: String,
    },
    #[error("address {ip} is the {what} of network {network}; pick another nethook.ip")]
    Reserved {
        ip: Ipv4Addr,
        what: &'static str,
        network: String,
    },
    #[error("address {ip} is already used by container {owner}; pick another nethook.ip or stop that container")]
    Taken { ip: Ipv4Addr, owner: String },
    #[error("network {network} ({subnet}) has no free address left; stop containers, run `nethook gc`, or use a larger subnet")]
    Exhausted { network: String, subnet: String },
    #[error("cannot read network {network}'s allocations")]
    State {
        network: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the choice needs to know about a network's allocations. Reading may fail for the
/// real store, hence the error type; the caller holds the lock, so answers stay true
/// until the choice is recorded.
pub trait Allocations {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The container holding `ip`, if any.
    fn owner(&self, ip: Ipv4Addr) -> Result<Option<String>, Self::Error>;

    /// Whether anything holds `ip`. The round-robin walk asks this of every address it
    /// passes and never needs the owner, so a store can answer without reading the file.
    fn is_taken(&self, ip: Ipv4Addr) -> Result<bool, Self::Error> {
        Ok(self.owner(ip)?.is_some())
    }

    /// The address handed out last by round robin.
    fn last(&self) -> Result<Option<Ipv4Addr>, Self::Error>;
}

/// The address chosen for a container, and whether recording it moves the round-robin
/// cursor (a static address does not, so it cannot make the walk skip a range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub advances_cursor: bool,
}

/// Chooses `requested` if it is usable and free, else the first free address after the
/// last one handed out. Allocation resumes after that one, so a just-freed address is not
/// reused at once (stale ARP and conntrack entries age out first).
pub fn choose<A: Allocations + ?Sized>(
    net: &Network,
    requested: Option<Ipv4Addr>,
    allocs: &A,
) -> Result<Lease, IpamError> {
    let state = |source: A::Error| IpamError::State {
        network: net.name.clone(),
        source: Box::new(source),
    };
    match requested {
        Some(ip) => {
            check_requested(net, ip)?;
            if let Some(owner) = allocs.owner(ip).map_err(state)? {
                return Err(IpamError::Taken { ip, owner });
            }
            Ok(Lease {
                address: ip,
                advances_cursor: false,
            })
        }
        None => {
            let s = net.ipv4.subnet;
            let first = u32::from(s.network()) + 1;
            let last = u32::from(s.broadcast()) - 1;
            let size = last - first + 1;
            let start = match allocs.last().map_err(state)?.map(u32::from) {
                Some(l) if (first..=last).contains(&l) => l - first + 1,
                _ => 0,
            };
            let gateway = u32::from(net.ipv4.gateway);
            for i in 0..size {
                let candidate = first + (start + i) % size;
                if candidate == gateway {
                    continue;
                }
                let ip = Ipv4Addr::from(candidate);
                if !allocs.is_taken(ip).map_err(state)? {
                    return Ok(Lease {
                        address: ip,
                        advances_cursor: true,
                    });
                }
            }
            Err(IpamError::Exhausted {
                network: net.name.clone(),
                subnet: s.to_string(),
            })
        }
    }
}

fn check_requested(net: &Network, ip: Ipv4Addr) -> Result<(), IpamError> {
    let s = net.ipv4.subnet;
    if !s.contains(ip) {
        return Err(IpamError::OutsideSubnet {
            ip,
            network: net.name.clone(),
            subnet: s.to_string(),
        });
    }
    let reserved = |what| {
        Err(IpamError::Reserved {
            ip,
            what,
            network: net.name.clone(),
        })
    };
    if ip == s.network() {
        return reserved("network address");
    }
    if ip == s.broadcast() {
        return reserved("broadcast address");
    }
    if ip == net.ipv4.gateway {
        return reserved("gateway");
    }
    Ok(())
}

/// A network's allocations in memory. Unit tests use it in place of the store, and its
/// JSON shape is the old single-file layout (`ipam/<network>.json`) that `store` converts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Pool {
    /// Address → container id.
    #[serde(default)]
    pub allocations: BTreeMap<Ipv4Addr, String>,
    #[serde(default)]
    pub last: Option<Ipv4Addr>,
}

impl Pool {
    /// Records a lease the way the store does.
    pub fn record(&mut self, lease: &Lease, id: &ContainerId) {
        self.allocations
            .insert(lease.address, id.as_str().to_owned());
        if lease.advances_cursor {
            self.last = Some(lease.address);
        }
    }

    /// Frees `ip` only if `owner` still holds it, as the store does.
    pub fn release(&mut self, ip: Ipv4Addr, owner: &str) -> bool {
        if self.allocations.get(&ip).is_some_and(|o| o == owner) {
            self.allocations.remove(&ip);
            true
        } else {
            false
        }
    }
}

impl Allocations for Pool {
    type Error = Infallible;

    fn owner(&self, ip: Ipv4Addr) -> Result<Option<String>, Infallible> {
        Ok(self.allocations.get(&ip).cloned())
    }

    fn last(&self) -> Result<Option<Ipv4Addr>, Infallible> {
        Ok(self.last)
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

    /// Choose and record, as setup does through the store.
    fn allocate(
        p: &mut Pool,
        net: &Network,
        owner: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let lease = choose(net, requested, p)?;
        p.record(&lease, &id(owner));
        Ok(lease.address)
    }

    #[test]
    fn first_allocation_skips_network_and_gateway() {
        let mut p = Pool::default();
        let net = Network::builtin_default();
        assert_eq!(
            allocate(&mut p, &net, "a", None).unwrap(),
            Ipv4Addr::new(10, 77, 0, 2)
        );
        assert_eq!(
            allocate(&mut p, &net, "b", None).unwrap(),
            Ipv4Addr::new(10, 77, 0, 3)
        );
    }

    #[test]
    fn freed_address_is_not_reused_until_the_pool_wraps() {
        let mut p = Pool::default();
        let net = small(); // hosts .1-.6, gateway .1 → .2..=.6 usable
        let a = allocate(&mut p, &net, "a", None).unwrap();
        assert!(p.release(a, "a"));
        let b = allocate(&mut p, &net, "b", None).unwrap();
        assert_ne!(a, b);
        for n in ["c", "d", "e"] {
            allocate(&mut p, &net, n, None).unwrap();
        }
        // Only .2 is free now; the scan wraps around to it.
        assert_eq!(allocate(&mut p, &net, "f", None).unwrap(), a);
        assert!(matches!(
            allocate(&mut p, &net, "g", None),
            Err(IpamError::Exhausted { .. })
        ));
    }

    #[test]
    fn a_cursor_outside_the_subnet_restarts_at_the_first_host() {
        let p = Pool {
            last: Some(Ipv4Addr::new(10, 0, 0, 9)),
            ..Pool::default()
        };
        assert_eq!(
            choose(&small(), None, &p).unwrap().address,
            Ipv4Addr::new(192, 168, 50, 2)
        );
    }

    #[test]
    fn release_only_frees_the_owners_address() {
        let mut p = Pool::default();
        let net = small();
        let a = allocate(&mut p, &net, "a", None).unwrap();
        assert!(!p.release(a, "intruder"));
        assert_eq!(p.owner(a).unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn requested_addresses_are_checked() {
        let mut p = Pool::default();
        let net = small();
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            allocate(&mut p, &net, "a", ip("192.168.50.5")).unwrap(),
            Ipv4Addr::new(192, 168, 50, 5)
        );
        let taken = allocate(&mut p, &net, "b", ip("192.168.50.5")).unwrap_err();
        assert!(
            matches!(&taken, IpamError::Taken { owner, .. } if owner == "a"),
            "{taken:?}"
        );
        assert!(matches!(
            allocate(&mut p, &net, "b", ip("192.168.50.1")),
            Err(IpamError::Reserved {
                what: "gateway",
                ..
            })
        ));
        assert!(matches!(
            allocate(&mut p, &net, "b", ip("192.168.50.0")),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            allocate(&mut p, &net, "b", ip("192.168.50.7")),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            allocate(&mut p, &net, "b", ip("10.0.0.1")),
            Err(IpamError::OutsideSubnet { .. })
        ));
    }

    #[test]
    fn a_static_address_does_not_move_the_cursor() {
        let p = Pool::default();
        let lease = choose(&small(), Some(Ipv4Addr::new(192, 168, 50, 5)), &p).unwrap();
        assert_eq!(
            lease,
            Lease {
                address: Ipv4Addr::new(192, 168, 50, 5),
                advances_cursor: false
            }
        );
        assert!(choose(&small(), None, &p).unwrap().advances_cursor);
    }

    #[test]
    fn pool_reads_the_old_single_file_format() {
        let old = r#"{"allocations": {"10.77.0.2": "a", "10.77.0.3": "b"}, "last": "10.77.0.3"}"#;
        let p: Pool = serde_json::from_str(old).unwrap();
        assert_eq!(p.allocations.len(), 2);
        assert_eq!(
            p.owner(Ipv4Addr::new(10, 77, 0, 2)).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(p.last, Some(Ipv4Addr::new(10, 77, 0, 3)));
        // Older files had no cursor at all.
        assert_eq!(
            serde_json::from_str::<Pool>(r#"{"allocations": {}}"#).unwrap(),
            Pool::default()
        );
    }
}
