//! Which messages a service operation takes, as plain data ([`Step`]s, unit-tested), and how
//! they become one batch (`with_steps`). Per service NAME (a DNS label, so the names below
//! never collide: maps end in distinct suffixes, chains start `svc-` or `svcaff-`):
//!
//! | object          | what                                                            |
//! |-----------------|-----------------------------------------------------------------|
//! | chain `svc-NAME`| `dnat … numgen random mod N map @svc-NAME-m4 : … map @svc-NAME-p` per family, after the affinity lookups |
//! | map `svc-NAME-m4`/`-m6` | slot (numgen's u32) → member address                     |
//! | map `svc-NAME-p`| `l4proto . arrival port` (VIP ports, published host ports) → target port |
//! | map `svc-NAME-a4`/`-a6` | client → member (dynamic, timeout), when affinity is on   |
//! | chain `svcaff-NAME` | records the member chosen: `update @svc-NAME-a4 { ip saddr : ip daddr }` |

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::net::IpAddr;

use super::encode::{self, TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_IPADDR};
use super::error::Object;
use super::service::{MemberChange, Service, Slot};
use super::skeleton::{
    HSVCPORTS4, HSVCPORTS6, SVC4, SVC6, SVCAFF4, SVCAFF6, SVCNONE4, SVCNONE6, SVCPORTS,
};
use super::svc_rules::{dnat_rule, recorder_rule, slot_map_udata, Pick};
use super::units::NLM_F_CREATE;
use crate::sys::nft::{ElemSpec, RawExpr};

/// nftables' `TYPE_INTEGER` (numgen's result as a map key).
const TYPE_INTEGER: u32 = 4;

/// A per-service set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetDesc {
    pub(super) name: CString,
    pub(super) key_type: u32,
    pub(super) key_len: u32,
    pub(super) flags: u32,
    pub(super) data: Option<(u32, u32)>,
    /// nft's user data (the slot maps' `typeof`), shown by `nft list`.
    pub(super) udata: Vec<u8>,
}

/// One message of a service batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Add a set (NLM_F_CREATE: there already is fine).
    Set(SetDesc),
    DelSet(CString),
    /// Add a regular chain (there already is fine).
    Chain(CString),
    DelChain(CString),
    /// Delete every rule of a chain (DELRULE naming only the chain).
    Flush(CString),
    Rule {
        chain: CString,
        exprs: Vec<RawExpr>,
    },
    /// Elements of `set`: added with `flags`, or destroyed (a missing one is fine), or, with
    /// no elements and `destroy` false, the set flushed.
    Elems {
        set: CString,
        add: bool,
        flags: u16,
        destroy: bool,
        elems: Vec<ElemSpec>,
        object: Object,
    },
}

/// The names of one service's objects.
pub(super) struct Names {
    pub(super) chain: CString,
    pub(super) rec: CString,
    pub(super) m4: CString,
    pub(super) m6: CString,
    pub(super) p: CString,
    pub(super) a4: CString,
    pub(super) a6: CString,
}

pub(super) fn cs(s: String) -> CString {
    // Invariant: service names are DNS labels (checked by `service::check`), so no NUL.
    CString::new(s).unwrap_or_default()
}

pub(super) fn names(s: &Service) -> Names {
    let n = &s.name;
    Names {
        chain: cs(format!("svc-{n}")),
        rec: cs(format!("svcaff-{n}")),
        m4: cs(format!("svc-{n}-m4")),
        m6: cs(format!("svc-{n}-m6")),
        p: cs(format!("svc-{n}-p")),
        a4: cs(format!("svc-{n}-a4")),
        a6: cs(format!("svc-{n}-a6")),
    }
}

pub(super) fn obj(s: &Service, what: String) -> Object {
    Object::Service {
        service: s.name.clone(),
        what,
    }
}

pub(super) fn elems(
    set: &CStr,
    add: bool,
    flags: u16,
    elems: Vec<ElemSpec>,
    object: Object,
) -> Step {
    Step::Elems {
        set: set.into(),
        add,
        flags,
        destroy: !add,
        elems,
        object,
    }
}

pub(super) fn key(key: Vec<u8>) -> ElemSpec {
    ElemSpec {
        key,
        ..Default::default()
    }
}

pub(super) fn goto_elem(k: Vec<u8>, chain: &CStr) -> ElemSpec {
    ElemSpec {
        verdict: Some((libc::NFT_GOTO, chain.into())),
        ..key(k)
    }
}

pub(super) fn data_elem(k: Vec<u8>, data: Vec<u8>) -> ElemSpec {
    ElemSpec {
        data: Some(data),
        ..key(k)
    }
}

/// The VIP keys (`VIP . proto . port`) of each family: (set with members, set without, key, what).
pub(super) fn vip_keys(s: &Service) -> Vec<(&'static CStr, &'static CStr, Vec<u8>, String)> {
    let mut out = Vec::new();
    for p in &s.ports {
        if let Some(v) = s.vip4 {
            let what = format!("VIP {v} port {}/{}", p.port, p.proto);
            out.push((
                SVC4,
                SVCNONE4,
                encode::hports4_key(v, p.proto, p.port),
                what,
            ));
        }
        if let Some(v) = s.vip6 {
            let what = format!("VIP {v} port {}/{}", p.port, p.proto);
            out.push((
                SVC6,
                SVCNONE6,
                encode::hports6_key(v, p.proto, p.port),
                what,
            ));
        }
    }
    out
}

