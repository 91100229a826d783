//! Deleting elements in one batch, or two when something is missing, whatever their number.
//!
//! NFT_MSG_DESTROYSETELEM (kernel 6.3+) deletes an element that is missing without an error, so
//! one batch does; when a table or set is missing, only its messages fail (ENOENT), and the
//! rest go again in a second batch. Older kernels refuse the message type (EINVAL, or
//! EOPNOTSUPP): that is remembered for the process and a plain delete batch sent instead; when
//! it fails with ENOENT, the sets it names are read back (one dump each, on one socket) and a
//! second batch deletes only what is there.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};

use nftnl::MsgType;
use nix::errno::Errno;

use super::batch::BatchBuilder;
use super::error::{first_error, nl_err, FirewallError, Object};
use super::readback::dump_set;
use super::svc_batch::with_steps;
use super::svc_plan::Step;
use super::tables::Tables;
use super::units::{set_of, SetUnits};
use crate::kernel::netlink::{Bus, NlSocket};

const INTERVAL_END: u32 = libc::NFT_SET_ELEM_INTERVAL_END as u32;

/// Whether this kernel knows NFT_MSG_DESTROYSETELEM: not tried yet, yes, no.
static DESTROY: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// NFT_MSG_DESTROYSETELEM came with Linux 6.3. A release this process cannot read or parse
/// may have it (the batch tells, and is remembered).
fn kernel_may_destroy() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return true;
    };
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (6, 3),
        _ => true,
    }
}

/// Does this kernel (as far as this process knows) take NFT_MSG_DESTROYSETELEM?
pub(super) fn destroy_supported() -> bool {
    match DESTROY.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ if kernel_may_destroy() => true,
        _ => {
            DESTROY.store(NO, Ordering::Relaxed);
            false
        }
    }
}

/// Delete as on a kernel without NFT_MSG_DESTROYSETELEM (tests of the fallback).
#[doc(hidden)]
pub fn assume_no_destroy() {
    DESTROY.store(NO, Ordering::Relaxed);
}

/// The batch that deletes `sets` (as NFT_MSG_DESTROYSETELEM when `destroy`).
pub(super) fn delete_batch<'a>(
    tables: &Tables,
    sets: &[SetUnits],
    destroy: bool,
) -> BatchBuilder<'a> {
    let mut batch = BatchBuilder::new();
    batch.elements(tables, sets, MsgType::Del, destroy);
    batch
}

/// `steps` (services' member changes, idempotent) go in every batch sent.
fn send(
    sets: &[SetUnits],
    destroy: bool,
    steps: &[Step],
) -> Result<Vec<(Object, Errno)>, FirewallError> {
    let tables = Tables::new();
    with_steps(&tables, steps, |built| {
        let mut batch = delete_batch(&tables, sets, destroy);
        built.append(&mut batch);
        batch.send()
    })
}

/// The sets named by `errors`, or None when an error names something else.
fn failing_sets(errors: &[(Object, Errno)]) -> Option<BTreeSet<&'static str>> {
    errors.iter().map(|(o, _)| set_of(o)).collect()
}

/// Delete `sets` in one batch, or two when something is missing (see the module docs).
/// Elements, sets and tables that are already gone do not fail.
/// `steps`: services' member changes, sent with each batch (they are idempotent).
pub(super) fn delete_units(mut sets: Vec<SetUnits>, steps: &[Step]) -> Result<(), FirewallError> {
    sets.retain(|g| !g.units.is_empty());
    if sets.is_empty() && steps.is_empty() {
        return Ok(());
    }
    if DESTROY.load(Ordering::Relaxed) == UNKNOWN && !kernel_may_destroy() {
        // Each hook is a process of its own: asking the kernel would cost every teardown on
        // an older kernel a refused batch first.
        DESTROY.store(NO, Ordering::Relaxed);
    }
    if DESTROY.load(Ordering::Relaxed) != NO {
        let errors = send(&sets, true, steps)?;
        if errors.is_empty() {
            DESTROY.store(YES, Ordering::Relaxed);
            return Ok(());
        }
        let refused = errors
            .iter()
            .all(|(_, e)| matches!(*e, Errno::EINVAL | Errno::EOPNOTSUPP));
        if refused && DESTROY.load(Ordering::Relaxed) == UNKNOWN {
            DESTROY.store(NO, Ordering::Relaxed);
        } else {
            if errors.iter().any(|(_, e)| *e != Errno::ENOENT) {
                return first_error("delete", errors);
            }
            DESTROY.store(YES, Ordering::Relaxed);
            // Destroying, ENOENT only means a missing table or set: nothing of it to delete.
            let Some(gone) = failing_sets(&errors) else {
                return first_error("delete", errors);
            };
            sets.retain(|g| !gone.contains(g.name()));
            if sets.is_empty() && steps.is_empty() {
                return Ok(());
            }
            return first_error("delete", send(&sets, true, steps)?);
        }
    }
    let errors = send(&sets, false, steps)?;
    if errors.is_empty() {
        return Ok(());
    }
    if errors.iter().any(|(_, e)| *e != Errno::ENOENT) {
        return first_error("delete", errors);
    }
    let Some(failing) = failing_sets(&errors) else {
        return first_error("delete", errors);
    };
    // Keep only what the failing sets hold (a missing set holds nothing); the others were
    // rolled back with the batch and go again as they are.
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    for g in sets.iter_mut().filter(|g| failing.contains(g.name())) {
        match dump_set(&sock, g.family, g.set)? {
            None => g.units.clear(),
            Some(present) => {
                let present: HashSet<(Vec<u8>, bool)> = present
                    .into_iter()
                    .map(|e| (e.key, e.flags & INTERVAL_END != 0))
                    .collect();
                g.units.retain(|u| {
                    u.elems
                        .iter()
                        .all(|e| present.contains(&(e.key.clone(), e.flags & INTERVAL_END != 0)))
                });
            }
        }
    }
    sets.retain(|g| !g.units.is_empty());
    if sets.is_empty() {
        return Ok(());
    }
    first_error("delete", send(&sets, false, steps)?)
}
