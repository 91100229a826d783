//! Where an endpoint's firewall elements are decided: turns an [`Endpoint`] (its record) into
//! the [`Elements`] the firewall adds and deletes. Pure, so unit-tested without root. The
//! firewall turns them into set elements (`firewall::units`) and sends them in one batch.
//!
//! Callers build `Elements` only through these functions, never with a struct literal: the
//! fields are per address family, and IPv6 support fills the `…6` parts in here (from the
//! endpoint's IPv6 attachment) without touching the callers.

use ipnetwork::Ipv4Network;

use crate::firewall::{Elements, PortMapping4, Source};
use crate::model::endpoint::Endpoint;
use crate::model::network::DriverKind;

/// Everything setup adds to the nftables sets and maps for this endpoint, in one batch:
/// the per-network elements, its published ports and its anti-spoofing elements. The
/// driver decides where the anti-spoofing goes: a bridge port's in the bridge table, a routed
/// veth's in the inet table. A macvlan endpoint has none at all: its frames leave by the
/// parent without passing the host's netfilter hooks, and it publishes no ports.
pub fn firewall_elements(ep: &Endpoint) -> Elements {
    // The ethertype opt-out is the bridge table's; a routed network cannot have it.
    let (sources, routed_sources, any_ethertype) = match ep.driver {
        DriverKind::Bridge => (source_elements(ep), Vec::new(), any_ethertype_elements(ep)),
        DriverKind::Routed => (Vec::new(), source_elements(ep), Vec::new()),
        DriverKind::Macvlan => return Elements::default(),
    };
    Elements {
        ports4: port_elements(ep),
        sources,
        routed_sources,
        any_ethertype,
        ..network_elements(ep)
    }
}

/// The per-network elements the endpoint relies on: its subnet in the masquerade set (when the
/// network masquerades) with the destinations excluded from it, and what isolates its
/// network from others: its bridge in the isolation sets, or, routed, its subnet in
/// `intra4`. Shared by the network's endpoints: added (non-exclusively) with each, deleted
/// with the network's last.
pub fn network_elements(ep: &Endpoint) -> Elements {
    let (bridges, intra4) = match ep.driver {
        DriverKind::Bridge => (vec![ep.bridge.clone()], Vec::new()),
        DriverKind::Routed => (Vec::new(), subnet(ep).into_iter().collect()),
        DriverKind::Macvlan => return Elements::default(),
    };
    Elements {
        masq4: masquerade_elements(ep),
        nomasq4: masquerade_exceptions(ep),
        bridges,
        intra4,
        ..Elements::default()
    }
}

/// The endpoint's IPv4 subnet (the record keeps the network's prefix for every driver).
fn subnet(ep: &Endpoint) -> Option<Ipv4Network> {
    let v4 = ep.ipv4?;
    Ipv4Network::new(v4.address, v4.prefix)
        .ok()
        .and_then(|n| Ipv4Network::new(n.network(), v4.prefix).ok())
}

/// What teardown deletes for this endpoint alone: its anti-spoofing and ethertype elements,
/// and its published ports (both families) only while its address is still its own
/// (`owns_address`, as IPAM says for its IPv4 address today): after a
/// crash and gc the address, and with it the ports' DNAT target, may belong to a newer
/// container that published the same ports. The anti-spoofing elements are keyed by the host
/// veth, whose name derives from this container id (one endpoint per id), so they are this
/// endpoint's even when its address has moved on.
pub fn own_elements(ep: &Endpoint, owns_address: bool) -> Elements {
    let all = firewall_elements(ep).own();
    if owns_address {
        all
    } else {
        Elements {
            ports4: Vec::new(),
            ports6: Vec::new(),
            ..all
        }
    }
}

/// The published-port elements of an endpoint: one per host port (ranges expanded).
pub fn port_elements(ep: &Endpoint) -> Vec<PortMapping4> {
    let Some(v4) = ep.ipv4 else { return Vec::new() };
    ep.ports
        .iter()
        .flat_map(|spec| {
            spec.pairs()
                .map(move |(host_port, container_port)| PortMapping4 {
                    host_ip: spec.host_ip,
                    proto: spec.proto,
                    host_port,
                    container_ip: v4.address,
                    container_port,
                })
        })
        .collect()
}

/// The endpoint's subnet in the masquerade set, when its network masquerades.
pub fn masquerade_elements(ep: &Endpoint) -> Vec<Ipv4Network> {
    if !ep.masquerade {
        return Vec::new();
    }
    subnet(ep).into_iter().collect()
}

/// The masquerade exceptions of the endpoint's subnet: (subnet, destination) for each of
/// the network's `no_masquerade_to`, when it masquerades at all.
pub fn masquerade_exceptions(ep: &Endpoint) -> Vec<(Ipv4Network, Ipv4Network)> {
    let Some(subnet) = masquerade_elements(ep).into_iter().next() else {
        return Vec::new();
    };
    ep.no_masquerade_to.iter().map(|to| (subnet, *to)).collect()
}

/// Anti-spoofing: what the endpoint may send from its host veth (its MAC and addresses).
pub fn source_elements(ep: &Endpoint) -> Vec<Source> {
    vec![Source {
        host_interface: ep.host_interface.clone(),
        mac: ep.mac,
        ipv4: ep.ipv4.map(|v4| v4.address).into_iter().collect(),
        // Endpoints have no IPv6 attachment yet.
        ipv6: Vec::new(),
    }]
}

