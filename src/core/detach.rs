//! poststop: undo everything an endpoint record lists. Idempotent: objects already
//! gone are not errors, and an unknown id is a no-op.

use std::time::Duration;

use crate::core::elements::{network_elements, own_elements, port_elements};
use crate::core::recover;
use crate::core::{members, names, services};
use crate::driver::{self, DriverKernel};
use crate::firewall::{FirewallError, PortMapping};
use crate::kernel::conntrack::ConntrackError;
use crate::kernel::link::{LinkError, VethFate};
use crate::kernel::seam::Kernel;
use crate::log::{self, describe};
use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::model::ipam::Allocations;
use crate::model::ports::Proto;
use crate::state::claims::{claims_of, Claims};
use crate::state::{Deletion, DeletionMark, IpamDir, Store, StoreError};
use crate::timing::Steps;

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
    /// False when the rest of the teardown was deferred (see `teardown`).
    pub link_deleted: bool,
}

/// What `teardown` did, or left to do.
#[must_use = "deferred teardown work must be run (or handed to a process that runs it)"]
pub enum Teardown {
    /// Finished (or there was nothing to do).
    Done(Report),
    /// Published ports are gone; the link, conntrack, address and record are left to the
    /// caller, who runs the work now or hands it to another process (see `teardown`).
    Deferred(Box<Deferred>),
}

/// The rest of a teardown whose veth is still there: wait a grace for the namespace (it
/// then takes the veth along), delete the veth if it did not, flush conntrack, free the
/// address, drop the record. The link work runs without the store's lock (the kernel's
/// RCU wait would hold up every other setup and teardown); the attachment's deletion mark
/// (`state::deleting`) is held instead until the record is gone, so whoever would see it
/// half-removed waits for it. Dropped unrun, the mark is left abandoned with the record,
/// for a later teardown or `gc`.
#[must_use = "deferred teardown work must be run (or handed to a process that runs it)"]
pub struct Deferred {
    store: Store,
    ep: Endpoint,
    unpublished: Unpublished,
    grace: Duration,
    mark: DeletionMark,
    /// The teardown's step timings, reported by whichever process finishes its part.
    steps: Option<Steps>,
}

impl Deferred {
    /// The endpoint being torn down.
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// How long the work may wait for the namespace.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Does the work here, with `k` (in a child process: a kernel of its own, not one
    /// shared with the parent): the link without the store's lock, the rest with it. A
    /// kernel error keeps the record (and the mark, abandoned) for a later teardown or `gc`.
    pub fn run(self, k: &dyn Kernel) -> Result<Report, TeardownError> {
        let Deferred {
            store,
            ep,
            unpublished,
            grace,
            mark,
            steps,
        } = self;
        let result = detach_link(k, &ep, grace).and_then(|link_deleted| {
            let _lock = store.lock()?;
            settle(&store, k, &ep, &unpublished)?;
            Ok(link_deleted)
        });
        if let Some(mut steps) = steps {
            steps.mark("finish");
            steps.report("teardown");
        }
        drop(mark);
        Ok(Report {
            found: true,
            link_deleted: result?,
        })
    }

    /// For the process that handed this work to a child (which has a copy of it, mark
    /// included): the mark stays held, by the child.
    pub fn leave_to_child(self) -> Report {
        if let Some(steps) = &self.steps {
            steps.report("teardown");
        }
        self.mark.leave_to_child();
        Report {
            found: true,
            link_deleted: false,
        }
    }

    /// A copy in a child process reports no timing: the parent did.
    pub fn without_timing(mut self) -> Self {
        self.steps = None;
        self
    }
}

/// poststop. Published ports are gone when this returns.
///
/// Once the container's process has died, the veth, address and record are left to the
/// caller as `Deferred` work. The container's namespace then goes soon, taking the veth
/// with it, but not always before poststop: runc's own netlink socket in there is freed a
/// grace period after the container's last process exits, and under runc a short
/// container's namespace outlived it by up to several ms. Deleting the veth ourselves
/// would cost the kernel's RCU barrier (15–25 ms). So the work waits for the namespace
/// (deleting the veth after the grace), then frees the address and drops the record. The
/// OCI hook runs it in a child process, so a runtime waiting for its hook waits for none
/// of it; a caller that may wait runs it at once. Should it never run, the record is
/// still there for `gc`.
///
/// Usually the namespace has gone already and the veth with it; one ioctl tells, and then
/// there is no link work to wait for and the teardown finishes here. (For the hook, a fork
/// and the copy-on-write faults after it cost ~0.5 ms of a ~2 ms poststop; a netlink
/// runtime for the look-up would cost more than the ioctl.)
pub fn teardown(
    store: &Store,
    k: &dyn Kernel,
    id: &ContainerId,
) -> Result<Teardown, TeardownError> {
    teardown_with(store, k, id, false)
}

