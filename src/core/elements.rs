//! Where an endpoint's firewall elements are decided: turns an [`Endpoint`] (its record) into
//! the [`Elements`] the firewall adds and deletes. Pure, so unit-tested without root. The
//! firewall turns them into set elements (`firewall::units`) and sends them in one batch.
//!
//! Callers build `Elements` only through these functions, never with a struct literal: the
//! fields are per address family, and the `…6` parts come from the endpoint's IPv6
//! attachment (`Endpoint::ipv6`) here, without the callers knowing.

use std::net::{IpAddr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::firewall::{Elements, PortMapping, PortMapping4, PortMapping6, Source};
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
        ports6: port6_elements(ep),
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
        masq6: masquerade6_elements(ep),
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

/// The published IPv4 ports of an endpoint (maps `ports4`, `hports4`): one per host port
/// (ranges expanded), of every publish without a host address or with an IPv4 one.
pub fn port_elements(ep: &Endpoint) -> Vec<PortMapping4> {
    let Some(v4) = ep.ipv4 else { return Vec::new() };
    mappings(ep, v4.address, |ip| match ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    })
}

/// The published IPv6 ports of an endpoint with an IPv6 address (maps `ports6`, `hports6`):
/// every publish without a host address (which so answers over both families on a
/// dual-stack endpoint) or with an IPv6 one.
pub fn port6_elements(ep: &Endpoint) -> Vec<PortMapping6> {
    let Some(v6) = ep.ipv6 else { return Vec::new() };
    mappings(ep, v6.address, |ip| match ip {
        IpAddr::V6(ip) => Some(ip),
        IpAddr::V4(_) => None,
    })
}

/// One family's mappings to `container_ip`: the publishes with no host address, and those
/// whose host address `of_family` takes.
fn mappings<A: Copy>(
    ep: &Endpoint,
    container_ip: A,
    of_family: impl Fn(IpAddr) -> Option<A>,
) -> Vec<PortMapping<A>> {
    ep.ports
        .iter()
        .filter_map(|spec| match spec.host_ip {
            None => Some((spec, None)),
            Some(ip) => of_family(ip).map(|ip| (spec, Some(ip))),
        })
        .flat_map(|(spec, host_ip)| {
            spec.pairs()
                .map(move |(host_port, container_port)| PortMapping {
                    host_ip,
                    proto: spec.proto,
                    host_port,
                    container_ip,
                    container_port,
                })
        })
        .collect()
}

/// The endpoint's IPv6 subnet in `masq6`, when its network masquerades IPv6.
pub fn masquerade6_elements(ep: &Endpoint) -> Vec<Ipv6Network> {
    let Some(v6) = ep.ipv6.as_ref().filter(|v6| v6.masquerade) else {
        return Vec::new();
    };
    Ipv6Network::new(v6.address, v6.prefix)
        .ok()
        .and_then(|n| Ipv6Network::new(n.network(), v6.prefix).ok())
        .into_iter()
        .collect()
}

