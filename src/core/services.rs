//! `nethook service create/rm/ls/inspect`: a service's definition, its VIPs from the
//! network's service range, its host-port claims, its nftables objects and the route that
//! brings host traffic for the range to the bridge. Membership changes ride in containers'
//! own batches (`core::members`, attach and detach).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use crate::core::members::MemberPlan;
use crate::core::network_update::host_routes;
use crate::core::recover;
use crate::firewall::{self, FirewallError};
use crate::kernel::hostports::HostPortsError;
use crate::kernel::link::LinkError;
use crate::kernel::seam::Kernel;
use crate::model::network::{free_vip4, free_vip6, overlaps, Network, NetworkError};
use crate::model::service::{Service, ServicePort, ServicePublish};
use crate::state::claims::{Claim, ClaimError, Claims};
use crate::state::{service_owner, Member, Members, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceOpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    HostPorts(#[from] HostPortsError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Recover(#[from] recover::RecoverError),
    #[error(
        "network {network} uses the {driver} driver; services are built for bridge networks so far"
    )]
    NotBridge { network: String, driver: String },
    #[error("service name {name} is the DNS name of container {holder} on network {network}; pick another service name or stop {holder}")]
    NameHeld {
        name: String,
        network: String,
        holder: String,
    },
    #[error("--vip {vip}: {reason}")]
    BadVip { vip: IpAddr, reason: String },
    #[error("network {network}'s service range {range} is full; give it a larger one with `nethook network update {network} --service-range CIDR`")]
    RangeFull { network: String, range: String },
    #[error("no free service range left in 10.78.0.0/16 (or fd96::/48) for network {network}; give one with `nethook network update {network} --service-range CIDR`")]
    NoFreeRange { network: String },
    #[error("host port {port}/{proto} is in use on the host by {holder}, listening on {address}; pick another --publish port")]
    HostPortInUse {
        proto: String,
        port: u16,
        address: String,
        holder: String,
    },
    #[error("service {service} is on network {network}, not {wanted}; a member must be on its service's network")]
    WrongNetwork {
        service: String,
        network: String,
        wanted: String,
    },
}

/// What `service create` asks for.
#[derive(Debug, Clone)]
pub struct ServiceRequest {
    pub name: String,
    pub network: String,
    pub ports: Vec<ServicePort>,
    pub vips: Vec<IpAddr>,
    pub publish: Vec<ServicePublish>,
    pub affinity: Option<u32>,
}

/// What `service create` did besides recording the service.
#[derive(Debug, Default)]
pub struct Created {
    pub service: Option<Service>,
    /// Service ranges chosen for the network on the way.
    pub ranges_chosen: Vec<IpNetwork>,
}

/// The firewall's view of a service.
pub fn fw_service(s: &Service) -> firewall::Service {
    firewall::Service {
        name: s.name.clone(),
        vip4: s.vip4,
        vip6: s.vip6,
        ports: s
            .ports
            .iter()
            .map(|p| firewall::ServicePort {
                proto: p.proto,
                port: p.port,
                target_port: p.target,
            })
            .collect(),
        publish: s
            .publish
            .iter()
            .map(|p| firewall::ServicePublish {
                host_ip: p.host_ip,
                proto: p.proto,
                host_port: p.host_port,
                target_port: s.target_of(p.proto, p.port).unwrap_or(p.port),
            })
            .collect(),
        affinity: s.affinity,
    }
}

fn fw_slot(slot: u32, m: &Member) -> firewall::Slot {
    firewall::Slot {
        slot,
        v4: m.v4,
        v6: m.v6,
    }
}

fn fw_slots(members: &Members) -> Vec<firewall::Slot> {
    members
        .0
        .iter()
        .enumerate()
        .map(|(i, m)| fw_slot(i as u32, m))
        .collect()
}

/// The firewall's view of a member change of service `s`.
pub fn fw_change_of(s: &Service, plan: &MemberPlan) -> firewall::MemberChange {
    firewall::MemberChange {
        service: fw_service(s),
        after: plan.after,
        set: plan.set.iter().map(|(slot, m)| fw_slot(*slot, m)).collect(),
        unset: plan.unset.clone(),
    }
}