/// `teardown` for a caller that hands deferred work to another process whenever the veth
/// is still there, also when its namespace is alive (a CNI DEL before the runtime removes
/// the namespace): the veth delete's RCU wait (15–25 ms) then is not the caller's. The
/// work holds the attachment's deletion mark until done, so nobody sees it half-removed.
pub fn teardown_deferring_link(
    store: &Store,
    k: &dyn Kernel,
    id: &ContainerId,
) -> Result<Teardown, TeardownError> {
    teardown_with(store, k, id, true)
}

fn teardown_with(
    store: &Store,
    k: &dyn Kernel,
    id: &ContainerId,
    defer_live: bool,
) -> Result<Teardown, TeardownError> {
    let mut steps = Steps::from_env();
    let lock = store.lock()?;
    let Some(ep) = store.load_endpoint(id)? else {
        return Ok(Teardown::Done(Report::default()));
    };
    if store.deletion(id)? == Deletion::Running {
        // A second poststop or DEL: the first one's child is finishing it.
        return Ok(Teardown::Done(Report {
            found: true,
            link_deleted: false,
        }));
    }
    steps.mark("lock+record");
    let unpublished = unpublish(store, k, &ep)?;
    steps.mark("unpublish");
    if !driver::for_kind(ep.driver).link_may_remain(DriverKernel::new(k), &ep)? {
        settle(store, k, &ep, &unpublished)?;
        steps.mark("settle");
        steps.report("teardown");
        return Ok(Teardown::Done(Report {
            found: true,
            link_deleted: false,
        }));
    }
    let grace = namespace_grace(&ep);
    let mark = store.begin_deletion(&ep.id)?;
    drop(lock);
    let work = Deferred {
        store: store.clone(),
        ep,
        unpublished,
        grace,
        mark,
        steps: Some(steps),
    };
    if grace.is_zero() && !defer_live {
        return work.run(k).map(Teardown::Done);
    }
    Ok(Teardown::Deferred(Box::new(work)))
}

/// Removes the endpoint's kernel objects, then its address and record. The caller holds
/// the lock. A kernel error keeps the record so a later poststop or `gc` can retry.
pub fn release(store: &Store, k: &dyn Kernel, ep: &Endpoint) -> Result<Report, TeardownError> {
    let unpublished = unpublish(store, k, ep)?;
    let link_deleted = finish(store, k, ep, &unpublished, namespace_grace(ep))?;
    Ok(Report {
        found: true,
        link_deleted,
    })
}

/// What `unpublish` found out for `finish`.
struct Unpublished {
    ipam: IpamDir,
    /// The endpoint's address is still its own: after a crash and gc it may already
    /// belong to a newer container, whose address-bound state must not be touched.
    owns_address: bool,
    /// The endpoint's published ports, as map elements.
    ports: Vec<PortMapping>,
    /// It was a member of a service with UDP ports.
    udp_service: bool,
}

/// Deletes the published ports and anti-spoofing elements first, so no new flow reaches
/// the address while the rest goes.
fn unpublish(store: &Store, k: &dyn Kernel, ep: &Endpoint) -> Result<Unpublished, TeardownError> {
    let ipam = store.ipam(&ep.network)?;
    // Both families are recorded and freed together, so the first one answers for both.
    let owns_address = match (ep.ipv4, ep.ipv6) {
        (Some(v4), _) => ipam.owner(v4.address)?.as_deref() == Some(ep.id.as_str()),
        (None, Some(v6)) => ipam.owner(v6.address)?.as_deref() == Some(ep.id.as_str()),
        (None, None) => false,
    };
    // The anti-spoofing elements are keyed by the host veth, whose name derives from this
    // container id (one endpoint per id), so they are this endpoint's even when its address has
    // moved on.
    let ports = port_elements(ep);
    let own = own_elements(ep, owns_address);
    // Out of its services in the same batch: no new connection reaches it from here on.
    let udp_service = delete_and_leave(store, k, ep, own)?;
    names::release(store, ep);
    // Not resolvable once poststop returns. A resolver that does not answer must not keep
    // the container's address and ports held: it is told again at its next start (it starts
    // from the records).
    if let Err(e) = names::left_sync(store, k, ep) {
        log::line(&format!(
            "{}: could not tell the DNS resolver it left: {e}",
            ep.id
        ));
    }
    // The host ports are free from here on: a container publishing them next need not wait
    // for the rest of this teardown.
    Claims::new(store.run_dir()).release(ep.id.as_str(), &claims_of(&ep.ports));
    Ok(Unpublished {
        ipam,
        owns_address,
        ports,
        udp_service,
    })
}

