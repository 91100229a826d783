//! A tiny, safe netlink layer: an owned socket (nix, `OwnedFd`), a message builder and a parser.
//!
//! Shared by the nftables code (`firewall`) and ctnetlink (`conntrack`). No unsafe code here:
//! messages are built and parsed as plain bytes.
//!
//! The socket is opened in the calling thread's current network namespace and stays bound to it.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, bind, getsockname, recv, send, setsockopt, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;

/// Attribute type flags that are not part of the type number.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Which netlink family to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bus {
    Netfilter,
    Route,
}

/// A netlink socket, bound with a kernel-assigned port id, in the netns of the calling thread.
pub(crate) struct NlSocket {
    fd: OwnedFd,
    portid: u32,
    bus: Bus,
}

/// Netfilter sockets whose release is deferred; `None` while deferring is off.
static DEFERRED: Mutex<Option<Vec<OwnedFd>>> = Mutex::new(None);

/// Makes this process keep its netfilter sockets open until `take_deferred`.
///
/// Why: after a commit that deleted anything, the kernel frees the deleted objects from a
/// work item that first waits for an RCU grace period (10–20 ms here), and releasing any
/// NETLINK_NETFILTER socket meanwhile waits for that work (`nft_rcv_nl_event` flushes it
/// on NETLINK_URELEASE). The deletion itself is committed and visible already; only the
/// freeing is pending. A hook that exits right after a teardown would pay that wait in
/// its own exit, so it hands the sockets to a child instead (`sys::process::close_after_exit`).
pub fn defer_netfilter_release() {
    if let Ok(mut d) = DEFERRED.lock() {
        d.get_or_insert_with(Vec::new);
    }
}

/// The sockets kept by `defer_netfilter_release`, which ends deferring.
pub fn take_deferred() -> Vec<OwnedFd> {
    DEFERRED
        .lock()
        .ok()
        .and_then(|mut d| d.take())
        .unwrap_or_default()
}

impl Drop for NlSocket {
    fn drop(&mut self) {
        if self.bus != Bus::Netfilter {
            return;
        }
        if let Ok(mut deferred) = DEFERRED.lock() {
            if let (Some(list), Ok(dup)) = (deferred.as_mut(), self.fd.try_clone()) {
                // The duplicate keeps the socket alive when `self.fd` closes.
                list.push(dup);
            }
        }
    }
}

impl NlSocket {
    pub(crate) fn open(bus: Bus) -> io::Result<Self> {
        let proto = match bus {
            Bus::Netfilter => SockProtocol::NetlinkNetFilter,
            Bus::Route => SockProtocol::NetlinkRoute,
        };
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            proto,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        let addr: NetlinkAddr = getsockname(fd.as_raw_fd())?;
        Ok(NlSocket {
            fd,
            portid: addr.pid(),
            bus,
        })
    }

    /// Make room for `n` replies (ACKs/errors) so a large batch does not overflow the receive
    /// queue (which would lose replies with ENOBUFS). Needs CAP_NET_ADMIN for the forced variant;
    /// falls back to the unprivileged one.
    pub(crate) fn reserve_replies(&self, n: usize) {
        let want = (n.saturating_mul(1024)).clamp(256 * 1024, 64 * 1024 * 1024);
        if setsockopt(&self.fd, sockopt::RcvBufForce, &want).is_err() {
            let _ = setsockopt(&self.fd, sockopt::RcvBuf, &want);
        }
    }

    /// Make room to send one datagram of `len` bytes. The default send buffer
    /// (net.core.wmem_default, ~208 KiB) refuses a bigger datagram with EMSGSIZE (an nftables
    /// batch of ~3000 messages); nft forces a buffer to fit, and so does this (CAP_NET_ADMIN,
    /// which the hook has), falling back to what the unprivileged limit (wmem_max) allows.
    pub(crate) fn reserve_send(&self, len: usize) {
        const DEFAULT: usize = 192 * 1024;
        if len < DEFAULT {
            return;
        }
        // Room for the datagram plus the kernel's per-skb overhead.
        let want = len.saturating_add(64 * 1024);
        if setsockopt(&self.fd, sockopt::SndBufForce, &want).is_err() {
            let _ = setsockopt(&self.fd, sockopt::SndBuf, &want);
        }
    }