/// The published host ports: (dispatch map, key, what).
pub(super) fn publish_keys(s: &Service) -> Vec<(&'static CStr, Vec<u8>, String)> {
    s.publish
        .iter()
        .map(|p| {
            let what = |ip: String| format!("host port {ip}{}/{}", p.host_port, p.proto);
            match p.host_ip() {
                None => (
                    SVCPORTS,
                    encode::ports4_key(p.proto, p.host_port),
                    what(String::new()),
                ),
                Some(IpAddr::V4(ip)) => (
                    HSVCPORTS4,
                    encode::hports4_key(ip, p.proto, p.host_port),
                    what(format!("{ip}:")),
                ),
                Some(IpAddr::V6(ip)) => (
                    HSVCPORTS6,
                    encode::hports6_key(ip, p.proto, p.host_port),
                    what(format!("[{ip}]:")),
                ),
            }
        })
        .collect()
}

/// The port map's elements: every arrival port (VIP's, published) → target port, each once.
fn port_map_elems(s: &Service) -> Vec<ElemSpec> {
    let mut seen = BTreeSet::new();
    s.arrivals()
        .filter(|(proto, port, _)| seen.insert((proto.number(), *port)))
        .map(|(proto, port, target)| {
            data_elem(
                encode::ports4_key(proto, port),
                target.to_be_bytes().to_vec(),
            )
        })
        .collect()
}

fn set_desc(name: &CStr, key_type: u32, key_len: u32, flags: u32, data: (u32, u32)) -> Step {
    Step::Set(SetDesc {
        name: name.into(),
        key_type,
        key_len,
        flags: flags | libc::NFT_SET_MAP as u32,
        data: Some(data),
        udata: Vec::new(),
    })
}

/// A slot map (`typeof numgen random mod 1 : ip daddr`).
fn slot_map(name: &CStr, ipv6: bool) -> Step {
    Step::Set(SetDesc {
        name: name.into(),
        key_type: TYPE_INTEGER,
        key_len: 4,
        flags: libc::NFT_SET_MAP as u32,
        data: Some(if ipv6 {
            (TYPE_IP6ADDR, 16)
        } else {
            (TYPE_IPADDR, 4)
        }),
        udata: slot_map_udata(ipv6),
    })
}

/// The service's sets and chains (idempotent adds), the port map's elements, and the
/// affinity recorder's rules.
pub(super) fn object_steps(s: &Service) -> Vec<Step> {
    let n = names(s);
    let mut out = vec![
        slot_map(&n.m4, false),
        slot_map(&n.m6, true),
        set_desc(
            &n.p,
            encode::PORTS4_KEY_TYPE,
            encode::PORTS4_KEY_LEN,
            0,
            (TYPE_INET_SERVICE, 2),
        ),
    ];
    let dynamic = (libc::NFT_SET_TIMEOUT | libc::NFT_SET_EVAL) as u32;
    if s.affinity.is_some() {
        out.push(set_desc(&n.a4, TYPE_IPADDR, 4, dynamic, (TYPE_IPADDR, 4)));
        out.push(set_desc(
            &n.a6,
            TYPE_IP6ADDR,
            16,
            dynamic,
            (TYPE_IP6ADDR, 16),
        ));
    }
    out.push(Step::Chain(n.chain.clone()));
    out.push(elems(
        &n.p,
        true,
        NLM_F_CREATE,
        port_map_elems(s),
        obj(s, format!("map {}", n.p.to_string_lossy())),
    ));
    if let Some(timeout) = s.affinity {
        out.push(Step::Chain(n.rec.clone()));
        out.push(Step::Flush(n.rec.clone()));
        for (ipv6, set) in [(false, &n.a4), (true, &n.a6)] {
            out.push(Step::Rule {
                chain: n.rec.clone(),
                exprs: recorder_rule(ipv6, set, timeout),
            });
        }
    }
    out
}

/// The dispatch elements: VIP keys in svc4/svc6 (with members) or svcnone4/svcnone6 (without),
/// the other home destroyed; published ports and the affinity keys always (a service without
/// members has an empty chain: its host ports are closed ports).
pub(super) fn dispatch_steps(s: &Service, members: bool) -> Vec<Step> {
    let n = names(s);
    let mut out = vip_steps(s, members);
    out.extend(other_dispatch_steps(s, &n));
    out
}

/// The VIP keys in their home for `members`, destroyed in the other.
pub(super) fn vip_steps(s: &Service, members: bool) -> Vec<Step> {
    let n = names(s);
    let mut out = Vec::new();
    for (with, without, k, what) in vip_keys(s) {
        let o = obj(s, what);
        if members {
            out.push(elems(without, false, 0, vec![key(k.clone())], o.clone()));
            out.push(elems(
                with,
                true,
                NLM_F_CREATE,
                vec![goto_elem(k, &n.chain)],
                o,
            ));
        } else {
            out.push(elems(with, false, 0, vec![key(k.clone())], o.clone()));
            out.push(elems(without, true, NLM_F_CREATE, vec![key(k)], o));
        }
    }
    out
}

