//! Address allocation for one network, per address family. Pure: the choice reads a
//! network's allocations of one family through `Allocations`, which `store` implements
//! over its per-address files (and `Pool` in memory, for tests); recording the choice is
//! the store's job. Nothing here touches files or the kernel.
//!
//! The walk is the same for both families (`Family` turns an address into a number and
//! back); each family keeps its own round-robin cursor.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

use crate::model::ids::ContainerId;
use crate::model::network::{Ipv4Config, Ipv6Config, Network, NetworkError};

/// An address family as IPAM sees it: addresses it can count with, a name for its cursor.
pub trait Family:
    Copy
    + Ord
    + fmt::Display
    + fmt::Debug
    + FromStr<Err = AddrParseError>
    + Into<IpAddr>
    + Send
    + Sync
    + 'static
{
    /// "IPv4" or "IPv6", for messages.
    const NAME: &'static str;
    /// The name of the family's round-robin cursor in a network's IPAM directory.
    const CURSOR: &'static str;
    /// The annotation that asks for an address of the family, for messages.
    const OPTION: &'static str;
    /// What the subnet's first address is: never handed out.
    const BASE: &'static str;
    fn to_bits(self) -> u128;
    fn from_bits(bits: u128) -> Self;
}

impl Family for Ipv4Addr {
    const NAME: &'static str = "IPv4";
    const CURSOR: &'static str = "last";
    const OPTION: &'static str = "nethook.ip";
    const BASE: &'static str = "network address";
    fn to_bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(bits: u128) -> Self {
        // Only ever called with bits of an address inside an IPv4 subnet.
        Ipv4Addr::from(bits as u32)
    }
}

impl Family for Ipv6Addr {
    const NAME: &'static str = "IPv6";
    const CURSOR: &'static str = "last6";
    const OPTION: &'static str = "nethook.ip6";
    // The host answers it once it forwards IPv6, so its holder could not reach the gateway.
    const BASE: &'static str = "subnet-router anycast address";
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
}

/// One family's part of a network, as the choice needs it: which addresses a container
/// may hold, and the gateway's.
#[derive(Debug, Clone)]
pub struct Subnet<A> {
    /// The network's name, for errors.
    pub network: String,
    /// The subnet in CIDR form, for errors.
    pub cidr: String,
    /// The subnet's own (first) address; never handed out.
    pub base: A,
    /// The last address a container may hold (before the IPv4 broadcast address).
    pub last_host: A,
    /// Its broadcast address (IPv4 only), never handed out.
    pub broadcast: Option<A>,
    pub gateway: A,
    /// The first and last address the round-robin walk may hand out (`--ip-range`);
    /// `None`: the whole subnet. A requested address need only be in the subnet.
    pub range: Option<(A, A)>,
}

impl Subnet<Ipv4Addr> {
    pub fn v4(network: &str, c: &Ipv4Config) -> Self {
        Subnet {
            network: network.to_owned(),
            cidr: c.subnet.to_string(),
            base: c.subnet.network(),
            last_host: Ipv4Addr::from(u32::from(c.subnet.broadcast()).saturating_sub(1)),
            broadcast: Some(c.subnet.broadcast()),
            gateway: c.gateway,
            range: c.range.map(|r| (r.network(), r.broadcast())),
        }
    }

    /// The IPv4 part of `net` (which every network has for now).
    pub fn of(net: &Network) -> Result<Self, NetworkError> {
        Ok(Self::v4(&net.name, net.ipv4()?))
    }
}

impl Subnet<Ipv6Addr> {
    pub fn v6(network: &str, c: &Ipv6Config) -> Self {
        Subnet {
            network: network.to_owned(),
            cidr: c.subnet.to_string(),
            base: c.subnet.network(),
            last_host: c.subnet.broadcast(),
            broadcast: None,
            gateway: c.gateway,
            range: None,
        }
    }
}

