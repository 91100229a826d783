//! Deciding, not doing: turns a request, its network and the network's allocations into
//! the endpoint to build. Pure, so every decision is unit-tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::model::ipam::Lease;

use crate::core::request::Request;
use crate::model::endpoint::{Endpoint, Ipv4Attachment, Ipv6Attachment};
use crate::model::ids::routed_veth_name;
use crate::model::ipam::{self, Allocations, IpamError, Leases, Subnet};
use crate::model::mac::Mac;
use crate::model::network::{DriverKind, Ipv6Config, Network, NetworkError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("published host IP {ip} is inside network {network}'s subnet; publish on a host address instead")]
    HostIpInSubnet { ip: IpAddr, network: String },
    #[error("published host IP {ip} is an {family} address, but network {network} has no {family} subnet; publish on an address of the other family or on all addresses")]
    HostIpFamily {
        ip: IpAddr,
        family: &'static str,
        network: String,
    },
    #[error("{option} asks for an {family} address, but network {network} has no {family} subnet; drop {option} or use a network with {family}")]
    NoSuchFamily {
        option: &'static str,
        family: &'static str,
        network: String,
    },
    #[error("nethook.ip6 {ip}: on IPv6-only network {network} containers' MACs come from the address's last 32 bits, so addresses must lie between {first} and {last}; pick one there, or give nethook.mac")]
    Ipv6BeyondMacWindow {
        ip: Ipv6Addr,
        network: String,
        first: Ipv6Addr,
        last: Ipv6Addr,
    },
    #[error("MAC {mac} is in 02:4e:00:00:00:00/16, the range nethook derives containers' and bridges' MACs from (02:4e: + the IPv4 address); pick a MAC outside it or leave nethook.mac unset")]
    ReservedMac { mac: Mac },
    #[error("network {network} is a macvlan network: its containers sit on the LAN with addresses of their own, so there is nothing to publish; drop the published ports and reach the container at its address")]
    PortsOnMacvlan { network: String },
}

/// Chooses the addresses and fixes every name the apply step uses. The leases are the
/// addresses to record (the store does that); nothing is allocated yet.
pub fn plan_endpoint<A>(
    req: &Request,
    net: &Network,
    allocs: &A,
) -> Result<(Endpoint, Leases), PlanError>
where
    A: Allocations<Ipv4Addr> + Allocations<Ipv6Addr> + ?Sized,
{
    net.has_family()?;
    if net.driver == DriverKind::Macvlan && !req.options.ports.is_empty() {
        return Err(PlanError::PortsOnMacvlan {
            network: net.name.clone(),
        });
    }
    let absent = |option, family| PlanError::NoSuchFamily {
        option,
        family,
        network: net.name.clone(),
    };
    if req.options.ip.is_some() && net.ipv4.is_none() {
        return Err(absent("nethook.ip", "IPv4"));
    }
    if req.options.ip6.is_some() && net.ipv6.is_none() {
        return Err(absent("nethook.ip6", "IPv6"));
    }
    for spec in &req.options.ports {
        if let Some(ip) = spec.host_ip {
            check_host_ip(net, ip)?;
        }
    }
    if let Some(mac) = req.options.mac.filter(Mac::is_derived) {
        return Err(PlanError::ReservedMac { mac });
    }
    let leases = Leases {
        v4: match &net.ipv4 {
            Some(v4) => Some(ipam::choose(
                &Subnet::v4(&net.name, v4),
                req.options.ip,
                allocs,
            )?),
            None => None,
        },
        v6: match &net.ipv6 {
            Some(v6) => Some(ipam::choose(
                &subnet6(net, v6, req)?,
                req.options.ip6,
                allocs,
            )?),
            None => None,
        },
    };
    let ipv4 = leases.v4.zip(net.ipv4).map(|(lease, v4)| Ipv4Attachment {
        address: lease.address,
        prefix: v4.subnet.prefix(),
        gateway: v4.gateway,
    });
    let ipv6 = leases.v6.zip(net.ipv6).map(|(lease, v6)| Ipv6Attachment {
        address: lease.address,
        prefix: v6.subnet.prefix(),
        gateway: v6.gateway,
        masquerade: v6.masquerade,
    });
    let derived_mac = match (ipv4, ipv6) {
        (Some(v4), _) => Mac::from_ipv4(v4.address),
        (None, Some(v6)) => Mac::from_ipv6(v6.address),
        // Invariant: has_family() above.
        (None, None) => unreachable!("a network with no address family was refused above"),
    };
    let masquerade = net.masquerades_ipv4();
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
        mac: req.options.mac.unwrap_or(derived_mac),
        ipv4,
        ipv6,
        ports: req.options.ports.clone(),
        masquerade,
        no_masquerade_to: if masquerade {
            net.no_masquerade_to.clone()
        } else {
            Vec::new()
        },
        any_ethertype: !net.ethertype_filter,
        netns: req.netns.as_ref().map(|p| p.display().to_string()),
        name: crate::core::names::endpoint_name(req),
        aliases: req.options.aliases.clone(),
        services: req.options.services.clone(),
    };
    Ok((endpoint, leases))
}

