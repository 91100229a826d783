//! Garbage collection: repairs state after poststop never ran or a hook was killed.
//! Drops endpoints whose host veth is gone (their netns died) and addresses no record
//! owns, and re-creates nethook's tables with the live endpoints' elements when another
//! tool flushed the ruleset (or only part of the skeleton exists). `dry_run` reports
//! without changing anything.

use std::collections::BTreeSet;

use crate::firewall::{self, FirewallError};
use crate::link::{LinkError, Rtnl};
use crate::plan::firewall_elements;
use crate::store::{Store, StoreError};
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
    for ep in store.list_endpoints()? {
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
        let mut pool = store.load_pool(&net.name)?;
        let orphans: Vec<_> = pool
            .allocations
            .iter()
            .filter(|(_, owner)| !live.contains(owner.as_str()) && !store_has(store, owner))
            .map(|(ip, owner)| (*ip, owner.clone()))
            .collect();
        for (ip, owner) in &orphans {
            actions.push(format!("free address {ip} on {}: container {owner} has no endpoint record", net.name));
            pool.allocations.remove(ip);
        }
        if !dry_run && !orphans.is_empty() {
            store.save_pool(&net.name, &pool)?;
        }
    }
    Ok(actions)
}

fn store_has(store: &Store, owner: &str) -> bool {
    crate::ids::ContainerId::parse(owner).is_ok_and(|id| store.endpoint_path(&id).exists())
}