/// The firewall's view of a member change; `None` when the service is gone.
pub fn fw_change(
    store: &Store,
    plan: &MemberPlan,
) -> Result<Option<firewall::MemberChange>, StoreError> {
    Ok(store
        .load_service(&plan.service)?
        .map(|s| fw_change_of(&s, plan)))
}

/// Every service with its members, for `restore_services` after a table was re-created.
pub fn fw_all(store: &Store) -> Result<Vec<(firewall::Service, Vec<firewall::Slot>)>, StoreError> {
    store
        .list_services()?
        .iter()
        .map(|s| Ok((fw_service(s), fw_slots(&store.members(&s.name)?))))
        .collect()
}

/// Checks that `ep`'s network may have members of `services` (each exists, on it).
pub fn check_membership(
    store: &Store,
    network: &str,
    services: &[String],
) -> Result<(), ServiceOpError> {
    for name in services {
        let s = store.service(name)?;
        if s.network != network {
            return Err(ServiceOpError::WrongNetwork {
                service: s.name,
                network: s.network,
                wanted: network.to_owned(),
            });
        }
    }
    Ok(())
}

/// Everything service ranges must not overlap: every network's subnets and ranges, and the
/// host's routes (but for nethook's own routes to service ranges).
fn taken_ranges(
    store: &Store,
    k: &dyn Kernel,
    net: &Network,
) -> Result<Vec<IpNetwork>, ServiceOpError> {
    let networks = store.list_networks()?;
    let mut taken = Vec::new();
    for other in &networks {
        taken.extend(other.subnets());
        if other.name != net.name {
            taken.extend(other.service_ranges());
        }
    }
    let own: Vec<IpNetwork> = networks.iter().flat_map(|n| n.service_ranges()).collect();
    taken.extend(host_routes(k)?.into_iter().filter(|r| !own.contains(r)));
    Ok(taken)
}

/// Picks (or checks) the VIPs of a new service, one per family of the network.
fn choose_vips(
    store: &Store,
    net: &Network,
    asked: &[IpAddr],
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), ServiceOpError> {
    let services = store.list_services()?;
    let taken4: Vec<Ipv4Addr> = services.iter().filter_map(|s| s.vip4).collect();
    let taken6: Vec<Ipv6Addr> = services.iter().filter_map(|s| s.vip6).collect();
    let bad = |vip: IpAddr, reason: String| ServiceOpError::BadVip { vip, reason };
    let mut vip4 = None;
    let mut vip6 = None;
    for &vip in asked {
        let range = match vip {
            IpAddr::V4(_) => net.service_range4.map(IpNetwork::V4),
            IpAddr::V6(_) => net.service_range6.map(IpNetwork::V6),
        };
        let Some(r) = range else {
            let family = if vip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(bad(
                vip,
                format!("network {} has no {family} service range", net.name),
            ));
        };
        // An IPv4 range's broadcast address is no host's either.
        let unusable =
            vip == r.network() || matches!(r, IpNetwork::V4(r4) if vip == r4.broadcast());
        if !r.contains(vip) || unusable {
            return Err(bad(
                vip,
                format!(
                    "not a usable address of network {}'s service range {r}",
                    net.name
                ),
            ));
        }
        if let Some(holder) = services.iter().find(|s| s.vips().contains(&vip)) {
            return Err(bad(
                vip,
                format!("already the VIP of service {}", holder.name),
            ));
        }
        match vip {
            IpAddr::V4(a) => vip4 = Some(a),
            IpAddr::V6(a) => vip6 = Some(a),
        }
    }
    let full = |r: String| ServiceOpError::RangeFull {
        network: net.name.clone(),
        range: r,
    };
    if vip4.is_none() {
        if let Some(r) = net.service_range4 {
            vip4 = Some(free_vip4(r, &taken4).ok_or_else(|| full(r.to_string()))?);
        }
    }
    if vip6.is_none() {
        if let Some(r) = net.service_range6 {
            vip6 = Some(free_vip6(r, &taken6).ok_or_else(|| full(r.to_string()))?);
        }
    }
    Ok((vip4, vip6))
}

