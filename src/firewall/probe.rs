//! The probe element: how an element batch notices a table that is missing or was made by an
//! older nethook, at no cost to the batches that find it current (see `skeleton::PROBES` for
//! the rule that keeps it working across versions, `tables.rs` for the re-creation).

use std::collections::BTreeSet;
use std::ffi::CStr;

use nftnl::MsgType;

use super::batch::BatchBuilder;
use super::encode;
use super::error::Object;
use super::skeleton::PROBES;
use super::tables::{cstr_static, Tables};
use super::types::TableFamily;
use super::units::{one, NLM_F_CREATE};
use crate::sys::nft::ElemMsg;

/// A no-op that only a current table accepts: add, without NLM_F_EXCL, an element no packet
/// can match (nfproto 0; the interface name `nethook/probe`, which the kernel refuses for a
/// link, as it has a '/') to the probe set of each table in `families`. The first batch
/// creates it and it stays (see `is_probe`); re-adding an element that is there gives the
/// kernel no work to commit, where adding and deleting one would leave a deferred free
/// behind every setup, which the next netfilter socket closed anywhere on the host would
/// wait for under nf_tables' commit lock. On a table from an older nethook the set is
/// missing and the batch fails with ENOENT, which makes the caller run `ensure_skeleton`,
/// which re-creates that table.
pub(super) fn touch_probes(
    batch: &mut BatchBuilder<'_>,
    tables: &Tables,
    families: &BTreeSet<TableFamily>,
) {
    for (family, set) in PROBES {
        if !families.contains(&family) {
            continue;
        }
        batch.push(
            Object::Set(cstr_static(set)),
            ElemMsg::new(
                tables.get(family),
                set,
                NLM_F_CREATE,
                &one(probe_key(family)),
            ),
            MsgType::Add,
        );
    }
}

/// The key of a table's probe element (an element no packet matches).
pub(super) fn probe_key(family: TableFamily) -> Vec<u8> {
    match family {
        TableFamily::Inet => vec![0u8],
        TableFamily::Bridge => {
            let mut key = b"nethook/probe".to_vec();
            key.resize(encode::IFNAME_LEN, 0);
            key
        }
    }
}

/// Is this element of `set` the probe that stays in it?
pub(super) fn is_probe(family: TableFamily, set: &CStr, key: &[u8]) -> bool {
    PROBES.contains(&(family, set)) && key == probe_key(family).as_slice()
}
