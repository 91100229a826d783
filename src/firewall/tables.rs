//! The skeleton's life: probing which table is there and how old it is, creating or re-creating
//! a table whole, deleting both.
//!
//! Upgrades: a table made by an older nethook lacks its probe set (`skeleton::PROBES`). It is
//! deleted and created again in ONE batch (rules cannot be patched in place safely: their order
//! matters), which drops every element in it; `ensure_skeleton` then returns true and the caller
//! restores the elements of every live endpoint (`restore`). The hook only probes when an
//! element batch failed with ENOENT, and every element batch touches the probe set of each table
//! it adds to (see `probe.rs`), so an old table is noticed by the first setup after an upgrade
//! at no cost to the others.

use std::ffi::CStr;
use std::net::Ipv4Addr;

use nftnl::{Chain, MsgType, Policy, Rule, Table};
use nix::errno::Errno;

use super::batch::BatchBuilder;
use super::encode;
use super::error::{first_error, nl_err, FirewallError, Object};
use super::skeleton::{self, ChainKind, PROBES, TABLE};
use super::types::{TableFamily, TABLE_NAME};
use crate::kernel::netlink::{self, Bus, MsgBuilder, NlSocket};
use crate::sys::nft::Borrowed;

pub(super) fn table(family: TableFamily) -> Table {
    Table::new(TABLE, family.proto())
}

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;

/// Does the object named by one GET request exist? ENOENT → false.
fn probe(
    msg_type: u32,
    family: TableFamily,
    attrs: &[(u16, &str)],
    object: Object,
) -> Result<bool, FirewallError> {
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let ty = ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | msg_type as u16;
    let mut m = MsgBuilder::nfnl(ty, netlink::NLM_F_ACK, 1, family.nfproto());
    for (attr, val) in attrs {
        m.attr_str(*attr, val);
    }
    sock.send(&m.finish()).map_err(nl_err("send"))?;
    let errors = sock.collect_acks(&[1].into()).map_err(nl_err("receive"))?;
    match errors.first() {
        None => Ok(true),
        Some((_, e)) if *e == libc::ENOENT => Ok(false),
        Some((_, e)) => Err(FirewallError::Kernel {
            op: "get",
            object,
            errno: Errno::from_raw(*e),
        }),
    }
}

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;

/// Does table inet nethook (both None), its set `set`, or its chain `chain` exist?
pub(super) fn probe_exists(
    object: Object,
    set: Option<&CStr>,
    chain: Option<&CStr>,
) -> Result<bool, FirewallError> {
    let inet = TableFamily::Inet;
    match (set, chain) {
        (Some(s), _) => probe(
            libc::NFT_MSG_GETSET as u32,
            inet,
            &[
                (NFTA_SET_TABLE, TABLE_NAME),
                (NFTA_SET_NAME, &s.to_string_lossy()),
            ],
            object,
        ),
        (None, Some(c)) => probe(
            libc::NFT_MSG_GETCHAIN as u32,
            inet,
            &[
                (NFTA_CHAIN_TABLE, TABLE_NAME),
                (NFTA_CHAIN_NAME, &c.to_string_lossy()),
            ],
            object,
        ),
        (None, None) => table_exists_in(inet),
    }
}

fn table_exists_in(family: TableFamily) -> Result<bool, FirewallError> {
    probe(
        libc::NFT_MSG_GETTABLE as u32,
        family,
        &[(NFTA_TABLE_NAME, TABLE_NAME)],
        Object::Table(family),
    )
}

fn set_exists(family: TableFamily, set: &'static CStr) -> Result<bool, FirewallError> {
    let name = cstr_static(set);
    probe(
        libc::NFT_MSG_GETSET as u32,
        family,
        &[(NFTA_SET_TABLE, TABLE_NAME), (NFTA_SET_NAME, name)],
        Object::Set(name),
    )
}

/// Does `table inet nethook` exist (one NFT_MSG_GETTABLE)? See [`missing_skeleton`] for all of
/// the skeleton.
pub fn table_exists() -> Result<bool, FirewallError> {
    table_exists_in(TableFamily::Inet)
}

/// How a table that is not current is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TableState {
    /// Made by an older nethook: it lacks the probe set.
    Old,
    Missing,
}

