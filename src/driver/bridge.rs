//! The bridge driver: one Linux bridge per network carrying the gateway address, and per
//! container a veth pair whose host end is a port of the bridge and whose peer is created
//! directly inside the container's namespace.

use std::time::Duration;

use crate::driver::veth::{attach_host_veth, host_veth_problem};
use crate::driver::{ipv4_of, AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{HostVeth, LinkError, VethFate};
use crate::model::endpoint::Endpoint;
use crate::model::ids::validate_ifname;
use crate::model::mac::Mac;
use crate::model::network::Network;

/// A Linux bridge numbers its ports with 10 bits and never uses 0 (`BR_MAX_PORTS`); the
/// kernel answers EXFULL to one more.
pub const MAX_BRIDGE_PORTS: usize = 1023;

pub struct Bridge;

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
    /// needs one of its own) and the network's owner tag.
    fn ensure_network(
        &self,
        k: DriverKernel<'_>,
        net: &Network,
    ) -> Result<NetworkLink, DriverError> {
        let v4 = ipv4_of(net, self.name())?;
        let index = k.links().ensure_bridge(
            &net.bridge,
            Mac::from_ipv4(v4.gateway),
            v4.gateway,
            v4.subnet.prefix(),
            &net.owner_tag(),
        )?;
        Ok(NetworkLink { index })
    }

    /// The veth pair, IPv6 off on its host end (the network has none), then the container
    /// side: its address and default route.
    fn attach(
        &self,
        cx: &mut AttachContext<'_>,
        net: &Network,
        link: NetworkLink,
        ep: &mut Endpoint,
    ) -> Result<(), DriverError> {
        attach_host_veth(cx, ep, net, link.index, None)?;

        if let Some(v4) = ep.ipv4 {
            cx.kernel.links().configure_container(
                cx.netns,
                &ep.interface,
                v4.address,
                v4.prefix,
                v4.gateway,
            )?;
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
        }
        missing.extend(host_veth_problem(k, ep)?);
        Ok(missing)
    }
}
