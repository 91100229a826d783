//! A network's IPv6 part (`--subnet6`, `--gateway6`, `--no-masquerade6`): which prefixes
//! may carry containers and which address the gateway holds.
//!
//! Any prefix from /1 to /126 that overlaps no special range works, shorter or longer
//! than /64: nethook hands out addresses itself (no SLAAC, so nothing needs /64). The
//! subnet's first address (`prefix::`) is never handed out: it is the subnet-router anycast
//! address, which the host takes for itself once it forwards IPv6 (a container holding it
//! could not reach its gateway).

use std::net::Ipv6Addr;

use ipnetwork::Ipv6Network;

use super::{Ipv6Config, Network, NetworkError};

/// Ranges a container subnet may not overlap, and why: the host could not route them to
/// a bridge, or other hosts would never route them back.
const SPECIAL: [(&str, &str); 3] = [
    ("::/8", "holds ::, ::1 and the IPv4-mapped addresses"),
    ("fe80::/10", "is link-local"),
    ("ff00::/8", "is multicast"),
];

impl Network {
    /// Gives the network its IPv6 subnet; the gateway defaults to `prefix::1`.
    pub fn set_ipv6(
        &mut self,
        subnet: &str,
        gateway: Option<Ipv6Addr>,
        masquerade: bool,
    ) -> Result<(), NetworkError> {
        let parsed: Ipv6Network = subnet.parse().map_err(|_| NetworkError::BadSubnet6 {
            subnet: subnet.to_owned(),
            reason: "not an IPv6 CIDR like fd00:88::/64".into(),
        })?;
        let gateway = gateway.unwrap_or_else(|| Ipv6Addr::from(u128::from(parsed.network()) + 1));
        let config = Ipv6Config {
            subnet: parsed,
            gateway,
            masquerade,
        };
        validate(&config).map_err(|reason| NetworkError::BadSubnet6 {
            subnet: subnet.to_owned(),
            reason,
        })?;
        if !is_host_address6(&config, gateway) {
            return Err(NetworkError::BadGateway6 {
                gateway,
                subnet: parsed,
            });
        }
        self.ipv6 = Some(config);
        if let Err(e) = self.check_mac_window() {
            self.ipv6 = None;
            return Err(e);
        }
        Ok(())
    }

    /// On a network without IPv4, MACs come from the IPv6 addresses' last 32 bits
    /// (`Mac::from_ipv6`), the bridge's from its gateway's: every address nethook gives
    /// out or accepts lies in the prefix's first 2^32 addresses (`mac_window`), where the
    /// last 32 bits tell addresses apart, so no two links of the network share a MAC.
    fn check_mac_window(&self) -> Result<(), NetworkError> {
        let Some(window) = self.mac_window() else {
            return Ok(());
        };
        let v6 = self.ipv6.expect("mac_window is Some only with IPv6");
        if v6.gateway > window.1 {
            return Err(NetworkError::Gateway6OutsideMacWindow {
                gateway: v6.gateway,
                last: window.1,
            });
        }
        Ok(())
    }

    /// The addresses an IPv6-only network's containers and gateway may have: the prefix's
    /// first 2^32 (all of it for /96 and longer). `None` when the network has IPv4, whose
    /// addresses its MACs come from.
    pub fn mac_window(&self) -> Option<(Ipv6Addr, Ipv6Addr)> {
        if self.ipv4.is_some() {
            return None;
        }
        let v6 = self.ipv6?;
        let base = u128::from(v6.subnet.network());
        let last = u128::from(v6.subnet.broadcast()).min(base + u128::from(u32::MAX));
        Some((Ipv6Addr::from(base), Ipv6Addr::from(last)))
    }

    /// Checks an IPv6 part read from a file as `set_ipv6` checks the command line's.
    pub(super) fn check_ipv6(&self) -> Result<(), NetworkError> {
        let Some(v6) = self.ipv6 else {
            return Ok(());
        };
        validate(&v6).map_err(|reason| NetworkError::BadSubnet6 {
            subnet: v6.subnet.to_string(),
            reason,
        })?;
        if !is_host_address6(&v6, v6.gateway) {
            return Err(NetworkError::BadGateway6 {
                gateway: v6.gateway,
                subnet: v6.subnet,
            });
        }
        self.check_mac_window()
    }

    /// Whether IPv6 traffic leaving the subnet is masqueraded.
    pub fn masquerades_ipv6(&self) -> bool {
        self.ipv6.is_some_and(|v6| v6.masquerade)
    }
}

/// An address a container or the gateway may hold: inside the subnet, not its first
/// (subnet-router anycast) address.
fn is_host_address6(v6: &Ipv6Config, ip: Ipv6Addr) -> bool {
    v6.subnet.contains(ip) && ip != v6.subnet.network()
}

