//! The veth pair both the bridge and the routed driver give a container: the host end (a
//! bridge port, or routed, a link of its own), the peer born inside the container's namespace.

use std::thread::sleep;
use std::time::Duration;

use crate::driver::{AttachContext, DriverError, DriverKernel};
use crate::kernel::link::{HostVeth, LinkError, VethSpec, VethState};
use crate::model::endpoint::Endpoint;
use crate::model::ids::routed_veth_name;
use crate::model::mac::Mac;
use crate::model::network::Network;

/// The id's two host veth names for this kind of veth: a bridge port's (`nh…`) or a routed
/// one's (`nr…`).
fn names(ep: &Endpoint, bridge_index: u32) -> (String, String) {
    let (first, second) = (ep.id.host_veth_name(), ep.id.alt_host_veth_name());
    if bridge_index == 0 {
        (routed_veth_name(&first), routed_veth_name(&second))
    } else {
        (first, second)
    }
}

/// Creates the veth pair, telling apart the two names that can clash and a bridge with no
/// port left. `bridge_index` 0: no bridge (routed), whose host veth names start with `nr`;
/// `host_mac`: the host end's MAC, else the kernel's pick. The kernel frees a deleted veth asynchronously, so a host name that this
/// container's own earlier veth still holds right after a teardown of the same id gets a few
/// short retries before it is reported. A host name held by any other link (another
/// container's veth whose name collides, or a link planted there) is left to it: the
/// container takes its id's second name instead, recorded before it is created.
fn create_veth(
    cx: &mut AttachContext<'_>,
    ep: &mut Endpoint,
    net: &Network,
    bridge_index: u32,
    host_mac: Option<Mac>,
) -> Result<(), DriverError> {
    let links = cx.kernel.links();
    let owner_tag = ep.id.owner_tag();
    let mut attempts = 0;
    loop {
        let spec = VethSpec {
            host_name: &ep.host_interface,
            bridge_index,
            host_mac,
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
                        let (first, second) = names(ep, bridge_index);
                        if ep.host_interface == second {
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

/// The host veth of a bridge or routed endpoint, made and recorded for the core's undo, with
/// IPv6 off on its host end (see `sysctl::disable_ipv6`: a bridge port forwards IPv6 frames
/// without it, and routed networks have no IPv6).
pub(crate) fn attach_host_veth(
    cx: &mut AttachContext<'_>,
    ep: &mut Endpoint,
    net: &Network,
    bridge_index: u32,
    host_mac: Option<Mac>,
) -> Result<(), DriverError> {
    create_veth(cx, ep, net, bridge_index, host_mac)?;
    cx.created.push(ep.host_interface.clone());
    cx.kernel.sysctls().disable_ipv6(&ep.host_interface)?;
    cx.steps.mark("veth");
    cx.kernel.failpoint("veth")?;
    Ok(())
}

/// What is wrong with the endpoint's host veth for CHECK: missing, or not its own.
pub(crate) fn host_veth_problem(
    k: DriverKernel<'_>,
    ep: &Endpoint,
) -> Result<Option<String>, LinkError> {
    Ok(match k.links().veth_state(&HostVeth::of(ep))? {
        VethState::Ours => None,
        VethState::Gone => Some(format!(
            "host interface {} of container {} is missing",
            ep.host_interface, ep.id
        )),
        VethState::NotOurs(foreign) => Some(foreign.to_string()),
    })
}
