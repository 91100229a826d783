//! createRuntime: plan, record, apply, and on any failure undo what was applied.
//!
//! The endpoint record and the address are written *before* the kernel is touched
//! (a write-ahead record): if the hook is killed half-way, the record names every
//! object that may exist, and `gc` or poststop can remove them.

use std::os::fd::AsFd;
use std::thread::sleep;
use std::time::Duration;

use crate::core::detach;
use crate::core::elements::firewall_elements;
use crate::core::plan::{plan_endpoint, PlanError};
use crate::core::recover::{self, RecoverError};
use crate::core::request::Request;
use crate::failpoint::{self, Injected};
use crate::firewall::{self, Elements, FirewallError};
use crate::kernel::hostports::{self, HostPortsError};
use crate::kernel::link::{self, HostVeth, LinkError, Rtnl, VethSpec, VethState};
use crate::kernel::netns::{Netns, NetnsError};
use crate::kernel::sysctl::{self, SysctlError};
use crate::log;
use crate::model::endpoint::Endpoint;
use crate::model::mac::Mac;
use crate::model::network::Network;
use crate::model::ports::Proto;
use crate::state::claims::{claims_of, Claim, ClaimError, Claims};
use crate::state::{Store, StoreError};
use crate::timing::Steps;

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
    #[error("host interface {name} already exists; a link of an earlier container with this id is left over: run `nethook gc`")]
    HostLinkExists { name: String },
    #[error("interface {name} already exists in the container's network namespace; set nethook.ifname to another name")]
    PeerExists { name: String },
    #[error("network {network} is full: its bridge {bridge} already has {max} ports, the most a Linux bridge takes; put further containers on another network (`nethook network create`, annotation nethook.network)", max = MAX_BRIDGE_PORTS)]
    BridgeFull { network: String, bridge: String },
}

/// A Linux bridge numbers its ports with 10 bits and never uses 0 (`BR_MAX_PORTS`); the
/// kernel answers EXFULL to one more.
const MAX_BRIDGE_PORTS: usize = 1023;

/// Gives the container its network. On error nothing of this attempt is left behind.
pub fn setup(store: &Store, req: &Request) -> Result<Endpoint, SetupError> {
    let mut steps = Steps::from_env();
    let netns = Netns::open(req.netns.as_deref().ok_or(SetupError::NoNetns)?)?;
    netns.ensure_not_own()?;
    let network = store.load_network(&req.options.network)?;
    steps.mark("netns+network");

    let _lock = store.lock()?;
    steps.mark("lock");
    let rtnl = Rtnl::open()?;
    if let Some(existing) = store.load_endpoint(&req.id)? {
        // A record whose host veth is gone belongs to an earlier container with this id
        // that died without poststop (a runtime that skips it when start fails): reclaim
        // it, as `gc` would. A live one means a second createRuntime: refuse. A link of
        // that name that is not this record's (another container's) does not count.
        if rtnl.veth_state(&HostVeth::of(&existing))? == VethState::Ours {
            return Err(SetupError::AlreadyExists {
                id: req.id.to_string(),
                network: existing.network,
                address: existing
                    .ipv4
                    .map(|a| a.address.to_string())
                    .unwrap_or_default(),
            });
        }
        detach::release(store, &rtnl, &existing)?;
    }
    let ipam = store.ipam(&network.name)?;
    let (mut endpoint, lease) = plan_endpoint(req, &network, &ipam)?;
    if req.options.mac.is_some() {
        check_mac_free(store, &endpoint)?;
    }
    let claims = claims_of(&endpoint.ports);
    check_host_sockets(&claims)?;
    ipam.record(&lease, &req.id)?;
    if let Err(e) = store.save_endpoint(&endpoint) {
        forget(store, &endpoint, &ipam);
        return Err(e.into());
    }
    let claimed = Claims::new(store.run_dir())
        .claim(&endpoint.id, &claims, |owner| store.has_endpoint(owner));
    if let Err(e) = claimed {
        forget(store, &endpoint, &ipam);
        return Err(e.into());
    }
    steps.mark("plan+record");

    let mut undo = Undo::default();
    match apply(
        store,
        &rtnl,
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
            undo.run(&rtnl);
            forget(store, &endpoint, &ipam);
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
        Some(ip) => format!("{ip}:{host_port}/{proto}"),
        None => format!("{host_port}/{proto}"),
    };
    let owner = owner_of(store, proto, host_ip, host_port)
        .unwrap_or_else(|| "outside nethook's records (run `nethook gc`)".into());
    SetupError::PortTaken { port, owner }
}

