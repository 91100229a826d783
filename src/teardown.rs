//! poststop: undo everything an endpoint record lists. Idempotent: objects already
//! gone are not errors, and an unknown id is a no-op.

use std::time::Duration;

use crate::conntrack::{self, ConntrackError};
use crate::endpoint::Endpoint;
use crate::firewall::{self, Elements, FirewallError};
use crate::ids::ContainerId;
use crate::ipam::Allocations;
use crate::link::{LinkError, Rtnl, VethFate};
use crate::timing::Steps;
use crate::ports::Proto;
use crate::plan::{network_elements, port_elements, source_elements};
use crate::store::{IpamDir, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// An endpoint record existed for the id.
    pub found: bool,
    /// The host veth still existed and was deleted (usually it vanished with the netns).
    pub link_deleted: bool,
}

pub fn teardown(store: &Store, id: &ContainerId) -> Result<Report, TeardownError> {
    let mut steps = Steps::from_env();
    let _lock = store.lock()?;
    let Some(ep) = store.load_endpoint(id)? else {
        return Ok(Report::default());
    };
    steps.mark("lock+record");
    let rtnl = Rtnl::open()?;
    let report = release(store, &rtnl, &ep)?;
    steps.mark("release");
    steps.report("teardown");
    Ok(report)
}

/// Removes the endpoint's kernel objects, then its address and record. The caller holds
/// the lock. A kernel error keeps the record so a later poststop or `gc` can retry.
///
/// Order: published ports and anti-spoofing elements first (no new flows reach the
/// address), then the link, then conntrack entries (a restarted UDP service on the same
/// host port must not be blackholed by an entry pointing at the old address), then the
/// address and record.
pub fn release(store: &Store, rtnl: &Rtnl, ep: &Endpoint) -> Result<Report, TeardownError> {
    let ipam = store.ipam(&ep.network)?;
    // Only touch address-bound state while the address is still ours: after a crash and
    // gc the address may already belong to a newer container.
    let owns_address = match ep.ipv4 {
        Some(v4) => ipam.owner(v4.address)?.as_deref() == Some(ep.id.as_str()),
        None => false,
    };
    let ports = port_elements(ep);
    // The anti-spoofing elements are keyed by the host veth, whose name derives from this
    // container id (one endpoint per id), so they are this endpoint's even when its address has
    // moved on.
    let own = Elements {
        ports: if owns_address { ports.clone() } else { Vec::new() },
        sources: source_elements(ep),
        ..Elements::default()
    };
    firewall::delete(&own)?;
    let link_deleted = rtnl.delete_veth(&ep.host_interface, namespace_grace(ep))? == VethFate::Deleted;
    // Only connectionless mappings leave conntrack entries that blackhole the next
    // container on the same host port (UDP has no handshake to start a fresh entry; a
    // new TCP connection's SYN does). The flush walks the kernel's whole, all-namespace
    // conntrack table (~7 ms), so TCP-only endpoints skip it, as portmap and netavark do.
    // One walk also drops every entry of the container's address.
    let connectionless: Vec<_> = ports.iter().filter(|p| p.proto != Proto::Tcp).map(|p| (p.proto, p.host_port)).collect();
    if let (true, Some(v4), false) = (owns_address, ep.ipv4, connectionless.is_empty()) {
        if let Err(e) = conntrack::flush_for(v4.address, &connectionless) {
            log_conntrack(ep, &e);
        }
    }
    forget(store, ep, &ipam)?;
    Ok(Report { found: true, link_deleted })
}

/// How long teardown waits for the container's namespace to start dying before deleting
/// its veth (see `Rtnl::delete_veth`). Only when the process setup took the namespace from
/// no longer holds it: then it is most likely about to go. A namespace that outlives that
/// wait (shared with another container, or bind-mounted) costs the wait once, plus the
/// delete; one whose process is alive is deleted at once.
const DEAD_CONTAINER_GRACE: Duration = Duration::from_millis(20);

fn namespace_grace(ep: &Endpoint) -> Duration {
    let held = ep.netns.as_deref().map(|p| std::fs::metadata(p).is_ok());
    grace_for(held)
}

/// `held`: whether the process setup took the namespace from still holds it (`None` when
/// the record does not say which process that was).
fn grace_for(held: Option<bool>) -> Duration {
    match held {
        Some(false) => DEAD_CONTAINER_GRACE,
        Some(true) | None => Duration::ZERO,
    }
}

fn log_conntrack(ep: &Endpoint, e: &ConntrackError) {
    eprintln!("nethook: {}: could not flush conntrack entries: {e}", ep.id);
}

/// Frees the endpoint's address (only if it still owns it) and drops its record. When
/// that was the network's last address, the per-network elements go: its subnet leaves the
/// masquerade set and its bridge the isolation sets.
pub fn forget(store: &Store, ep: &Endpoint, ipam: &IpamDir) -> Result<(), TeardownError> {
    if let Some(v4) = ep.ipv4 {
        ipam.release(v4.address, ep.id.as_str())?;
    }
    if !ipam.has_addresses()? {
        firewall::delete(&network_elements(ep))?;
    }
    store.remove_endpoint(&ep.id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_namespace_whose_process_is_gone_gets_time_to_die() {
        assert_eq!(grace_for(Some(false)), DEAD_CONTAINER_GRACE);
        assert_eq!(grace_for(Some(true)), Duration::ZERO);
        assert_eq!(grace_for(None), Duration::ZERO);
    }
}
