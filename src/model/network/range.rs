//! `--ip-range`: the part of a network's subnet that addresses are handed out from. A
//! macvlan network's subnet is a LAN's, whose other hosts, router and DHCP pool nethook
//! knows nothing of; the range is the slice of it set aside for this host's containers.

use ipnetwork::Ipv4Network;

use super::{Network, NetworkError};

impl Network {
    /// Sets the allocation range: an IPv4 CIDR with no host bits, inside the subnet.
    pub fn set_ip_range(&mut self, cidr: &str) -> Result<(), NetworkError> {
        let bad = |reason: String| NetworkError::BadRange {
            range: cidr.to_owned(),
            reason,
        };
        let range: Ipv4Network = cidr
            .parse()
            .map_err(|_| bad("not an IPv4 CIDR like 192.168.1.192/27".into()))?;
        if range.ip() != range.network() {
            return Err(bad(format!(
                "has host bits set; did you mean {}/{}?",
                range.network(),
                range.prefix()
            )));
        }
        let v4 = self
            .ipv4
            .as_mut()
            .ok_or_else(|| bad("the network has no IPv4 subnet".into()))?;
        if !(v4.subnet.contains(range.network()) && v4.subnet.contains(range.broadcast())) {
            return Err(bad(format!(
                "not inside the subnet {}; pick a range inside it",
                v4.subnet
            )));
        }
        v4.range = Some(range);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::ipam::tests::allocate;
    use crate::model::ipam::{IpamError, Pool};

    fn lan() -> Network {
        Network::new(
            "lan",
            "192.168.50.0/24",
            Some("192.168.50.1".parse().unwrap()),
            None,
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_range_inside_the_subnet_is_kept_and_written_to_the_file() {
        let mut net = lan();
        net.set_ip_range("192.168.50.128/26").unwrap();
        assert_eq!(
            net.ipv4.unwrap().range,
            Some("192.168.50.128/26".parse().unwrap())
        );
        let text = serde_json::to_string(&net).unwrap();
        assert!(text.contains("\"range\":\"192.168.50.128/26\""), "{text}");
        let back: Network = serde_json::from_str(&text).unwrap();
        assert_eq!(back, net);
    }

    #[test]
    fn a_range_outside_the_subnet_or_with_host_bits_is_refused() {
        let mut net = lan();
        let e = net.set_ip_range("192.168.51.0/26").unwrap_err();
        assert!(e.to_string().contains("not inside the subnet"), "{e}");
        let e = net.set_ip_range("192.168.50.0/23").unwrap_err();
        assert!(e.to_string().contains("not inside the subnet"), "{e}");
        let e = net.set_ip_range("192.168.50.129/26").unwrap_err();
        assert!(e.to_string().contains("host bits"), "{e}");
        assert_eq!(net.ipv4.unwrap().range, None);
    }

    #[test]
    fn with_an_ip_range_addresses_come_only_from_it_and_a_static_one_from_the_subnet() {
        let mut p = Pool::default();
        let mut net = Network::new("lan", "192.168.50.0/24", None, None, false).unwrap();
        net.set_ip_range("192.168.50.200/30").unwrap();
        let got: Vec<Ipv4Addr> = ["a", "b", "c", "d"]
            .iter()
            .map(|o| allocate(&mut p, &net, o, None).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (200..=203)
            .map(|i| Ipv4Addr::new(192, 168, 50, i))
            .collect();
        assert_eq!(got, want);
        assert!(matches!(
            allocate(&mut p, &net, "e", None),
            Err(IpamError::Exhausted { .. })
        ));
        let fixed = Ipv4Addr::new(192, 168, 50, 20);
        assert_eq!(allocate(&mut p, &net, "f", Some(fixed)).unwrap(), fixed);
    }
}
