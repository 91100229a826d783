//! Conntrack cleanup over ctnetlink (NETLINK_NETFILTER, NFNL_SUBSYS_CTNETLINK), without the
//! `conntrack` binary.
//!
//! At teardown, entries that still point at a removed container would keep steering traffic
//! (above all UDP, whose entries are refreshed by every packet) to an address that is gone, or
//! keep a restarted service on the same host port from being reached. [`flush_for`] deletes:
//! - every IPv4 entry whose original or reply tuple has the container's address as source or
//!   destination (its own connections, and the DNATed connections to it: reply source = it);
//! - every IPv4 entry for one of the given host ports (proto + original destination port) that is
//!   addressed to a local address of this network namespace and was NOT destination-NATed: the
//!   stale "to the host itself" entries that would shadow a new DNAT mapping. The local-address
//!   condition spares the host's own outgoing connections to a remote port with the same number.
//!
//! The kernel cannot flush by tuple filter (CTA_FILTER is for dumps; a filtered flush only knows
//! mark/status/zone), so this dumps the IPv4 table once (kernel-side family filter) and deletes
//! the matching entries by original tuple + CTA_ID (so a new entry that reuses the tuple in
//! between is not hit). An entry that expired meanwhile (ENOENT) is not an error.
//!
//! Like the firewall, it acts in the network namespace of the calling thread (fresh sockets).
//!
//! Callers: run it at teardown after the elements are deleted; running it at setup for the new
//! host ports (with the new container's IP, which has no entries yet) also clears entries created
//! while no mapping existed.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use crate::kernel::netlink::route::{self, RouteSocket};
use crate::kernel::netlink::{self, Attrs, Bus, MsgBuilder, NlSocket};
use crate::model::ports::Proto;

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack: netlink {op}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("conntrack: {op} failed")]
    Kernel {
        op: &'static str,
        #[source]
        errno: Errno,
    },
}

fn nl_err(op: &'static str) -> impl FnOnce(io::Error) -> ConntrackError {
    move |source| match source.raw_os_error() {
        Some(e) => ConntrackError::Kernel {
            op,
            errno: Errno::from_raw(e),
        },
        None => ConntrackError::Netlink { op, source },
    }
}

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPS_DST_NAT: u32 = 1 << 5;

/// Deletes sent before their ACKs are read.
const DELETE_CHUNK: usize = 128;

/// One direction of a conntrack entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// A dumped entry, with what is needed to delete exactly it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: u32,
    /// Raw CTA_TUPLE_ORIG payload, sent back verbatim to delete.
    pub orig_raw: Vec<u8>,
    pub id: Option<[u8; 4]>,
    pub zone: Option<[u8; 2]>,
}