fn claims_of(s: &Service) -> Vec<Claim> {
    s.publish
        .iter()
        .map(|p| Claim {
            proto: p.proto,
            host_ip: p.host_ip,
            port: p.host_port,
        })
        .collect()
}

/// Records and installs a new service. On error nothing of it is left.
pub fn create(
    store: &Store,
    k: &dyn Kernel,
    req: &ServiceRequest,
) -> Result<Created, ServiceOpError> {
    let _lock = store.lock()?;
    let mut net = store.load_network(&req.network)?;
    if !net.driver.is_bridge() {
        return Err(ServiceOpError::NotBridge {
            network: net.name.clone(),
            driver: net.driver.to_string(),
        });
    }
    if store.load_service(&req.name)?.is_some() {
        return Err(StoreError::ServiceExists {
            name: req.name.clone(),
        }
        .into());
    }
    // Its name is also its name in the network's resolver.
    if let Some(holder) = store.name_holder(&net.name, &req.name)? {
        return Err(ServiceOpError::NameHeld {
            name: req.name.clone(),
            network: net.name.clone(),
            holder,
        });
    }
    let taken = taken_ranges(store, k, &net)?;
    let missing_family = (net.ipv4.is_some() && net.service_range4.is_none())
        || (net.ipv6.is_some() && net.service_range6.is_none());
    let ranges_chosen = if missing_family {
        let chosen = net.choose_service_ranges(&taken);
        if net.service_ranges().is_empty() {
            return Err(ServiceOpError::NoFreeRange {
                network: net.name.clone(),
            });
        }
        chosen
    } else {
        Vec::new()
    };
    for r in net.service_ranges() {
        if let Some(t) = taken.iter().find(|t| overlaps(**t, r)) {
            return Err(NetworkError::BadServiceRange {
                range: r.to_string(),
                reason: format!("overlaps {t} (a network or a host route); pick another with `nethook network update {} --service-range CIDR`", net.name),
            }
            .into());
        }
    }
    let (vip4, vip6) = choose_vips(store, &net, &req.vips)?;
    let service = Service {
        name: req.name.clone(),
        network: net.name.clone(),
        ports: req.ports.clone(),
        vip4,
        vip6,
        publish: req.publish.clone(),
        affinity: req.affinity,
    };
    check_host_sockets(k, &service)?;
    let before = store.load_network(&req.network)?;
    if !ranges_chosen.is_empty() {
        store.save_network(&net)?;
    }
    // A failure from here on leaves the network as it was (a default network without a
    // file gets one, equal to the built-in definition).
    let undo_ranges = || {
        if !ranges_chosen.is_empty() {
            let _ = store.save_network(&before);
        }
    };
    if let Err(e) = store.create_service(&service) {
        undo_ranges();
        return Err(e.into());
    }
    let owner = service_owner(&service.name);
    let claims = claims_of(&service);
    if let Err(e) = Claims::new(store.run_dir()).claim(&owner, &claims, |o| store.owner_is_live(o))
    {
        let _ = store.remove_service(&service.name);
        undo_ranges();
        return Err(e.into());
    }
    if let Err(e) = install(store, k, &net, &service) {
        Claims::new(store.run_dir()).release(&owner, &claims);
        let _ = k.firewall().delete_service(&fw_service(&service));
        let _ = store.remove_service(&service.name);
        undo_ranges();
        return Err(e);
    }
    sync_names(store, k, &service.network);
    Ok(Created {
        service: Some(service),
        ranges_chosen,
    })
}