fn validate(v6: &Ipv6Config) -> Result<(), String> {
    let s = v6.subnet;
    if s.ip() != s.network() {
        return Err(format!(
            "has host bits set; did you mean {}/{}?",
            s.network(),
            s.prefix()
        ));
    }
    if s.prefix() > 126 {
        return Err("too small; use /126 or larger".into());
    }
    for (range, why) in SPECIAL {
        // Invariant: literals above.
        let special: Ipv6Network = range.parse().expect("valid literal range");
        if special.overlaps(s) {
            return Err(format!(
                "overlaps {range}, which {why}; use a unique local prefix (fd00::/8) or one your provider routes to this host"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual(subnet6: &str) -> Result<Network, NetworkError> {
        let mut n = Network::new("dual", "10.88.0.0/24", None, None, true)?;
        n.set_ipv6(subnet6, None, true)?;
        Ok(n)
    }

    #[test]
    fn the_gateway_defaults_to_the_first_address_after_the_anycast_one() {
        let n = dual("fd00:88::/64").unwrap();
        let v6 = n.ipv6.unwrap();
        assert_eq!(v6.gateway, "fd00:88::1".parse::<Ipv6Addr>().unwrap());
        assert!(v6.masquerade);
        assert!(n.masquerades_ipv6());
    }

    #[test]
    fn prefixes_longer_and_shorter_than_64_work() {
        for ok in [
            "fd00:88::/120",
            "fd00:88::100/126",
            "fd00::/48",
            "2001:db8::/64",
        ] {
            dual(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn bad_ipv6_subnets_are_refused_in_one_line() {
        for (bad, says) in [
            ("fd00:88::5/64", "did you mean fd00:88::/64?"),
            ("fd00:88::/127", "too small"),
            ("10.88.0.0/24", "not an IPv6 CIDR"),
            ("nonsense", "not an IPv6 CIDR"),
            ("fe80::/64", "link-local"),
            ("::/0", "holds ::"),
            ("ff02::/64", "multicast"),
            ("::ffff:0:0/96", "IPv4-mapped"),
        ] {
            let e = dual(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("subnet6 {bad}: ")), "{e}");
            assert!(e.contains(says) && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn a_gateway_outside_the_prefix_or_on_its_anycast_address_is_refused() {
        let mut n = Network::new("dual", "10.88.0.0/24", None, None, true).unwrap();
        for gw in ["fd00:99::1", "fd00:88::"] {
            let e = n
                .set_ipv6("fd00:88::/64", Some(gw.parse().unwrap()), true)
                .unwrap_err();
            assert!(matches!(e, NetworkError::BadGateway6 { .. }), "{e}");
            assert!(e.to_string().contains("subnet-router anycast"), "{e}");
        }
        assert!(n.ipv6.is_none(), "a refused IPv6 part changes nothing");
        n.set_ipv6(
            "fd00:88::/64",
            Some("fd00:88::ffff".parse().unwrap()),
            false,
        )
        .unwrap();
        assert!(!n.masquerades_ipv6());
    }

    #[test]
    fn an_ipv6_only_network_has_no_ipv4_part() {
        let mut n = Network::named("six", None).unwrap();
        assert!(matches!(n.has_family(), Err(NetworkError::NoFamily { .. })));
        n.set_ipv6("fd00:6::/64", None, true).unwrap();
        n.has_family().unwrap();
        assert!(n.ipv4.is_none());
        assert_eq!(n.bridge, "nh-six");
    }

    #[test]
    fn overlapping_ipv6_subnets_conflict() {
        let a = dual("fd00:88::/64").unwrap();
        let mut b = Network::named("b", None).unwrap();
        b.set_ipv6("fd00:88::/48", None, true).unwrap();
        let e = b.check_conflicts([&a]).unwrap_err();
        assert!(
            matches!(&e, NetworkError::Overlap { other, .. } if other.contains("fd00:88::/64")),
            "{e}"
        );
        let mut c = Network::named("c", None).unwrap();
        c.set_ipv6("fd00:89::/64", None, true).unwrap();
        c.check_conflicts([&a]).unwrap();
    }

    #[test]
    fn an_ipv6_only_networks_gateway_stays_where_the_last_32_bits_tell_addresses_apart() {
        let mut n = Network::named("six", None).unwrap();
        let e = n
            .set_ipv6(
                "fd00:6::/64",
                Some("fd00:6::1:0:0:1".parse().unwrap()),
                true,
            )
            .unwrap_err();
        assert!(e.to_string().contains("fd00:6::ffff:ffff"), "{e}");
        assert!(n.ipv6.is_none());
        n.set_ipv6(
            "fd00:6::/64",
            Some("fd00:6::ffff:fffe".parse().unwrap()),
            true,
        )
        .unwrap();
        let (first, last) = n.mac_window().unwrap();
        assert_eq!(
            (first.to_string(), last.to_string()),
            ("fd00:6::".into(), "fd00:6::ffff:ffff".into())
        );
        // A dual-stack network's MACs come from IPv4: no window.
        assert!(dual("fd00:88::/64").unwrap().mac_window().is_none());
    }
}
