//! How service steps (`svc_plan.rs`) become one batch: the nftnl objects they need, built
//! once so that the batch can borrow them, the fallback for kernels without
//! NFT_MSG_DESTROYSETELEM, and sending `create_service`, `restore_services`, `delete_service`.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use nftnl::{Chain, MsgType, Rule};
use nix::errno::Errno;

use super::batch::BatchBuilder;
use super::error::{first_error, nl_err, FirewallError, Object};
use super::probe::touch_probes;
use super::readback::dump_set;
use super::service::{Service, Slot};
use super::svc_plan::{names, Step};
use super::svc_whole::{create_steps, delete_steps, restore_steps, Present};
use super::tables::{probe_exists, Tables};
use super::types::TableFamily;
use crate::kernel::netlink::{Bus, NlSocket};
use crate::sys::nft::{Borrowed, ElemMsg, ElemSpec};

/// Destroy messages of services put in batches by this process (tests of the fallback).
static DESTROYS: AtomicU64 = AtomicU64::new(0);

/// How many NFT_MSG_DESTROYSETELEM messages service steps put in batches so far (for tests:
/// none on a kernel without it).
#[doc(hidden)]
pub fn service_destroys_sent() -> u64 {
    DESTROYS.load(Ordering::Relaxed)
}

/// The nftnl objects of some steps, built once, so that the batch can borrow them.
pub(super) struct Built<'a> {
    tables: &'a Tables,
    pub(super) steps: &'a [Step],
    chains: &'a [(CString, Chain<'a>)],
    /// One per Set/DelSet step, in order.
    sets: &'a [nftnl::set::Set<'a, Ipv4Addr>],
    /// One per Flush/Rule step, in order.
    pub(super) rules: &'a [Rule<'a>],
}

