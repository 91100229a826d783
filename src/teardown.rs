//! poststop: undo everything an endpoint record lists. Idempotent: objects already
//! gone are not errors, and an unknown id is a no-op.

use crate::endpoint::Endpoint;
use crate::ids::ContainerId;
use crate::ipam::Pool;
use crate::link::{LinkError, Rtnl};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// An endpoint record existed for the id.
    pub found: bool,
    /// The host veth still existed and was deleted (usually it vanished with the netns).
    pub link_deleted: bool,
}

pub fn teardown(store: &Store, id: &ContainerId) -> Result<Report, TeardownError> {
    let _lock = store.lock()?;
    let Some(ep) = store.load_endpoint(id)? else {
        return Ok(Report::default());
    };
    let rtnl = Rtnl::open()?;
    release(store, &rtnl, &ep)
}

/// Removes the endpoint's kernel objects, then its address and record. The caller holds
/// the lock. A kernel error keeps the record so a later poststop or `gc` can retry.
pub fn release(store: &Store, rtnl: &Rtnl, ep: &Endpoint) -> Result<Report, TeardownError> {
    let link_deleted = rtnl.delete(&ep.host_interface)?;
    let mut pool = store.load_pool(&ep.network)?;
    forget(store, ep, &mut pool)?;
    Ok(Report { found: true, link_deleted })
}

/// Frees the endpoint's address (only if it still owns it) and drops its record.
pub fn forget(store: &Store, ep: &Endpoint, pool: &mut Pool) -> Result<(), StoreError> {
    if let Some(v4) = ep.ipv4 {
        if pool.release(v4.address, &ep.id) {
            store.save_pool(&ep.network, pool)?;
        }
    }
    store.remove_endpoint(&ep.id)?;
    Ok(())
}
