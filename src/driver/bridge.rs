//! The bridge driver: one Linux bridge per network carrying the gateway address, and per
//! container a veth pair whose host end is a port of the bridge and whose peer is created
//! directly inside the container's namespace.

use std::thread::sleep;
use std::time::Duration;

use crate::driver::{AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{HostVeth, LinkError, VethFate, VethSpec, VethState};
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
        let v4 = net.ipv4.as_ref().ok_or_else(|| DriverError::NoIpv4 {
            network: net.name.clone(),
            driver: self.name(),
        })?;
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
        create_veth(cx, ep, net, link.index)?;
        cx.created.push(ep.host_interface.clone());
        cx.kernel.sysctls().disable_ipv6(&ep.host_interface)?;
        cx.steps.mark("veth");
        cx.kernel.failpoint("veth")?;

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
        match k.links().veth_state(&HostVeth::of(ep))? {
            VethState::Ours => {}
            VethState::Gone => missing.push(format!(
                "host interface {} of container {} is missing",
                ep.host_interface, ep.id
            )),
            VethState::NotOurs(foreign) => missing.push(foreign.to_string()),
        }
        Ok(missing)
    }
}

/// Creates the veth pair, telling apart the two names that can clash and a bridge with no
/// port left. The kernel frees a deleted veth asynchronously, so a host name that this
/// container's own earlier veth still holds right after a teardown of the same id gets a few
/// short retries before it is reported. A host name held by any other link (another
/// container's veth whose name collides, or a link planted there) is left to it: the
/// container takes its id's second name instead, recorded before it is created.
fn create_veth(
    cx: &mut AttachContext<'_>,
    ep: &mut Endpoint,
    net: &Network,
    bridge_index: u32,
) -> Result<(), DriverError> {
    let links = cx.kernel.links();
    let owner_tag = ep.id.owner_tag();
    let mut attempts = 0;
    loop {
        let spec = VethSpec {
            host_name: &ep.host_interface,
            bridge_index,
            peer_name: &ep.interface,
            peer_mac: ep.mac,
            owner_tag: &owner_tag,
        };
        match links.create_veth(&spec, cx.netns) {
            Ok(()) => return Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                match links.veth_state(&HostVeth::of(ep))? {
                    VethState::Gone => {
                        return Err(DriverError::PeerExists {
                            name: ep.interface.clone(),
                        })
                    }
                    VethState::Ours => {
                        attempts += 1;
                        if attempts > 25 {
                            return Err(DriverError::HostLinkExists {
                                name: ep.host_interface.clone(),
                            });
                        }
                        sleep(Duration::from_millis(4));
                    }
                    VethState::NotOurs(foreign) => {
                        let second = ep.id.alt_host_veth_name();
                        if ep.host_interface == second {
                            let first = ep.id.host_veth_name();
                            return Err(LinkError::HostNamesTaken {
                                id: ep.id.to_string(),
                                first,
                                second,
                                why: foreign.why,
                            }
                            .into());
                        }
                        ep.host_interface = second;
                        (cx.record)(ep)?;
                    }
                }
            }
            Err(e) if e.errno() == Some(libc::EXFULL) => {
                return Err(DriverError::BridgeFull {
                    network: net.name.clone(),
                    bridge: net.bridge.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}
