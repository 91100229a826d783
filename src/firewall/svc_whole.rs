//! The steps of whole-service operations: `create_service` (exclusive claims of its VIP ports
//! and host ports), `restore_services` (everything, idempotent), `delete_service` (only what
//! is there). Member changes are `svc_plan.rs`.

use std::ffi::CString;

use super::error::Object;
use super::service::{Service, Slot};
use super::skeleton::{SVCAFF4, SVCAFF6};
use super::svc_plan::*;
use super::units::{NLM_F_CREATE, NLM_F_EXCL};

/// `create_service`: its objects, then each dispatch key added exclusively where another
/// service could hold it (a VIP key is tried in svc4 and dropped again, then put in svcnone4),
/// each in a message of its own so that EEXIST names it.
pub(super) fn create_steps(s: &Service) -> Vec<Step> {
    let n = names(s);
    let mut out = object_steps(s);
    let excl = NLM_F_CREATE | NLM_F_EXCL;
    for (with, without, k, what) in vip_keys(s) {
        let o = Object::ServiceKey {
            service: s.name.clone(),
            what,
        };
        out.push(elems(
            with,
            true,
            excl,
            vec![goto_elem(k.clone(), &n.chain)],
            o.clone(),
        ));
        out.push(elems(with, false, 0, vec![key(k.clone())], o.clone()));
        out.push(elems(without, true, excl, vec![key(k)], o));
    }
    for (set, k, what) in publish_keys(s) {
        let o = Object::ServiceKey {
            service: s.name.clone(),
            what,
        };
        out.push(elems(set, true, excl, vec![goto_elem(k, &n.chain)], o));
    }
    // Affinity keys and an empty chain: as for no members.
    out.extend(other_dispatch_steps(s, &n).into_iter().filter(
        |st| matches!(st, Step::Elems { set, .. } if set.as_c_str() == SVCAFF4 || set.as_c_str() == SVCAFF6),
    ));
    out.extend(rule_steps(s, 0));
    out
}

/// `restore_services`: objects, the slot maps flushed and refilled, dispatch and rules for N.
pub(super) fn restore_steps(s: &Service, slots: &[Slot]) -> Vec<Step> {
    let n = names(s);
    let mut out = object_steps(s);
    out.push(flush_set(s, &n.m4));
    out.push(flush_set(s, &n.m6));
    out.extend(
        slot_steps(s, slots, &[])
            .into_iter()
            .filter(|st| matches!(st, Step::Elems { add: true, .. })),
    );
    out.extend(dispatch_steps(s, !slots.is_empty()));
    out.extend(rule_steps(s, slots.len() as u32));
    out
}

/// What of a service is there (for an idempotent delete on any kernel).
pub(super) struct Present {
    pub(super) chain: bool,
    pub(super) rec: bool,
    pub(super) sets: Vec<CString>,
}

/// `delete_service`: its dispatch keys destroyed, its chains flushed and deleted, its maps
/// deleted (only what `present` says is there).
pub(super) fn delete_steps(s: &Service, present: &Present) -> Vec<Step> {
    let n = names(s);
    let mut out = Vec::new();
    for (with, without, k, what) in vip_keys(s) {
        let o = obj(s, what);
        out.push(elems(with, false, 0, vec![key(k.clone())], o.clone()));
        out.push(elems(without, false, 0, vec![key(k)], o));
    }
    for (set, k, what) in publish_keys(s) {
        out.push(elems(set, false, 0, vec![key(k)], obj(s, what)));
    }
    if let Some(v) = s.vip4 {
        out.push(elems(
            SVCAFF4,
            false,
            0,
            vec![key(v.octets().to_vec())],
            obj(s, format!("affinity of VIP {v}")),
        ));
    }
    if let Some(v) = s.vip6 {
        out.push(elems(
            SVCAFF6,
            false,
            0,
            vec![key(v.octets().to_vec())],
            obj(s, format!("affinity of VIP {v}")),
        ));
    }
    for (there, chain) in [(present.chain, &n.chain), (present.rec, &n.rec)] {
        if there {
            out.push(Step::Flush(chain.clone()));
            out.push(Step::DelChain(chain.clone()));
        }
    }
    for set in [&n.m4, &n.m6, &n.p, &n.a4, &n.a6] {
        if present.sets.contains(set) {
            out.push(Step::DelSet(set.clone()));
        }
    }
    out
}
