//! `nethook network update NAME --dns on|off --service-range CIDR`: the switches of a
//! network that running containers can live with changing.

use ipnetwork::IpNetwork;

use crate::core::network::NetworkOpError;
use crate::kernel::seam::Kernel;
use crate::model::network::{overlaps, Network, NetworkError};
use crate::state::Store;

/// What to change; `None`/empty: leave as is.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub dns: Option<bool>,
    pub service_ranges: Vec<String>,
}

/// Applies `changes` to a defined network (the default one included: a file then replaces
/// its built-in definition). A service range changes only while the network has no
/// service: their VIPs come from it.
pub fn update(
    store: &Store,
    k: &dyn Kernel,
    name: &str,
    changes: &Changes,
) -> Result<Network, NetworkOpError> {
    let _lock = store.lock()?;
    let mut net = store.load_network(name)?;
    let before = net.clone();
    if let Some(on) = changes.dns {
        net.set_dns(on)?;
    }
    if !changes.service_ranges.is_empty() {
        let services = store.services_of(&net.name)?;
        if !services.is_empty() {
            return Err(NetworkOpError::HasServices {
                name: net.name.clone(),
                services: services.join(", "),
            });
        }
        let old_ranges = net.service_ranges();
        for r in &changes.service_ranges {
            net.set_service_range(r)?;
        }
        net.check_conflicts(&store.list_networks()?)?;
        check_ranges_against_routes(k, &net)?;
        // The bridge routes the new range from now on, and no longer the old one.
        if net.driver.is_bridge() && k.links().link_present(&net.bridge)? {
            for old in old_ranges
                .iter()
                .filter(|r| !net.service_ranges().contains(r))
            {
                k.links().delete_device_route(&net.bridge, *old)?;
            }
            for new in net.service_ranges() {
                k.links().ensure_device_route(&net.bridge, new)?;
            }
        }
    }
    store.save_network(&net)?;
    if changes.dns.is_some() {
        // A resolver that cannot serve the network (its port 53 is another server's) leaves
        // the network as it was: with DNS on, every container would be refused.
        if let Err(e) = crate::core::names::network_sync(store, k, &net.name) {
            store.save_network(&before)?;
            return Err(e.into());
        }
    }
    Ok(net)
}

/// The host's routes of both families but its default routes, which overlap everything
/// and make no address space unusable.
pub fn host_routes(k: &dyn Kernel) -> Result<Vec<IpNetwork>, crate::kernel::link::LinkError> {
    let routes4 = k.links().ipv4_routes()?.into_iter().map(IpNetwork::V4);
    let routes6 = k.links().ipv6_routes()?.into_iter().map(IpNetwork::V6);
    Ok(routes4.chain(routes6).filter(|r| r.prefix() != 0).collect())
}

/// A service range must not capture traffic the host routes elsewhere (nethook's own
/// routes to this network's ranges aside).
pub fn check_ranges_against_routes(k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    let ranges = net.service_ranges();
    if ranges.is_empty() {
        return Ok(());
    }
    for route in host_routes(k)? {
        if let Some(r) = ranges.iter().find(|r| overlaps(**r, route) && **r != route) {
            return Err(NetworkError::BadServiceRange {
                range: r.to_string(),
                reason: format!("overlaps the host route {route}; pick a range that does not"),
            }
            .into());
        }
    }
    Ok(())
}