/// Deletes `elements` with `ep`'s leave of its services in the same batch, then records the
/// members files. Whether one of the services has UDP ports (whose conntrack entries must
/// then go).
///
/// A service whose chain or maps are gone (the ruleset was flushed) fails the batch with
/// ENOENT: there is nothing to leave in the kernel then, so the batch goes again without
/// the services' part, and the files say what the next restore rebuilds.
fn delete_and_leave(
    store: &Store,
    k: &dyn Kernel,
    ep: &Endpoint,
    mut elements: crate::firewall::Elements,
) -> Result<bool, TeardownError> {
    let planned = members::leave_all(store, ep)?;
    let mut udp = false;
    for (plan, _) in &planned {
        if let Some(s) = store.load_service(&plan.service)? {
            udp |= s.has_udp();
            elements.services.push(services::fw_change_of(&s, plan));
        }
    }
    if elements.is_empty() && elements.services.is_empty() {
        return Ok(udp);
    }
    match k.firewall().delete(&elements) {
        Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) && !elements.services.is_empty() => {
            elements.services.clear();
            k.firewall().delete(&elements)?;
        }
        other => other?,
    }
    members::record(store, &planned)?;
    Ok(udp)
}

/// Takes `ep` out of its services, in a batch of its own (a failed setup's rollback, gc).
pub fn leave_services(store: &Store, k: &dyn Kernel, ep: &Endpoint) -> Result<(), TeardownError> {
    delete_and_leave(store, k, ep, crate::firewall::Elements::default()).map(|_| ())
}

/// The link, then what `settle` does. True when the veth had to be deleted.
fn finish(
    store: &Store,
    k: &dyn Kernel,
    ep: &Endpoint,
    u: &Unpublished,
    grace: Duration,
) -> Result<bool, TeardownError> {
    let link_deleted = detach_link(k, ep, grace)?;
    settle(store, k, ep, u)?;
    Ok(link_deleted)
}

/// The driver's link work. True when the veth had to be deleted.
fn detach_link(k: &dyn Kernel, ep: &Endpoint, grace: Duration) -> Result<bool, TeardownError> {
    let fate = driver::for_kind(ep.driver).detach(DriverKernel::new(k), ep, grace)?;
    if let VethFate::NotOurs(foreign) = &fate {
        log::line(&format!("{}: {foreign}", ep.id));
    }
    Ok(fate == VethFate::Deleted)
}

/// Once the link is gone: conntrack entries (a restarted UDP service on the same host port
/// must not be blackholed by an entry pointing at the old address), then the address and
/// record.
fn settle(
    store: &Store,
    k: &dyn Kernel,
    ep: &Endpoint,
    u: &Unpublished,
) -> Result<(), TeardownError> {
    // Only connectionless mappings leave conntrack entries that blackhole the next
    // container on the same host port (UDP has no handshake to start a fresh entry; a
    // new TCP connection's SYN does). The flush walks the kernel's whole, all-namespace
    // conntrack table (~7 ms), so TCP-only endpoints skip it, as portmap and netavark do.
    // One walk also drops every entry of the container's address.
    let connectionless: Vec<_> = u
        .ports
        .iter()
        .filter(|p| p.proto != Proto::Tcp)
        .map(|p| (p.proto, p.host_port))
        .collect();
    let addrs: Vec<std::net::IpAddr> = (ep.ipv4.map(|v4| v4.address.into()).into_iter())
        .chain(ep.ipv6.as_ref().map(|v6| v6.address.into()))
        .collect();
    // A UDP service's clients keep their flow's entry (DNATed to this member) as long as
    // they send; the walk drops every entry whose reply comes from its address.
    if u.owns_address && !addrs.is_empty() && (!connectionless.is_empty() || u.udp_service) {
        if let Err(e) = k.conntrack().flush_for(&addrs, &connectionless) {
            log_conntrack(ep, &e);
        }
    }
    forget(store, k, ep, &u.ipam)
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
    log::line(&format!(
        "{}: could not flush conntrack entries: {e}",
        ep.id
    ));
}

/// Frees the endpoint's address (only if it still owns it) and drops its record. When
/// that was the network's last address, the per-network elements go: its subnet leaves the
/// masquerade set and its bridge the isolation sets.
/// `route_localnet` is cleared on the bridge when this was the network's last endpoint
/// publishing on 127.0.0.1. Its host-port claims are not touched here: a teardown frees
/// them with its published ports (`unpublish`), a failed setup before forgetting.
pub fn forget(
    store: &Store,
    k: &dyn Kernel,
    ep: &Endpoint,
    ipam: &IpamDir,
) -> Result<(), TeardownError> {
    // Both are tried before an error of either is returned: one left held would wait for gc.
    let v4 = ep.ipv4.map(|v4| ipam.release(v4.address, ep.id.as_str()));
    let v6 = ep.ipv6.map(|v6| ipam.release(v6.address, ep.id.as_str()));
    v4.transpose()?;
    v6.transpose()?;
    if !ipam.has_addresses()? {
        k.firewall().delete(&network_elements(ep))?;
    }
    store.remove_endpoint(&ep.id)?;
    store.clear_deletion(&ep.id)?;
    // A routed veth's own switch went with it.
    if recover::publishes_on_loopback(ep) && !ep.bridge.is_empty() {
        if let Err(e) = recover::sync_route_localnet(store, k, &ep.network, &ep.bridge) {
            log::line(&format!(
                "{}: could not clear route_localnet on {}: {}; `nethook gc` retries",
                ep.id,
                ep.bridge,
                describe(&e)
            ));
        }
    }
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
