//! Deciding, not doing: turns a request, its network and the network's allocations into
//! the endpoint to build. Pure, so every decision is unit-tested without root.

use ipnetwork::Ipv4Network;

use crate::core::request::Request;
use crate::firewall::{Elements, PortMapping, Source};
use crate::model::endpoint::{Endpoint, Ipv4Attachment};
use crate::model::ipam::{self, Allocations, IpamError, Lease, Subnet};
use crate::model::mac::Mac;
use crate::model::network::{Network, NetworkError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("published host IP {ip} is inside network {network}'s subnet; publish on a host address instead")]
    HostIpInSubnet {
        ip: std::net::Ipv4Addr,
        network: String,
    },
    #[error("MAC {mac} is in 02:4e:00:00:00:00/16, the range nethook derives containers' and bridges' MACs from (02:4e: + the IPv4 address); pick a MAC outside it or leave nethook.mac unset")]
    ReservedMac { mac: Mac },
}

/// Chooses the address and fixes every name the apply step uses. The lease is the
/// address to record (the store does that); nothing is allocated yet.
pub fn plan_endpoint<A: Allocations + ?Sized>(
    req: &Request,
    net: &Network,
    allocs: &A,
) -> Result<(Endpoint, Lease), PlanError> {
    let v4 = net.ipv4()?;
    for spec in &req.options.ports {
        if let Some(ip) = spec.host_ip {
            if v4.subnet.contains(ip) {
                return Err(PlanError::HostIpInSubnet {
                    ip,
                    network: net.name.clone(),
                });
            }
        }
    }
    if let Some(mac) = req.options.mac.filter(Mac::is_derived) {
        return Err(PlanError::ReservedMac { mac });
    }
    let lease = ipam::choose(&Subnet::v4(&net.name, v4), req.options.ip, allocs)?;
    let address = lease.address;
    let endpoint = Endpoint {
        id: req.id.clone(),
        network: net.name.clone(),
        driver: net.driver,
        bridge: net.bridge.clone(),
        host_interface: req.id.host_veth_name(),
        interface: req.options.ifname.clone(),
        mac: req.options.mac.unwrap_or_else(|| Mac::from_ipv4(address)),
        ipv4: Some(Ipv4Attachment {
            address,
            prefix: v4.subnet.prefix(),
            gateway: v4.gateway,
        }),
        ipv6: None,
        ports: req.options.ports.clone(),
        masquerade: v4.masquerade,
        any_ethertype: !net.ethertype_filter,
        netns: req.netns.as_ref().map(|p| p.display().to_string()),
    };
    Ok((endpoint, lease))
}

