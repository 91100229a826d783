//! Deciding, not doing: turns a request, its network and the network's allocations into
//! the endpoint to build. Pure, so every decision is unit-tested without root.

use crate::core::request::Request;
use crate::model::endpoint::{Endpoint, Ipv4Attachment};
use crate::model::ids::routed_veth_name;
use crate::model::ipam::{self, Allocations, IpamError, Lease, Subnet};
use crate::model::mac::Mac;
use crate::model::network::{DriverKind, Network, NetworkError};

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
    #[error("network {network} is a macvlan network: its containers sit on the LAN with addresses of their own, so there is nothing to publish; drop the published ports and reach the container at its address")]
    PortsOnMacvlan { network: String },
}

/// Chooses the address and fixes every name the apply step uses. The lease is the
/// address to record (the store does that); nothing is allocated yet.
pub fn plan_endpoint<A: Allocations + ?Sized>(
    req: &Request,
    net: &Network,
    allocs: &A,
) -> Result<(Endpoint, Lease), PlanError> {
    let v4 = net.ipv4()?;
    if net.driver == DriverKind::Macvlan && !req.options.ports.is_empty() {
        return Err(PlanError::PortsOnMacvlan {
            network: net.name.clone(),
        });
    }
    for spec in &req.options.ports {
        if let Some(std::net::IpAddr::V4(ip)) = spec.host_ip {
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
        host_interface: match net.driver {
            DriverKind::Routed => routed_veth_name(&req.id.host_veth_name()),
            DriverKind::Bridge => req.id.host_veth_name(),
            // Its link lives in the container's namespace only (`driver::macvlan`).
            DriverKind::Macvlan => String::new(),
        },
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
        no_masquerade_to: if v4.masquerade {
            net.no_masquerade_to.clone()
        } else {
            Vec::new()
        },
        any_ethertype: !net.ethertype_filter,
        netns: req.netns.as_ref().map(|p| p.display().to_string()),
    };
    Ok((endpoint, lease))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::request::Options;
    use crate::model::ids::ContainerId;
    use crate::model::ipam::Pool;
    use crate::model::ports::parse_ports;
    use std::net::Ipv4Addr;

    /// A request for container `id` (unit tests of this module and of `core::elements`).
    pub(crate) fn request(id: &str, opts: Options) -> Request {
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
