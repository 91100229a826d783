//! Which of an endpoint's elements the kernel's sets hold, for CHECK: one dump per set
//! the elements name, on one socket. Elements are compared as `delete` compares them
//! (key, and whether it ends an interval).

use std::collections::HashSet;

use super::error::{nl_err, FirewallError};
use super::readback::dump_set;
use super::types::Elements;
use super::units::element_units;
use crate::kernel::netlink::{Bus, NlSocket};

const INTERVAL_END: u32 = libc::NFT_SET_ELEM_INTERVAL_END as u32;

/// One line per element of `elems` that is not in its set (or whose set or table is gone).
pub fn missing_elements(elems: &Elements) -> Result<Vec<String>, FirewallError> {
    let sets = element_units(elems, false)?;
    let mut missing = Vec::new();
    if sets.iter().all(|g| g.units.is_empty()) {
        return Ok(missing);
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    for g in sets.iter().filter(|g| !g.units.is_empty()) {
        let present: Option<HashSet<(Vec<u8>, bool)>> =
            dump_set(&sock, g.family, g.set)?.map(|p| {
                p.into_iter()
                    .map(|e| (e.key, e.flags & INTERVAL_END != 0))
                    .collect()
            });
        for u in &g.units {
            let there = present.as_ref().is_some_and(|p| {
                u.elems
                    .iter()
                    .all(|e| p.contains(&(e.key.clone(), e.flags & INTERVAL_END != 0)))
            });
            if !there {
                missing.push(format!("nftables {} is missing", u.object));
            }
        }
    }
    Ok(missing)
}