/// The kernel side of a new service: the skeleton, its objects, and the range's route on the
/// bridge when the bridge exists (else the bridge gets it when it is made).
fn install(
    store: &Store,
    k: &dyn Kernel,
    net: &Network,
    s: &Service,
) -> Result<(), ServiceOpError> {
    // As a setup does: the skeleton is there but for the first time; when it is not, making
    // it restores every recorded service, this one included.
    match k.firewall().create_service(&fw_service(s)) {
        Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => {
            recover::ensure_skeleton(store, k, None)?
        }
        other => other?,
    }
    if k.links().link_present(&net.bridge)? {
        for r in net.service_ranges() {
            k.links().ensure_device_route(&net.bridge, r)?;
        }
    }
    Ok(())
}

fn check_host_sockets(k: &dyn Kernel, s: &Service) -> Result<(), ServiceOpError> {
    use std::net::{Ipv4Addr as V4, Ipv6Addr as V6};
    for p in &s.publish {
        let addrs: Vec<IpAddr> = match p.host_ip {
            Some(ip) => vec![ip],
            None => [
                s.vip4.map(|_| IpAddr::V4(V4::UNSPECIFIED)),
                s.vip6.map(|_| IpAddr::V6(V6::UNSPECIFIED)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        for addr in addrs {
            if let Some(busy) = k.host_ports().busy(p.proto, addr, p.host_port)? {
                return Err(ServiceOpError::HostPortInUse {
                    proto: p.proto.to_string(),
                    port: p.host_port,
                    address: busy.address,
                    holder: busy.holder,
                });
            }
        }
    }
    Ok(())
}

/// Removes a service: its objects, claims, members file and definition. Its members keep
/// running; their teardown skips the service. False when there was none.
pub fn remove(store: &Store, k: &dyn Kernel, name: &str) -> Result<bool, ServiceOpError> {
    let _lock = store.lock()?;
    let Some(s) = store.load_service(name)? else {
        return Ok(false);
    };
    k.firewall().delete_service(&fw_service(&s))?;
    Claims::new(store.run_dir()).release(&service_owner(&s.name), &claims_of(&s));
    store.remove_service(&s.name)?;
    sync_names(store, k, &s.network);
    Ok(true)
}

/// A service's name is answered on its network's resolver; a resolver that does not take
/// the change is told at its next start (it starts from the records).
fn sync_names(store: &Store, k: &dyn Kernel, network: &str) {
    if let Err(e) = crate::core::names::network_sync(store, k, network) {
        crate::log::line(&format!(
            "could not update the DNS resolver of network {network}: {e}"
        ));
    }
}

/// A service and its members, for `ls` and `inspect`.
pub fn list(store: &Store) -> Result<Vec<(Service, Members)>, ServiceOpError> {
    let mut out = Vec::new();
    for s in store.list_services()? {
        let m = store.members(&s.name)?;
        out.push((s, m));
    }
    Ok(out)
}

/// `gc`: members whose container has no record any more (its teardown never ran, and its
/// record was removed or moved aside) leave their services. Returns what it did.
pub fn sweep_members(
    store: &Store,
    k: &dyn Kernel,
    dry_run: bool,
) -> Result<Vec<String>, ServiceOpError> {
    let mut actions = Vec::new();
    for s in store.list_services()? {
        let mut members = store.members(&s.name)?;
        let gone: Vec<String> = members
            .0
            .iter()
            .filter(|m| !store.has_endpoint(&m.key))
            .map(|m| m.key.clone())
            .collect();
        for key in gone {
            actions.push(format!(
                "take {key} out of service {}: it has no endpoint record",
                s.name
            ));
            if dry_run {
                continue;
            }
            if let Some(plan) = crate::core::members::leave(&mut members, &s.name, &key) {
                // The file after the batch: a failed one leaves the member for the next gc.
                if let Some(change) = fw_change(store, &plan)? {
                    let elements = firewall::Elements {
                        services: vec![change],
                        ..Default::default()
                    };
                    match k.firewall().delete(&elements) {
                        // The service's objects are gone: restore rebuilds them from the file.
                        Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => {}
                        other => other?,
                    }
                }
                store.save_members(&s.name, &members)?;
            }
        }
    }
    Ok(actions)
}
