//! Network definitions: create and remove them, with the checks against the host they
//! need (routes a subnet would shadow, bridges nethook did not make).

use std::time::Duration;

use crate::driver::{self, DriverError};
use crate::kernel::link::LinkError;
use crate::kernel::seam::Kernel;
use crate::model::network::{Network, NetworkError};
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NetworkOpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("subnet {subnet} overlaps the host route {route}; pick a subnet that does not")]
    RouteOverlap { subnet: String, route: String },
    #[error("a link named {bridge} already exists on this host and nethook did not make it for network {network}; pass another --bridge")]
    BridgeNotOurs { bridge: String, network: String },
    #[error(
        "network {name} is used by {count} endpoint(s) ({users}); stop those containers first"
    )]
    InUse {
        name: String,
        count: usize,
        users: String,
    },
    #[error("network {name} is built in and has no bridge to remove")]
    BuiltIn { name: String },
}

/// Records a new definition, refusing one that clashes with another network, with a host
/// route, or with a link nethook did not make under its bridge's name.
pub fn create(store: &Store, k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    driver::of(net).validate(net)?;
    let _lock = store.lock()?;
    net.check_conflicts(&store.list_networks()?)?;
    check_host_routes(k, net)?;
    // A bridge of that name that nethook did not make for this network belongs to
    // someone else: adding the gateway to it and deleting it at `network rm` would take
    // it over.
    if !net.driver.is_bridge() {
        store.create_network(net)?;
        return Ok(());
    }
    if let Some((is_bridge, alias)) = k.links().bridge_owner(&net.bridge)? {
        if !net.owns_bridge(is_bridge, alias.as_deref()) {
            return Err(NetworkOpError::BridgeNotOurs {
                bridge: net.bridge.clone(),
                network: net.name.clone(),
            });
        }
    }
    store.create_network(net)?;
    Ok(())
}

/// A subnet that overlaps a route the host already has would hijack or lose traffic.
fn check_host_routes(k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    let Some(v4) = net.ipv4 else { return Ok(()) };
    for route in k.links().ipv4_routes()? {
        if route.prefix() > 0 && route.overlaps(v4.subnet) {
            return Err(NetworkOpError::RouteOverlap {
                subnet: v4.subnet.to_string(),
                route: route.to_string(),
            });
        }
    }
    Ok(())
}

/// What `remove` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The bridge's name when a link has it that nethook did not make for this network:
    /// it was left alone.
    pub foreign_bridge: Option<String>,
}

/// Deletes a network that no endpoint uses: its definition and address directory, and
/// its bridge when nethook made it.
pub fn remove(store: &Store, k: &dyn Kernel, name: &str) -> Result<Removed, NetworkOpError> {
    // Endpoints being torn down still use it until their records go.
    let _lock = store.lock_settled(Duration::from_secs(5))?;
    let net = store.load_network(name)?;
    let users: Vec<String> = store
        .list_endpoints()?
        .into_iter()
        .filter(|e| e.network == name)
        .map(|e| e.id.to_string())
        .collect();
    if !users.is_empty() {
        return Err(NetworkOpError::InUse {
            name: name.to_owned(),
            count: users.len(),
            users: users.join(", "),
        });
    }
    let had_file = store.remove_network(name)?;
    let mut removed = Removed::default();
    if !net.driver.is_bridge() {
        return Ok(removed);
    }
    let had_bridge = match k.links().bridge_owner(&net.bridge)? {
        None => false,
        Some((is_bridge, alias)) if net.owns_bridge(is_bridge, alias.as_deref()) => {
            k.links().delete(&net.bridge)?
        }
        Some(_) => {
            removed.foreign_bridge = Some(net.bridge.clone());
            false
        }
    };
    if !had_file && !had_bridge {
        return Err(NetworkOpError::BuiltIn {
            name: name.to_owned(),
        });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::World;

    #[test]
    fn create_refuses_a_subnet_over_a_host_route_and_a_foreign_bridge() {
        let w = World::new("net-create");
        w.fake.add_route("10.88.0.0/16".parse().unwrap());
        let net = Network::new("blue", "10.88.1.0/24", None, None, true).unwrap();
        let e = create(&w.store, &w.fake, &net).unwrap_err();
        assert!(matches!(e, NetworkOpError::RouteOverlap { .. }), "{e}");
        let net = Network::new("green", "10.89.0.0/24", None, Some("br0"), true).unwrap();
        w.fake.add_foreign_link("br0");
        let e = create(&w.store, &w.fake, &net).unwrap_err();
        assert!(matches!(e, NetworkOpError::BridgeNotOurs { .. }), "{e}");
        let net = Network::new("red", "10.90.0.0/24", None, None, true).unwrap();
        create(&w.store, &w.fake, &net).unwrap();
        assert_eq!(w.store.load_network("red").unwrap(), net);
    }

    #[test]
    fn remove_deletes_only_a_bridge_nethook_made_and_refuses_a_network_in_use() {
        let w = World::new("net-rm");
        let net = Network::new("red", "10.90.0.0/24", None, None, true).unwrap();
        create(&w.store, &w.fake, &net).unwrap();
        w.fake.add_link("nh-red");
        assert_eq!(
            remove(&w.store, &w.fake, "red").unwrap(),
            Removed::default()
        );
        assert!(!w.fake.has_link("nh-red"));
        w.setup("c1", "").unwrap();
        let e = remove(&w.store, &w.fake, "nethook").unwrap_err();
        assert!(matches!(e, NetworkOpError::InUse { count: 1, .. }), "{e}");
    }
}
