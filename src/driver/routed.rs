//! The routed driver (Calico/ptp style): no bridge. Each container gets a veth whose host end
//! (`nr…`) has no address; inside, its address as a /32 with a default route via 169.254.1.1,
//! which a permanent neighbour entry resolves to the host end's MAC; on the host, a /32 route
//! to the container out of its veth. The host routes between containers, so a network holds
//! as many as its subnet and a setup costs the same with one container or thousands (a bridge
//! takes 1023 ports, and its setup grows with them).
//!
//! Why a neighbour entry rather than proxy ARP on the host end: proxy ARP answers only with
//! forwarding on and a host route to 169.254.1.1 leaving by another interface (a host with no
//! default route gets no answer), and it delays its answers up to 0.8 s unless a second
//! per-veth setting is changed. The entry costs one ioctl on the socket setup already has in
//! the container, and needs nothing of the host (docs/design.md, 2026-12-03 notes).

use std::time::Duration;

use crate::driver::veth::{attach_host_veth, host_veth_problem};
use crate::driver::{ipv4_of, AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{HostVeth, LinkError, VethFate};
use crate::model::endpoint::Endpoint;
use crate::model::mac::Mac;
use crate::model::network::{Network, ROUTED_GATEWAY};

pub struct Routed;

/// The MAC of every routed host veth, derived from the gateway as a bridge's is from its
/// gateway (`02:4e:a9:fe:01:01`). One MAC for all is fine on point-to-point links, and one
/// set by nethook is left alone by udev (which re-randomises kernel-chosen ones).
pub fn host_mac() -> Mac {
    Mac::from_ipv4(ROUTED_GATEWAY)
}

impl Driver for Routed {
    fn name(&self) -> &'static str {
        "routed"
    }

    fn validate(&self, net: &Network) -> Result<(), DriverError> {
        let v4 = ipv4_of(net, self.name())?;
        if v4.gateway != ROUTED_GATEWAY {
            return Err(DriverError::Invalid {
                network: net.name.clone(),
                reason: format!(
                    "a routed network's gateway is {ROUTED_GATEWAY}, not {}",
                    v4.gateway
                ),
            });
        }
        Ok(())
    }

    /// Nothing is shared by a routed network's containers but the host's routing (the
    /// definition was validated at the start of setup).
    fn ensure_network(
        &self,
        _k: DriverKernel<'_>,
        _net: &Network,
    ) -> Result<NetworkLink, DriverError> {
        Ok(NetworkLink { index: 0 })
    }

    /// The veth pair, IPv6 off on its host end, the host's /32 route to the container (once
    /// the host end is up, as the kernel wants a route's device), `route_localnet` on the
    /// host end when the container publishes on 127.0.0.1 (the host's packets to it leave
    /// by that veth), then the container side.
    fn attach(
        &self,
        cx: &mut AttachContext<'_>,
        net: &Network,
        _link: NetworkLink,
        ep: &mut Endpoint,
    ) -> Result<(), DriverError> {
        attach_host_veth(cx, ep, net, 0, Some(host_mac()))?;

        let Some(v4) = ep.ipv4 else {
            return Ok(());
        };
        cx.kernel
            .links()
            .add_host_route(&ep.host_interface, v4.address)?;
        if ep
            .ports
            .iter()
            .any(|p| p.host_ip.is_some_and(|ip| ip.is_loopback()))
        {
            cx.kernel
                .sysctls()
                .route_localnet(&ep.host_interface, true)?;
        }
        cx.kernel.links().configure_routed_container(
            cx.netns,
            &ep.interface,
            v4.address,
            ROUTED_GATEWAY,
            host_mac(),
        )?;
        cx.steps.mark("container");
        cx.kernel.failpoint("addresses")?;
        Ok(())
    }

    /// The route and any setting of the veth go with it.
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
        _net: &Network,
        ep: &Endpoint,
    ) -> Result<Vec<String>, LinkError> {
        Ok(host_veth_problem(k, ep)?.into_iter().collect())
    }
}
