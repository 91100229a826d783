//! Names: what a network's resolver answers (containers' names and aliases, services'
//! names, each also as `NAME.NETWORK`), derived from the records, and the claims that keep a
//! name to one live container per network.
//!
//! A hook keeps the resolver current in the same run that changes a record: after setup, the
//! container's entry; at teardown, its removal. When no resolver runs (the first container of
//! a DNS network, or it died), the hook starts one with every network's zone (`snapshot`).

use crate::model::endpoint::Endpoint;
use crate::model::network::Network;
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("name {name} is taken on network {network} by container {holder}; pick another nethook.name (or alias), or stop {holder}")]
    Taken {
        name: String,
        network: String,
        holder: String,
    },
    #[error("name {name} on network {network} is the name of service {name}; pick another nethook.name (or alias)")]
    IsService { name: String, network: String },
}

/// Claims `ep`'s names on its network (one with DNS): all or none.
pub fn claim(store: &Store, net: &Network, ep: &Endpoint) -> Result<(), NameError> {
    if !net.dns {
        return Ok(());
    }
    let names = ep.names();
    for (i, name) in names.iter().enumerate() {
        let refused = if store
            .load_service(name)?
            .is_some_and(|s| s.network == net.name)
        {
            Some(NameError::IsService {
                name: name.clone(),
                network: net.name.clone(),
            })
        } else {
            store
                .claim_name(&net.name, name, ep.id.as_str())?
                .err()
                .map(|holder| NameError::Taken {
                    name: name.clone(),
                    network: net.name.clone(),
                    holder,
                })
        };
        if let Some(e) = refused {
            for done in &names[..i] {
                store.release_name(&net.name, done, ep.id.as_str());
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Drops `ep`'s name claims (whatever the network says of DNS by now).
pub fn release(store: &Store, ep: &Endpoint) {
    for name in ep.names() {
        store.release_name(&ep.network, &name, ep.id.as_str());
    }
}
