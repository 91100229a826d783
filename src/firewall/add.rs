//! Adding elements: one container's atomically, or every live one's at once for a restore,
//! in ONE batch with the probe of each table it touches. Deleting is `delete.rs`.
//!
//! Elements of one set go in as few messages as fit (`MAX_ELEMS_PER_MSG` each). A message that
//! holds several published ports cannot say which one was taken when the kernel answers EEXIST;
//! only then is the map read back to find it.

use std::collections::{BTreeSet, HashMap, HashSet};

use nftnl::MsgType;
use nix::errno::Errno;

use super::batch::BatchBuilder;
use super::error::{first_error, nl_err, FirewallError, Object};
use super::probe::touch_probes;
use super::readback::dump_set;
use super::skeleton::{HPORTS4, HPORTS6, PORTS4, PORTS6};
use super::svc_batch::with_steps;
use super::svc_plan::Step;
use super::tables::{cstr_static, Tables};
use super::types::TableFamily;
use super::units::SetUnits;
use crate::kernel::netlink::{Bus, NlSocket};

/// The batch that adds `sets`: the probes of the tables they touch, then the elements.
pub(super) fn add_batch<'a>(tables: &Tables, sets: &[SetUnits]) -> BatchBuilder<'a> {
    let families: BTreeSet<TableFamily> = sets.iter().map(|g| g.family).collect();
    let mut batch = BatchBuilder::new();
    touch_probes(&mut batch, tables, &families);
    batch.elements(tables, sets, MsgType::Add, false);
    batch
}

/// Add `sets` in ONE atomic batch (with the probe of each table they touch).
/// `restore`: ports are added non-exclusively; only one mapped elsewhere is taken.
/// `steps`: services' member changes, in the same batch (see `svc_plan.rs`).
pub(super) fn add_units(
    sets: &[SetUnits],
    restore: bool,
    steps: &[Step],
) -> Result<(), FirewallError> {
    if sets.is_empty() && steps.is_empty() {
        return Ok(());
    }
    let tables = Tables::new();
    let errors = with_steps(&tables, steps, |built| {
        let mut batch = add_batch(&tables, sets);
        if !steps.is_empty() && !sets.iter().any(|g| g.family == TableFamily::Inet) {
            touch_probes(&mut batch, &tables, &[TableFamily::Inet].into());
        }
        built.append(&mut batch);
        batch.send()
    })?;
    if errors.is_empty() {
        return Ok(());
    }
    // Several ports in the failing message: find the taken one.
    let port_maps = [
        cstr_static(PORTS4),
        cstr_static(HPORTS4),
        cstr_static(PORTS6),
        cstr_static(HPORTS6),
    ];
    if let Some(map) = errors.iter().find_map(|(o, e)| match o {
        Object::Elements { set, .. } if *e == Errno::EEXIST && port_maps.contains(set) => {
            Some(*set)
        }
        _ => None,
    }) {
        if let Some(g) = sets.iter().find(|g| g.name() == map) {
            if let Some(Object::Port {
                proto,
                host_ip,
                host_port,
                ..
            }) = find_taken(g, restore)?
            {
                return Err(FirewallError::PortTaken {
                    proto,
                    host_ip,
                    host_port,
                });
            }
        }
    }
    first_error("add", errors)
}

/// The port of `g` (a port map) that made an add fail with EEXIST: one listed twice, or one the
/// map already holds (for a restore: holds with another target).
fn find_taken(g: &SetUnits, restore: bool) -> Result<Option<Object>, FirewallError> {
    let mut seen = HashSet::new();
    for u in &g.units {
        if !seen.insert(&u.elems[0].key) {
            return Ok(Some(u.object.clone()));
        }
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let Some(present) = dump_set(&sock, g.family, g.set)? else {
        return Ok(None);
    };
    let present: HashMap<Vec<u8>, Option<Vec<u8>>> =
        present.into_iter().map(|e| (e.key, e.data)).collect();
    Ok(g.units
        .iter()
        .find(|u| match present.get(&u.elems[0].key) {
            Some(data) => !restore || *data != u.elems[0].data,
            None => false,
        })
        .map(|u| u.object.clone()))
}
