//! Drivers: how an endpoint's link is made for each kind of network. The core plans,
//! records and asks the firewall for elements; a driver only makes, checks and removes
//! links (and the per-link settings that go with them), through the link half of the
//! kernel seam: it never sees nftables.
//!
//! A new driver is one module here and one line in `for_kind` (plus its variant of
//! `model::network::DriverKind`, the data a definition names it by).

pub mod bridge;
pub mod macvlan;
pub mod routed;
mod veth;

use std::time::Duration;

use crate::failpoint::Injected;
use crate::kernel::link::{HostVeth, LinkError, VethFate, VethState};
use crate::kernel::netns::{Netns, NetnsError};
use crate::kernel::seam::{ContainerError, Kernel, Links, Sysctls};
use crate::kernel::sysctl::SysctlError;
use crate::model::endpoint::Endpoint;
use crate::model::network::{DriverKind, Ipv4Config, Network};
use crate::state::StoreError;
use crate::timing::Steps;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Record(#[from] StoreError),
    #[error(transparent)]
    Injected(#[from] Injected),
    #[error("network {network}: {reason}; fix its definition")]
    Invalid { network: String, reason: String },
    #[error("network {network} has no IPv4 subnet, which the {driver} driver needs; give the network an IPv4 subnet")]
    NoIpv4 {
        network: String,
        driver: &'static str,
    },
    #[error("host interface {name} already exists; a link of an earlier container with this id is left over: run `nethook gc`")]
    HostLinkExists { name: String },
    #[error("interface {name} already exists in the container's network namespace; set nethook.ifname to another name")]
    PeerExists { name: String },
    #[error("network {network} is full: its bridge {bridge} already has {max} ports, the most a Linux bridge takes; put further containers on another network (`nethook network create`, annotation nethook.network)", max = bridge::MAX_BRIDGE_PORTS)]
    BridgeFull { network: String, bridge: String },
    #[error("parent {parent} of network {network} does not exist on this host; create it, or recreate the network with an existing --parent")]
    ParentMissing { network: String, parent: String },
    #[error("parent {parent} of network {network} is a port of a bridge or bond, which takes its frames before a macvlan could; recreate the network with --parent naming the bridge itself or another interface")]
    ParentBusy { network: String, parent: String },
}

impl From<ContainerError> for DriverError {
    fn from(e: ContainerError) -> Self {
        match e {
            ContainerError::Netns(e) => DriverError::Netns(e),
            ContainerError::Link(e) => DriverError::Link(e),
        }
    }
}

/// The part of the kernel a driver may use: links, the sysctls of its links, and the
/// test failure points between its steps. Not the firewall.
#[derive(Clone, Copy)]
pub struct DriverKernel<'a> {
    kernel: &'a dyn Kernel,
}

impl<'a> DriverKernel<'a> {
    pub fn new(kernel: &'a dyn Kernel) -> Self {
        DriverKernel { kernel }
    }

    pub fn links(&self) -> &'a dyn Links {
        self.kernel.links()
    }

    pub fn sysctls(&self) -> &'a dyn Sysctls {
        self.kernel.sysctls()
    }

    pub fn failpoint(&self, name: &'static str) -> Result<(), Injected> {
        self.kernel.failpoint(name)
    }
}

/// What the network's own link is, once `ensure_network` made sure of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkLink {
    /// The link endpoints attach to (a bridge's index); 0 when the driver has none.
    pub index: u32,
}

/// What `Driver::attach` works with besides the network and endpoint.
pub struct AttachContext<'a> {
    pub kernel: DriverKernel<'a>,
    /// The container's network namespace.
    pub netns: &'a Netns,
    /// Re-records the endpoint, before a link is made under a name the record does not
    /// name yet (the write-ahead rule: a record names every object that may exist).
    pub record: &'a dyn Fn(&Endpoint) -> Result<(), StoreError>,
    /// Links made so far, in order; the core deletes them in reverse on a later failure.
    pub created: &'a mut Vec<String>,
    pub steps: &'a mut Steps,
}

pub trait Driver: Sync {
    /// The name a definition uses (`"bridge"`).
    fn name(&self) -> &'static str;

    /// Refuses a definition this driver cannot serve.
    fn validate(&self, net: &Network) -> Result<(), DriverError>;

    /// Makes sure the network's own link exists (idempotent; shared by its endpoints).
    fn ensure_network(
        &self,
        k: DriverKernel<'_>,
        net: &Network,
    ) -> Result<NetworkLink, DriverError>;

    /// Makes the endpoint's link into the container's namespace and configures it there.
    /// Every link made goes into `cx.created` at once, so the core can undo it.
    fn attach(
        &self,
        cx: &mut AttachContext<'_>,
        net: &Network,
        link: NetworkLink,
        ep: &mut Endpoint,
    ) -> Result<(), DriverError>;

    /// Removes the endpoint's link, unless its namespace takes it within `grace`; only the
    /// record's own link (see `kernel::link::owner`).
    fn detach(
        &self,
        k: DriverKernel<'_>,
        ep: &Endpoint,
        grace: Duration,
    ) -> Result<VethFate, LinkError>;

    /// Whose the endpoint's link is: gc and a setup that finds an earlier record of the id
    /// keep the record while it is `Ours`. Default: the host veth the record names.
    fn link_state(&self, k: DriverKernel<'_>, ep: &Endpoint) -> Result<VethState, LinkError> {
        k.links().veth_state(&HostVeth::of(ep))
    }

    /// One cheap look at teardown: false when the endpoint's link is surely gone already
    /// (its namespace took it), so there is no link work. Default: whether a host link has
    /// the record's host veth name.
    fn link_may_remain(&self, k: DriverKernel<'_>, ep: &Endpoint) -> Result<bool, LinkError> {
        k.links().link_present(&ep.host_interface)
    }

    /// What of the endpoint's links is missing or not its own, one line each (empty: all
    /// there).
    fn check(
        &self,
        k: DriverKernel<'_>,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<Vec<String>, LinkError>;
}

/// The network's IPv4 side, which every driver needs for now; `driver` names the one asking.
pub(crate) fn ipv4_of<'n>(
    net: &'n Network,
    driver: &'static str,
) -> Result<&'n Ipv4Config, DriverError> {
    net.ipv4.as_ref().ok_or_else(|| DriverError::NoIpv4 {
        network: net.name.clone(),
        driver,
    })
}

/// The driver of a kind of network: the one registration point.
pub fn for_kind(kind: DriverKind) -> &'static dyn Driver {
    match kind {
        DriverKind::Bridge => &bridge::Bridge,
        DriverKind::Routed => &routed::Routed,
        DriverKind::Macvlan => &macvlan::Macvlan,
    }
}

/// The driver a network definition names.
pub fn of(net: &Network) -> &'static dyn Driver {
    for_kind(net.driver)
}

#[cfg(test)]
mod tests;
