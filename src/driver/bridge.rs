//! The bridge driver: one Linux bridge per network carrying the gateway address, and per
//! container a veth pair whose host end is a port of the bridge and whose peer is created
//! directly inside the container's namespace.

use std::time::Duration;

use crate::driver::veth::{attach_host_veth, host_veth_problem};

use crate::driver::{AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{BridgeSpec, ContainerAddrs, ContainerIp, HostVeth, LinkError, VethFate};
use crate::model::endpoint::Endpoint;
use crate::model::ids::validate_ifname;
use crate::model::mac::Mac;
use crate::model::network::Network;

/// A Linux bridge numbers its ports with 10 bits and never uses 0 (`BR_MAX_PORTS`); the
/// kernel answers EXFULL to one more.
pub const MAX_BRIDGE_PORTS: usize = 1023;

pub struct Bridge;

/// The bridge's own MAC: from the IPv4 gateway, else, on an IPv6-only network, from the
/// IPv6 one (as the containers' are from their addresses).
pub(crate) fn bridge_mac(net: &Network) -> Option<Mac> {
    match (net.ipv4, net.ipv6) {
        (Some(v4), _) => Some(Mac::from_ipv4(v4.gateway)),
        (None, Some(v6)) => Some(Mac::from_ipv6(v6.gateway)),
        (None, None) => None,
    }
}

/// What the endpoint's interface gets inside the container: each family it has.
pub(crate) fn container_addrs(ep: &Endpoint) -> ContainerAddrs {
    ContainerAddrs {
        ipv4: ep.ipv4.map(|v4| ContainerIp {
            address: v4.address,
            prefix: v4.prefix,
            gateway: v4.gateway,
        }),
        ipv6: ep.ipv6.map(|v6| ContainerIp {
            address: v6.address,
            prefix: v6.prefix,
            gateway: v6.gateway,
        }),
    }
}

impl Driver for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn validate(&self, net: &Network) -> Result<(), DriverError> {
        validate_ifname(&net.bridge).map_err(|reason| DriverError::Invalid {
            network: net.name.clone(),
            reason: format!("bridge name {:?} {reason}", net.bridge),
        })
    }

    /// The bridge gets a MAC derived from the gateway (see `Rtnl::ensure_bridge` for why it
    /// needs one of its own), the network's gateway addresses and its owner tag.
    fn ensure_network(
        &self,
        k: DriverKernel<'_>,
        net: &Network,
    ) -> Result<NetworkLink, DriverError> {
        let mac = bridge_mac(net).ok_or_else(|| DriverError::Invalid {
            network: net.name.clone(),
            reason: "it has neither an IPv4 nor an IPv6 subnet".into(),
        })?;
        let owner_tag = net.owner_tag();
        // Host processes reach a service's VIP through the bridge (containers through the
        // gateway): the service ranges are routed there.
        let routes = net.service_ranges();
        let index = k.links().ensure_bridge(&BridgeSpec {
            name: &net.bridge,
            mac,
            ipv4: net.ipv4.map(|v4| (v4.gateway, v4.subnet.prefix())),
            ipv6: net.ipv6.map(|v6| (v6.gateway, v6.subnet.prefix())),
            owner_tag: &owner_tag,
            routes: &routes,
        })?;
        Ok(NetworkLink { index })
    }

    /// The veth pair, IPv6 off on its host end (a bridge port forwards IPv6 frames without
    /// IPv6 of its own), then the container side: its addresses and default routes.
    fn attach(
        &self,
        cx: &mut AttachContext<'_>,
        net: &Network,
        link: NetworkLink,
        ep: &mut Endpoint,
    ) -> Result<(), DriverError> {
        attach_host_veth(cx, ep, net, link.index, None)?;

        let addrs = container_addrs(ep);
        if addrs.ipv4.is_some() || addrs.ipv6.is_some() {
            cx.kernel
                .links()
                .configure_container(cx.netns, &ep.interface, &addrs)?;
        }
        cx.steps.mark("container");
        cx.kernel.failpoint("addresses")?;
        Ok(())
    }

    fn detach(
        &self,
        k: DriverKernel<'_>,
        ep: &Endpoint,
        grace: Duration,
    ) -> Result<VethFate, LinkError> {
        k.links().delete_veth(&HostVeth::of(ep), grace)
    }

    fn check(
        &self,
        k: DriverKernel<'_>,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<Vec<String>, LinkError> {
        let mut missing = Vec::new();
        if !k.links().link_present(&net.bridge)? {
            missing.push(format!(
                "bridge {} of network {} is missing",
                net.bridge, net.name
            ));
        } else if let Some(v6) = net.ipv6 {
            // Setup puts it back only when the bridge was made, fixed or down (see
            // `Rtnl::ensure_bridge`), so CHECK is where one removed by hand shows.
            if !k.links().has_ipv6_address(&net.bridge, v6.gateway)? {
                let (gw, prefix, bridge) = (v6.gateway, v6.subnet.prefix(), &net.bridge);
                missing.push(format!(
                    "IPv6 gateway {gw}/{prefix} of network {} is missing on bridge {bridge}; add it back with `ip -6 address add {gw}/{prefix} dev {bridge} nodad`",
                    net.name
                ));
            }
        }
        missing.extend(host_veth_problem(k, ep)?);
        Ok(missing)
    }
}