fn parse_tuple(buf: &[u8]) -> Tuple {
    let mut t = Tuple::default();
    for (ty, val) in Attrs::new(buf) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, v) in Attrs::new(val) {
                    let addr = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
                    match ty {
                        CTA_IP_V4_SRC => t.src = addr,
                        CTA_IP_V4_DST => t.dst = addr,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, v) in Attrs::new(val) {
                    let port = <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes);
                    match ty {
                        CTA_PROTO_NUM => t.proto = v.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => t.sport = port,
                        CTA_PROTO_DST_PORT => t.dport = port,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    t
}

/// Parse an IPCTNL_MSG_CT_NEW payload (after the 4-byte nfgenmsg).
pub(crate) fn parse_entry(attrs: &[u8]) -> Entry {
    let mut e = Entry::default();
    for (ty, val) in Attrs::new(attrs) {
        match ty {
            CTA_TUPLE_ORIG => {
                e.orig = parse_tuple(val);
                e.orig_raw = val.to_vec();
            }
            CTA_TUPLE_REPLY => e.reply = parse_tuple(val),
            CTA_STATUS => {
                if let Ok(b) = <[u8; 4]>::try_from(val) {
                    e.status = u32::from_be_bytes(b);
                }
            }
            CTA_ID => e.id = <[u8; 4]>::try_from(val).ok(),
            CTA_ZONE => e.zone = <[u8; 2]>::try_from(val).ok(),
            _ => {}
        }
    }
    e
}

/// Should `e` go? See the module documentation.
pub(crate) fn matches(
    e: &Entry,
    container_ip: Ipv4Addr,
    ports: &HashSet<(u8, u16)>,
    is_local: &dyn Fn(Ipv4Addr) -> bool,
) -> bool {
    let ip = Some(container_ip);
    if e.orig.src == ip || e.orig.dst == ip || e.reply.src == ip || e.reply.dst == ip {
        return true;
    }
    match (e.orig.dport, e.orig.dst) {
        (Some(port), Some(dst)) => {
            ports.contains(&(e.orig.proto, port)) && e.status & IPS_DST_NAT == 0 && is_local(dst)
        }
        _ => false,
    }
}

fn ct_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

/// Cheap pre-check: a dump walks the kernel's whole (global, all-namespace) conntrack hash, which
/// costs ~10-30 ms with the default 262144 buckets even when this netns has no entry. The per-netns
/// entry count in /proc/sys (resolved against the netns of the thread opening it) avoids that.
/// Missing file with /proc/sys/net present = nf_conntrack not loaded = no entries. Any doubt → false.
fn netns_has_no_entries() -> bool {
    match std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count") {
        Ok(s) => s.trim() == "0",
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::path::Path::new("/proc/sys/net/ipv4").exists()
        }
        Err(_) => false,
    }
}

/// IPv4 entries of this netns (the kernel filters on the family).
fn dump_ipv4(sock: &NlSocket) -> Result<Vec<Entry>, ConntrackError> {
    let req = MsgBuilder::nfnl(
        ct_type(IPCTNL_MSG_CT_GET),
        netlink::NLM_F_DUMP,
        1,
        libc::AF_INET as u8,
    )
    .finish();
    let mut out = Vec::new();
    let res = sock.dump(&req, |msg| {
        if msg.ty == ct_type(0) {
            out.push(parse_entry(msg.payload.get(4..).unwrap_or_default()));
        }
        Ok(())
    });
    match res {
        Ok(()) => Ok(out),
        // No conntrack support loaded in this netns / kernel: nothing to flush.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOENT)
            ) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(nl_err("dump")(e)),
    }
}

/// The dump request for this netns's IPv4 addresses (RTM_GETADDR, the kernel filters on
/// the family).
fn ipv4_addresses() -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    RouteNetlinkMessage::GetAddress(msg)
}