/// Build the objects of `steps` and hand them to `f` (which appends them to its batch).
pub(super) fn with_steps<R>(tables: &Tables, steps: &[Step], f: impl FnOnce(&Built<'_>) -> R) -> R {
    let inet = tables.get(TableFamily::Inet);
    let mut chains: Vec<(CString, Chain<'_>)> = Vec::new();
    let mut sets = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        // Set ids only need to be unique within the batch (the skeleton's are < 100).
        let id = 100 + i as u32;
        match st {
            Step::Chain(c) | Step::DelChain(c) | Step::Flush(c) | Step::Rule { chain: c, .. } => {
                if !chains.iter().any(|(n, _)| n == c) {
                    chains.push((c.clone(), Chain::new(c.as_c_str(), inet)));
                }
            }
            Step::Set(d) => {
                let set = nftnl::set::Set::<Ipv4Addr>::new_named(
                    &d.name,
                    id,
                    inet,
                    nftnl::ProtoFamily::Inet,
                );
                crate::sys::nft::configure_set(
                    &set,
                    d.key_type,
                    d.key_len,
                    d.flags,
                    d.data,
                    &[],
                    &d.udata,
                );
                sets.push(set);
            }
            Step::DelSet(name) => {
                sets.push(nftnl::set::Set::<Ipv4Addr>::new_named(
                    name,
                    id,
                    inet,
                    nftnl::ProtoFamily::Inet,
                ));
            }
            Step::Elems { .. } => {}
        }
    }
    let chain_of = |name: &CStr| {
        // Invariant: the loop above built a chain for every name a step uses.
        &chains
            .iter()
            .find(|(n, _)| n.as_c_str() == name)
            .expect("built above")
            .1
    };
    let rules: Vec<Rule<'_>> = steps
        .iter()
        .filter_map(|st| match st {
            Step::Flush(c) => Some(Rule::new(chain_of(c))),
            Step::Rule { chain, exprs } => {
                let mut r = Rule::new(chain_of(chain));
                for x in exprs {
                    r.add_expr(x);
                }
                Some(r)
            }
            _ => None,
        })
        .collect();
    f(&Built {
        tables,
        steps,
        chains: &chains,
        sets: &sets,
        rules: &rules,
    })
}

fn cname(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl<'a> Built<'a> {
    /// Append the steps' messages to `batch`, in order.
    pub(super) fn append(&self, batch: &mut BatchBuilder<'a>) {
        let inet = self.tables.get(TableFamily::Inet);
        let (mut sets, mut rules) = (self.sets.iter(), self.rules.iter());
        let svc = |what: String| Object::Service {
            service: String::new(),
            what,
        };
        for st in self.steps {
            match st {
                Step::Set(d) => {
                    if let Some(set) = sets.next() {
                        batch.push(
                            svc(format!("map {}", cname(&d.name))),
                            Borrowed(set),
                            MsgType::Add,
                        );
                    }
                }
                Step::DelSet(name) => {
                    if let Some(set) = sets.next() {
                        batch.push(
                            svc(format!("map {}", cname(name))),
                            Borrowed(set),
                            MsgType::Del,
                        );
                    }
                }
                Step::Chain(c) | Step::DelChain(c) => {
                    let ty = if matches!(st, Step::Chain(_)) {
                        MsgType::Add
                    } else {
                        MsgType::Del
                    };
                    if let Some((_, chain)) = self.chains.iter().find(|(n, _)| n == c) {
                        batch.push(svc(format!("chain {}", cname(c))), Borrowed(chain), ty);
                    }
                }
                Step::Flush(c) | Step::Rule { chain: c, .. } => {
                    let ty = if matches!(st, Step::Flush(_)) {
                        MsgType::Del
                    } else {
                        MsgType::Add
                    };
                    if let Some(rule) = rules.next() {
                        batch.push(
                            svc(format!("rules of chain {}", cname(c))),
                            Borrowed(rule),
                            ty,
                        );
                    }
                }
                Step::Elems {
                    set,
                    add,
                    flags,
                    destroy,
                    elems,
                    object,
                } => {
                    if *destroy {
                        DESTROYS.fetch_add(1, Ordering::Relaxed);
                    }
                    let msg = ElemMsg::new(inet, set, *flags, elems).destroying(*destroy);
                    let ty = if *add { MsgType::Add } else { MsgType::Del };
                    batch.push(object.clone(), msg, ty);
                }
            }
        }
    }
}

/// On a kernel without NFT_MSG_DESTROYSETELEM (before 6.3: Debian 12's 6.1), destroys become
/// plain deletes of the keys the set holds at that point of the batch: the sets they name
/// are read back (one dump each, under the caller's lock), then the steps are replayed on
/// that copy (an add puts a key in, a flush empties the set). A destroy left with no key is
/// dropped (an empty delete would flush the set).
pub(super) fn for_this_kernel(steps: Vec<Step>) -> Result<Vec<Step>, FirewallError> {
    if super::delete::destroy_supported()
        || !steps
            .iter()
            .any(|s| matches!(s, Step::Elems { destroy: true, .. }))
    {
        return Ok(steps);
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let mut held: HashMap<CString, HashSet<Vec<u8>>> = HashMap::new();
    let mut out = Vec::new();
    for st in steps {
        let Step::Elems {
            set,
            add,
            destroy,
            elems,
            flags,
            object,
        } = st
        else {
            out.push(st);
            continue;
        };
        if !held.contains_key(&set) {
            let there = dump_set(&sock, TableFamily::Inet, &set)?
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.key)
                .collect();
            held.insert(set.clone(), there);
        }
        let keys = held.entry(set.clone()).or_default();
        if add {
            keys.extend(elems.iter().map(|e| e.key.clone()));
        } else if !destroy && elems.is_empty() {
            keys.clear(); // a flush
        } else if !destroy {
            elems.iter().for_each(|e| {
                keys.remove(&e.key);
            });
        } else {
            let elems: Vec<ElemSpec> = elems.into_iter().filter(|e| keys.remove(&e.key)).collect();
            if elems.is_empty() {
                continue;
            }
            out.push(Step::Elems {
                set,
                add,
                destroy: false,
                elems,
                flags,
                object,
            });
            continue;
        }
        out.push(Step::Elems {
            set,
            add,
            destroy,
            elems,
            flags,
            object,
        });
    }
    Ok(out)
}

/// Send `steps` in one batch with the inet table's probe (a missing or older table: ENOENT).
fn send_steps(steps: &[Step]) -> Result<Vec<(Object, Errno)>, FirewallError> {
    let tables = Tables::new();
    with_steps(&tables, steps, |built| {
        let mut batch = BatchBuilder::new();
        touch_probes(&mut batch, &tables, &[TableFamily::Inet].into());
        built.append(&mut batch);
        batch.send()
    })
}

/// A VIP or host port another service holds, from a create batch's errors.
fn taken(errors: &[(Object, Errno)]) -> Option<FirewallError> {
    errors.iter().find_map(|(o, e)| match o {
        Object::ServiceKey { service, what } if *e == Errno::EEXIST => {
            Some(FirewallError::ServiceTaken {
                service: service.clone(),
                what: what.clone(),
            })
        }
        _ => None,
    })
}

pub(super) fn send_create(s: &Service) -> Result<(), FirewallError> {
    let errors = send_steps(&for_this_kernel(create_steps(s))?)?;
    if let Some(e) = taken(&errors) {
        return Err(e);
    }
    first_error("create service", errors)
}

pub(super) fn send_restore(all: &[(Service, Vec<Slot>)]) -> Result<(), FirewallError> {
    let steps: Vec<Step> = all
        .iter()
        .flat_map(|(s, slots)| restore_steps(s, slots))
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    first_error("restore services", send_steps(&for_this_kernel(steps)?)?)
}

pub(super) fn send_delete(s: &Service) -> Result<(), FirewallError> {
    let n = names(s);
    if !probe_exists(Object::Table(TableFamily::Inet), None, None)? {
        return Ok(());
    }
    let mut sets = Vec::new();
    for set in [&n.m4, &n.m6, &n.p, &n.a4, &n.a6] {
        if probe_exists(svc_obj(set), Some(set), None)? {
            sets.push(set.clone());
        }
    }
    let present = Present {
        chain: probe_exists(svc_obj(&n.chain), None, Some(&n.chain))?,
        rec: probe_exists(svc_obj(&n.rec), None, Some(&n.rec))?,
        sets,
    };
    let mut steps = for_this_kernel(delete_steps(s, &present))?;
    let tables = Tables::new();
    let send = |steps: &[Step]| {
        with_steps(&tables, steps, |built| {
            let mut batch = BatchBuilder::new();
            built.append(&mut batch);
            batch.send()
        })
    };
    let errors = send(&steps)?;
    if !errors.iter().any(|(_, e)| *e == Errno::EBUSY) {
        return first_error("delete service", errors);
    }
    // Before Linux 6.2 a chain that a verdict-map element deleted in the same batch pointed
    // to still counts as used (kube-proxy deletes such chains a second later). Leave the
    // flushed chains: nothing reaches them, and the next delete_service takes them.
    steps.retain(|st| !matches!(st, Step::DelChain(_)));
    first_error("delete service", send(&steps)?)
}

fn svc_obj(name: &CStr) -> Object {
    Object::Service {
        service: String::new(),
        what: cname(name),
    }
}
