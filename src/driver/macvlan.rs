//! The macvlan driver: the container's interface is a macvlan (mode bridge) of the
//! network's parent, made straight inside the container's namespace, so the container sits
//! on the parent's LAN with its own MAC and an address of the LAN's subnet, its default
//! route via the LAN's router (the network's gateway). The host keeps no link for it: the
//! record's `host_interface` is empty, and teardown, gc and CHECK look inside the
//! container's namespace (the record's `netns`), where the link lives and dies.
//!
//! The host cannot reach its own macvlan containers through the parent (the kernel hands
//! frames from the host's stack straight to the wire, and frames from a child to the
//! parent's MAC leave by the wire too); the README says how users work around it.

use std::path::Path;
use std::time::Duration;

use crate::driver::{ipv4_of, AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{
    ContainerAddrs, ContainerMacvlan, LinkError, MacvlanSpec, VethFate, VethState,
};
use crate::model::endpoint::Endpoint;
use crate::model::network::Network;

pub struct Macvlan;

impl Macvlan {
    fn parent<'n>(&self, net: &'n Network) -> Result<&'n str, DriverError> {
        net.parent.as_deref().ok_or_else(|| DriverError::Invalid {
            network: net.name.clone(),
            reason: "a macvlan network needs a parent interface".into(),
        })
    }
}

/// The record's macvlan; `None` when the record names no namespace (it cannot then have
/// one left anywhere nethook could reach).
fn container_link(ep: &Endpoint) -> Option<ContainerMacvlan<'_>> {
    Some(ContainerMacvlan {
        netns: Path::new(ep.netns.as_deref()?),
        name: &ep.interface,
        mac: ep.mac,
        owner: &ep.id,
    })
}

impl Driver for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn validate(&self, net: &Network) -> Result<(), DriverError> {
        self.parent(net)?;
        ipv4_of(net, self.name())?;
        Ok(())
    }

    /// The parent is the LAN's and not nethook's: nothing to make. Whether it is there is
    /// learnt from the kernel's answer to the create, at no extra cost (the definition was
    /// validated at the start of setup).
    fn ensure_network(
        &self,
        _k: DriverKernel<'_>,
        _net: &Network,
    ) -> Result<NetworkLink, DriverError> {
        Ok(NetworkLink { index: 0 })
    }

    /// The macvlan in the container's namespace, then the container side: address,
    /// default route via the LAN's router. A failure after the create deletes the macvlan
    /// again in there (the core's rollback deletes host links by name; this one is not
    /// on the host).
    fn attach(
        &self,
        cx: &mut AttachContext<'_>,
        net: &Network,
        _link: NetworkLink,
        ep: &mut Endpoint,
    ) -> Result<(), DriverError> {
        let parent = self.parent(net)?;
        let spec = MacvlanSpec {
            parent,
            name: &ep.interface,
            mac: ep.mac,
        };
        let links = cx.kernel.links();
        match links.create_macvlan(&spec, cx.netns) {
            Ok(()) => {}
            Err(e) => {
                return Err(match e.errno() {
                    Some(libc::ENODEV) => DriverError::ParentMissing {
                        network: net.name.clone(),
                        parent: parent.to_owned(),
                    },
                    Some(libc::EBUSY) => DriverError::ParentBusy {
                        network: net.name.clone(),
                        parent: parent.to_owned(),
                    },
                    Some(libc::EEXIST) => DriverError::PeerExists {
                        name: ep.interface.clone(),
                    },
                    _ => e.into(),
                })
            }
        }
        cx.steps.mark("macvlan");
        let configured = (|| -> Result<(), DriverError> {
            cx.kernel.failpoint("veth")?;
            if let Some(v4) = ep.ipv4 {
                let addrs = ContainerAddrs::ipv4(v4.address, v4.prefix, v4.gateway);
                links.configure_container(cx.netns, &ep.interface, &addrs)?;
            }
            cx.kernel.failpoint("addresses")?;
            Ok(())
        })();
        if let Err(e) = configured {
            let made = ContainerMacvlan {
                netns: cx.netns.path(),
                name: &ep.interface,
                mac: ep.mac,
                owner: &ep.id,
            };
            if let Err(undo) = links.delete_macvlan(&made) {
                crate::log::line(&format!(
                    "rollback could not remove macvlan {} in {}: {undo}",
                    ep.interface,
                    cx.netns.path().display()
                ));
            }
            return Err(e);
        }
        cx.steps.mark("container");
        Ok(())
    }

    /// Deletes the container's macvlan inside its namespace when that is still alive (a
    /// CNI DEL, or a namespace that outlives its container); with the namespace gone it is
    /// gone too. `grace` is not needed: nothing on the host waits on the namespace.
    fn detach(
        &self,
        k: DriverKernel<'_>,
        ep: &Endpoint,
        _grace: Duration,
    ) -> Result<VethFate, LinkError> {
        match container_link(ep) {
            Some(c) => k.links().delete_macvlan(&c),
            None => Ok(VethFate::Gone),
        }
    }

    fn link_state(&self, k: DriverKernel<'_>, ep: &Endpoint) -> Result<VethState, LinkError> {
        match container_link(ep) {
            Some(c) => k.links().macvlan_state(&c),
            None => Ok(VethState::Gone),
        }
    }

    /// Whether the namespace the record names is still there: when it is not (the
    /// container's process is gone), its macvlan went with it. One stat, as the ioctl the
    /// other drivers ask.
    fn link_may_remain(&self, _k: DriverKernel<'_>, ep: &Endpoint) -> Result<bool, LinkError> {
        Ok(ep
            .netns
            .as_deref()
            .is_some_and(|p| std::fs::metadata(p).is_ok()))
    }

    fn check(
        &self,
        k: DriverKernel<'_>,
        _net: &Network,
        ep: &Endpoint,
    ) -> Result<Vec<String>, LinkError> {
        Ok(match self.link_state(k, ep)? {
            VethState::Ours => Vec::new(),
            VethState::Gone => vec![format!(
                "macvlan {} of container {} is missing from its namespace",
                ep.interface, ep.id
            )],
            VethState::NotOurs(foreign) => vec![foreign.to_string()],
        })
    }
}
