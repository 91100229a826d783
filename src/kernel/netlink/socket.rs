//! The netlink socket: owned (nix, `OwnedFd`), bound with a kernel-assigned port id in the
//! network namespace of the thread that opened it, and staying bound to that namespace.
//! Synchronous on purpose: a hook makes a handful of requests in a row and exits.

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

use super::message::{parse_error, Messages, Msg};
use super::{NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, NLM_F_MULTI};

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

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
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
