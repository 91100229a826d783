//! createRuntime: plan, record, apply, and on any failure undo what was applied.
//!
//! The endpoint record and the address are written *before* the kernel is touched
//! (a write-ahead record): if the hook is killed half-way, the record names every
//! object that may exist, and `gc` or poststop can remove them.

use std::time::{Duration, Instant};

use crate::core::detach;
use crate::core::elements::firewall_elements;
use crate::core::members;
use crate::core::names::{self, NameError};
use crate::core::plan::{plan_endpoint, PlanError};
use crate::core::recover::{self, RecoverError};
use crate::core::request::Request;
use crate::core::services::{self as svc, ServiceOpError};
use crate::driver::{self, AttachContext, Driver, DriverError, DriverKernel};
use crate::failpoint::Injected;
use crate::firewall::{Elements, FirewallError};
use crate::kernel::hostports::HostPortsError;
use crate::kernel::link::{LinkError, VethState};
use crate::kernel::netns::{Netns, NetnsError};
use crate::kernel::seam::Kernel;
use crate::kernel::sysctl::SysctlError;
use crate::log;
use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::model::ipam::Allocations;
use crate::model::mac::Mac;
use crate::model::network::{DriverKind, Network};
use crate::model::ports::Proto;
use crate::state::claims::{claims_of, Claim, ClaimError, Claims};
use crate::state::{Deletion, Lock, Store, StoreError};
use crate::timing::Steps;

