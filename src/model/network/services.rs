//! What services and names need of a network: the resolver switch (`--dns`) and the
//! service ranges VIPs come from (`--service-range`), with the choice of a free range and of
//! a free VIP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::{DriverKind, Network, NetworkError};

/// Where automatic IPv4 service ranges come from: 10.78.0.0/16 (beside the default
/// network's 10.77.0.0/16), cut in /24s. Not Kubernetes' usual 10.96.0.0/12: its ClusterIPs
/// have no host route for the check against the host's routes to see, and a node running
/// nethook as its CNI plugin must not route them to a bridge.
const AUTO_RANGE4: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 78, 0, 0), 16);
const AUTO_PREFIX4: u8 = 24;
/// And IPv6 ones: a ULA /48, cut in /112s.
const AUTO_RANGE6_BASE: u128 = 0xfd96_0000_0000_0000_0000_0000_0000_0000;
const AUTO_PREFIX6: u8 = 112;

impl Network {
    /// Turns the resolver on or off (`--dns`): only a bridge network has an address of
    /// the host's on the containers' link for it to listen on.
    pub fn set_dns(&mut self, on: bool) -> Result<(), NetworkError> {
        if on && !self.driver.is_bridge() {
            return Err(NetworkError::DriverOption {
                option: "--dns",
                driver: self.driver,
                reason: "the resolver listens on the bridge's gateway address, which only bridge networks have",
            });
        }
        self.dns = on;
        Ok(())
    }

    /// The addresses its resolver listens on: the gateways, when DNS is on.
    pub fn dns_addresses(&self) -> Vec<IpAddr> {
        if !self.dns {
            return Vec::new();
        }
        let v4 = self.ipv4.map(|c| IpAddr::V4(c.gateway));
        let v6 = self.ipv6.map(|c| IpAddr::V6(c.gateway));
        [v4, v6].into_iter().flatten().collect()
    }

    /// Sets the service range of the family `cidr` is of (`--service-range`): no host bits,
    /// outside the network's subnet of that family, which the network must have.
    pub fn set_service_range(&mut self, cidr: &str) -> Result<(), NetworkError> {
        let bad = |reason: String| NetworkError::BadServiceRange {
            range: cidr.to_owned(),
            reason,
        };
        if self.driver != DriverKind::Bridge {
            return Err(NetworkError::DriverOption {
                option: "--service-range",
                driver: self.driver,
                reason: "services are built for bridge networks so far",
            });
        }
        let parsed: IpNetwork = cidr
            .parse()
            .map_err(|_| bad("not a CIDR like 10.96.0.0/24 or fd96::/112".into()))?;
        if parsed.ip() != parsed.network() {
            return Err(bad(format!(
                "has host bits set; did you mean {}/{}?",
                parsed.network(),
                parsed.prefix()
            )));
        }
        match parsed {
            IpNetwork::V4(r) => {
                let Some(v4) = self.ipv4 else {
                    return Err(bad("the network has no IPv4 subnet".into()));
                };
                if !(8..=30).contains(&r.prefix()) {
                    return Err(bad("use a prefix from /8 to /30".into()));
                }
                if r.overlaps(v4.subnet) {
                    return Err(bad(format!(
                        "overlaps the network's subnet {}; containers reach VIPs through the gateway, so pick a range outside it",
                        v4.subnet
                    )));
                }
                self.service_range4 = Some(r);
            }
            IpNetwork::V6(r) => {
                let Some(v6) = self.ipv6 else {
                    return Err(bad("the network has no IPv6 subnet".into()));
                };
                if !(64..=124).contains(&r.prefix()) {
                    return Err(bad("use a prefix from /64 to /124".into()));
                }
                let first = r.network().segments()[0];
                if first & 0xffc0 == 0xfe80 || first & 0xff00 == 0xff00 || first < 0x0100 {
                    return Err(bad("not a link-local, multicast or ::/8 prefix".into()));
                }
                if r.overlaps(v6.subnet) {
                    return Err(bad(format!(
                        "overlaps the network's subnet6 {}; pick a range outside it",
                        v6.subnet
                    )));
                }
                self.service_range6 = Some(r);
            }
        }
        Ok(())
    }

    /// Gives the network a service range for every family it has and lacks one of: the
    /// first /24 of 10.78.0.0/16 (and /112 of fd96::/48) that overlaps none of `taken`.
    /// Returns what it chose.
    pub fn choose_service_ranges(&mut self, taken: &[IpNetwork]) -> Vec<IpNetwork> {
        let mut chosen = Vec::new();
        if self.ipv4.is_some() && self.service_range4.is_none() {
            let (base, prefix) = AUTO_RANGE4;
            let count = 1u32 << (AUTO_PREFIX4 - prefix);
            let pick = (0..count)
                .filter_map(|i| {
                    let ip = Ipv4Addr::from(u32::from(base) + (i << (32 - AUTO_PREFIX4)));
                    Ipv4Network::new(ip, AUTO_PREFIX4).ok()
                })
                .find(|r| {
                    !taken.iter().any(|t| overlaps(*t, IpNetwork::V4(*r)))
                        && !self.ipv4.is_some_and(|v4| v4.subnet.overlaps(*r))
                });
            if let Some(r) = pick {
                self.service_range4 = Some(r);
                chosen.push(IpNetwork::V4(r));
            }
        }
        if self.ipv6.is_some() && self.service_range6.is_none() {
            let pick = (0u128..0x1_0000)
                .filter_map(|i| {
                    let ip = Ipv6Addr::from(AUTO_RANGE6_BASE + (i << (128 - AUTO_PREFIX6)));
                    Ipv6Network::new(ip, AUTO_PREFIX6).ok()
                })
                .find(|r| {
                    !taken.iter().any(|t| overlaps(*t, IpNetwork::V6(*r)))
                        && !self.ipv6.is_some_and(|v6| v6.subnet.overlaps(*r))
                });
            if let Some(r) = pick {
                self.service_range6 = Some(r);
                chosen.push(IpNetwork::V6(r));
            }
        }
        chosen
    }