/// An address's own IPv4 address: IFA_LOCAL, or IFA_ADDRESS where there is no IFA_LOCAL
/// (on a point-to-point link IFA_ADDRESS is the peer's).
fn own_ipv4(msg: &AddressMessage) -> Option<Ipv4Addr> {
    let v4 = |a: &IpAddr| match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    };
    let find = |local: bool| {
        msg.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(a) if local => v4(a),
            AddressAttribute::Address(a) if !local => v4(a),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

/// IPv4 addresses configured in this netns.
fn local_ipv4() -> Result<HashSet<Ipv4Addr>, ConntrackError> {
    let sock = RouteSocket::open().map_err(nl_err("socket"))?;
    let mut out = HashSet::new();
    sock.dump(ipv4_addresses(), |reply| {
        if let RouteNetlinkMessage::NewAddress(msg) = route::decode(reply)? {
            if msg.header.family == AddressFamily::Inet {
                out.extend(own_ipv4(&msg));
            }
        }
        Ok(())
    })
    .map_err(nl_err("address dump"))?;
    Ok(out)
}

fn delete_msg(e: &Entry, seq: u32) -> Vec<u8> {
    let mut m = MsgBuilder::nfnl(
        ct_type(IPCTNL_MSG_CT_DELETE),
        netlink::NLM_F_ACK,
        seq,
        libc::AF_INET as u8,
    );
    m.nest_begin(CTA_TUPLE_ORIG).bytes(&e.orig_raw).nest_end();
    if let Some(id) = e.id {
        m.attr(CTA_ID, &id);
    }
    if let Some(zone) = e.zone {
        m.attr(CTA_ZONE, &zone);
    }
    m.finish()
}

/// Delete the conntrack entries of a removed container (see the module docs).
/// `mappings`: the (protocol, host port) pairs it published. Returns how many entries were deleted.
pub fn flush_for(
    container_ip: Ipv4Addr,
    mappings: &[(Proto, u16)],
) -> Result<usize, ConntrackError> {
    if netns_has_no_entries() {
        return Ok(0);
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let entries = dump_ipv4(&sock)?;
    if entries.is_empty() {
        return Ok(0);
    }
    let ports: HashSet<(u8, u16)> = mappings
        .iter()
        .map(|(p, port)| (p.number(), *port))
        .collect();
    let locals = if ports.is_empty() {
        HashSet::new()
    } else {
        local_ipv4()?
    };
    let is_local = |a: Ipv4Addr| a.is_loopback() || locals.contains(&a);
    let doomed: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches(e, container_ip, &ports, &is_local))
        .collect();

    let mut deleted = 0;
    let mut seq = 100u32;
    for chunk in doomed.chunks(DELETE_CHUNK) {
        let mut buf = Vec::new();
        let mut expect = BTreeSet::new();
        for e in chunk {
            seq += 1;
            expect.insert(seq);
            buf.extend_from_slice(&delete_msg(e, seq));
        }
        sock.reserve_replies(chunk.len());
        sock.send(&buf).map_err(nl_err("send"))?;
        let errors = sock.collect_acks(&expect).map_err(nl_err("receive"))?;
        // Every message of a plain (non-batch) send is processed and answered, so after the
        // first error the drain in collect_acks has the remaining replies: count the successes.
        let mut first = None;
        let mut gone = 0;
        for (_, errno) in &errors {
            if *errno == libc::ENOENT {
                gone += 1;
            } else {
                first.get_or_insert(*errno);
            }
        }
        if let Some(errno) = first {
            return Err(ConntrackError::Kernel {
                op: "delete",
                errno: Errno::from_raw(errno),
            });
        }
        deleted += chunk.len() - gone;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: Some(src.into()),
            dst: Some(dst.into()),
            proto,
            sport: Some(sport),
            dport: Some(dport),
        }
    }

    fn encode_tuple(t: &Tuple) -> Vec<u8> {
        let mut m = MsgBuilder::raw(0, 0, 0);
        m.nest_begin(CTA_TUPLE_IP);
        m.attr(CTA_IP_V4_SRC, &t.src.unwrap().octets())
            .attr(CTA_IP_V4_DST, &t.dst.unwrap().octets());
        m.nest_end()
            .nest_begin(CTA_TUPLE_PROTO)
            .attr(CTA_PROTO_NUM, &[t.proto]);
        m.attr(CTA_PROTO_SRC_PORT, &t.sport.unwrap().to_be_bytes());
        m.attr(CTA_PROTO_DST_PORT, &t.dport.unwrap().to_be_bytes())
            .nest_end();
        m.finish()[netlink::NLMSG_HDRLEN..].to_vec()
    }

    fn entry(orig: Tuple, reply: Tuple, status: u32) -> Entry {
        let mut m = MsgBuilder::raw(0, 0, 0);
        m.nest_begin(CTA_TUPLE_ORIG)
            .bytes(&encode_tuple(&orig))
            .nest_end();
        m.nest_begin(CTA_TUPLE_REPLY)
            .bytes(&encode_tuple(&reply))
            .nest_end();
        m.attr(CTA_STATUS, &status.to_be_bytes())
            .attr(CTA_ID, &[0, 0, 0, 9]);
        let bytes = m.finish();
        parse_entry(&bytes[netlink::NLMSG_HDRLEN..])
    }

    #[test]
    fn parse_roundtrip() {
        let o = tuple([192, 0, 2, 9], [192, 168, 50, 1], 17, 4000, 5353);
        let r = tuple([10, 77, 0, 2], [192, 0, 2, 9], 17, 53, 4000);
        let e = entry(o, r, IPS_DST_NAT);
        assert_eq!(
            (e.orig, e.reply, e.status, e.id),
            (o, r, IPS_DST_NAT, Some([0, 0, 0, 9]))
        );
        // The delete message carries the original tuple verbatim.
        let del = delete_msg(&e, 5);
        let payload = &del[netlink::NLMSG_HDRLEN + 4..];
        let attrs: Vec<_> = Attrs::new(payload).collect();
        assert_eq!(attrs[0], (CTA_TUPLE_ORIG, &e.orig_raw[..]));
        assert_eq!(attrs[1], (CTA_ID, &[0u8, 0, 0, 9][..]));
    }

    #[test]
    fn selection() {
        let c = Ipv4Addr::new(10, 77, 0, 2);
        let host = [192, 168, 50, 1];
        let ports: HashSet<_> = [(17u8, 5353u16)].into();
        let local = |a: Ipv4Addr| a == Ipv4Addr::from(host) || a.is_loopback();
        let m = |e: &Entry| matches(e, c, &ports, &local);
        // Container's own outgoing connection.
        assert!(m(&entry(
            tuple([10, 77, 0, 2], [192, 0, 2, 1], 6, 1, 80),
            tuple([192, 0, 2, 1], host, 6, 80, 1),
            0
        )));
        // DNATed to the container: only the reply tuple names it.
        assert!(m(&entry(
            tuple([192, 0, 2, 9], host, 6, 5, 8080),
            tuple([10, 77, 0, 2], [192, 0, 2, 9], 6, 80, 5),
            IPS_DST_NAT
        )));
        // Stale entry to the host's own published port (no DNAT).
        assert!(m(&entry(
            tuple([192, 0, 2, 9], host, 17, 4000, 5353),
            tuple(host, [192, 0, 2, 9], 17, 5353, 4000),
            0
        )));
        // Same port, but the host's own connection to a remote server: kept.
        assert!(!m(&entry(
            tuple(host, [192, 0, 2, 7], 17, 4444, 5353),
            tuple([192, 0, 2, 7], host, 17, 5353, 4444),
            0
        )));
        // Same port DNATed to another container: kept.
        assert!(!m(&entry(
            tuple([192, 0, 2, 9], host, 17, 4000, 5353),
            tuple([10, 77, 0, 3], [192, 0, 2, 9], 17, 5353, 4000),
            IPS_DST_NAT
        )));
        // Another container: kept.
        assert!(!m(&entry(
            tuple([10, 77, 0, 3], [192, 0, 2, 1], 6, 1, 80),
            tuple([192, 0, 2, 1], host, 6, 80, 1),
            0
        )));
    }

    #[test]
    fn the_address_dump_request_is_the_one_built_by_hand_before() {
        // nlmsghdr (24 bytes, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq 1) + ifaddrmsg
        // for AF_INET, all else zero.
        let mut old = MsgBuilder::raw(22, netlink::NLM_F_DUMP, 1);
        old.bytes(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(route::dump_request(ipv4_addresses(), 1), old.finish());
    }

    #[test]
    fn an_address_is_its_local_one_else_its_address() {
        let addr = |attrs: Vec<AddressAttribute>| {
            let mut m = AddressMessage::default();
            m.attributes = attrs;
            m
        };
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let p2p = addr(vec![
            AddressAttribute::Address(b.into()),
            AddressAttribute::Local(a.into()),
        ]);
        assert_eq!(own_ipv4(&p2p), Some(a));
        assert_eq!(
            own_ipv4(&addr(vec![AddressAttribute::Address(b.into())])),
            Some(b)
        );
        let v6 = addr(vec![AddressAttribute::Local("::1".parse().unwrap())]);
        assert_eq!(own_ipv4(&v6), None);
    }
}