/// The published-port elements of an endpoint: one per host port (ranges expanded).
pub fn port_elements(ep: &Endpoint) -> Vec<PortMapping> {
    let Some(v4) = ep.ipv4 else { return Vec::new() };
    ep.ports
        .iter()
        .flat_map(|spec| {
            spec.pairs()
                .map(move |(host_port, container_port)| PortMapping {
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
    match ep.ipv4 {
        Some(v4) if ep.masquerade => Ipv4Network::new(v4.address, v4.prefix)
            .ok()
            .and_then(|n| Ipv4Network::new(n.network(), v4.prefix).ok())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The per-network elements the endpoint relies on: its subnet in the masquerade set (when the
/// network masquerades) and its bridge in the isolation sets. Shared by the network's endpoints:
/// added (non-exclusively) with each, deleted with the network's last.
pub fn network_elements(ep: &Endpoint) -> Elements {
    Elements {
        masq4: masquerade_elements(ep),
        bridges: vec![ep.bridge.clone()],
        ..Elements::default()
    }
}

/// Anti-spoofing: what the endpoint may send from its host veth (its MAC and addresses).
pub fn source_elements(ep: &Endpoint) -> Vec<Source> {
    vec![Source {
        host_interface: ep.host_interface.clone(),
        mac: ep.mac,
        ipv4: ep.ipv4.map(|v4| v4.address).into_iter().collect(),
    }]
}

/// Everything setup adds to the nftables sets and maps for this endpoint, in one batch:
/// the per-network elements, its published ports and its anti-spoofing elements.
pub fn firewall_elements(ep: &Endpoint) -> Elements {
    Elements {
        ports: port_elements(ep),
        sources: source_elements(ep),
        any_ethertype: any_ethertype_elements(ep),
        ..network_elements(ep)
    }
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
    use super::*;
    use crate::core::options::Options;
    use crate::model::ids::ContainerId;
    use crate::model::ipam::Pool;
    use crate::model::ports::parse_ports;
    use std::net::Ipv4Addr;

    fn request(id: &str, opts: Options) -> Request {
        Request {
            id: ContainerId::parse(id).unwrap(),
            netns: Some("/proc/1/ns/net".into()),
            options: opts,
        }
    }

    #[test]
    fn default_request_gets_first_address_eth0_and_derived_mac() {
        let pool = Pool::default();
        let (ep, lease) = plan_endpoint(
            &request("c1", Options::default()),
            &Network::builtin_default(),
            &pool,
        )
        .unwrap();
        let v4 = ep.ipv4.unwrap();
        assert_eq!(v4.address, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(v4.prefix, 16);
        assert_eq!(v4.gateway, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(ep.interface, "eth0");
        assert_eq!(ep.bridge, "nethook0");
        assert_eq!(ep.mac, Mac::from_ipv4(v4.address));
        assert_eq!(
            ep.host_interface,
            ContainerId::parse("c1").unwrap().host_veth_name()
        );
        assert_eq!(
            lease,
            Lease {
                address: v4.address,
                advances_cursor: true
            }
        );
    }

    #[test]
    fn annotations_override_address_mac_ifname_and_ports() {
        let opts = Options {
            ip: Some(Ipv4Addr::new(10, 77, 1, 1)),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            ifname: "net0".into(),
            ports: parse_ports("8080:80").unwrap(),
            ..Options::default()
        };
        let pool = Pool::default();
        let ep = plan_endpoint(&request("c1", opts), &Network::builtin_default(), &pool)
            .unwrap()
            .0;
        assert_eq!(ep.ipv4.unwrap().address, Ipv4Addr::new(10, 77, 1, 1));
        assert_eq!(ep.mac.to_string(), "02:00:00:00:00:01");
        assert_eq!(ep.interface, "net0");
        assert_eq!(ep.ports.len(), 1);
    }

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
                ipv4: vec![Ipv4Addr::new(10, 77, 0, 2)]
            }]
        );
        let ports: Vec<_> = e
            .ports
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
        assert_eq!(
            all.own(),
            Elements {
                ports: port_elements(&ep),
                sources: source_elements(&ep),
                ..Elements::default()
            }
        );
    }

    #[test]
    fn publishing_on_a_container_subnet_address_is_refused_before_allocating() {
        let opts = Options {
            ports: parse_ports("10.77.0.5:8080:80").unwrap(),
            ..Options::default()
        };
        let e = plan_endpoint(
            &request("c1", opts),
            &Network::builtin_default(),
            &Unreadable,
        )
        .unwrap_err();
        assert!(matches!(e, PlanError::HostIpInSubnet { .. }), "{e:?}");
    }

    #[test]
    fn a_mac_in_the_derived_range_is_refused_as_it_may_be_another_containers_or_the_bridges() {
        let gateway_mac = Mac::from_ipv4(Ipv4Addr::new(10, 77, 0, 1));
        let opts = Options {
            mac: Some(gateway_mac),
            ..Options::default()
        };
        let e = plan_endpoint(
            &request("c1", opts),
            &Network::builtin_default(),
            &Pool::default(),
        )
        .unwrap_err();
        assert!(matches!(e, PlanError::ReservedMac { .. }), "{e:?}");
        assert!(e.to_string().contains("02:4e:0a:4d:00:01"), "{e}");
    }

    /// Allocations whose every read fails, like a store that cannot read its files.
    struct Unreadable;

    impl Allocations for Unreadable {
        type Error = std::io::Error;
        fn owner(&self, _: Ipv4Addr) -> Result<Option<String>, Self::Error> {
            Err(std::io::Error::from_raw_os_error(nix::libc::EACCES))
        }
        fn last(&self) -> Result<Option<Ipv4Addr>, Self::Error> {
            Err(std::io::Error::from_raw_os_error(nix::libc::EACCES))
        }
    }

    #[test]
    fn the_address_comes_after_the_cursor_and_skips_held_ones() {
        let mut pool = Pool::default();
        let net = Network::builtin_default();
        pool.last = Some(Ipv4Addr::new(10, 77, 0, 9));
        pool.allocations
            .insert(Ipv4Addr::new(10, 77, 0, 10), "old".into());
        let (ep, lease) = plan_endpoint(&request("c1", Options::default()), &net, &pool).unwrap();
        assert_eq!(ep.ipv4.unwrap().address, Ipv4Addr::new(10, 77, 0, 11));
        pool.record(&lease, &ep.id);
        let (ep2, _) = plan_endpoint(&request("c2", Options::default()), &net, &pool).unwrap();
        assert_eq!(ep2.ipv4.unwrap().address, Ipv4Addr::new(10, 77, 0, 12));
    }

    #[test]
    fn a_static_address_held_by_another_container_names_it() {
        let mut pool = Pool::default();
        pool.allocations
            .insert(Ipv4Addr::new(10, 77, 1, 1), "web-1".into());
        let opts = Options {
            ip: Some(Ipv4Addr::new(10, 77, 1, 1)),
            ..Options::default()
        };
        let e =
            plan_endpoint(&request("c1", opts), &Network::builtin_default(), &pool).unwrap_err();
        assert!(
            matches!(&e, PlanError::Ipam(IpamError::Taken { owner, .. }) if owner == "web-1"),
            "{e:?}"
        );
    }

    #[test]
    fn unreadable_allocations_fail_the_plan_with_their_cause() {
        let e = plan_endpoint(
            &request("c1", Options::default()),
            &Network::builtin_default(),
            &Unreadable,
        )
        .unwrap_err();
        assert!(
            matches!(e, PlanError::Ipam(IpamError::State { ref network, .. }) if network == "nethook"),
            "{e:?}"
        );
        let causes: Vec<String> =
            std::iter::successors(std::error::Error::source(&e), |c| c.source())
                .map(ToString::to_string)
                .collect();
        assert!(
            causes.iter().any(|c| c.contains("Permission denied")),
            "{causes:?}"
        );
    }
}