/// The link-local address the kernel would give a link with this MAC (modified EUI-64,
/// RFC 4291 2.5.1): fe80:: + the MAC with ff:fe in its middle and the universal/local bit
/// flipped.
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    let id = [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ];
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xfe, 0x80]);
    octets[8..].copy_from_slice(&id);
    Ipv6Addr::from(octets)
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
/// With an IPv6 address, also the link-local the kernel derives from its MAC: the container
/// gets none (addr_gen_mode none), but one with CAP_NET_ADMIN may turn EUI-64 generation on,
/// and that address is still its own (the MAC is pinned by `macs`).
pub fn source_elements(ep: &Endpoint) -> Vec<Source> {
    vec![Source {
        host_interface: ep.host_interface.clone(),
        mac: ep.mac,
        ipv4: ep.ipv4.map(|v4| v4.address).into_iter().collect(),
        ipv6: ep
            .ipv6
            .as_ref()
            .map(|v6| vec![v6.address, eui64_link_local(ep.mac.0)])
            .unwrap_or_default(),
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
    use std::net::{Ipv4Addr, Ipv6Addr};

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

    /// The plan's endpoint on the default network given IPv6 (fd00:77::/64).
    fn dual_stack(ports: &str, masquerade6: bool) -> Endpoint {
        let opts = Options {
            ports: parse_ports(ports).unwrap(),
            ..Options::default()
        };
        let mut net = Network::builtin_default();
        net.set_ipv6("fd00:77::/64", None, masquerade6).unwrap();
        let ep = plan_endpoint(&request("c1", opts), &net, &Pool::default())
            .unwrap()
            .0;
        assert_eq!(ep.ipv6.unwrap().address.to_string(), "fd00:77::2");
        ep
    }

    #[test]
    fn a_publish_on_every_address_of_a_dual_stack_endpoint_goes_to_both_families() {
        let ep = dual_stack(
            "8080:80,192.0.2.1:81:81/udp,[2001:db8::1]:82-83:92-93/sctp",
            true,
        );
        let e = firewall_elements(&ep);
        use crate::model::ports::Proto::*;
        let v4: Vec<_> = e
            .ports4
            .iter()
            .map(|p| (p.host_ip, p.proto, p.host_port, p.container_port))
            .collect();
        assert_eq!(
            v4,
            vec![
                (None, Tcp, 8080, 80),
                (Some(Ipv4Addr::new(192, 0, 2, 1)), Udp, 81, 81)
            ]
        );
        let c6: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let h6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6: Vec<_> = e
            .ports6
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
        assert_eq!(
            v6,
            vec![
                (None, Tcp, 8080, c6, 80),
                (Some(h6), Sctp, 82, c6, 92),
                (Some(h6), Sctp, 83, c6, 93)
            ]
        );
        assert_eq!(
            e.masq6,
            vec!["fd00:77::/64".parse::<Ipv6Network>().unwrap()]
        );
        assert_eq!(network_elements(&ep).masq6, e.masq6);
        // Teardown of an endpoint whose address moved on keeps both families' ports.
        let moved_on = own_elements(&ep, false);
        assert!(moved_on.ports4.is_empty() && moved_on.ports6.is_empty());
        assert_eq!(own_elements(&ep, true).ports6, e.ports6);
    }

    #[test]
    fn an_ipv4_only_endpoint_publishes_nothing_over_ipv6() {
        let opts = Options {
            ports: parse_ports("8080:80").unwrap(),
            ..Options::default()
        };
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", opts), &Network::builtin_default(), &pool)
            .unwrap()
            .0;
        let e = firewall_elements(&ep);
        assert!(e.ports6.is_empty() && e.masq6.is_empty());
        assert!(e.sources[0].ipv6.is_empty(), "it sends no IPv6 at all");
    }

    #[test]
    fn ipv6_masquerade_follows_the_ipv6_attachment() {
        let ep = dual_stack("", false);
        assert!(firewall_elements(&ep).masq6.is_empty());
        assert!(
            !firewall_elements(&ep).masq4.is_empty(),
            "IPv4's is its own"
        );
    }

    #[test]
    fn a_dual_stack_source_may_send_from_its_address_and_its_eui64_link_local() {
        let ep = dual_stack("", true);
        let src = &firewall_elements(&ep).sources[0];
        assert_eq!(src.mac, ep.mac);
        assert_eq!(
            src.ipv6,
            vec![
                "fd00:77::2".parse::<Ipv6Addr>().unwrap(),
                eui64_link_local(ep.mac.0)
            ]
        );
        // What the kernel makes for 02:4e:0a:4d:00:02 (`ip -6 addr` with addrgenmode eui64).
        assert_eq!(
            eui64_link_local([0x02, 0x4e, 10, 77, 0, 2]),
            "fe80::4e:aff:fe4d:2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            eui64_link_local([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
            "fe80::211:22ff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
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
