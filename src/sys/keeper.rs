//! One process that holds the netfilter sockets of a burst of hooks and releases them all
//! once the burst is over (see `process::close_after_exit` for why the moment matters).
//!
//! Everything here runs in the `CLONE_VM` child of `close_after_exit`, on its small stack
//! and with its parent's thread-local storage: plain libc calls on stack buffers only, no
//! allocation, no std I/O. A failing call writes errno into that shared storage, which is
//! harmless: after the clone the parent only closes descriptors and exits, and reads errno
//! only when the clone itself failed (and then there is no child).

use std::ffi::c_int;
use std::mem::{size_of, size_of_val, zeroed};
use std::ptr::null_mut;

/// Abstract unix socket of the keeper, in the hooks' own network namespace.
const ADDR: &[u8] = b"\0nethook/netfilter-release";
/// A burst is over when no hook has handed over its sockets for this long; longer than the
/// gap between two hooks run back to back (a few ms).
const QUIET_MS: c_int = 50;
/// How long the keeper waits for the message of a hook that connected.
const RECV_MS: c_int = 100;
/// After this long a keeper stops taking sockets, so none lives on for good.
const MAX_LIFE_MS: i64 = 10_000;
/// Descriptors one hand-over carries at most (a hook opens one or two netfilter sockets).
pub(super) const MAX_FDS: usize = 8;

fn addr() -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(ADDR) {
        *dst = *src as libc::c_char;
    }
    // An abstract name's length is exact: no terminating NUL.
    let len = size_of::<libc::sa_family_t>() + ADDR.len();
    (addr, len as libc::socklen_t)
}

/// Sends `fds` to a running keeper of the same user. False when there is none, or it did
/// not take them; the caller then releases them itself.
pub(super) fn hand_over(fds: &[c_int], euid: libc::uid_t) -> bool {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return false;
    }
    // SAFETY: a new socket; nothing else refers to it until it is closed below.
    let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if s < 0 {
        return false;
    }
    let (a, len) = addr();
    // SAFETY: `a` is a valid sockaddr_un of `len` bytes on this stack.
    let connected = unsafe { libc::connect(s, (&a as *const libc::sockaddr_un).cast(), len) } == 0;
    // Only to a keeper of our own user: any process may bind an abstract name first.
    let ok = connected && peer_uid(s) == Some(euid) && send_fds(s, fds);
    // SAFETY: `s` is ours and closed once.
    unsafe { libc::close(s) };
    ok
}

fn peer_uid(s: c_int) -> Option<libc::uid_t> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are locals of the sizes passed; `s` is an open socket.
    let rc = unsafe {
        libc::getsockopt(s, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    };
    (rc == 0).then_some(cred.uid)
}

/// Room for one SCM_RIGHTS message of `MAX_FDS` descriptors, aligned for cmsghdr.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// The message of a hand-over, sent and received alike: one byte of data in `iov`, and
/// the first `control_len` bytes of `control` for the descriptors.
fn message(iov: &mut libc::iovec, control: &mut Control, control_len: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain data, for which all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control_len.min(size_of::<Control>());
    msg
}

fn send_fds(s: c_int, fds: &[c_int]) -> bool {
    let mut byte = 0u8;
    let mut iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
    let mut control = Control([0; 64]);
    let data_len = size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let msg = message(&mut iov, &mut control, unsafe { libc::CMSG_SPACE(data_len) } as usize);
    // SAFETY: the message's pointers point at locals that outlive the sendmsg call, and
    // CMSG_SPACE of at most MAX_FDS descriptors (48 bytes) fits in `control`, so the header
    // and data written through CMSG_FIRSTHDR/CMSG_DATA stay in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return false;
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<c_int>(), fds.len());
        libc::sendmsg(s, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) == 1
    }
}

/// Becomes the keeper: takes the sockets other hooks hand over until none has come for
/// `QUIET_MS`, then stops listening (later hooks start a keeper of their own) and returns.
/// The caller's exit releases everything taken. False when another keeper took the name
/// first.
pub(super) fn keep() -> bool {
    // SAFETY: a new socket, ours alone until closed below.
    let l = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if l < 0 {
        return false;
    }
    let (a, len) = addr();
    // SAFETY: `a` is a valid sockaddr_un of `len` bytes on this stack.
    let listening = unsafe { libc::bind(l, (&a as *const libc::sockaddr_un).cast(), len) == 0 && libc::listen(l, 128) == 0 };
    if !listening {
        // SAFETY: `l` is ours and closed once.
        unsafe { libc::close(l) };
        return false;
    }
    raise_fd_limit();
    let start = now_ms();
    while now_ms() - start < MAX_LIFE_MS {
        if !ready(l, QUIET_MS) {
            break;
        }
        // SAFETY: accept4 with no address buffer; the descriptor is closed below.
        let c = unsafe { libc::accept4(l, null_mut(), null_mut(), libc::SOCK_CLOEXEC) };
        if c < 0 {
            continue;
        }
        if ready(c, RECV_MS) {
            receive_fds(c);
        }
        // SAFETY: `c` is ours and closed once.
        unsafe { libc::close(c) };
    }
    // SAFETY: `l` is ours and closed once. Hand-overs still queued on it are dropped with it,
    // and the kernel releases their descriptors.
    unsafe { libc::close(l) };
    true
}

fn ready(fd: c_int, timeout_ms: c_int) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on this stack.
    unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 }
}

/// Takes one hand-over: the kernel installs the descriptors in this process's table, where
/// they stay until it exits. More than fit are closed by the kernel (MSG_CTRUNC).
fn receive_fds(c: c_int) {
    let mut byte = 0u8;
    let mut iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
    let mut control = Control([0; 64]);
    let mut msg = message(&mut iov, &mut control, size_of::<Control>());
    // SAFETY: the message's pointers point at locals that outlive the call, and recvmsg
    // writes at most msg_controllen bytes of control data.
    unsafe { libc::recvmsg(c, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
}

/// A long burst hands over more sockets than the default soft limit of 1024 descriptors.
fn raise_fd_limit() {
    // SAFETY: rlimit is plain data, read and written by the kernel only within its size.
    unsafe {
        let mut lim: libc::rlimit = zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn now_ms() -> i64 {
    // SAFETY: timespec is plain data; CLOCK_MONOTONIC is always available.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: `ts` is a local timespec the kernel fills in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}