    /// Send one datagram (one or more netlink messages, or a whole nftables batch).
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<()> {
        let n = send(self.fd.as_raw_fd(), buf, MsgFlags::empty())?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    /// Receive one datagram into `buf` (cleared first). `wait == false` → returns Ok(false) when
    /// nothing is queued.
    ///
    /// The datagram's size is peeked at first and `buf` made just that big. A buffer sized for
    /// the largest datagram instead (a dump's 32 KiB) is zeroed on every allocation, and each
    /// page that touches is a page fault (3–6 µs on a VM): a 128 KiB buffer cost every hook
    /// 30–70 faults, up to ~0.3 ms, for replies that are mostly a few dozen bytes. (The kernel
    /// sizes dump datagrams after the largest read it has seen, so dumps now come in pages.)
    pub(crate) fn recv_into(&self, buf: &mut Vec<u8>, wait: bool) -> io::Result<bool> {
        if !wait && !self.readable_now()? {
            return Ok(false);
        }
        let size = self.recv_retrying(&mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
        buf.clear();
        buf.resize(size, 0);
        let n = self.recv_retrying(buf, MsgFlags::MSG_TRUNC)?;
        if n > size {
            // Only this thread reads the socket, so the datagram cannot have changed.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "netlink datagram truncated",
            ));
        }
        buf.truncate(n);
        Ok(true)
    }

    /// `recv` with `MSG_TRUNC`: the datagram's full length, whatever fit in `buf`.
    fn recv_retrying(&self, buf: &mut [u8], flags: MsgFlags) -> io::Result<usize> {
        loop {
            match recv(self.fd.as_raw_fd(), buf, flags) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Is something queued right now (poll with a 0 timeout)?
    pub(crate) fn readable_now(&self) -> io::Result<bool> {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read replies to requests that asked for an ACK, until every sequence number in `expect` was
    /// acknowledged or an error arrived; then drain whatever is still queued without blocking.
    ///
    /// After a failing nftables batch the kernel never ACKs the batch-end message, so waiting for
    /// one ACK per sequence number would hang: an error ends the wait. All replies of a batch are
    /// queued while `send` runs (nfnetlink processes the batch synchronously), so the drain sees
    /// the rest of them.
    ///
    /// Returns every error as `(seq, errno)`, in the order received; empty means success.
    pub(crate) fn collect_acks(&self, expect: &BTreeSet<u32>) -> io::Result<Vec<(u32, i32)>> {
        let mut pending = expect.clone();
        let mut errors = Vec::new();
        let mut buf = Vec::new();
        while !pending.is_empty() && errors.is_empty() {
            self.recv_into(&mut buf, true)?;
            self.account(&buf, &mut pending, &mut errors)?;
        }
        while self.recv_into(&mut buf, false)? {
            self.account(&buf, &mut pending, &mut errors)?;
        }
        Ok(errors)
    }

    fn account(
        &self,
        buf: &[u8],
        pending: &mut BTreeSet<u32>,
        errors: &mut Vec<(u32, i32)>,
    ) -> io::Result<()> {
        for msg in Messages::new(buf) {
            let msg = msg?;
            if msg.portid != 0 && msg.portid != self.portid {
                continue;
            }
            if msg.ty == NLMSG_ERROR {
                let (errno, orig_seq) = parse_error(msg.payload)?;
                let seq = orig_seq.unwrap_or(msg.seq);
                pending.remove(&seq);
                if errno != 0 {
                    errors.push((seq, errno));
                }
            }
        }
        Ok(())
    }

    /// Send a dump request and hand every reply message to `f` until NLMSG_DONE.
    pub(crate) fn dump(
        &self,
        req: &[u8],
        mut f: impl FnMut(&Msg<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.send(req)?;
        let mut buf = Vec::new();
        loop {
            self.recv_into(&mut buf, true)?;
            for msg in Messages::new(&buf) {
                let msg = msg?;
                match msg.ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let (errno, _) = parse_error(msg.payload)?;
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(errno));
                        }
                    }
                    NLMSG_OVERRUN => return Err(io::Error::other("netlink overrun")),
                    _ => f(&msg)?,
                }
                if msg.flags & NLM_F_MULTI == 0 && msg.ty != NLMSG_ERROR {
                    // A single (non-multipart) answer ends the dump too.
                    return Ok(());
                }
            }
        }
    }
}

