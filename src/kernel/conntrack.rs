//! Conntrack cleanup over ctnetlink (NETLINK_NETFILTER, NFNL_SUBSYS_CTNETLINK), without the
//! `conntrack` binary.
//!
//! At teardown, entries that still point at a removed container would keep steering traffic
//! (above all UDP, whose entries are refreshed by every packet) to an address that is gone, or
//! keep a restarted service on the same host port from being reached. [`flush_for`] deletes, in
//! each address family the container has an address of (IPv4, IPv6):
//! - every entry whose original or reply tuple has one of the container's addresses as source
//!   or destination (its own connections, and the DNATed connections to it: reply source = it);
//! - every entry for one of the given host ports (proto + original destination port) that is
//!   addressed to a local address of this network namespace and was NOT destination-NATed: the
//!   stale "to the host itself" entries that would shadow a new DNAT mapping. The local-address
//!   condition spares the host's own outgoing connections to a remote port with the same number.
//!
//! The kernel cannot flush by tuple filter (CTA_FILTER is for dumps; a filtered flush only knows
//! mark/status/zone), so this dumps the table once (kernel-side family filter: one family, or
//! AF_UNSPEC for both in the same walk) and deletes the matching entries by original tuple +
//! CTA_ID (so a new entry that reuses the tuple in between is not hit), each with its own
//! family in the nfgenmsg (the kernel reads the tuple's addresses by it: CTA_IP_V4_* or
//! CTA_IP_V6_*). An entry that expired meanwhile (ENOENT) is not an error.
//!
//! Like the firewall, it acts in the network namespace of the calling thread (fresh sockets).
//!
//! Callers: run it at teardown after the elements are deleted; running it at setup for the new
//! host ports (with the new container's IP, which has no entries yet) also clears entries created
//! while no mapping existed.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPS_DST_NAT: u32 = 1 << 5;

/// Deletes sent before their ACKs are read.
const DELETE_CHUNK: usize = 128;

/// One direction of a conntrack entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// A dumped entry, with what is needed to delete exactly it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    /// `AF_INET` or `AF_INET6` (the nfgenmsg family of the dumped message).
    pub family: u8,
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
                    let v4 = || {
                        <[u8; 4]>::try_from(v)
                            .ok()
                            .map(|b| Ipv4Addr::from(b).into())
                    };
                    let v6 = || {
                        <[u8; 16]>::try_from(v)
                            .ok()
                            .map(|b| Ipv6Addr::from(b).into())
                    };
                    match ty {
                        CTA_IP_V4_SRC => t.src = v4(),
                        CTA_IP_V4_DST => t.dst = v4(),
                        CTA_IP_V6_SRC => t.src = v6(),
                        CTA_IP_V6_DST => t.dst = v6(),
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

/// Parse an IPCTNL_MSG_CT_NEW payload (after the 4-byte nfgenmsg, whose family is `family`).
pub(crate) fn parse_entry(family: u8, attrs: &[u8]) -> Entry {
    let mut e = Entry {
        family,
        ..Entry::default()
    };
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
    container_ips: &[IpAddr],
    ports: &HashSet<(u8, u16)>,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> bool {
    let names = |ip: Option<IpAddr>| ip.is_some_and(|ip| container_ips.contains(&ip));
    if names(e.orig.src) || names(e.orig.dst) || names(e.reply.src) || names(e.reply.dst) {
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

/// The entries of this netns of `family` (`AF_INET`, `AF_INET6`, or `AF_UNSPEC` for both:
/// the kernel filters on it, in one walk of its table).
fn dump(sock: &NlSocket, family: u8) -> Result<Vec<Entry>, ConntrackError> {
    let req = dump_request(family);
    let mut out = Vec::new();
    let res = sock.dump(&req, |msg| {
        if msg.ty == ct_type(0) {
            let family = msg.payload.first().copied().unwrap_or(0);
            out.push(parse_entry(
                family,
                msg.payload.get(4..).unwrap_or_default(),
            ));
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

fn dump_request(family: u8) -> Vec<u8> {
    MsgBuilder::nfnl(ct_type(IPCTNL_MSG_CT_GET), netlink::NLM_F_DUMP, 1, family).finish()
}

/// The families to dump for these container addresses: `AF_INET`, `AF_INET6`, or
/// `AF_UNSPEC` for both; `None` without any address.
fn dump_family(container_ips: &[IpAddr]) -> Option<u8> {
    let v4 = container_ips.iter().any(IpAddr::is_ipv4);
    let v6 = container_ips.iter().any(IpAddr::is_ipv6);
    match (v4, v6) {
        (true, true) => Some(libc::AF_UNSPEC as u8),
        (true, false) => Some(libc::AF_INET as u8),
        (false, true) => Some(libc::AF_INET6 as u8),
        (false, false) => None,
    }
}

/// The dump request for this netns's addresses of `family` (RTM_GETADDR, the kernel filters
/// on the family; `Unspec`: every family).
fn addresses(family: AddressFamily) -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family;
    RouteNetlinkMessage::GetAddress(msg)
}

/// An address's own address: IFA_LOCAL, or IFA_ADDRESS where there is no IFA_LOCAL (on a
/// point-to-point link IFA_ADDRESS is the peer's; IPv6 addresses mostly have only
/// IFA_ADDRESS).
fn own_address(msg: &AddressMessage) -> Option<IpAddr> {
    let find = |local: bool| {
        msg.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(a) if local => Some(*a),
            AddressAttribute::Address(a) if !local => Some(*a),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

/// Addresses of `family` configured in this netns.
fn local_addresses(family: AddressFamily) -> Result<HashSet<IpAddr>, ConntrackError> {
    let sock = RouteSocket::open().map_err(nl_err("socket"))?;
    let mut out = HashSet::new();
    sock.dump(addresses(family), |reply| {
        if let RouteNetlinkMessage::NewAddress(msg) = route::decode(reply)? {
            out.extend(own_address(&msg));
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
        e.family,
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
/// `container_ips`: its addresses (one per family it has); the families dumped are theirs.
/// `mappings`: the (protocol, host port) pairs it published, in each of those families.
/// Returns how many entries were deleted.
pub fn flush_for(
    container_ips: &[IpAddr],
    mappings: &[(Proto, u16)],
) -> Result<usize, ConntrackError> {
    let Some(family) = dump_family(container_ips) else {
        return Ok(0);
    };
    if netns_has_no_entries() {
        return Ok(0);
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let entries = dump(&sock, family)?;
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
        local_addresses(match i32::from(family) {
            libc::AF_INET => AddressFamily::Inet,
            libc::AF_INET6 => AddressFamily::Inet6,
            _ => AddressFamily::Unspec,
        })?
    };
    let is_local = |a: IpAddr| a.is_loopback() || locals.contains(&a);
    let doomed: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches(e, container_ips, &ports, &is_local))
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
#[path = "conntrack_tests.rs"]
mod tests;