/// Published ports and affinity keys (the same whatever the members).
pub(super) fn other_dispatch_steps(s: &Service, n: &Names) -> Vec<Step> {
    let mut out = Vec::new();
    for (set, k, what) in publish_keys(s) {
        out.push(elems(
            set,
            true,
            NLM_F_CREATE,
            vec![goto_elem(k, &n.chain)],
            obj(s, what),
        ));
    }
    if s.affinity.is_some() {
        if let Some(v) = s.vip4 {
            let o = obj(s, format!("affinity of VIP {v}"));
            out.push(elems(
                SVCAFF4,
                true,
                NLM_F_CREATE,
                vec![goto_elem(v.octets().to_vec(), &n.rec)],
                o,
            ));
        }
        if let Some(v) = s.vip6 {
            let o = obj(s, format!("affinity of VIP {v}"));
            out.push(elems(
                SVCAFF6,
                true,
                NLM_F_CREATE,
                vec![goto_elem(v.octets().to_vec(), &n.rec)],
                o,
            ));
        }
    }
    out
}

/// Flush the service chain and add its rules for `members` (none for 0).
pub(super) fn rule_steps(s: &Service, members: u32) -> Vec<Step> {
    let n = names(s);
    let mut out = vec![Step::Flush(n.chain.clone())];
    if members == 0 {
        return out;
    }
    for ipv6 in [false, true] {
        let (m, a) = if ipv6 { (&n.m6, &n.a6) } else { (&n.m4, &n.a4) };
        if s.affinity.is_some() {
            out.push(Step::Rule {
                chain: n.chain.clone(),
                exprs: dnat_rule(ipv6, Pick::Affinity(a), &n.p),
            });
        }
        out.push(Step::Rule {
            chain: n.chain.clone(),
            exprs: dnat_rule(ipv6, Pick::Slot(members, m), &n.p),
        });
    }
    out
}

/// The slot writes of a change: destroy then add each set slot, destroy each unset one (and
/// the affinity entries, which may name the member that left).
pub(super) fn slot_steps(s: &Service, set: &[Slot], unset: &[u32]) -> Vec<Step> {
    let n = names(s);
    let slot_key = |k: u32| key(k.to_ne_bytes().to_vec());
    let gone: Vec<ElemSpec> = set
        .iter()
        .map(|s| s.slot)
        .chain(unset.iter().copied())
        .map(slot_key)
        .collect();
    let mut out = Vec::new();
    if !gone.is_empty() {
        let what = |m: &CString| obj(s, format!("slots of map {}", m.to_string_lossy()));
        out.push(elems(&n.m4, false, 0, gone.clone(), what(&n.m4)));
        out.push(elems(&n.m6, false, 0, gone, what(&n.m6)));
    }
    let v4: Vec<ElemSpec> = set
        .iter()
        .filter_map(|x| {
            Some(data_elem(
                x.slot.to_ne_bytes().to_vec(),
                x.v4?.octets().to_vec(),
            ))
        })
        .collect();
    let v6: Vec<ElemSpec> = set
        .iter()
        .filter_map(|x| {
            Some(data_elem(
                x.slot.to_ne_bytes().to_vec(),
                x.v6?.octets().to_vec(),
            ))
        })
        .collect();
    for (m, list) in [(&n.m4, v4), (&n.m6, v6)] {
        if !list.is_empty() {
            let o = obj(s, format!("slots of map {}", m.to_string_lossy()));
            out.push(elems(m, true, NLM_F_CREATE, list, o));
        }
    }
    if !unset.is_empty() && s.affinity.is_some() {
        for a in [&n.a4, &n.a6] {
            out.push(flush_set(s, a));
        }
    }
    out
}

pub(super) fn flush_set(s: &Service, set: &CStr) -> Step {
    Step::Elems {
        set: set.into(),
        add: false,
        flags: 0,
        destroy: false,
        elems: Vec::new(),
        object: obj(s, format!("map {}", set.to_string_lossy())),
    }
}

/// A member change, as it rides in a container's batch.
///
/// The VIP keys move between svc4/svc6 and svcnone4/svcnone6 only when the change may cross 0
/// members: `after` is 0, or every slot there is was written (a join 0 → 1, the rollback of a
/// leave 1 → 0). A join to 1000 does not resend them; published ports and affinity keys never
/// depend on the members (`create_service`, `restore_services` write them).
pub(super) fn change_steps(c: &MemberChange) -> Vec<Step> {
    let mut out = slot_steps(&c.service, &c.set, &c.unset);
    if c.after as usize <= c.set.len() {
        out.extend(vip_steps(&c.service, c.after > 0));
    }
    out.extend(rule_steps(&c.service, c.after));
    out
}

#[cfg(test)]
#[path = "svc_plan_tests.rs"]
mod tests;