/// The tables that are not current (one GET per table when both are).
fn stale_tables() -> Result<Vec<(TableFamily, TableState)>, FirewallError> {
    let mut out = Vec::new();
    for (family, probe_set) in PROBES {
        if set_exists(family, probe_set)? {
            continue;
        }
        let state = if table_exists_in(family)? {
            TableState::Old
        } else {
            TableState::Missing
        };
        out.push((family, state));
    }
    Ok(out)
}

/// What of the skeleton is missing or out of date, for people ("table inet nethook", "table
/// bridge nethook", "an older version of table inet nethook"). Empty when both tables are
/// current.
pub fn missing_skeleton() -> Result<Vec<&'static str>, FirewallError> {
    Ok(stale_tables()?
        .into_iter()
        .map(|(family, state)| match (family, state) {
            (TableFamily::Inet, TableState::Missing) => "table inet nethook",
            (TableFamily::Bridge, TableState::Missing) => "table bridge nethook",
            (TableFamily::Inet, _) => "an older version of table inet nethook",
            (TableFamily::Bridge, _) => "an older version of table bridge nethook",
        })
        .collect())
}

/// Create each table that is missing and re-create each one an older nethook made (delete and
/// create in one batch), so both are current. Returns whether anything was (re)created: then
/// the elements of every live endpoint are missing and must be put back with
/// [`restore`](super::restore) (all at once is fine), and the forwarding guard with
/// [`guard_forwarding`](super::guard_forwarding) if nethook owns forwarding. Call with the
/// nethook lock held.
pub fn ensure_skeleton() -> Result<bool, FirewallError> {
    let stale = stale_tables()?;
    if stale.is_empty() {
        return Ok(false);
    }
    create_tables(&stale)?;
    Ok(true)
}

/// The two tables (the nftnl objects that chains, sets and rules borrow).
pub(super) struct Tables {
    inet: Table,
    bridge: Table,
}

impl Tables {
    pub(super) fn new() -> Self {
        Tables {
            inet: table(TableFamily::Inet),
            bridge: table(TableFamily::Bridge),
        }
    }

    pub(super) fn get(&self, family: TableFamily) -> &Table {
        match family {
            TableFamily::Inet => &self.inet,
            TableFamily::Bridge => &self.bridge,
        }
    }
}

/// One chain of the skeleton as an nftnl object.
pub(super) struct BuiltChain<'a> {
    pub(super) family: TableFamily,
    pub(super) name: &'static str,
    chain: Chain<'a>,
}

/// Build every chain of the skeleton (nftnl objects).
pub(super) fn build_chains(tables: &Tables) -> Vec<BuiltChain<'_>> {
    skeleton::chains()
        .into_iter()
        .map(|spec| {
            let mut chain = Chain::new(spec.name, tables.get(spec.family));
            if let ChainKind::Base { ty, hook, priority } = spec.kind {
                chain.set_type(ty);
                chain.set_hook(hook, priority);
                chain.set_policy(Policy::Accept);
            }
            BuiltChain {
                family: spec.family,
                name: cstr_static(spec.name),
                chain,
            }
        })
        .collect()
}

/// Build the skeleton's rules for the given chains, each with its comment.
pub(super) fn build_rules<'a>(chains: &'a [BuiltChain<'a>]) -> Vec<(Object, Rule<'a>)> {
    let mut per_chain: Vec<(TableFamily, &str, usize)> = Vec::new();
    skeleton::rules()
        .into_iter()
        .filter_map(|spec| {
            let family = spec.family;
            let name = cstr_static(spec.chain);
            let built = chains
                .iter()
                .find(|c| c.name == name && c.family == family)?;
            let index = match per_chain
                .iter_mut()
                .find(|(f, n, _)| *f == family && *n == name)
            {
                Some((_, _, i)) => {
                    *i += 1;
                    *i
                }
                None => {
                    per_chain.push((family, name, 0));
                    0
                }
            };
            let mut rule = Rule::new(&built.chain);
            for e in &spec.exprs {
                rule.add_expr(e);
            }
            // Invariant: the comments are short constants (< NFTNL_UDATA_COMMENT_MAXLEN = 128),
            // pinned by the golden tests, so this cannot fail; a failure would only drop the text.
            let _ = rule.set_comment(spec.comment);
            Some((
                Object::Rule {
                    family,
                    chain: name,
                    index,
                },
                rule,
            ))
        })
        .collect()
}