/// The host veth, when the network lets its containers send any ethertype.
pub fn any_ethertype_elements(ep: &Endpoint) -> Vec<String> {
    if ep.any_ethertype {
        vec![ep.host_interface.clone()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::core::plan::plan_endpoint;
    use crate::core::plan::tests::request;
    use crate::core::request::Options;
    use crate::model::ipam::Pool;
    use crate::model::network::Network;
    use crate::model::ports::parse_ports;

    #[test]
    fn elements_expand_ranges_and_carry_the_subnet() {
        let opts = Options {
            ports: parse_ports("127.0.0.1:8080:80,5000-5001:6000-6001/udp").unwrap(),
            ..Options::default()
        };
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", opts), &Network::builtin_default(), &pool)
            .unwrap()
            .0;
        let e = firewall_elements(&ep);
        assert_eq!(
            e.masq4,
            vec!["10.77.0.0/16".parse::<Ipv4Network>().unwrap()]
        );
        assert_eq!(e.bridges, vec!["nethook0".to_owned()]);
        assert_eq!(
            e.sources,
            vec![Source {
                host_interface: ep.host_interface.clone(),
                mac: ep.mac,
                ipv4: vec![Ipv4Addr::new(10, 77, 0, 2)],
                ipv6: vec![],
            }]
        );
        let ports: Vec<_> = e
            .ports4
            .iter()
            .map(|p| {
                (
                    p.host_ip,
                    p.proto,
                    p.host_port,
                    p.container_ip,
                    p.container_port,
                )
            })
            .collect();
        let ip = Ipv4Addr::new(10, 77, 0, 2);
        use crate::model::ports::Proto::*;
        assert_eq!(
            ports,
            vec![
                (Some(Ipv4Addr::LOCALHOST), Tcp, 8080, ip, 80),
                (None, Udp, 5000, ip, 6000),
                (None, Udp, 5001, ip, 6001),
            ]
        );
    }

    #[test]
    fn a_network_without_masquerade_adds_no_subnet() {
        let mut net = Network::builtin_default();
        net.ipv4.as_mut().unwrap().masquerade = false;
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", Options::default()), &net, &pool)
            .unwrap()
            .0;
        let e = firewall_elements(&ep);
        assert!(e.masq4.is_empty());
        // Still isolated and guarded against spoofing.
        assert_eq!(e.bridges, vec!["nethook0".to_owned()]);
        assert_eq!(e.sources.len(), 1);
        assert!(!e.is_empty());
    }

    #[test]
    fn masquerade_exceptions_pair_the_subnet_with_each_destination() {
        let mut net = Network::new("pods", "10.244.1.0/24", None, None, true).unwrap();
        net.set_no_masquerade_to(&["10.244.0.0/16", "192.168.9.0/24"])
            .unwrap();
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", Options::default()), &net, &pool)
            .unwrap()
            .0;
        let n = |s: &str| s.parse::<Ipv4Network>().unwrap();
        let shared = network_elements(&ep);
        assert_eq!(shared.masq4, vec![n("10.244.1.0/24")]);
        assert_eq!(
            shared.nomasq4,
            vec![
                (n("10.244.1.0/24"), n("10.244.0.0/16")),
                (n("10.244.1.0/24"), n("192.168.9.0/24"))
            ]
        );
        assert!(firewall_elements(&ep).own().nomasq4.is_empty());
        // A record without masquerade has no exceptions, whatever it lists.
        let flat = Endpoint {
            masquerade: false,
            ..ep
        };
        assert!(network_elements(&flat).nomasq4.is_empty());
    }

    #[test]
    fn network_elements_are_the_shared_part() {
        let pool = Pool::default();
        let opts = Options {
            ports: parse_ports("8080:80").unwrap(),
            ..Options::default()
        };
        let ep = plan_endpoint(&request("c1", opts), &Network::builtin_default(), &pool)
            .unwrap()
            .0;
        let all = firewall_elements(&ep);
        assert_eq!(all.shared(), network_elements(&ep));
        let own = all.own();
        assert_eq!(own.ports4, port_elements(&ep));
        assert_eq!(own.sources, source_elements(&ep));
        assert!(own.masq4.is_empty() && own.bridges.is_empty() && own.any_ethertype.is_empty());
        assert_eq!(own, own_elements(&ep, true));
    }

    #[test]
    fn teardown_keeps_the_ports_of_an_address_that_moved_on() {
        let opts = Options {
            ports: parse_ports("8080:80").unwrap(),
            ..Options::default()
        };
        let mut net = Network::builtin_default();
        net.ethertype_filter = false;
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", opts), &net, &pool).unwrap().0;
        let owned = own_elements(&ep, true);
        assert_eq!(owned, firewall_elements(&ep).own());
        assert_eq!(owned.ports4.len(), 1);
        assert_eq!(owned.any_ethertype, vec![ep.host_interface.clone()]);
        let moved_on = own_elements(&ep, false);
        assert!(moved_on.ports4.is_empty() && moved_on.ports6.is_empty());
        assert_eq!(
            (moved_on.sources, moved_on.any_ethertype),
            (owned.sources, owned.any_ethertype)
        );
        assert!(moved_on.masq4.is_empty() && moved_on.bridges.is_empty());
    }
}
