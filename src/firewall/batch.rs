//! Sending nftables batches: one datagram, the socket's buffers sized to fit it and its replies.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use nftnl::{Batch, MsgType, NlMsg};
use nix::errno::Errno;

use super::{nl_err, FirewallError, Object};
use crate::kernel::netlink::{Bus, NlSocket};
use crate::sys::nft::Borrowed;

/// One message of a batch and what it is about.
pub(super) struct Item<'a> {
    pub(super) object: Object,
    pub(super) msg: Box<dyn NlMsg + 'a>,
    pub(super) ty: MsgType,
}

/// Batches sent by this process (tests count them: teardown must cost one or two).
static BATCHES: AtomicU64 = AtomicU64::new(0);

/// How many nftables batches this process has sent so far (for tests).
#[doc(hidden)]
pub fn batches_sent() -> u64 {
    BATCHES.load(Ordering::Relaxed)
}

/// Send `items` as ONE nftables batch (atomic: all or nothing; it may span both tables). Returns
/// the kernel's errors as (object, errno), empty on success.
///
/// The batch goes in one datagram, so the socket's send buffer is sized to fit it (see
/// `NlSocket::reserve_send`), and the receive buffer to room for one reply per message.
pub(super) fn run_batch(items: &[Item<'_>]) -> Result<Vec<(Object, Errno)>, FirewallError> {
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let mut batch = Batch::new();
    for it in items {
        batch.add(&Borrowed(&*it.msg), it.ty);
    }
    let batch = batch.finalize();
    let seqs = batch.sequence_numbers();
    let n = items.len() as u32;
    // nftnl numbers the messages consecutively; when the kernel ACKs batch begin/end (6.10+) the
    // range also covers those two, otherwise only the messages.
    let first_msg_seq = if seqs.len() as u32 == n + 2 {
        seqs.start + 1
    } else {
        seqs.start
    };
    let object_of = |seq: u32| -> Object {
        seq.checked_sub(first_msg_seq)
            .and_then(|i| items.get(i as usize))
            .map(|it| it.object.clone())
            .unwrap_or(Object::Batch)
    };
    let bytes: Vec<u8> = batch.iter().flat_map(|page| page.iter().copied()).collect();
    sock.reserve_send(bytes.len());
    // An error reply echoes the failed message: the largest one is an element message of
    // ~10 KiB; the others are a few dozen bytes.
    sock.reserve_replies(seqs.len());
    BATCHES.fetch_add(1, Ordering::Relaxed);
    sock.send(&bytes).map_err(nl_err("send"))?;
    let expect: BTreeSet<u32> = seqs.collect();
    let errors = sock.collect_acks(&expect).map_err(nl_err("receive"))?;
    Ok(errors
        .into_iter()
        .map(|(seq, errno)| (object_of(seq), Errno::from_raw(errno)))
        .collect())
}

/// Map batch errors of an element add/delete to the one error to report.
pub(super) fn first_error(
    op: &'static str,
    errors: Vec<(Object, Errno)>,
) -> Result<(), FirewallError> {
    // A taken port is the interesting error; anything else (e.g. ENOENT: the skeleton is missing)
    // is reported as it is. Messages after a failure may be reported as failing too.
    if let Some((
        Object::Port {
            proto,
            host_ip,
            host_port,
        },
        _,
    )) = errors
        .iter()
        .find(|(o, e)| matches!(o, Object::Port { .. }) && *e == Errno::EEXIST)
    {
        return Err(FirewallError::PortTaken {
            proto: *proto,
            host_ip: *host_ip,
            host_port: *host_port,
        });
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some((object, errno)) => Err(FirewallError::Kernel { op, object, errno }),
    }
}
