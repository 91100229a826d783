//! Service membership: which slot a joining or leaving container takes or frees, as plain
//! data (deciding), and its bookkeeping in the members file (recording). The firewall turns
//! a `MemberPlan` into map elements and the service chain's rules, in the same batch as the
//! container's other elements (see `core::services::fw_change`).
//!
//! Slots stay dense: a member joins at the end; a leaving member's slot takes the last
//! member, so a change touches at most two slots whatever the number of members.

use crate::model::endpoint::Endpoint;
use crate::state::{Member, Members, Store, StoreError};

/// One service's member change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    pub service: String,
    /// Members after the change.
    pub after: u32,
    /// Slots to (re)write, with their member.
    pub set: Vec<(u32, Member)>,
    /// Slots to remove.
    pub unset: Vec<u32>,
}

fn member_of(ep: &Endpoint) -> Member {
    Member {
        key: ep.id.as_str().to_owned(),
        v4: ep.ipv4.map(|a| a.address),
        v6: ep.ipv6.map(|a| a.address),
    }
}

/// `ep` joins `members` (in place): it takes the next slot, or keeps its own when it is a
/// member already (a repeated setup), its addresses rewritten.
pub fn join(members: &mut Members, service: &str, ep: &Endpoint) -> MemberPlan {
    let me = member_of(ep);
    let slot = match members.slot_of(&me.key) {
        Some(k) => {
            members.0[k] = me.clone();
            k
        }
        None => {
            members.0.push(me.clone());
            members.0.len() - 1
        }
    };
    MemberPlan {
        service: service.to_owned(),
        after: members.0.len() as u32,
        set: vec![(slot as u32, me)],
        unset: Vec::new(),
    }
}

/// `key` leaves `members` (in place): the last member moves into its slot. `None` when it
/// was no member (a repeated teardown).
pub fn leave(members: &mut Members, service: &str, key: &str) -> Option<MemberPlan> {
    let k = members.slot_of(key)?;
    let last = members.0.len() - 1;
    let moved = members.0.swap_remove(k);
    debug_assert_eq!(moved.key, key);
    let set = if k == last {
        Vec::new()
    } else {
        vec![(k as u32, members.0[k].clone())]
    };
    Some(MemberPlan {
        service: service.to_owned(),
        after: members.0.len() as u32,
        set,
        unset: vec![last as u32],
    })
}

/// Joins `ep` to each of its services and records the members files (before the kernel is
/// touched: a failed setup's rollback calls `leave_all`).
pub fn join_all(store: &Store, ep: &Endpoint) -> Result<Vec<MemberPlan>, StoreError> {
    let mut plans = Vec::new();
    for service in &ep.services {
        let mut members = store.members(service)?;
        plans.push(join(&mut members, service, ep));
        store.save_members(service, &members)?;
    }
    Ok(plans)
}

/// Takes `ep` out of each of its services, as plans and the members files they leave: the
/// caller records the files (`record`) once the batch that carries the plans has landed, so a
/// batch that fails leaves the member where the kernel still has it, for a retry.
pub fn leave_all(store: &Store, ep: &Endpoint) -> Result<Vec<(MemberPlan, Members)>, StoreError> {
    let mut plans = Vec::new();
    for service in &ep.services {
        let mut members = store.members(service)?;
        if let Some(plan) = leave(&mut members, service, ep.id.as_str()) {
            plans.push((plan, members));
        }
    }
    Ok(plans)
}

/// Writes the members files `leave_all` planned.
pub fn record(store: &Store, planned: &[(MemberPlan, Members)]) -> Result<(), StoreError> {
    for (plan, members) in planned {
        store.save_members(&plan.service, members)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, last: u8) -> Member {
        Member {
            key: key.into(),
            v4: Some(std::net::Ipv4Addr::new(10, 0, 0, last)),
            v6: None,
        }
    }

    fn ep(key: &str, last: u8) -> Endpoint {
        let mut e: Endpoint = serde_json::from_str(&format!(
            r#"{{"id":"{key}","network":"n","bridge":"b","host_interface":"nh0","interface":"eth0",
               "mac":"02:00:00:00:00:01","ipv4":{{"address":"10.0.0.{last}","prefix":24,"gateway":"10.0.0.1"}}}}"#
        ))
        .unwrap();
        e.services = vec!["web".into()];
        e
    }

    #[test]
    fn a_joining_member_takes_the_next_slot() {
        let mut ms = Members(vec![m("a", 2), m("b", 3)]);
        let p = join(&mut ms, "web", &ep("c", 4));
        assert_eq!(p.after, 3);
        assert_eq!(p.set, vec![(2, m("c", 4))]);
        assert!(p.unset.is_empty());
        assert_eq!(ms.0.len(), 3);
    }

    #[test]
    fn joining_twice_keeps_the_slot() {
        let mut ms = Members(vec![m("a", 2), m("b", 3)]);
        let p = join(&mut ms, "web", &ep("a", 9));
        assert_eq!((p.after, p.set.clone()), (2, vec![(0, m("a", 9))]));
        assert_eq!(ms.0, vec![m("a", 9), m("b", 3)]);
    }

    #[test]
    fn a_leaving_member_s_slot_takes_the_last_one() {
        let mut ms = Members(vec![m("a", 2), m("b", 3), m("c", 4)]);
        let p = leave(&mut ms, "web", "a").unwrap();
        assert_eq!(p.after, 2);
        assert_eq!(p.set, vec![(0, m("c", 4))]);
        assert_eq!(p.unset, vec![2]);
        assert_eq!(ms.0, vec![m("c", 4), m("b", 3)]);
    }

    #[test]
    fn the_last_member_leaving_moves_nobody() {
        let mut ms = Members(vec![m("a", 2), m("b", 3)]);
        let p = leave(&mut ms, "web", "b").unwrap();
        assert_eq!((p.after, p.set.len(), p.unset.clone()), (1, 0, vec![1]));
        let p = leave(&mut ms, "web", "a").unwrap();
        assert_eq!((p.after, p.unset.clone()), (0, vec![0]));
        assert!(leave(&mut ms, "web", "a").is_none());
    }

    #[test]
    fn a_change_touches_at_most_two_slots_at_a_thousand_members() {
        let mut ms = Members((0..1000).map(|i| m(&format!("c{i}"), 1)).collect());
        let p = leave(&mut ms, "web", "c10").unwrap();
        assert_eq!(p.set.len() + p.unset.len(), 2);
        let p = join(&mut ms, "web", &ep("new", 7));
        assert_eq!((p.set.len(), p.after), (1, 1000));
    }
}
