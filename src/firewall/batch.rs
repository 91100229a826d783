//! Where batches are sent. Every operation of the firewall is ONE atomic nftables batch
//! (all or nothing, possibly spanning both tables), built by one [`BatchBuilder`] and sent
//! in one datagram, the socket's buffers sized to fit it and its replies.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use nftnl::{MsgType, NlMsg};
use nix::errno::Errno;

use super::error::{nl_err, FirewallError, Object};
use super::tables::Tables;
use super::units::SetUnits;
use crate::kernel::netlink::{Bus, NlSocket};
use crate::sys::nft::{Borrowed, ElemMsg, ElemSpec, MAX_ELEMS_PER_MSG};

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

/// The messages of one batch, in order, each with what it is about. The only way messages
/// reach the kernel is [`BatchBuilder::send`].
#[derive(Default)]
pub(super) struct BatchBuilder<'a> {
    items: Vec<Item<'a>>,
}

impl<'a> BatchBuilder<'a> {
    pub(super) fn new() -> Self {
        BatchBuilder { items: Vec::new() }
    }

    /// Append one message (a table, set, chain, rule, or element list someone else built).
    pub(super) fn push(&mut self, object: Object, msg: impl NlMsg + 'a, ty: MsgType) {
        self.items.push(Item {
            object,
            msg: Box::new(msg),
            ty,
        });
    }

    /// Append the element messages of `sets`: per set, consecutive units in messages of at
    /// most `MAX_ELEMS_PER_MSG` elements (an interval's two ends stay in one message).
    /// `destroy`: deletes go as NFT_MSG_DESTROYSETELEM (see `delete.rs`).
    pub(super) fn elements(
        &mut self,
        tables: &Tables,
        sets: &[SetUnits],
        ty: MsgType,
        destroy: bool,
    ) {
        for g in sets {
            let table = tables.get(g.family);
            let mut start = 0;
            while start < g.units.len() {
                let mut end = start;
                let mut count = 0;
                while end < g.units.len()
                    && (end == start || count + g.units[end].elems.len() <= MAX_ELEMS_PER_MSG)
                {
                    count += g.units[end].elems.len();
                    end += 1;
                }
                let chunk = &g.units[start..end];
                let specs: Vec<ElemSpec> = chunk.iter().flat_map(|u| u.elems.clone()).collect();
                let msg = ElemMsg::new(table, g.set, g.add_flags, &specs).destroying(destroy);
                let object = match chunk {
                    [only] => only.object.clone(),
                    _ => Object::Elements {
                        set: g.name(),
                        count: chunk.len(),
                    },
                };
                self.push(object, msg, ty);
                start = end;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn items(&self) -> &[Item<'a>] {
        &self.items
    }

    /// The batch as it goes on the wire, and the sequence numbers that expect an ACK.
    pub(super) fn finalize(&self) -> (Vec<u8>, Range<u32>) {
        let mut batch = nftnl::Batch::new();
        for it in &self.items {
            batch.add(&Borrowed(&*it.msg), it.ty);
        }
        let batch = batch.finalize();
        let bytes = batch.iter().flat_map(|page| page.iter().copied()).collect();
        (bytes, batch.sequence_numbers())
    }

    /// Send the batch in one datagram. Returns the kernel's errors as (object, errno), empty
    /// on success.
    ///
    /// The socket's send buffer is sized to fit the batch (see `NlSocket::reserve_send`), and
    /// the receive buffer to room for one reply per message.
    pub(super) fn send(self) -> Result<Vec<(Object, Errno)>, FirewallError> {
        let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
        let (bytes, seqs) = self.finalize();
        let n = self.items.len() as u32;
        // nftnl numbers the messages consecutively; when the kernel ACKs batch begin/end
        // (6.10+) the range also covers those two, otherwise only the messages.
        let first_msg_seq = if seqs.len() as u32 == n + 2 {
            seqs.start + 1
        } else {
            seqs.start
        };
        let object_of = |seq: u32| -> Object {
            seq.checked_sub(first_msg_seq)
                .and_then(|i| self.items.get(i as usize))
                .map(|it| it.object.clone())
                .unwrap_or(Object::Batch)
        };
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
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ipnetwork::Ipv4Network;

    use super::*;
    use crate::firewall::types::{port, sample, Elements};
    use crate::firewall::units::element_units;

    fn objects(elems: &Elements) -> Vec<String> {
        let sets = element_units(elems, true).unwrap();
        let mut batch = BatchBuilder::new();
        batch.elements(&Tables::new(), &sets, MsgType::Add, false);
        batch.items().iter().map(|i| i.object.to_string()).collect()
    }

    #[test]
    fn one_message_per_set_naming_a_lone_element() {
        let elems = sample();
        assert_eq!(
            objects(&elems),
            vec![
                "masq4 element 10.77.0.0/16",
                "nomasq4 element 10.77.0.0/16 . 10.0.0.0/8",
                "nets element for bridge nethook0",
                "intra element for bridge nethook0",
                "ports4 element tcp . 8080",
                // Two endpoints' MACs share one message.
                "2 elements of set macs",
                "addrs4 element for host interface nh0123456789ab",
                "l2open element for host interface nh0123456789ab",
            ]
        );
    }

    #[test]
    fn thousands_of_ports_fit_in_few_messages() {
        let elems = Elements {
            ports4: (1..=3000).map(port).collect(),
            ..Elements::default()
        };
        let names = objects(&elems);
        assert_eq!(names.len(), 3000usize.div_ceil(MAX_ELEMS_PER_MSG));
        assert_eq!(
            names[0],
            format!("{MAX_ELEMS_PER_MSG} elements of set ports4")
        );
        // Each message stays far below libnftnl's 64 KiB nest limit.
        let sets = element_units(&elems, true).unwrap();
        let mut one = BatchBuilder::new();
        one.elements(&Tables::new(), &sets[..1], MsgType::Add, false);
        let first = BatchBuilder {
            items: one.items.drain(..1).collect(),
        };
        let (bytes, _) = first.finalize();
        assert!(bytes.len() < 16 * 1024, "{}", bytes.len());
        // An interval's two ends never straddle two messages.
        let elems = Elements {
            masq4: (0..=255u8)
                .map(|i| Ipv4Network::new(Ipv4Addr::new(10, i, 0, 0), 16).unwrap())
                .collect(),
            ..Elements::default()
        };
        assert_eq!(objects(&elems).len(), 2, "256 intervals = 512 elements");
    }
}