/// How long a setup waits for a teardown it would run into (see `lock_for`). One takes
/// ~20–50 ms; a stuck one is the caller's to hear about, not to wait for forever.
const DELETION_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("setup needs the container's network namespace")]
    NoNetns,
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Injected(#[from] Injected),
    #[error(transparent)]
    Reclaim(#[from] crate::core::detach::TeardownError),
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error(transparent)]
    HostPorts(#[from] HostPortsError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("host port {port}/{proto} is in use on the host by {holder}, listening on {address}; publishing it would take its connections: pick another host port")]
    HostPortInUse {
        proto: Proto,
        port: u16,
        address: String,
        holder: String,
    },
    #[error("MAC {mac} is already used on network {network} by {holder}; pick another nethook.mac or leave it unset")]
    MacTaken {
        mac: Mac,
        network: String,
        holder: String,
    },
    #[error("host port {port} is already published by container {owner}; pick another host port or stop {owner}")]
    PortTaken { port: String, owner: String },
    #[error("container {id} already has an endpoint ({address} on {network}); a second createRuntime for one id is refused: stop it first or run `nethook gc`")]
    AlreadyExists {
        id: String,
        network: String,
        address: String,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Service(#[from] ServiceOpError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("the teardown of container {id} is still under way after {}s; try again in a moment, or run `nethook gc` if it stays", DELETION_WAIT.as_secs())]
    StillDeleting { id: String },
}

/// The store's lock, once no teardown this setup would run into is under way: one of the
/// same key (a container restarted under its id, a CNI DEL then ADD), or of the holder of
/// the static address asked for. Their records go only when their veth has, and a setup
/// must not fail on what is about to be gone. One `open` when there is nothing to wait for.
fn lock_for(store: &Store, req: &Request) -> Result<Lock, SetupError> {
    let deadline = Instant::now() + DELETION_WAIT;
    loop {
        let lock = store.lock()?;
        let Some(id) = deletion_in_the_way(store, req)? else {
            return Ok(lock);
        };
        drop(lock);
        if !store.wait_for_deletion(&id, deadline)? {
            return Err(SetupError::StillDeleting { id: id.to_string() });
        }
    }
}

fn deletion_in_the_way(store: &Store, req: &Request) -> Result<Option<ContainerId>, StoreError> {
    if store.deletion(&req.id)? == Deletion::Running {
        return Ok(Some(req.id.clone()));
    }
    if req.options.ip.is_none() && req.options.ip6.is_none() {
        return Ok(None);
    }
    let ipam = store.ipam(&req.options.network)?;
    let holders = [
        req.options
            .ip
            .map(|ip| ipam.owner(ip))
            .transpose()?
            .flatten(),
        req.options
            .ip6
            .map(|ip| ipam.owner(ip))
            .transpose()?
            .flatten(),
    ];
    for owner in holders.into_iter().flatten() {
        if let Ok(id) = ContainerId::parse_key(&owner) {
            if store.deletion(&id)? == Deletion::Running {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// Gives the container its network. On error nothing of this attempt is left behind.
pub fn setup(store: &Store, k: &dyn Kernel, req: &Request) -> Result<Endpoint, SetupError> {
    let mut steps = Steps::from_env();
    let netns = Netns::open(req.netns.as_deref().ok_or(SetupError::NoNetns)?)?;
    netns.ensure_not_own()?;
    let network = store.load_network(&req.options.network)?;
    let driver = driver::of(&network);
    driver.validate(&network)?;
    steps.mark("netns+network");

    let _lock = lock_for(store, req)?;
    steps.mark("lock");
    svc::check_membership(store, &network.name, &req.options.services)?;
    if let Some(existing) = store.load_endpoint(&req.id)? {
        // A record whose host veth is gone belongs to an earlier container with this id
        // that died without poststop (a runtime that skips it when start fails): reclaim
        // it, as `gc` would; so is one whose teardown was abandoned half-way. A live one
        // means a second createRuntime: refuse. A link of that name that is not this
        // record's (another container's) does not count.
        if crate::driver::for_kind(existing.driver).link_state(DriverKernel::new(k), &existing)?
            == VethState::Ours
            && store.deletion(&req.id)? != Deletion::Abandoned
        {
            return Err(SetupError::AlreadyExists {
                id: req.id.to_string(),
                address: existing.address_text(),
                network: existing.network,
            });
        }
        detach::release(store, k, &existing)?;
    }
    let ipam = store.ipam(&network.name)?;
    let (mut endpoint, leases) = plan_endpoint(req, &network, &ipam)?;
    if req.options.mac.is_some() {
        check_mac_free(store, &endpoint)?;
    }
    let claims = claims_of(&endpoint.ports);
    check_host_sockets(k, &endpoint, &claims)?;
    // Before the record, which holds the name that stays (a default one may be dropped).
    names::claim(store, &network, &mut endpoint, req.options.name.is_some())?;
    ipam.record_leases(&leases, &req.id)?;
    if let Err(e) = store.save_endpoint(&endpoint) {
        forget(store, k, &endpoint, &ipam);
        return Err(e.into());
    }
    let claimed = Claims::new(store.run_dir()).claim(endpoint.id.as_str(), &claims, |owner| {
        store.owner_is_live(owner)
    });
    if let Err(e) = claimed {
        forget(store, k, &endpoint, &ipam);
        return Err(e.into());
    }
    steps.mark("plan+record");

    let mut undo = Undo::default();
    match apply(
        store,
        k,
        driver,
        &network,
        &mut endpoint,
        &netns,
        &mut undo,
        &mut steps,
    ) {
        Ok(()) => {
            steps.report("setup");
            Ok(endpoint)
        }
        Err(e) => {
            undo.run(k);
            forget(store, k, &endpoint, &ipam);
            Err(name_port_owner(store, e))
        }
    }
}

/// Turns the kernel's "element exists" into which container holds the host port.
fn name_port_owner(store: &Store, e: SetupError) -> SetupError {
    let SetupError::Firewall(FirewallError::PortTaken {
        proto,
        host_ip,
        host_port,
    }) = e
    else {
        return e;
    };
    let port = match host_ip {
        Some(std::net::IpAddr::V4(ip)) => format!("{ip}:{host_port}/{proto}"),
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{host_port}/{proto}"),
        None => format!("{host_port}/{proto}"),
    };
    let owner = owner_of(store, proto, host_ip, host_port)
        .unwrap_or_else(|| "outside nethook's records (run `nethook gc`)".into());
    SetupError::PortTaken { port, owner }
}

fn owner_of(
    store: &Store,
    proto: Proto,
    host_ip: Option<std::net::IpAddr>,
    host_port: u16,
) -> Option<String> {
    let endpoints = store.list_endpoints_lenient().ok()?.0;
    endpoints
        .into_iter()
        .find(|ep| {
            ep.ports.iter().any(|s| {
                s.proto == proto && s.host_ip == host_ip && s.pairs().any(|(h, _)| h == host_port)
            })
        })
        .map(|ep| ep.id.to_string())
}

/// A MAC given by annotation must not be one another endpoint of the network holds: the
/// bridge would send that endpoint's frames to the newcomer. Derived MACs (`02:4e:` + the
/// IPv4 address, or on an IPv6-only network + the IPv6 address's last 32 bits, which `plan`
/// keeps apart with `Network::mac_window`) are unique per address, and `plan` refuses
/// explicit ones in that range, so only explicit ones need this look at the records.
fn check_mac_free(store: &Store, ep: &Endpoint) -> Result<(), SetupError> {
    let holder = store
        .list_endpoints_lenient()?
        .0
        .into_iter()
        .find(|other| other.network == ep.network && other.id != ep.id && other.mac == ep.mac);
    match holder {
        Some(other) => Err(SetupError::MacTaken {
            mac: ep.mac,
            network: ep.network.clone(),
            holder: format!("container {}", other.id),
        }),
        None => Ok(()),
    }
}

/// Refuses a host port a host process already serves (see `hostports`), in each family
/// the publish captures: a specific address its own, every address each family `ep` has.
fn check_host_sockets(k: &dyn Kernel, ep: &Endpoint, claims: &[Claim]) -> Result<(), SetupError> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let every = [
        ep.ipv4.map(|_| IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ep.ipv6.map(|_| IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    ];
    for claim in claims {
        let addrs = match claim.host_ip {
            Some(ip) => vec![ip],
            None => every.iter().flatten().copied().collect(),
        };
        for addr in addrs {
            let Some(busy) = k.host_ports().busy(claim.proto, addr, claim.port)? else {
                continue;
            };
            return Err(SetupError::HostPortInUse {
                proto: claim.proto,
                port: claim.port,
                address: busy.address,
                holder: busy.holder,
            });
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply(
    store: &Store,
    k: &dyn Kernel,
    driver: &dyn Driver,
    net: &Network,
    ep: &mut Endpoint,
    netns: &Netns,
    undo: &mut Undo,
    steps: &mut Steps,
) -> Result<(), SetupError> {
    k.failpoint("recorded")?;
    let link = driver.ensure_network(DriverKernel::new(k), net)?;
    // A macvlan container's traffic leaves by the parent, never through the host's routing.
    if net.driver != DriverKind::Macvlan {
        if ep.ipv4.is_some() {
            recover::ensure_forwarding(store, k, Some(&ep.id))?;
        }
        if ep.ipv6.is_some() {
            recover::ensure_forwarding6(store, k, Some(&ep.id))?;
        }
    }
    // On a bridge network the switch is the bridge's (a routed driver sets its veth's).
    if recover::publishes_on_loopback(ep) && net.driver.is_bridge() {
        k.sysctls().route_localnet(&net.bridge, true)?;
    }
    steps.mark("bridge");
    k.failpoint("bridge")?;

    let record = |ep: &Endpoint| store.save_endpoint(ep);
    let mut cx = AttachContext {
        kernel: DriverKernel::new(k),
        netns,
        record: &record,
        created: &mut undo.links,
        steps,
    };
    driver.attach(&mut cx, net, link, ep)?;

    let mut elements = firewall_elements(ep);
    // Its services' member changes ride in its own batch: it is a member from the moment
    // this batch lands, and not before.
    for plan in members::join_all(store, ep)? {
        elements.services.extend(svc::fw_change(store, &plan)?);
    }
    if !elements.is_empty() {
        // The skeleton is there for every setup but the first, so the elements go in first;
        // only when the batch names a table or set that is missing (ENOENT, nothing applied)
        // is the missing part created and the batch sent again. Checking first would cost
        // two more netlink round trips on every setup.
        // A missing skeleton after earlier setups means another tool flushed the ruleset:
        // every other live endpoint's elements went with it and come back here too.
        match k.firewall().add(&elements) {
            Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => {
                recover::ensure_skeleton(store, k, Some(&ep.id))?;
                // The tables were there but one of its services' chains or maps was not
                // (deleted by hand): every service comes back from the records first.
                if !elements.services.is_empty() {
                    k.firewall().restore_services(&svc::fw_all(store)?)?;
                }
                k.firewall().add(&elements)?;
            }
            other => other?,
        }
        undo.elements = Some(elements);
    }
    steps.mark("firewall");
    k.failpoint("firewall")?;
    // Resolvable when createRuntime returns.
    names::joined_sync(store, k, net, ep)?;
    Ok(())
}

/// Kernel objects this attempt created, undone in reverse order on failure.
#[derive(Default)]
pub(crate) struct Undo {
    pub(crate) links: Vec<String>,
    /// Only this container's own elements are undone (`Elements::own`: ports, anti-spoofing):
    /// the per-network ones other endpoints share stay (forget() drops them when this was
    /// the network's last address).
    pub(crate) elements: Option<Elements>,
}

impl Undo {
    pub(crate) fn run(self, k: &dyn Kernel) {
        if let Some(elements) = self.elements {
            if let Err(e) = k.firewall().delete(&elements.own()) {
                log_undo_failure("its nftables elements", &e);
            }
        }
        for name in self.links.iter().rev() {
            if let Err(e) = k.links().delete(name) {
                log_undo_failure(name, &e);
            }
        }
    }
}

fn log_undo_failure(what: &str, e: &dyn std::error::Error) {
    log::line(&format!(
        "rollback could not remove {what}: {e}; run `nethook gc`"
    ));
}

/// Drops the write-ahead record and the address of a setup that did not complete, and its
/// service memberships and names.
fn forget(store: &Store, k: &dyn Kernel, ep: &Endpoint, ipam: &crate::state::IpamDir) {
    Claims::new(store.run_dir()).release(ep.id.as_str(), &claims_of(&ep.ports));
    names::release(store, ep);
    if let Err(e) = detach::leave_services(store, k, ep) {
        log::line(&format!(
            "rollback could not take {} out of its services: {e}; run `nethook gc`",
            ep.id
        ));
    }
    if let Err(e) = detach::forget(store, k, ep, ipam) {
        log::line(&format!(
            "rollback could not drop the record of {}: {e}; run `nethook gc`",
            ep.id
        ));
    }
}
