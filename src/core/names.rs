//! Names: what a network's resolver answers (containers' names and aliases, services'
//! names, each also as `NAME.NETWORK`), derived from the records, and the claims that keep a
//! name to one live container per network.
//!
//! A hook keeps the resolver current in the same run that changes a record: after setup, the
//! container's entry; at teardown, its removal. When no resolver runs (the first container of
//! a DNS network, or it died), the hook starts one with every network's zone (`snapshot`).

use crate::core::request::Request;
use crate::kernel::seam::Kernel;
use crate::model::endpoint::Endpoint;
use crate::model::network::Network;
use crate::model::service::Service;
use crate::resolver::{Delivery, Entry, ResolverError, Snapshot, Update, Zone};
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
    #[error(transparent)]
    Resolver(#[from] ResolverError),
}

/// Its DNS name: the one asked for, else its id (lower case) when that is a DNS label. A
/// CNI attachment's key (`ID/IFNAME`) never is, so it takes the container id alone.
pub fn endpoint_name(req: &Request) -> Option<String> {
    if let Some(name) = req
        .options
        .name
        .as_ref()
        .or(req.options.default_name.as_ref())
    {
        return Some(name.clone());
    }
    let id = req
        .id
        .attachment_parts()
        .map_or(req.id.as_str(), |(id, _)| id);
    crate::model::service::label(id).ok()
}

/// The resolver's entry of a container.
pub fn entry_of(ep: &Endpoint) -> Entry {
    Entry {
        key: ep.id.as_str().to_owned(),
        names: ep.names(),
        addrs: ep.addresses(),
    }
}

/// The resolver's entry of a service: its name, its VIPs.
pub fn entry_of_service(s: &Service) -> Entry {
    Entry {
        key: format!("{}{}", crate::resolver::SERVICE_KEY_PREFIX, s.name),
        names: vec![s.name.clone()],
        addrs: s.vips(),
    }
}

/// Claims `ep`'s names on its network (one with DNS): all or none. A name it asked for
/// (`explicit`: `nethook.name`) and its aliases are refused when a live container or a
/// service of the network has them; a name it only has by default (its id, its pod name)
/// is dropped instead, with a line in the system log: nobody asked for it, and pods of one
/// name in two Kubernetes namespaces must both start.
pub fn claim(
    store: &Store,
    net: &Network,
    ep: &mut Endpoint,
    explicit: bool,
) -> Result<(), NameError> {
    if !net.dns {
        return Ok(());
    }
    if !explicit {
        if let Some(name) = ep.name.clone() {
            if let Err(e) = claim_all(store, net, ep.id.as_str(), std::slice::from_ref(&name)) {
                crate::log::line(&format!("{}: no DNS name on {}: {e}", ep.id, net.name));
                ep.name = None;
            }
        }
        let aliases = ep.aliases.clone();
        if let Err(e) = claim_all(store, net, ep.id.as_str(), &aliases) {
            if let Some(name) = &ep.name {
                store.release_name(&net.name, name, ep.id.as_str());
            }
            return Err(e);
        }
        return Ok(());
    }
    claim_all(store, net, ep.id.as_str(), &ep.names())
}

