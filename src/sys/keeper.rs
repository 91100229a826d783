//! One process that holds the netfilter sockets of a burst of hooks and releases them all
//! once the burst is over (see `process::close_after_exit` for why the moment matters).
//!
//! Everything here runs in the `CLONE_VM` child of `close_after_exit`, on its small stack
//! and with its parent's thread-local storage: plain libc calls on stack buffers only, no
//! allocation, no std I/O. A failing call writes errno into that shared storage, which is
//! harmless: after the clone the parent only closes descriptors and exits, and reads errno
//! only when the clone itself failed (and then there is no child). (`Addr::in_dir` alone
//! runs in the parent, before the clone.)

use std::ffi::c_int;
use std::mem::{size_of, size_of_val, zeroed};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::null_mut;

/// The keeper's socket in the run directory. A pathname socket rather than an abstract
/// one: the run directory is 0700 and root's, so only the hooks' own user can reach it
/// (any user can connect to an abstract name, in any directory).
const SOCKET_NAME: &str = "netfilter-release";
/// A burst is over when no hook has handed over its sockets for this long; longer than the
/// gap between two hooks run back to back (a few ms).
const QUIET_MS: c_int = 50;
/// How long the keeper waits for the message of a hook that connected.
const RECV_MS: c_int = 100;
/// After this long a keeper stops taking sockets, so none lives on for good.
const MAX_LIFE_MS: i64 = 10_000;
/// Descriptors one hand-over carries at most (a hook opens one or two netfilter sockets).
pub(super) const MAX_FDS: usize = 8;

/// The keeper's address, built before the clone (the child may not allocate). Plain data.
#[derive(Clone, Copy)]
pub(super) struct Addr {
    /// NUL-terminated path (the struct is zeroed and the path shorter than `sun_path`).
    sun: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl Addr {
    /// `RUN_DIR/netfilter-release`; `None` when the path does not fit a socket address
    /// (108 bytes): hooks then wait out their grace periods themselves, as without keeper.
    pub(super) fn in_dir(dir: &Path) -> Option<Addr> {
        let path = dir.join(SOCKET_NAME);
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { zeroed() };
        if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return None;
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
        Some(Addr {
            sun,
            len: len as libc::socklen_t,
        })
    }

    fn ptr(&self) -> *const libc::sockaddr {
        (&self.sun as *const libc::sockaddr_un).cast()
    }
}

/// Sends `fds` to a running keeper of the same user. False when there is none, or it did
/// not take them; the caller then releases them itself.
pub(super) fn hand_over(addr: &Addr, fds: &[c_int], euid: libc::uid_t) -> bool {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return false;
    }
    let Some(s) = connect(addr) else { return false };
    // Only to a keeper of our own user, should another have bound the name.
    let ok = peer_uid(s) == Some(euid) && send_fds(s, fds);
    // SAFETY: `s` is ours and closed once.
    unsafe { libc::close(s) };
    ok
}

/// A socket connected to `addr`, or `None`.
fn connect(addr: &Addr) -> Option<c_int> {
    // SAFETY: a new socket; nothing else refers to it until the caller closes it.
    let s = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if s < 0 {
        return None;
    }
    // SAFETY: `addr` holds a valid sockaddr_un of `addr.len` bytes.
    if unsafe { libc::connect(s, addr.ptr(), addr.len) } == 0 {
        return Some(s);
    }
    // SAFETY: `s` is ours and closed once.
    unsafe { libc::close(s) };
    None
}

fn peer_uid(s: c_int) -> Option<libc::uid_t> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are locals of the sizes passed; `s` is an open socket.
    let rc = unsafe {
        libc::getsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
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
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut control = Control([0; 64]);
    let data_len = size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let msg = message(
        &mut iov,
        &mut control,
        unsafe { libc::CMSG_SPACE(data_len) } as usize,
    );
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
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<c_int>(),
            fds.len(),
        );
        libc::sendmsg(s, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) == 1
    }
}

/// Becomes the keeper: takes the sockets other hooks of user `euid` hand over until none
/// has come for `QUIET_MS`, then stops listening (later hooks start a keeper of their own)
/// and returns. The caller's exit releases everything taken. False when another keeper
/// holds the name (or it cannot be bound).
///
/// The caller has closed every descriptor but the sockets it releases (see
/// `process::close_after_exit`): above all the store's lock, which a copy held here would
/// keep from every setup, `ls` and `gc` for as long as this process lives.
pub(super) fn keep(addr: &Addr, euid: libc::uid_t) -> bool {
    // SAFETY: a new socket, ours alone until closed below.
    let l = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if l < 0 {
        return false;
    }
    if !bind_listen(l, addr) {
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
        // Another user's descriptors are never received: SCM_RIGHTS installs them in this
        // table on recvmsg, so the peer is checked first and a stranger is hung up on.
        if peer_uid(c) == Some(euid) && ready(c, RECV_MS) {
            receive_fds(c);
        }
        // SAFETY: `c` is ours and closed once.
        unsafe { libc::close(c) };
    }
    // The name goes first, so a hook from now on starts a keeper of its own rather than
    // connect to one that no longer accepts. The file is this keeper's: another binds the
    // name only once it is free, or (after a keeper was killed) once a connect to it fails,
    // so at worst two keepers that both found a dead one's name remove each other's, and
    // the next hook starts a third.
    // SAFETY: `sun_path` is NUL-terminated (see `Addr::in_dir`).
    unsafe { libc::unlink(addr.sun.sun_path.as_ptr()) };
    // SAFETY: `l` is ours and closed once. Hand-overs still queued on it are dropped with it,
    // and the kernel releases their descriptors.
    unsafe { libc::close(l) };
    true
}

/// Binds `l` to the keeper's name and listens. A name left by a keeper that was killed
/// (a file nobody accepts on) is removed and bound again; a live keeper's is not.
fn bind_listen(l: c_int, addr: &Addr) -> bool {
    // SAFETY: `addr` holds a valid sockaddr_un of `addr.len` bytes; `l` is an open socket.
    let bind = || unsafe { libc::bind(l, addr.ptr(), addr.len) == 0 };
    let mut bound = bind();
    if !bound {
        // errno is not read: the parent, sharing this memory, may be writing its own. A
        // connect that succeeds means a live keeper; any failure means there is none.
        match connect(addr) {
            Some(s) => {
                // SAFETY: `s` is ours and closed once.
                unsafe { libc::close(s) };
                return false;
            }
            None => {
                // SAFETY: `sun_path` is NUL-terminated (see `Addr::in_dir`).
                unsafe { libc::unlink(addr.sun.sun_path.as_ptr()) };
                bound = bind();
            }
        }
    }
    // SAFETY: listen on our own bound socket.
    bound && unsafe { libc::listen(l, 128) } == 0
}

fn ready(fd: c_int, timeout_ms: c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on this stack.
    unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 }
}

/// Takes one hand-over: the kernel installs the descriptors in this process's table, where
/// they stay until it exits. More than fit are closed by the kernel (MSG_CTRUNC).
fn receive_fds(c: c_int) {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_run_directorys_socket_or_none_when_too_long() {
        let a = Addr::in_dir(Path::new("/run/nethook")).unwrap();
        let path: Vec<u8> = a
            .sun
            .sun_path
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        assert_eq!(path, b"/run/nethook/netfilter-release");
        assert_eq!(
            a.len as usize,
            size_of::<libc::sa_family_t>() + path.len() + 1
        );
        assert!(Addr::in_dir(Path::new(&"/x".repeat(50))).is_none());
    }
}
