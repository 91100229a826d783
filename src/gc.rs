//! Garbage collection: repairs state after poststop never ran or a hook was killed.
//! Drops endpoints whose host veth is gone (their netns died) and addresses no record
//! owns. `dry_run` reports without changing anything.

use std::collections::BTreeSet;

use crate::link::{LinkError, Rtnl};
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
}

/// What gc did (or, dry, would do), one line per action.
pub fn gc(store: &Store, dry_run: bool) -> Result<Vec<String>, GcError> {
    let _lock = store.lock()?;
    let rtnl = Rtnl::open()?;
    let mut actions = Vec::new();
    let mut live = BTreeSet::new();
    for ep in store.list_endpoints()? {
        if rtnl.exists(&ep.host_interface)? {
            live.insert(ep.id.as_str().to_owned());
            continue;
        }
        actions.push(format!("remove endpoint {} ({}): host interface {} is gone", ep.id, ep.network, ep.host_interface));
        if !dry_run {
            teardown::release(store, &rtnl, &ep)?;
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