fn claim_all(store: &Store, net: &Network, owner: &str, names: &[String]) -> Result<(), NameError> {
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
                .claim_name(&net.name, name, owner)?
                .err()
                .map(|holder| NameError::Taken {
                    name: name.clone(),
                    network: net.name.clone(),
                    holder,
                })
        };
        if let Some(e) = refused {
            for done in &names[..i] {
                store.release_name(&net.name, done, owner);
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
/// A network's zone from the records: its listen addresses, its containers, its services.
pub fn zone(net: &Network, endpoints: &[Endpoint], services: &[Service]) -> Zone {
    let mut entries: Vec<Entry> = endpoints
        .iter()
        // Unnamed containers too: they use the resolver for other names, and it runs as
        // long as a DNS network has a container.
        .filter(|ep| ep.network == net.name)
        .map(entry_of)
        .collect();
    entries.extend(
        services
            .iter()
            .filter(|s| s.network == net.name)
            .map(entry_of_service),
    );
    Zone {
        network: net.name.clone(),
        listen: net.dns_addresses(),
        clients: net.subnets(),
        entries,
    }
}

/// Every DNS network's zone, for a resolver being started. `None`: no DNS network has a
/// container, so none is needed.
pub fn snapshot(store: &Store) -> Result<Option<Snapshot>, StoreError> {
    let nets: Vec<Network> = store
        .list_networks()?
        .into_iter()
        .filter(|n| n.dns)
        .collect();
    if nets.is_empty() {
        return Ok(None);
    }
    let endpoints = store.list_endpoints_lenient()?.0;
    if !endpoints
        .iter()
        .any(|ep| nets.iter().any(|n| n.name == ep.network))
    {
        return Ok(None);
    }
    let services = store.list_services()?;
    Ok(Some(Snapshot {
        zones: nets
            .iter()
            .map(|n| zone(n, &endpoints, &services))
            .collect(),
    }))
}

/// The update a setup sends: the container's entry.
pub fn joined(ep: &Endpoint) -> Update {
    Update::Upsert {
        network: ep.network.clone(),
        entry: entry_of(ep),
    }
}

/// The update a teardown sends: the container's entry goes.
pub fn left(ep: &Endpoint) -> Update {
    Update::Remove {
        network: ep.network.clone(),
        key: ep.id.as_str().to_owned(),
    }
}

/// Tells the resolver about a setup on `net` (a DNS network): the container's entry, or,
/// when no resolver runs, starts one with every zone (this container's included: its
/// record is written).
pub fn joined_sync(
    store: &Store,
    k: &dyn Kernel,
    net: &Network,
    ep: &Endpoint,
) -> Result<(), NameError> {
    if !net.dns {
        return Ok(());
    }
    match deliver_or_start(store, k, &[joined(ep)]) {
        // A resolver that started before this network had DNS (or containers) does not
        // know its zone: it gets the whole zone, this container included.
        Err(NameError::Resolver(ResolverError::Refused(_))) => network_sync(store, k, &net.name),
        other => other,
    }
}

/// Tells a running resolver that `ep` left (none is started for a removal).
pub fn left_sync(store: &Store, k: &dyn Kernel, ep: &Endpoint) -> Result<(), NameError> {
    // Only a DNS network's containers are the resolver's (a network without its file any
    // more has none either).
    if !crate::resolver::runs(store.run_dir())
        || !store.load_network(&ep.network).is_ok_and(|n| n.dns)
    {
        return Ok(());
    }
    k.resolver().deliver(store.run_dir(), &[left(ep)])?;
    Ok(())
}

/// Sends `updates`; when no resolver runs, starts one from the records instead (which
/// hold what the updates say).
pub fn deliver_or_start(
    store: &Store,
    k: &dyn Kernel,
    updates: &[Update],
) -> Result<(), NameError> {
    let delivered = match k.resolver().deliver(store.run_dir(), updates) {
        // A resolver that does not answer would keep every later container of a DNS
        // network from starting: it is replaced by one made from the records.
        Err(ResolverError::NoAnswer { pid, ms }) => {
            crate::log::line(&format!(
                "DNS resolver (pid {pid}) did not answer within {ms} ms; replacing it"
            ));
            k.resolver().stop_hung(store.run_dir(), &pid)?;
            Delivery::NotRunning
        }
        other => other?,
    };
    match delivered {
        Delivery::Applied | Delivery::Exited => Ok(()),
        Delivery::NotRunning => {
            if let Some(snap) = snapshot(store)? {
                k.resolver().start(store.run_dir(), &snap)?;
            }
            Ok(())
        }
    }
}

/// Brings the resolver in line with the records of `network` (its DNS switched, a service
/// made or removed): the whole zone, or its removal.
pub fn network_sync(store: &Store, k: &dyn Kernel, network: &str) -> Result<(), NameError> {
    let net = store.load_network(network)?;
    let endpoints = store.list_endpoints_lenient()?.0;
    let used = endpoints.iter().any(|ep| ep.network == net.name);
    if !net.dns || !used {
        // Nothing to answer there: a running resolver drops the zone (and exits when it was
        // its last); none is started for it.
        if crate::resolver::runs(store.run_dir()) {
            k.resolver()
                .deliver(store.run_dir(), &[Update::DropZone { network: net.name }])?;
        }
        return Ok(());
    }
    let services = store.list_services()?;
    deliver_or_start(store, k, &[Update::Zone(zone(&net, &endpoints, &services))])
}

/// `gc`: every network's zone as the records say (a resolver that died is started again
/// when a DNS network has containers). Returns what it did, for gc's report.
pub fn resync_all(store: &Store, k: &dyn Kernel) -> Vec<String> {
    let mut actions = Vec::new();
    let Ok(nets) = store.list_networks() else {
        return actions;
    };
    for net in nets {
        if let Err(e) = network_sync(store, k, &net.name) {
            actions.push(format!(
                "could not update the DNS resolver of network {}: {e}",
                net.name
            ));
        }
    }
    actions
}
