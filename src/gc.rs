//! Garbage collection: repairs state after poststop never ran or a hook was killed.
//! Drops endpoints whose host veth is gone (their netns died) and addresses no record
//! owns, and re-creates nethook's tables with the live endpoints' elements when another
//! tool flushed the ruleset (or only part of the skeleton exists). Records and IPAM files
//! that cannot be read are moved to the run directory's `quarantine/` (a record's address
//! is then freed like any other without a record). `dry_run` reports without changing
//! anything.

use std::collections::BTreeSet;

use crate::firewall::{self, FirewallError};
use crate::link::{LinkError, Rtnl};
use crate::plan::firewall_elements;
use crate::store::{Store, StoreError, Unreadable};
use crate::teardown::{self, TeardownError};

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
}

/// What gc did (or, dry, would do), one line per action.
pub fn gc(store: &Store, dry_run: bool) -> Result<Vec<String>, GcError> {
    let _lock = store.lock()?;
    let rtnl = Rtnl::open()?;
    let mut actions = Vec::new();
    let mut live = BTreeSet::new();
    let mut live_elements = Vec::new();
    let (endpoints, unreadable) = store.list_endpoints_lenient()?;
    quarantine(store, "endpoint record", unreadable, dry_run, &mut actions)?;
    for ep in endpoints {
        if rtnl.exists(&ep.host_interface)? {
            live.insert(ep.id.as_str().to_owned());
            live_elements.push(firewall_elements(&ep));
            continue;
        }
        actions.push(format!("remove endpoint {} ({}): host interface {} is gone", ep.id, ep.network, ep.host_interface));
        if !dry_run {
            teardown::release(store, &rtnl, &ep)?;
        }
    }
    let wanted: Vec<_> = live_elements.into_iter().filter(|e| !e.is_empty()).collect();
    // Any missing part (ruleset flushed, or an older nethook's inet table without the bridge
    // table): create it and re-add the live endpoints' elements (those still there are fine).
    let missing = if wanted.is_empty() { Vec::new() } else { firewall::missing_skeleton()? };
    if let Some((first, rest)) = missing.split_first() {
        actions.push(format!("re-create {first} and the elements of {} live endpoint(s)", wanted.len()));
        actions.extend(rest.iter().map(|part| format!("re-create {part}")));
        if !dry_run {
            firewall::ensure_skeleton()?;
            for elements in &wanted {
                firewall::restore(elements)?;
            }
        }
    }
    for net in store.list_networks()? {
        // Before `store.ipam`, which would fail on them.
        let bad = store.unreadable_ipam_files(&net.name)?;
        quarantine(store, &format!("IPAM file of {}", net.name), bad, dry_run, &mut actions)?;
        // A dry run must not convert an older version's allocation file either.
        let ipam = if dry_run { None } else { Some(store.ipam(&net.name)?) };
        for (ip, owner) in store.list_allocations(&net.name)? {
            if live.contains(owner.as_str()) || store_has(store, &owner) {
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
                ipam.release(ip, &owner)?;
            }
        }
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

fn store_has(store: &Store, owner: &str) -> bool {
    crate::ids::ContainerId::parse(owner).is_ok_and(|id| store.endpoint_path(&id).exists())
}
