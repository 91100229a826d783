//! Garbage collection: repairs state after poststop never ran or a hook was killed.
//! Drops endpoints whose host veth is gone (their netns died) and addresses no record
//! owns, and re-creates nethook's tables with the live endpoints' elements when another
//! tool flushed the ruleset (or only part of the skeleton exists). Records and IPAM files
//! that cannot be read are moved to the run directory's `quarantine/` (a record's address
//! is then freed like any other without a record). `dry_run` reports without changing
//! anything.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::core::detach::{self, TeardownError};
use crate::core::recover::{self, RecoverError};
use crate::driver::{self, DriverKernel};
use crate::firewall::FirewallError;
use crate::kernel::link::{LinkError, VethState};
use crate::kernel::seam::Kernel;
use crate::kernel::sysctl::SysctlError;
use crate::state::claims::{claims_of, ClaimError, Claims};
use crate::state::{Deletion, Store, StoreError, Unreadable};

/// How long gc waits for teardowns under way before it looks at the records (see
/// `state::deleting`); one still running after that is left to its process.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// What gc did (or, dry, would do), one line per action.
pub fn gc(store: &Store, k: &dyn Kernel, dry_run: bool) -> Result<Vec<String>, GcError> {
    let _lock = store.lock_settled(SETTLE_WAIT)?;
    let mut actions = Vec::new();
    let mut live = BTreeSet::new();
    let mut live_endpoints = Vec::new();
    let (endpoints, unreadable) = store.list_endpoints_lenient()?;
    quarantine(store, "endpoint record", unreadable, dry_run, &mut actions)?;
    for ep in endpoints {
        let deletion = store.deletion(&ep.id)?;
        if deletion == Deletion::Running {
            // Its process is finishing it; its address and claims are not free yet.
            live.insert(ep.id.as_str().to_owned());
            continue;
        }
        // A link of the record's name that is not its veth (another container's, or a
        // forged record's target) does not keep the record alive, and is left alone.
        let state = driver::for_kind(ep.driver).link_state(DriverKernel::new(k), &ep)?;
        let why = match state {
            VethState::Ours if deletion == Deletion::Abandoned => {
                "is still there: its teardown was interrupted".to_owned()
            }
            VethState::Ours => {
                live.insert(ep.id.as_str().to_owned());
                live_endpoints.push(ep);
                continue;
            }
            VethState::Gone => "is gone".to_owned(),
            VethState::NotOurs(foreign) => format!("is not its own ({})", foreign.why),
        };
        // A macvlan endpoint's link is its container interface; there is no host one.
        let link = match ep.host_interface.as_str() {
            "" => format!("macvlan {}", ep.interface),
            host => format!("host interface {host}"),
        };
        actions.push(format!(
            "remove endpoint {} ({}): {link} {why}",
            ep.id, ep.network
        ));
        if !dry_run {
            detach::release(store, k, &ep)?;
        }
    }
    // Any missing part (ruleset flushed, or an older nethook's tables): create it. The live
    // endpoints' elements are re-added whether or not anything was missing: after a flush,
    // a setup may have re-created the tables already, and a tool may have flushed single
    // sets. Elements still there are fine.
    let needed = !live_endpoints.is_empty()
        || !store.list_services()?.is_empty()
        || recover::owns_forwarding(store)
        || recover::owns_forwarding6(store);
    let missing = if needed {
        k.firewall().missing_skeleton()?
    } else {
        Vec::new()
    };
    if let Some((first, rest)) = missing.split_first() {
        actions.push(format!(
            "re-create {first} and the elements of {} live endpoint(s)",
            live_endpoints.len()
        ));
        actions.extend(rest.iter().map(|part| format!("re-create {part}")));
    }
    let has_tables = needed || k.firewall().table_exists()?;
    if !dry_run && needed {
        k.firewall().ensure_skeleton()?;
        recover::restore(store, k, &live_endpoints)?;
        if !recover::owns_forwarding6(store) {
            k.firewall().guard_forwarding6(false)?;
        }
    } else if !dry_run && has_tables {
        // Nothing of nethook's is live and it does not own forwarding (the marker was
        // removed): the forward hook is no longer guarded.
        k.firewall().guard_forwarding(false)?;
        k.firewall().guard_forwarding6(false)?;
    }
    // Elements no live record accounts for: a quarantined record's ports would otherwise
    // reach whoever gets its address next.
    if has_tables {
        let live_elements = recover::merged_elements(&live_endpoints);
        actions.extend(k.firewall().prune(&live_elements, dry_run)?);
    }
    for net in store
        .list_networks()?
        .into_iter()
        .filter(|n| !n.bridge.is_empty())
    {
        let wanted = live_endpoints
            .iter()
            .any(|ep| ep.network == net.name && recover::publishes_on_loopback(ep));
        if !wanted && k.sysctls().route_localnet_on(&net.bridge) {
            actions.push(format!(
                "turn route_localnet off on {}: no container publishes on 127.0.0.1 there",
                net.bridge
            ));
            if !dry_run {
                k.sysctls().route_localnet(&net.bridge, false)?;
            }
        }
    }
    let claims = Claims::new(store.run_dir());
    // Containers started by a version without claims have none: claim their ports now, so a
    // later container cannot take them with a publish on one address.
    if !dry_run {
        for ep in &live_endpoints {
            if let Err(e) = claims.claim(ep.id.as_str(), &claims_of(&ep.ports), |owner| {
                live.contains(owner)
            }) {
                actions.push(format!("could not claim the host ports of {}: {e}", ep.id));
            }
        }
    }
    let stale = claims.sweep(|owner| live.contains(owner), dry_run)?;
    for (port, address, owner) in stale {
        actions.push(format!("drop the claim of host port {port} on {address}: container {owner:?} has no live endpoint"));
    }
    for net in store.list_networks()? {
        // Before `store.ipam`, which would fail on them.
        let bad = store.unreadable_ipam_files(&net.name)?;
        quarantine(
            store,
            &format!("IPAM file of {}", net.name),
            bad,
            dry_run,
            &mut actions,
        )?;
        // A dry run must not convert an older version's allocation file either.
        let ipam = if dry_run {
            None
        } else {
            Some(store.ipam(&net.name)?)
        };
        for (ip, owner) in store.list_allocations(&net.name)? {
            if live.contains(owner.as_str()) || store.has_endpoint(&owner) {
                continue;
            }
            // An empty owner is a setup killed between creating the file and writing it.
            let why = if owner.is_empty() {
                "a killed setup left it without an owner".to_owned()
            } else {
                format!("container {owner} has no endpoint record")
            };
            actions.push(format!("free address {ip} on {}: {why}", net.name));
            if let Some(ipam) = &ipam {
                ipam.release_ip(ip, &owner)?;
            }
        }
    }
    match crate::core::services::sweep_members(store, k, dry_run) {
        Ok(done) => actions.extend(done),
        Err(e) => actions.push(format!("could not sweep services' members: {e}")),
    }
    if !dry_run {
        // Name claims of containers that are gone, then the resolver as the records say.
        for (network, name, owner) in store.stale_names()? {
            actions.push(format!(
                "drop the name {name} on {network}: container {owner:?} has no endpoint"
            ));
            store.drop_name_claim(&network, &name)?;
        }
        actions.extend(crate::core::names::resync_all(store, k));
    }
    Ok(actions)
}

/// Moves each unreadable file aside, saying so (a dry run only says so).
fn quarantine(
    store: &Store,
    what: &str,
    files: Vec<Unreadable>,
    dry_run: bool,
    actions: &mut Vec<String>,
) -> Result<(), GcError> {
    for (path, why) in files {
        let line = format!("quarantine {what} {}: {why}", path.display());
        if dry_run {
            actions.push(line);
        } else {
            let to = store.quarantine(&path)?;
            actions.push(format!("{line}; moved to {}", to.display()));
        }
    }
    Ok(())
}
