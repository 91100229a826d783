//! nftables layer of nethook: two tables whose static skeleton (sets, maps, chains, rules) is
//! created once, and per-container set/map elements added and deleted in one atomic batch each.
//!
//! - `table inet nethook`: published ports (DNAT maps), masquerade, the 127.0.0.1 guard,
//!   isolation between networks (forward hook: into a nethook bridge or a routed host veth
//!   `nr…` only replies, published ports and traffic within the same network), the forwarding
//!   guard (when nethook turned IPv4 forwarding on, nothing that neither enters nor leaves a
//!   nethook network is forwarded), and anti-spoofing of routed networks (raw prerouting: a
//!   packet from a routed host veth carries its container's MAC and IPv4 address, set
//!   `raddrs4`; no IPv6). Routed veths are told apart by their `nr` prefix, so isolating them
//!   needs no per-container element: a routed network adds its subnet to `intra4`.
//! - `table bridge nethook`: anti-spoofing where a container's frames enter the bridge (the host
//!   end of its veth): its MAC, its IPv4 address in IPv4 and ARP, and its IPv6 addresses (global
//!   and EUI-64 link-local) in IPv6 and neighbour discovery must be its own; no router
//!   advertisements, redirects, MLD or DHCPv6 server replies from it, none from the host into
//!   it; only IPv4, ARP and IPv6 pass unless its network opted out.
//! - services (issue 22, `service.rs`): in `table inet nethook`, a VIP's ports (`svc4`/`svc6`)
//!   and published host ports (`svcports`, `hsvcports4/6`) go to the service's chain, which
//!   DNATs to a member picked by `numgen` from a slot map; a service without members is in
//!   `svcnone4/6` instead, refused in filter chains `svcpre`/`svcout`. Member changes ride in
//!   [`add()`]/[`delete()`] with the container's elements ([`Elements::services`]).
//!
//! # Where what is decided
//!
//! | what                                                  | where                          |
//! |-------------------------------------------------------|--------------------------------|
//! | an endpoint's elements (which ports, subnets, MACs)   | `core::elements` (caller)      |
//! | the types handed in: [`Elements`], [`PortMapping`]    | `types.rs`                     |
//! | elements → set elements (which set, key, map data)    | `units.rs`                     |
//! | the bytes of a key or map data                        | `encode.rs`                    |
//! | the messages of one batch, sending it, the replies    | `batch.rs` (`BatchBuilder`)    |
//! | add (+ which port was taken), restore                 | `add.rs`                       |
//! | delete (destroy, or the fallback on older kernels)    | `delete.rs`                    |
//! | the probe element that notices an old/missing table   | `probe.rs`                     |
//! | the skeleton's sets, chains, rules (as data)          | `skeleton/` (`inet`, `bridge`) |
//! | creating, upgrading, deleting the tables              | `tables.rs`                    |
//! | removing elements no live endpoint has (gc)           | `prune.rs`                     |
//! | reading a set back (the taken port, what is left)     | `readback.rs`                  |
//! | errors, and what a message was about ([`Object`])     | `error.rs`                     |
//! | services: what callers hand in, checks, public API    | `service.rs`                   |
//! | a member change → steps (messages as data), names     | `svc_plan.rs`                  |
//! | a service chain's rules (DNAT by slot, affinity)      | `svc_rules.rs`                 |
//! | create/restore/delete of a whole service → steps      | `svc_whole.rs`                 |
//! | steps → one batch; kernels without DESTROYSETELEM     | `svc_batch.rs`                 |
//!
//! A port mapping: built from the endpoint in `core::elements::port_elements`, turned into a
//! `ports4`/`hports4` element in `units::element_units`, sent by [`add()`] → `add::add_units` →
//! `batch::BatchBuilder::send`. Every operation is ONE batch built by one `BatchBuilder`.
//!
//! Address families: [`Elements`] holds each family's parts in fields of their own (`masq4`,
//! `ports4`, [`Source::ipv4`]; `masq6`, `ports6`, [`Source::ipv6`]), and the skeleton has a set
//! for each (`masq6`, `nomasq6`, `ports6`, `hports6`, bridge `addrs6`). Rules that read an
//! address check the family first; `ports4`'s rule does too (`meta nfproto ipv4`), since its
//! `proto . port` key says nothing of the family. Routed networks are IPv4-only: a routed
//! source with IPv6 addresses is refused ([`FirewallError::RoutedIpv6`]).
//!
//! # Threads, namespaces, locking
//!
//! Every function opens a fresh netlink socket in the calling thread, so it acts on the network
//! namespace that thread is in. Nothing here ever calls `setns`. Callers serialise mutations
//! with the nethook lock (flock): `ensure_skeleton` is a check-then-create, and rule adds are
//! not idempotent.
//!
//! Upgrades and firewall reloads: each table carries a probe set (its newest object), and every
//! element batch touches the probe of each table it adds to, so a table that is missing (`nft
//! flush ruleset`) or was made by an older nethook makes the batch fail with ENOENT; then
//! [`ensure_skeleton`] (re-)creates that table whole and returns true, and the caller restores
//! the elements of every live endpoint with [`restore`] (and the forwarding guard).
//!
//! Sizes: elements of one set share messages, batches are sent with buffers sized to fit, so
//! thousands of ports add in one atomic batch; deletes cost one batch, two when something is
//! missing.