/// Parse the payload of an NLMSG_ERROR message: (positive errno or 0, seq of the request).
pub(crate) fn parse_error(payload: &[u8]) -> io::Result<(i32, Option<u32>)> {
    let code = payload
        .get(0..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("short NLMSG_ERROR"))?;
    let seq = payload
        .get(4 + 8..4 + 12)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    Ok((-code, seq))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One received netlink message.
#[derive(Debug)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub portid: u32,
    pub payload: &'a [u8],
}

/// Iterator over the netlink messages of one datagram.
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Msg<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let b = self.buf;
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.buf = &[];
            return Some(Err(bad("bad netlink message length")));
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            portid: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
            payload: &b[NLMSG_HDRLEN..len],
        };
        self.buf = &b[align4(len).min(b.len())..];
        Some(Ok(msg))
    }
}

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterator over netlink attributes: yields (type without flag bits, value).
pub(crate) struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Attrs { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.buf = &[];
            return None;
        }
        let val = &b[4..len];
        self.buf = &b[align4(len).min(b.len())..];
        Some((ty, val))
    }
}

/// Builds one netlink message into a byte vector (several can be concatenated into one send).
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl MsgBuilder {
    /// Header plus the 4-byte `nfgenmsg` (family, version 0, resource id 0, big endian).
    pub(crate) fn nfnl(ty: u16, flags: u16, seq: u32, family: u8) -> Self {
        let mut b = Self::raw(ty, flags, seq);
        b.buf.extend_from_slice(&[family, 0, 0, 0]);
        b
    }

    /// Header only; the caller appends the family header.
    pub(crate) fn raw(ty: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        MsgBuilder {
            buf,
            nests: Vec::new(),
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub(crate) fn attr(&mut self, ty: u16, val: &[u8]) -> &mut Self {
        let len = 4 + val.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(val);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    pub(crate) fn nest_begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(crate) fn nest_end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Finish: patch the length, return the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_roundtrip() {
        let mut b = MsgBuilder::nfnl(0x0a01, NLM_F_ACK, 7, 1);
        b.attr_str(1, "nethook");
        b.nest_begin(2).attr(1, &[1, 2, 3, 4, 5]).nest_end();
        let bytes = b.finish();
        assert_eq!(bytes.len() % 4, 0);
        let msgs: Vec<_> = Messages::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!((m.ty, m.seq), (0x0a01, 7));
        assert_eq!(m.flags, NLM_F_ACK | NLM_F_REQUEST);
        let attrs: Vec<_> = Attrs::new(&m.payload[4..]).collect();
        assert_eq!(attrs[0], (1, &b"nethook\0"[..]));
        assert_eq!(attrs[1].0, 2);
        let inner: Vec<_> = Attrs::new(attrs[1].1).collect();
        assert_eq!(inner, vec![(1, &[1u8, 2, 3, 4, 5][..])]);
    }

    #[test]
    fn error_payload() {
        // errno -17 (EEXIST) followed by the echoed request header with seq 42.
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&36u32.to_ne_bytes());
        p.extend_from_slice(&[0u8; 4]);
        p.extend_from_slice(&42u32.to_ne_bytes());
        p.extend_from_slice(&[0u8; 4]);
        assert_eq!(parse_error(&p).unwrap(), (17, Some(42)));
    }
}