    /// Its service ranges, IPv4 first.
    pub fn service_ranges(&self) -> Vec<IpNetwork> {
        let v4 = self.service_range4.map(IpNetwork::V4);
        let v6 = self.service_range6.map(IpNetwork::V6);
        [v4, v6].into_iter().flatten().collect()
    }
}

/// Whether two networks of one family share an address (different families never do).
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    match (a, b) {
        (IpNetwork::V4(a), IpNetwork::V4(b)) => a.overlaps(b),
        (IpNetwork::V6(a), IpNetwork::V6(b)) => a.overlaps(b),
        _ => false,
    }
}

/// The first address of `range` after its network address that is not in `taken`.
pub fn free_vip4(range: Ipv4Network, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let base = u32::from(range.network());
    let size = 1u64 << (32 - range.prefix());
    (1..size)
        .map(|i| Ipv4Addr::from(base.wrapping_add(i as u32)))
        .filter(|ip| *ip != range.broadcast())
        .find(|ip| !taken.contains(ip))
}

/// Like `free_vip4`, for IPv6 (the walk stops after 2^16 addresses: enough for any host).
pub fn free_vip6(range: Ipv6Network, taken: &[Ipv6Addr]) -> Option<Ipv6Addr> {
    let base = u128::from(range.network());
    let size = 1u128 << (128 - u32::from(range.prefix())).min(16);
    (1..size)
        .map(|i| Ipv6Addr::from(base + i))
        .find(|ip| !taken.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual() -> Network {
        let mut n = Network::new("app", "10.88.0.0/24", None, None, true).unwrap();
        n.set_ipv6("fd00:88::/64", None, true).unwrap();
        n
    }

    #[test]
    fn a_service_range_inside_the_subnet_is_refused_with_why() {
        let mut n = dual();
        let e = n
            .set_service_range("10.88.0.128/25")
            .unwrap_err()
            .to_string();
        assert!(e.contains("through the gateway"), "{e}");
        let e = n
            .set_service_range("fd00:88::/112")
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps"), "{e}");
        let e = n.set_service_range("10.89.0.1/24").unwrap_err().to_string();
        assert!(e.contains("did you mean 10.89.0.0/24"), "{e}");
        n.set_service_range("10.89.0.0/24").unwrap();
        n.set_service_range("fd89::/112").unwrap();
        assert_eq!(n.service_ranges().len(), 2);
    }

    #[test]
    fn a_family_the_network_lacks_gets_no_service_range() {
        let mut n = Network::new("v4", "10.88.0.0/24", None, None, true).unwrap();
        let e = n.set_service_range("fd89::/112").unwrap_err().to_string();
        assert!(e.contains("no IPv6 subnet"), "{e}");
        assert_eq!(n.choose_service_ranges(&[]).len(), 1);
        assert!(n.service_range6.is_none());
    }

    #[test]
    fn the_automatic_range_skips_what_is_taken() {
        let mut n = dual();
        let taken: Vec<IpNetwork> = vec![
            "10.78.0.0/23".parse().unwrap(),
            "fd96::/112".parse().unwrap(),
        ];
        let chosen = n.choose_service_ranges(&taken);
        assert_eq!(
            chosen,
            vec![
                "10.78.2.0/24".parse::<IpNetwork>().unwrap(),
                "fd96::1:0/112".parse().unwrap()
            ]
        );
        // Chosen once: a second call keeps it.
        assert!(n.choose_service_ranges(&[]).is_empty());
    }

    #[test]
    fn vips_skip_the_network_address_broadcast_and_taken_ones() {
        let r: Ipv4Network = "10.96.0.0/30".parse().unwrap();
        assert_eq!(free_vip4(r, &[]), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(
            free_vip4(r, &[Ipv4Addr::new(10, 96, 0, 1)]),
            Some(Ipv4Addr::new(10, 96, 0, 2))
        );
        assert_eq!(
            free_vip4(
                r,
                &[Ipv4Addr::new(10, 96, 0, 1), Ipv4Addr::new(10, 96, 0, 2)]
            ),
            None
        );
        let r6: Ipv6Network = "fd96::/112".parse().unwrap();
        assert_eq!(free_vip6(r6, &[]), Some("fd96::1".parse().unwrap()));
    }

    #[test]
    fn dns_is_for_bridge_networks_and_listens_on_the_gateways() {
        let mut n = dual();
        n.set_dns(true).unwrap();
        assert_eq!(
            n.dns_addresses(),
            vec![
                "10.88.0.1".parse::<IpAddr>().unwrap(),
                "fd00:88::1".parse().unwrap()
            ]
        );
        let mut r = Network::new("r", "10.90.0.0/24", None, None, true).unwrap();
        r.driver = DriverKind::Routed;
        assert!(r.set_dns(true).is_err());
    }

    #[test]
    fn dns_and_service_ranges_survive_the_file() {
        let mut n = dual();
        n.set_dns(true).unwrap();
        n.set_service_range("10.89.0.0/24").unwrap();
        let text = serde_json::to_string(&n).unwrap();
        assert!(
            text.contains(r#""dns":true"#) && text.contains("10.89.0.0/24"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Network>(&text).unwrap(), n);
    }
}