mod add;
mod batch;
mod delete;
mod encode;
mod error;
mod present;
mod probe;
mod prune;
mod readback;
mod service;
mod skeleton;
mod svc_batch;
mod svc_plan;
mod svc_rules;
mod svc_whole;
mod tables;
mod types;
mod units;

pub use crate::kernel::netlink::defer_netfilter_release;
pub use batch::batches_sent;
pub use delete::assume_no_destroy;
pub use encode::Proto;
pub use error::{FirewallError, Object};
pub use present::missing_elements;
pub use prune::prune;
pub use service::{
    create_service, delete_service, restore_services, MemberChange, Service, ServicePort,
    ServicePublish, Slot,
};
pub use svc_batch::service_destroys_sent;
pub use tables::{delete_table, ensure_skeleton, missing_skeleton, table_exists};
pub use types::{
    Elements, PortMapping, PortMapping4, PortMapping6, Source, TableFamily, TABLE_NAME,
};

/// Ends deferring (see `defer_netfilter_release`): the sockets kept so far are closed by a
/// child process after this one exits. Call it last, when the process is single-threaded.
/// Should no child start, it says so; the sockets then go with this process's exit.
pub fn release_deferred_sockets() {
    if let Err(e) = crate::sys::process::close_after_exit(crate::kernel::netlink::take_deferred()) {
        crate::log::line(&format!("could not hand netfilter sockets to a child ({e}); exiting waits for the kernel instead"));
    }
}

/// Add all of one container's elements in ONE atomic batch (spanning both tables), however many
/// ports it publishes.
///
/// Per-network elements (masq4, bridges) and sources may already be there; a host port that is
/// already published fails the whole batch with [`FirewallError::PortTaken`] naming it, and
/// nothing of it is applied. ENOENT: a table is missing or out of date: run [`ensure_skeleton`].
///
/// Member changes of services ([`Elements::services`]) go in the same batch: a missing service
/// (not created, or its table re-created) fails it with ENOENT.
pub fn add(elems: &Elements) -> Result<(), FirewallError> {
    let steps = member_steps(elems)?;
    add::add_units(&units::element_units(elems, true)?, false, &steps)
}

/// The messages of `elems.services` (each change checked first).
fn member_steps(elems: &Elements) -> Result<Vec<svc_plan::Step>, FirewallError> {
    let mut steps = Vec::new();
    for c in &elems.services {
        service::check_change(c)?;
        steps.extend(svc_plan::change_steps(c));
    }
    svc_batch::for_this_kernel(steps)
}

/// Like [`add()`], but elements that are already there (ports included) are fine: re-creates the
/// elements of live endpoints after [`ensure_skeleton`] (re-)created a table. Takes the merged
/// elements of every live endpoint at once (see [`Elements::extend`]), in one batch. A port
/// mapped to another target fails with [`FirewallError::PortTaken`].
/// Services' member changes are not applied here (see [`restore_services`]).
pub fn restore(elems: &Elements) -> Result<(), FirewallError> {
    add::add_units(&units::element_units(elems, false)?, true, &[])
}

/// Delete elements. Elements that are already gone, and missing sets and tables, do not fail.
/// Costs one batch, or two when something was missing, whatever the number of elements.
/// Member changes of services ([`Elements::services`]) go in the same batch (in each batch,
/// when a second one is needed).
pub fn delete(elems: &Elements) -> Result<(), FirewallError> {
    let steps = member_steps(elems)?;
    delete::delete_units(units::element_units(elems, false)?, &steps)
}

/// Turn the forwarding guard on or off (idempotent): while on, the host forwards no IPv4
/// traffic that neither comes from nor goes to a nethook network's bridge. For when nethook
/// turned `net.ipv4.ip_forward` on itself. The element lives in `table inet nethook`: after
/// [`ensure_skeleton`] returned true it is gone and must be turned on again. Turning it on
/// without the table fails with ENOENT; turning it off then succeeds.
pub fn guard_forwarding(on: bool) -> Result<(), FirewallError> {
    guard(on, false)
}

/// [`guard_forwarding`] for IPv6 (element `ipv6` of `fwd_guard`): for when nethook turned
/// `net.ipv6.conf.all.forwarding` on itself. Turn it on before forwarding, and again after
/// [`ensure_skeleton`] returned true.
pub fn guard_forwarding6(on: bool) -> Result<(), FirewallError> {
    guard(on, true)
}

fn guard(on: bool, ipv6: bool) -> Result<(), FirewallError> {
    if on {
        add::add_units(&units::guard_units(ipv6), false, &[])
    } else {
        delete::delete_units(units::guard_units(ipv6), &[])
    }
}

#[cfg(test)]
mod golden;
