//! Keeping the host's shared state true to the records: after another tool flushed the
//! ruleset (a firewall reload), when nethook turns IPv4 forwarding on, and for the
//! per-bridge `route_localnet` switch.
//!
//! The endpoint records are the truth; the kernel's elements are derived from them. So
//! whenever a part of the skeleton had to be (re)created, every live record's elements
//! go back in, in one batch, and `nethook gc` does the same unconditionally.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::core::elements::firewall_elements;
use crate::firewall::{Elements, FirewallError};
use crate::kernel::seam::Kernel;
use crate::kernel::sysctl::SysctlError;
use crate::log::{self, describe};
use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The file that says nethook turned IPv4 forwarding on (in the run directory, on tmpfs:
/// a reboot resets forwarding and forgets the file together).
pub fn forwarding_marker(store: &Store) -> PathBuf {
    store.run_dir().join("forwarding")
}

/// Did nethook turn forwarding on (so it guards the forward hook)?
pub fn owns_forwarding(store: &Store) -> bool {
    forwarding_marker(store).exists()
}

/// Makes sure the host forwards IPv4 for the containers. When it did not, nethook turns
/// it on, but first records that it did and adds the guard element: from then on the
/// host forwards only what enters or leaves a nethook network, not traffic between its
/// other interfaces (a LAN and a VPN), which it never did before. When forwarding was on
/// already, whoever turned it on wanted a router, and nothing is guarded.
/// `setting_up`: the endpoint being set up, whose elements its own setup adds.
pub fn ensure_forwarding(
    store: &Store,
    k: &dyn Kernel,
    setting_up: Option<&ContainerId>,
) -> Result<(), RecoverError> {
    if k.sysctls().ip_forwarding()? {
        return Ok(());
    }
    let marker = forwarding_marker(store);
    log::notice("turning net.ipv4.ip_forward on; forwarded traffic that neither enters nor leaves a nethook network is dropped from now on (see README: What nethook changes on your host)");
    fs::write(&marker, "nethook turned net.ipv4.ip_forward on; remove this file and run `nethook gc` to stop guarding the forward hook\n")
        .map_err(|source| RecoverError::Io { action: "write", path: marker.clone(), source })?;
    ensure_skeleton(store, k, setting_up)?;
    k.firewall().guard_forwarding(true)?;
    k.sysctls().enable_ip_forwarding()?;
    Ok(())
}

/// Where nethook notes that it turned IPv6 forwarding on, and which interfaces it set
/// `accept_ra=2` on first (see `ensure_forwarding6`).
pub fn forwarding6_marker(store: &Store) -> PathBuf {
    store.run_dir().join("forwarding6")
}

/// Did nethook turn IPv6 forwarding on (so it guards the forward hook for IPv6)?
pub fn owns_forwarding6(store: &Store) -> bool {
    forwarding6_marker(store).exists()
}

/// `ensure_forwarding` for IPv6, for a network with IPv6. One step more: turning
/// `all.forwarding` on drops the default routes the host learned from router
/// advertisements on interfaces with `accept_ra=1`, so those get `accept_ra=2` first
/// (`sysctl::enable_ipv6_forwarding`); the marker and the system log name them.
pub fn ensure_forwarding6(
    store: &Store,
    k: &dyn Kernel,
    setting_up: Option<&ContainerId>,
) -> Result<(), RecoverError> {
    if k.sysctls().ipv6_forwarding()? {
        return Ok(());
    }
    let marker = forwarding6_marker(store);
    let write = |text: String| {
        fs::write(&marker, text).map_err(|source| RecoverError::Io {
            action: "write",
            path: marker.clone(),
            source,
        })
    };
    // Written before anything changes, as for IPv4: a crash in between leaves the guard
    // owned and gc can lift it.
    write("nethook turned net.ipv6.conf.all.forwarding on; remove this file and run `nethook gc` to stop guarding the forward hook for IPv6\n".into())?;
    ensure_skeleton(store, k, setting_up)?;
    k.firewall().guard_forwarding6(true)?;
    let changed = k.sysctls().enable_ipv6_forwarding(&own_bridges(store)?)?;
    let what = accept_ra_note(&changed);
    write(format!("nethook turned net.ipv6.conf.all.forwarding on; {what}; remove this file and run `nethook gc` to stop guarding the forward hook for IPv6\n"))?;
    log::notice(&format!("turning net.ipv6.conf.all.forwarding on; {what}; forwarded IPv6 traffic that neither enters nor leaves a nethook network is dropped from now on (see README: What nethook changes on your host)"));
    Ok(())
}

/// What `enable_ipv6_forwarding` did to `accept_ra`, in words.
pub fn accept_ra_note(changed: &[String]) -> String {
    if changed.is_empty() {
        "no interface took router advertisements with accept_ra=1, so none was changed".into()
    } else {
        format!(
            "set accept_ra=2 on {} first, so they keep their default routes from router advertisements",
            changed.join(", ")
        )
    }
}

/// The bridges of nethook's networks, which take no router advertisements.
pub fn own_bridges(store: &Store) -> Result<Vec<String>, RecoverError> {
    Ok(store
        .list_networks()?
        .into_iter()
        .map(|n| n.bridge)
        .filter(|b| !b.is_empty())
        .collect())
}

/// Creates what is missing of the skeleton and, when anything was, puts back every live
/// record's elements (but `except`'s, whose setup adds its own) and the forwarding guard.
pub fn ensure_skeleton(
    store: &Store,
    k: &dyn Kernel,
    except: Option<&ContainerId>,
) -> Result<(), RecoverError> {
    if !k.firewall().ensure_skeleton()? {
        return Ok(());
    }
    let endpoints: Vec<Endpoint> = store
        .list_endpoints_lenient()?
        .0
        .into_iter()
        .filter(|ep| Some(&ep.id) != except && !store.is_deleting(&ep.id))
        .collect();
    restore(store, k, &endpoints)
}

/// Every element of these endpoints, as one set of elements (duplicates merged).
pub fn merged_elements(endpoints: &[Endpoint]) -> Elements {
    let mut all = Elements::default();
    for ep in endpoints {
        all.extend(firewall_elements(ep));
    }
    all
}

/// Re-adds these endpoints' elements (those still there are fine) and the forwarding
/// guard when nethook owns forwarding, in one batch for the elements.
pub fn restore(store: &Store, k: &dyn Kernel, endpoints: &[Endpoint]) -> Result<(), RecoverError> {
    let all = merged_elements(endpoints);
    if !all.is_empty() {
        if let Err(e) = k.firewall().restore(&all) {
            // One record's elements can clash with another's (two records naming one host
            // port, left by an older version's flush handling): then restore one endpoint at
            // a time, so a bad record cannot keep every other container cut off.
            log::line(&format!("restoring every endpoint's nftables elements at once failed ({}); restoring them one by one", describe(&e)));
            for ep in endpoints {
                if let Err(e) = k.firewall().restore(&firewall_elements(ep)) {
                    log::line(&format!("{}: could not restore its nftables elements: {}; stop the container or run `nethook gc`", ep.id, describe(&e)));
                }
            }
        }
    }
    // Services' chains and maps went with the table: back with their members, in one
    // batch (none when there is no service).
    let services = crate::core::services::fw_all(store)?;
    if !services.is_empty() {
        k.firewall().restore_services(&services)?;
    }
    k.firewall().guard_forwarding(owns_forwarding(store))?;
    // Only turned on here: a hook's restore follows a re-created table, where the element
    // is gone anyway, and one more batch would be one more netfilter socket for the hook
    // to hand over at exit. `gc` turns it off when nethook no longer owns IPv6 forwarding.
    if owns_forwarding6(store) {
        k.firewall().guard_forwarding6(true)?;
    }
    Ok(())
}

/// Does the endpoint publish a port on a loopback address (which needs route_localnet)?
pub fn publishes_on_loopback(ep: &Endpoint) -> bool {
    ep.ports
        .iter()
        .any(|p| p.host_ip.is_some_and(|ip| ip.is_loopback()))
}

/// Sets `route_localnet` on `bridge` exactly when one of the network's endpoints publishes
/// on 127.0.0.1. Returns whether the value changed.
pub fn sync_route_localnet(
    store: &Store,
    k: &dyn Kernel,
    network: &str,
    bridge: &str,
) -> Result<bool, RecoverError> {
    let wanted = store
        .list_endpoints_lenient()?
        .0
        .iter()
        .any(|ep| ep.network == network && publishes_on_loopback(ep));
    Ok(k.sysctls().route_localnet(bridge, wanted)?)
}