impl<A: Family> Subnet<A> {
    fn contains(&self, ip: A) -> bool {
        self.base <= ip && ip <= self.broadcast.unwrap_or(self.last_host)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("address {ip} is outside network {network}'s subnet {subnet}; pick one inside it or drop {option}")]
    OutsideSubnet {
        ip: IpAddr,
        network: String,
        subnet: String,
        option: &'static str,
    },
    #[error("address {ip} is the {what} of network {network}; pick another {option}")]
    Reserved {
        ip: IpAddr,
        what: &'static str,
        network: String,
        option: &'static str,
    },
    #[error("address {ip} is already used by container {owner}; pick another {option} or stop that container")]
    Taken {
        ip: IpAddr,
        owner: String,
        option: &'static str,
    },
    #[error("network {network} ({subnet}) has no free address left; stop containers, run `nethook gc`, or use a larger subnet")]
    Exhausted { network: String, subnet: String },
    #[error("cannot read network {network}'s allocations")]
    State {
        network: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the choice needs to know about a network's allocations of one family. Reading
/// may fail for the real store, hence the error type; the caller holds the lock, so
/// answers stay true until the choice is recorded.
pub trait Allocations<A: Family = Ipv4Addr> {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The container holding `ip`, if any.
    fn owner(&self, ip: A) -> Result<Option<String>, Self::Error>;

    /// Whether anything holds `ip`. The round-robin walk asks this of every address it
    /// passes and never needs the owner, so a store can answer without reading the file.
    fn is_taken(&self, ip: A) -> Result<bool, Self::Error> {
        Ok(self.owner(ip)?.is_some())
    }

    /// The address of this family handed out last by round robin.
    fn last(&self) -> Result<Option<A>, Self::Error>;
}

/// The address chosen for a container, and whether recording it moves the round-robin
/// cursor (a static address does not, so it cannot make the walk skip a range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease<A = Ipv4Addr> {
    pub address: A,
    pub advances_cursor: bool,
}

/// The addresses chosen for an endpoint, one per family its network has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leases {
    pub v4: Option<Lease<Ipv4Addr>>,
    pub v6: Option<Lease<Ipv6Addr>>,
}

/// Chooses `requested` if it is usable and free, else the first free address after the
/// last one handed out. Allocation resumes after that one, so a just-freed address is not
/// reused at once (stale ARP and conntrack entries age out first).
pub fn choose<A: Family, S: Allocations<A> + ?Sized>(
    subnet: &Subnet<A>,
    requested: Option<A>,
    allocs: &S,
) -> Result<Lease<A>, IpamError> {
    let state = |source: S::Error| IpamError::State {
        network: subnet.network.clone(),
        source: Box::new(source),
    };
    match requested {
        Some(ip) => {
            check_requested(subnet, ip)?;
            if let Some(owner) = allocs.owner(ip).map_err(state)? {
                return Err(IpamError::Taken {
                    ip: ip.into(),
                    owner,
                    option: A::OPTION,
                });
            }
            Ok(Lease {
                address: ip,
                advances_cursor: false,
            })
        }
        None => {
            let (mut first, mut last) = (subnet.base.to_bits() + 1, subnet.last_host.to_bits());
            if let Some((from, to)) = subnet.range {
                first = first.max(from.to_bits());
                last = last.min(to.to_bits());
            }
            let size = (last + 1).saturating_sub(first);
            let start = match allocs.last().map_err(state)?.map(Family::to_bits) {
                Some(l) if (first..=last).contains(&l) => l - first + 1,
                _ => 0,
            };
            let gateway = subnet.gateway.to_bits();
            for i in 0..size {
                let candidate = first + (start + i) % size;
                if candidate == gateway {
                    continue;
                }
                let ip = A::from_bits(candidate);
                if !allocs.is_taken(ip).map_err(state)? {
                    return Ok(Lease {
                        address: ip,
                        advances_cursor: true,
                    });
                }
            }
            Err(IpamError::Exhausted {
                network: subnet.network.clone(),
                subnet: subnet.cidr.clone(),
            })
        }
    }
}

fn check_requested<A: Family>(subnet: &Subnet<A>, ip: A) -> Result<(), IpamError> {
    if !subnet.contains(ip) {
        return Err(IpamError::OutsideSubnet {
            ip: ip.into(),
            network: subnet.network.clone(),
            subnet: subnet.cidr.clone(),
            option: A::OPTION,
        });
    }
    let reserved = |what| {
        Err(IpamError::Reserved {
            ip: ip.into(),
            what,
            network: subnet.network.clone(),
            option: A::OPTION,
        })
    };
    if ip == subnet.base {
        return reserved(A::BASE);
    }
    if Some(ip) == subnet.broadcast {
        return reserved("broadcast address");
    }
    if ip == subnet.gateway {
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
    /// IPv6 allocations (unit tests only: the old single-file layout had none).
    #[serde(skip)]
    pub allocations6: BTreeMap<Ipv6Addr, String>,
    #[serde(skip)]
    pub last6: Option<Ipv6Addr>,
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

    /// Records an IPv6 lease the way the store does.
    pub fn record6(&mut self, lease: &Lease<Ipv6Addr>, id: &ContainerId) {
        self.allocations6
            .insert(lease.address, id.as_str().to_owned());
        if lease.advances_cursor {
            self.last6 = Some(lease.address);
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

impl Allocations<Ipv6Addr> for Pool {
    type Error = Infallible;

    fn owner(&self, ip: Ipv6Addr) -> Result<Option<String>, Infallible> {
        Ok(self.allocations6.get(&ip).cloned())
    }

    fn last(&self) -> Result<Option<Ipv6Addr>, Infallible> {
        Ok(self.last6)
    }
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
pub(crate) mod tests;