pub(super) fn cstr_static(c: &'static CStr) -> &'static str {
    // Invariant: all names in `skeleton` are ASCII literals.
    c.to_str().unwrap_or("?")
}

/// The user data nft attaches to a set of the skeleton (key byte order, comment).
fn set_udata(spec: &skeleton::SetSpec) -> Vec<u8> {
    let mut udata = spec
        .key_byteorder
        .map(encode::udata_key_byteorder)
        .unwrap_or_default();
    // Invariant: the comments are short constants (the golden listing test pins them).
    if let Some(comment) = spec.comment.and_then(encode::udata_set_comment) {
        udata.extend(comment);
    }
    udata
}

/// Create the given tables in ONE batch: an old one is deleted first, then each table, its
/// sets, chains and rules are added.
fn create_tables(stale: &[(TableFamily, TableState)]) -> Result<(), FirewallError> {
    first_error("create", with_create_batch(stale, |batch| batch.send())?)
}

/// The batch of [`create_tables`], handed to `use_batch` (its messages borrow the nftnl
/// objects built here).
pub(super) fn with_create_batch<R>(
    stale: &[(TableFamily, TableState)],
    use_batch: impl FnOnce(BatchBuilder<'_>) -> R,
) -> R {
    let tables = Tables::new();
    let wanted = |family: TableFamily| stale.iter().any(|(f, _)| *f == family);
    let sets: Vec<_> = skeleton::all_sets()
        .filter(|spec| wanted(spec.family))
        .map(|spec| {
            let set = nftnl::set::Set::<Ipv4Addr>::new_named(
                spec.name,
                spec.id,
                tables.get(spec.family),
                spec.family.proto(),
            );
            crate::sys::nft::configure_set(
                &set,
                spec.key_type,
                spec.key_len,
                spec.flags,
                spec.data,
                spec.concat,
                &set_udata(spec),
            );
            (cstr_static(spec.name), set)
        })
        .collect();
    let chains = build_chains(&tables);
    let rules = build_rules(&chains);

    let mut batch = BatchBuilder::new();
    for (family, state) in stale {
        let table = tables.get(*family);
        if *state == TableState::Old {
            batch.push(Object::Table(*family), Borrowed(table), MsgType::Del);
        }
        batch.push(Object::Table(*family), Borrowed(table), MsgType::Add);
    }
    for (name, set) in &sets {
        batch.push(Object::Set(name), Borrowed(set), MsgType::Add);
    }
    for c in chains.iter().filter(|c| wanted(c.family)) {
        let object = Object::Chain {
            family: c.family,
            name: c.name,
        };
        batch.push(object, Borrowed(&c.chain), MsgType::Add);
    }
    for (object, rule) in &rules {
        let Object::Rule { family, .. } = object else {
            continue;
        };
        if wanted(*family) {
            batch.push(object.clone(), Borrowed(rule), MsgType::Add);
        }
    }
    use_batch(batch)
}

/// Delete both of nethook's tables with everything in them (tests, cleanup). Ok(false) if
/// neither existed.
pub fn delete_table() -> Result<bool, FirewallError> {
    let mut deleted = false;
    for family in [TableFamily::Inet, TableFamily::Bridge] {
        let t = table(family);
        let mut batch = BatchBuilder::new();
        batch.push(Object::Table(family), Borrowed(&t), MsgType::Del);
        let errors = batch.send()?;
        if errors.iter().any(|(_, e)| *e == Errno::ENOENT) {
            continue;
        }
        first_error("delete", errors)?;
        deleted = true;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_chains_rules_and_a_probe_set() {
        let tables = Tables::new();
        let chains = build_chains(&tables);
        let rules = build_rules(&chains);
        assert_eq!(
            rules.len(),
            skeleton::rules().len(),
            "every rule finds its chain"
        );
        for (family, probe) in PROBES {
            assert!(chains.iter().any(|c| c.family == family));
            assert!(rules
                .iter()
                .any(|(o, _)| matches!(o, Object::Rule { family: f, .. } if *f == family)));
            assert!(
                skeleton::all_sets().any(|s| s.family == family && s.name == probe),
                "probe set {probe:?} is in table {family}"
            );
        }
        // Set ids are unique within a batch.
        let mut ids: Vec<_> = skeleton::all_sets().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), skeleton::all_sets().count());
    }
}
