//! Route netlink (NETLINK_ROUTE) with typed messages: requests are `netlink-packet-route`
//! values, serialized by `netlink-packet-core`, sent over our synchronous `NlSocket`; replies
//! are framed by `message::Messages` and parsed back into the same types.
//!
//! Three shapes of exchange cover what the hook asks: a change the kernel acknowledges
//! (`ack`), a lookup answered by one message (`get`), a dump (`dump`). Errors are
//! `io::Error`s carrying the kernel's errno (callers test for ENODEV, EEXIST, EINVAL and name
//! the operation in their own error); a reply that does not parse is `InvalidData` naming
//! what it was.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{NetlinkMessage, NlasIterator, ParseableParametrized};
use netlink_packet_route::link::{LinkAttribute, LinkHeader, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::message::Msg;
use super::{Bus, NlSocket, NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// RTM_NEWLINK: the answer to a link lookup.
const RTM_NEWLINK: u16 = 16;
/// Length of `struct ifinfomsg`, in front of a link message's attributes.
const IFINFOMSG_LEN: usize = 16;

/// A NETLINK_ROUTE socket in the namespace of the thread that opened it, numbering its
/// requests.
pub(crate) struct RouteSocket {
    sock: NlSocket,
    seq: AtomicU32,
}

impl RouteSocket {
    pub(crate) fn open() -> io::Result<Self> {
        Ok(RouteSocket {
            sock: NlSocket::open(Bus::Route)?,
            seq: AtomicU32::new(0),
        })
    }

    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Sends `msg` with `flags` (e.g. `NLM_F_CREATE | NLM_F_EXCL`) and waits for the kernel's
    /// acknowledgement; its error, if any, is the result.
    pub(crate) fn ack(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.next_seq();
        self.sock.send(&ack_request(msg, flags, seq))?;
        match self.sock.collect_acks(&[seq].into())?.first() {
            Some((_, errno)) => Err(io::Error::from_raw_os_error(*errno)),
            None => Ok(()),
        }
    }

    /// Sends every request of `msgs` (each with its flags, e.g. `NLM_F_CREATE`) in one
    /// datagram, each asking for an acknowledgement, and reads every acknowledgement.
    /// rtnetlink handles the requests of a datagram one after the other and goes on after
    /// one fails, so all acknowledgements are queued by the time `send` returns. `Err`
    /// carries the index in `msgs` of the first request the kernel refused, and its errno
    /// (`None` when the exchange itself failed).
    pub(crate) fn batch(
        &self,
        msgs: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<(), (Option<usize>, io::Error)> {
        let count = msgs.len() as u32;
        // Reserve the numbers in one step, so they are consecutive.
        let first = self.seq.fetch_add(count, Ordering::Relaxed).wrapping_add(1);
        let bytes = batch_request(msgs, first);
        self.sock.send(&bytes).map_err(|e| (None, e))?;
        let expect = (0..count).map(|i| first.wrapping_add(i)).collect();
        let errors = self.sock.collect_acks(&expect).map_err(|e| (None, e))?;
        match errors.iter().min_by_key(|(seq, _)| seq.wrapping_sub(first)) {
            Some((seq, errno)) => Err((
                Some(seq.wrapping_sub(first) as usize),
                io::Error::from_raw_os_error(*errno),
            )),
            None => Ok(()),
        }
    }

    /// The socket, for the interface ioctls, which act in its namespace whatever its
    /// family (they fall through to the device layer).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.fd()
    }

    /// Sends a lookup that the kernel answers with one message (or an error), and hands
    /// that message to `decode`.
    pub(crate) fn get<T>(
        &self,
        msg: RouteNetlinkMessage,
        decode: impl FnOnce(&Msg<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut decode = Some(decode);
        let mut answer = None;
        self.sock
            .dump(&get_request(msg, self.next_seq()), |reply| {
                if let Some(decode) = decode.take() {
                    answer = Some(decode(reply));
                }
                Ok(())
            })?;
        answer.unwrap_or_else(|| Err(malformed("a lookup ended without an answer")))
    }

    /// Sends a dump request and hands every answer to `each`. An error from `each` ends
    /// nothing early: the rest of the dump is still read (so that nothing of it is left
    /// queued for the next request), then the first error is returned.
    pub(crate) fn dump(
        &self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(&Msg<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut first_err = None;
        self.sock
            .dump(&dump_request(msg, self.next_seq()), |reply| {
                if let Err(e) = each(reply) {
                    first_err.get_or_insert(e);
                }
                Ok(())
            })?;
        first_err.map_or(Ok(()), Err)
    }
}

/// The bytes of a request the kernel is to acknowledge.
pub(crate) fn ack_request(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    encode(msg, flags | NLM_F_ACK, seq)
}

/// The bytes of a datagram of requests each to be acknowledged, numbered from `first_seq`.
pub(crate) fn batch_request(msgs: Vec<(RouteNetlinkMessage, u16)>, first_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (msg, flags)) in msgs.into_iter().enumerate() {
        out.extend(ack_request(msg, flags, first_seq.wrapping_add(i as u32)));
        // Each message starts 4-aligned (NLMSG_ALIGN); encoded ones are already.
        out.resize(super::message::align4(out.len()), 0);
    }
    out
}

/// The bytes of a lookup answered by one message.
pub(crate) fn get_request(msg: RouteNetlinkMessage, seq: u32) -> Vec<u8> {
    encode(msg, 0, seq)
}

/// The bytes of a dump request.
pub(crate) fn dump_request(msg: RouteNetlinkMessage, seq: u32) -> Vec<u8> {
    encode(msg, NLM_F_DUMP, seq)
}

fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = flags | NLM_F_REQUEST;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parses any route netlink message in full.
pub(crate) fn decode(msg: &Msg<'_>) -> io::Result<RouteNetlinkMessage> {
    RouteNetlinkMessage::parse_with_param(msg.payload, msg.ty).map_err(|e| {
        malformed(format_args!(
            "cannot parse route netlink message {}: {e}",
            msg.ty
        ))
    })
}

/// Parses a link message, keeping only the attributes whose types are in `keep`
/// (`libc::IFLA_*`).
///
/// Why not all: a link message carries every statistic and per-family setting of the link
/// (~1.5 KiB, a few hundred values), and an ownership check reads four of them; parsing the
/// rest would allocate for each.
pub(crate) fn decode_link(msg: &Msg<'_>, keep: &[u16]) -> io::Result<LinkMessage> {
    if msg.ty != RTM_NEWLINK {
        return Err(malformed(format_args!(
            "expected a link message (type {RTM_NEWLINK}), got type {}",
            msg.ty
        )));
    }
    let bad = |e| malformed(format_args!("cannot parse a link message: {e}"));
    let header = LinkHeader::parse(msg.payload).map_err(bad)?;
    let mut link = LinkMessage::default();
    for nla in NlasIterator::new(msg.payload.get(IFINFOMSG_LEN..).unwrap_or_default()) {
        let nla = nla.map_err(bad)?;
        if keep.contains(&(nla.kind() & NLA_TYPE_MASK)) {
            link.attributes
                .push(LinkAttribute::parse_with_param(&nla, header.interface_family).map_err(bad)?);
        }
    }
    link.header = header;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::message::Messages;
    use netlink_packet_route::link::{InfoKind, LinkFlags, LinkInfo, State};
    use netlink_packet_route::route::RouteMessage;

    fn frame(bytes: &[u8]) -> Msg<'_> {
        Messages::new(bytes).next().unwrap().unwrap()
    }

    #[test]
    fn requests_carry_flags_and_sequence_numbers() {
        let msg = || RouteNetlinkMessage::GetLink(LinkMessage::default());
        let ack = ack_request(msg(), 0x600, 9);
        let m = frame(&ack);
        assert_eq!(
            (m.ty, m.seq, m.flags),
            (18, 9, 0x600 | NLM_F_ACK | NLM_F_REQUEST)
        );
        assert_eq!(m.payload.len(), IFINFOMSG_LEN);
        assert_eq!(frame(&get_request(msg(), 3)).flags, NLM_F_REQUEST);
        assert_eq!(
            frame(&dump_request(msg(), 4)).flags,
            NLM_F_DUMP | NLM_F_REQUEST
        );
    }

    /// A link message as the kernel sends it, with more attributes than a check reads.
    fn full_link() -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = 7;
        link.header.flags = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName("nh-abc".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::Controller(3),
            LinkAttribute::IfAlias("nethook:web".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
            LinkAttribute::LinkNetNsId(2),
        ];
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewLink(link));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        buf
    }

    #[test]
    fn a_link_message_keeps_only_the_attributes_asked_for() {
        let bytes = full_link();
        let keep = [libc::IFLA_MASTER, libc::IFLA_IFALIAS, libc::IFLA_LINKINFO];
        let link = decode_link(&frame(&bytes), &keep).unwrap();
        assert_eq!((link.header.index, link.header.flags), (7, LinkFlags::Up));
        assert_eq!(
            link.attributes,
            vec![
                LinkAttribute::Controller(3),
                LinkAttribute::IfAlias("nethook:web".into()),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
            ]
        );
        // In full, it is the message that was sent.
        let RouteNetlinkMessage::NewLink(all) = decode(&frame(&bytes)).unwrap() else {
            panic!("not a link message");
        };
        assert_eq!(all.attributes.len(), 7);
    }

    #[test]
    fn a_reply_of_another_kind_is_refused_with_what_it_was() {
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(RouteMessage::default()));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        let err = decode_link(&frame(&buf), &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("got type 24"), "{err}");
        // Cut short, a link message does not parse.
        let mut short = full_link();
        short.truncate(24);
        short[0..4].copy_from_slice(&24u32.to_ne_bytes());
        let err = decode_link(&frame(&short), &[]).unwrap_err();
        assert!(
            err.to_string().contains("cannot parse a link message"),
            "{err}"
        );
    }
}
