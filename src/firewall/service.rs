//! Services (issue 22, design P): a VIP's ports (and host ports, `--publish`) balanced over
//! live members by nftables alone. What callers hand in is plain data ([`Service`], [`Slot`],
//! [`MemberChange`]); which messages that takes is `svc_plan.rs`, pure and unit-tested.
//!
//! Members hold dense slots 0..N-1 in the service's maps `svc-NAME-m4`/`-m6`; only the rule of
//! chain `svc-NAME` holds N (`numgen random mod N`), so a member change is the same few
//! messages at N=1 and N=1000. A join sets slot N (after = N+1); a leave of slot k of N moves
//! the last member into the hole (set k = old last, unset N-1, after = N-1). Every change is
//! idempotent (destroy-then-add for slots, flush-and-re-add for the rules, both dispatch homes
//! rewritten), so it rides in the same batch as a container's other elements, in [`add`] and
//! in [`delete`] alike, and a retry or rollback can send it again.
//!
//! [`add`]: super::add
//! [`delete`]: super::delete

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::encode::Proto;
use super::error::FirewallError;
use super::svc_batch;

/// One port of a service's VIP: `proto`/`port` on the VIP, `target_port` on the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub proto: Proto,
    pub port: u16,
    pub target_port: u16,
}

/// A host port that reaches the service (`--publish`): on every host address (`host_ip`
/// None or unspecified) or on one, balanced as the VIP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServicePublish {
    pub host_ip: Option<IpAddr>,
    pub proto: Proto,
    pub host_port: u16,
    pub target_port: u16,
}

impl ServicePublish {
    /// The host address it is bound to; `None` for every address (unspecified included).
    pub(super) fn host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// A service as the firewall sees it. `name` is a DNS label (1 to 63 of `a-z 0-9 -`, not
/// starting or ending with `-`): it names the service's chain and maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    pub name: String,
    pub vip4: Option<Ipv4Addr>,
    pub vip6: Option<Ipv6Addr>,
    pub ports: Vec<ServicePort>,
    pub publish: Vec<ServicePublish>,
    /// Client-IP affinity: a client keeps its member for this many seconds after its last new
    /// connection (per VIP, not per port).
    pub affinity: Option<u32>,
}

/// One member's slot: its address in each family the service uses. Members of one service
/// share one network, so they have the same families; a slot without the address of a family
/// that traffic arrives in leaves that connection un-NATed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub slot: u32,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Service {
    /// Every port a connection to the service arrives on (its VIP ports, its published host
    /// ports) with the members' target port: what `svc-NAME-p` maps.
    pub(super) fn arrivals(&self) -> impl Iterator<Item = (Proto, u16, u16)> + '_ {
        let vip = self.ports.iter().map(|p| (p.proto, p.port, p.target_port));
        let published = self
            .publish
            .iter()
            .map(|p| (p.proto, p.host_port, p.target_port));
        vip.chain(published)
    }
}

/// A change of a service's members, computed by the caller under the lock from the service's
/// slot table: join = set slot N, after = N+1; leave of slot k of N = set k to the old last
/// member, unset N-1, after = N-1; a rollback is the inverse change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    pub service: Service,
    /// The number of members after the change.
    pub after: u32,
    /// Slots to (re)write.
    pub set: Vec<Slot>,
    /// Slots to remove (their affinity entries go too: the service's affinity maps are flushed).
    pub unset: Vec<u32>,
}

/// Is `name` a DNS label (what a service name must be)?
pub(super) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Refuse what no batch could express: a bad name, no VIP, two ports that would need one
/// port-map key to say two things, a slot beyond the members.
pub(super) fn check(s: &Service) -> Result<(), FirewallError> {
    let bad = |why: String| {
        Err(FirewallError::BadService {
            name: s.name.clone(),
            why,
        })
    };
    if !valid_name(&s.name) {
        return bad("the name must be a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'".into());
    }
    if s.vip4.is_none() && s.vip6.is_none() {
        return bad("it has no VIP".into());
    }
    if s.ports.is_empty() {
        return bad("it has no port".into());
    }
    // svc-NAME-p maps proto . arrival port to the target port: one arrival port, one target.
    let mut seen: Vec<(Proto, u16, u16)> = Vec::new();
    for (proto, port, target) in s.arrivals() {
        if let Some((_, _, other)) = seen
            .iter()
            .find(|(q, p, t)| *q == proto && *p == port && *t != target)
        {
            return bad(format!(
                "port {port}/{proto} leads to target port {other} and to {target}; use one target per port"
            ));
        }
        seen.push((proto, port, target));
    }
    Ok(())
}

pub(super) fn check_change(c: &MemberChange) -> Result<(), FirewallError> {
    check(&c.service)?;
    if let Some(s) = c.set.iter().find(|s| s.slot >= c.after) {
        return Err(FirewallError::BadService {
            name: c.service.name.clone(),
            why: format!(
                "slot {} is set but the service has {} members after the change",
                s.slot, c.after
            ),
        });
    }
    Ok(())
}

/// Create a service with no members (its VIP ports refuse connections until one joins), in
/// one batch. A VIP port or host port that another service already has refuses the whole batch
/// with [`FirewallError::ServiceTaken`] naming it. ENOENT: run `ensure_skeleton`.
pub fn create_service(s: &Service) -> Result<(), FirewallError> {
    check(s)?;
    svc_batch::send_create(s)
}

/// Delete a service: its dispatch elements, chains and maps, in one batch. A service (or a
/// part of it) that is not there is fine.
pub fn delete_service(s: &Service) -> Result<(), FirewallError> {
    check(s)?;
    svc_batch::send_delete(s)
}

/// Put services back (after `ensure_skeleton` re-created the table, or to repair one): every
/// service's objects, its members in slots 0..N-1 as given, rules for N, dispatch elements
/// where N says; idempotent, one batch for all.
pub fn restore_services(all: &[(Service, Vec<Slot>)]) -> Result<(), FirewallError> {
    for (s, _) in all {
        check(s)?;
    }
    svc_batch::send_restore(all)
}