/// The IPv6 subnet as the choice sees it. On an IPv6-only network whose container takes its
/// MAC from the address, only the prefix's first 2^32 addresses (`Network::mac_window`):
/// there the last 32 bits, the MAC's, differ between any two addresses, so a container
/// cannot ask for an address whose MAC is another's or the bridge's.
fn subnet6(net: &Network, v6: &Ipv6Config, req: &Request) -> Result<Subnet<Ipv6Addr>, PlanError> {
    let mut subnet = Subnet::v6(&net.name, v6);
    let window = net.mac_window().filter(|_| req.options.mac.is_none());
    if let Some((first, last)) = window {
        if let Some(ip) = req
            .options
            .ip6
            .filter(|ip| v6.subnet.contains(*ip) && *ip > last)
        {
            return Err(PlanError::Ipv6BeyondMacWindow {
                ip,
                network: net.name.clone(),
                first,
                last,
            });
        }
        subnet.range = Some((first, last));
    }
    Ok(subnet)
}

/// A publish on one host address: of a family the network has (the container has no
/// address of the other to forward to), and not one of the network's own.
fn check_host_ip(net: &Network, ip: IpAddr) -> Result<(), PlanError> {
    let (family, inside) = match ip {
        IpAddr::V4(ip) => ("IPv4", net.ipv4.map(|v4| v4.subnet.contains(ip))),
        IpAddr::V6(ip) => ("IPv6", net.ipv6.map(|v6| v6.subnet.contains(ip))),
    };
    match inside {
        None => Err(PlanError::HostIpFamily {
            ip,
            family,
            network: net.name.clone(),
        }),
        Some(true) => Err(PlanError::HostIpInSubnet {
            ip,
            network: net.name.clone(),
        }),
        Some(false) => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::request::Options;
    use crate::model::ids::ContainerId;
    use crate::model::ipam::Pool;
    use crate::model::ports::parse_ports;

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
        let (ep, leases) = plan_endpoint(
            &request("c1", Options::default()),
            &Network::builtin_default(),
            &pool,
        )
        .unwrap();
        assert_eq!(leases.v6, None);
        let lease = leases.v4.unwrap();
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

    impl<F: ipam::Family> Allocations<F> for Unreadable {
        type Error = std::io::Error;
        fn owner(&self, _: F) -> Result<Option<String>, Self::Error> {
            Err(std::io::Error::from_raw_os_error(nix::libc::EACCES))
        }
        fn last(&self) -> Result<Option<F>, Self::Error> {
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
        let (ep, leases) = plan_endpoint(&request("c1", Options::default()), &net, &pool).unwrap();
        assert_eq!(ep.ipv4.unwrap().address, Ipv4Addr::new(10, 77, 0, 11));
        pool.record(&leases.v4.unwrap(), &ep.id);
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

    fn dual() -> Network {
        let mut n = Network::new("dual", "10.88.0.0/24", None, None, true).unwrap();
        n.set_ipv6("fd00:88::/64", None, true).unwrap();
        n
    }

    #[test]
    fn a_dual_stack_network_gives_an_address_of_each_family_and_records_both() {
        let mut pool = Pool::default();
        let (ep, leases) =
            plan_endpoint(&request("c1", Options::default()), &dual(), &pool).unwrap();
        let v6 = ep.ipv6.unwrap();
        assert_eq!(
            v6.address,
            "fd00:88::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!((v6.prefix, v6.masquerade), (64, true));
        assert_eq!(
            v6.gateway,
            "fd00:88::1".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(ep.mac, Mac::from_ipv4(ep.ipv4.unwrap().address));
        pool.record(&leases.v4.unwrap(), &ep.id);
        pool.record6(&leases.v6.unwrap(), &ep.id);
        let (ep2, _) = plan_endpoint(&request("c2", Options::default()), &dual(), &pool).unwrap();
        assert_eq!(
            ep2.ipv6.unwrap().address,
            "fd00:88::3".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn an_ipv6_only_network_derives_the_mac_from_the_ipv6_address() {
        let mut six = Network::named("six", None).unwrap();
        six.set_ipv6("fd00:6::/120", None, true).unwrap();
        let opts = Options {
            ip6: Some("fd00:6::a0".parse().unwrap()),
            ..Options::default()
        };
        let (ep, leases) = plan_endpoint(&request("c1", opts), &six, &Pool::default()).unwrap();
        assert!(ep.ipv4.is_none() && leases.v4.is_none());
        assert_eq!(ep.mac.to_string(), "02:4e:00:00:00:a0");
        assert!(
            !leases.v6.unwrap().advances_cursor,
            "a static address keeps the cursor"
        );
        assert!(!ep.masquerade, "IPv4's flag; the IPv6 one is in ipv6");
    }

    #[test]
    fn an_address_of_a_family_the_network_lacks_is_refused_in_one_line() {
        let six = {
            let mut n = Network::named("six", None).unwrap();
            n.set_ipv6("fd00:6::/64", None, true).unwrap();
            n
        };
        let cases: [(Options, &Network, &str); 4] = [
            (
                Options {
                    ip: Some(Ipv4Addr::new(10, 77, 0, 9)),
                    ..Options::default()
                },
                &six,
                "nethook.ip asks for an IPv4 address, but network six has no IPv4 subnet",
            ),
            (
                Options {
                    ip6: Some("fd00::9".parse().unwrap()),
                    ..Options::default()
                },
                &Network::builtin_default(),
                "nethook.ip6 asks for an IPv6 address, but network nethook has no IPv6 subnet",
            ),
            (
                Options {
                    ports: parse_ports("127.0.0.1:8080:80").unwrap(),
                    ..Options::default()
                },
                &six,
                "127.0.0.1 is an IPv4 address, but network six has no IPv4 subnet",
            ),
            (
                Options {
                    ip6: Some("fd00:7::9".parse().unwrap()),
                    ..Options::default()
                },
                &six,
                "outside network six's subnet fd00:6::/64; pick one inside it or drop nethook.ip6",
            ),
        ];
        for (opts, net, says) in cases {
            let e = plan_endpoint(&request("c1", opts), net, &Pool::default()).unwrap_err();
            assert!(
                e.to_string().contains(says) && !e.to_string().contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn an_ipv6_only_container_cannot_ask_for_an_address_whose_mac_is_anothers() {
        let mut six = Network::named("six", None).unwrap();
        six.set_ipv6("fd00:6::/64", None, true).unwrap();
        // fd00:6::1:0:0:2 would get 02:4e:00:00:00:02, fd00:6::2's MAC.
        let opts = Options {
            ip6: Some("fd00:6::1:0:0:2".parse().unwrap()),
            ..Options::default()
        };
        let e = plan_endpoint(&request("c1", opts.clone()), &six, &Pool::default()).unwrap_err();
        assert!(matches!(e, PlanError::Ipv6BeyondMacWindow { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("between fd00:6:: and fd00:6::ffff:ffff"),
            "{e}"
        );
        // With a MAC of its own the address is fine: its MAC is not derived.
        let mine = Options {
            mac: Some("02:00:00:00:00:09".parse().unwrap()),
            ..opts
        };
        plan_endpoint(&request("c1", mine), &six, &Pool::default()).unwrap();
        // The walk stays in the window too: after its last address it wraps to the first.
        let pool = Pool {
            last6: Some("fd00:6::ffff:ffff".parse().unwrap()),
            ..Pool::default()
        };
        let (ep, _) = plan_endpoint(&request("c2", Options::default()), &six, &pool).unwrap();
        assert_eq!(ep.ipv6.unwrap().address.to_string(), "fd00:6::2");
    }
}