fn owner_of(
    store: &Store,
    proto: Proto,
    host_ip: Option<std::net::Ipv4Addr>,
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
/// address) are unique per address, and `plan` refuses explicit ones in that range, so
/// only explicit ones need this look at the records.
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

/// Refuses a host port a host process already serves (see `hostports`).
fn check_host_sockets(claims: &[Claim]) -> Result<(), SetupError> {
    for claim in claims {
        if let Some(busy) = hostports::busy(claim.proto, claim.host_ip, claim.port)? {
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

fn apply(
    store: &Store,
    rtnl: &Rtnl,
    net: &Network,
    ep: &mut Endpoint,
    netns: &Netns,
    undo: &mut Undo,
    steps: &mut Steps,
) -> Result<(), SetupError> {
    failpoint::hit("recorded")?;
    let bridge_mac = Mac::from_ipv4(net.ipv4.gateway);
    let bridge_index = rtnl.ensure_bridge(
        &net.bridge,
        bridge_mac,
        net.ipv4.gateway,
        net.ipv4.subnet.prefix(),
        &net.owner_tag(),
    )?;
    recover::ensure_forwarding(store, Some(&ep.id))?;
    if recover::publishes_on_loopback(ep) {
        sysctl::route_localnet(&net.bridge, true)?;
    }
    steps.mark("bridge");
    failpoint::hit("bridge")?;

    create_veth(store, rtnl, ep, net, bridge_index, netns)?;
    undo.links.push(ep.host_interface.clone());
    sysctl::disable_ipv6(&ep.host_interface)?;
    steps.mark("veth");
    failpoint::hit("veth")?;

    if let Some(v4) = ep.ipv4 {
        // Only the socket is made inside the namespace; the calls on it act there from here.
        // Nothing under /proc/sys is touched in there: each namespace that looks up
        // /proc/sys/net adds an entry that every later lookup of that path, on the host too,
        // is compared against, so the cost would grow with every container running.
        let sock = netns.enter_briefly(link::inet_socket)??;
        link::configure_container(
            sock.as_fd(),
            &ep.interface,
            v4.address,
            v4.prefix,
            v4.gateway,
        )?;
    }
    steps.mark("container");
    failpoint::hit("addresses")?;

    let elements = firewall_elements(ep);
    if !elements.is_empty() {
        // The skeleton is there for every setup but the first, so the elements go in first;
        // only when the batch names a table or set that is missing (ENOENT, nothing applied)
        // is the missing part created and the batch sent again. Checking first would cost
        // two more netlink round trips on every setup.
        // A missing skeleton after earlier setups means another tool flushed the ruleset:
        // every other live endpoint's elements went with it and come back here too.
        match firewall::add(&elements) {
            Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => {
                recover::ensure_skeleton(store, Some(&ep.id))?;
                firewall::add(&elements)?;
            }
            other => other?,
        }
        undo.elements = Some(elements);
    }
    steps.mark("firewall");
    failpoint::hit("firewall")?;
    Ok(())
}

/// Creates the veth pair, telling apart the two names that can clash and a bridge with no
/// port left. The kernel frees a deleted veth asynchronously, so a host name that this
/// container's own earlier veth still holds right after a teardown of the same id gets a few
/// short retries before it is reported. A host name held by any other link (another
/// container's veth whose name collides, or a link planted there) is left to it: the
/// container takes its id's second name instead, recorded before it is created.
fn create_veth(
    store: &Store,
    rtnl: &Rtnl,
    ep: &mut Endpoint,
    net: &Network,
    bridge_index: u32,
    netns: &Netns,
) -> Result<(), SetupError> {
    let owner_tag = ep.id.owner_tag();
    let mut attempts = 0;
    loop {
        let spec = VethSpec {
            host_name: &ep.host_interface,
            bridge_index,
            peer_name: &ep.interface,
            peer_mac: ep.mac,
            owner_tag: &owner_tag,
        };
        match rtnl.create_veth(&spec, netns) {
            Ok(()) => return Ok(()),
            Err(e) if e.errno() == Some(nix::libc::EEXIST) => {
                match rtnl.veth_state(&HostVeth::of(ep))? {
                    VethState::Gone => {
                        return Err(SetupError::PeerExists {
                            name: ep.interface.clone(),
                        })
                    }
                    VethState::Ours => {
                        attempts += 1;
                        if attempts > 25 {
                            return Err(SetupError::HostLinkExists {
                                name: ep.host_interface.clone(),
                            });
                        }
                        sleep(Duration::from_millis(4));
                    }
                    VethState::NotOurs(foreign) => {
                        let second = ep.id.alt_host_veth_name();
                        if ep.host_interface == second {
                            let first = ep.id.host_veth_name();
                            return Err(LinkError::HostNamesTaken {
                                id: ep.id.to_string(),
                                first,
                                second,
                                why: foreign.why,
                            }
                            .into());
                        }
                        ep.host_interface = second;
                        store.save_endpoint(ep)?;
                    }
                }
            }
            Err(e) if e.errno() == Some(nix::libc::EXFULL) => {
                return Err(SetupError::BridgeFull {
                    network: net.name.clone(),
                    bridge: net.bridge.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Kernel objects this attempt created, undone in reverse order on failure.
#[derive(Default)]
struct Undo {
    links: Vec<String>,
    /// Only this container's own elements are undone (`Elements::own`: ports, anti-spoofing):
    /// the per-network ones other endpoints share stay (forget() drops them when this was
    /// the network's last address).
    elements: Option<Elements>,
}

impl Undo {
    fn run(self, rtnl: &Rtnl) {
        if let Some(elements) = self.elements {
            if let Err(e) = firewall::delete(&elements.own()) {
                log_undo_failure("its nftables elements", &e);
            }
        }
        for name in self.links.iter().rev() {
            if let Err(e) = rtnl.delete(name) {
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

/// Drops the write-ahead record and the address of a setup that did not complete.
fn forget(store: &Store, ep: &Endpoint, ipam: &crate::state::IpamDir) {
    if let Err(e) = detach::forget(store, ep, ipam) {
        log::line(&format!(
            "rollback could not drop the record of {}: {e}; run `nethook gc`",
            ep.id
        ));
    }
}
