//! Sockets and receive callbacks: a netlink socket, and the walk over a received datagram.

use std::ffi::{c_int, c_uint, c_void};
use std::mem::size_of;
use std::ptr;

use libc::{nlmsgerr, nlmsghdr, sockaddr_nl};

use crate::{
    align, allocate, mnl_nlmsg_get_payload, set_errno, MsgCallback, MNL_CB_OK, MNL_CB_STOP,
    NLMSG_HDRLEN,
};

/// A netlink socket and the address the kernel bound it to; opaque to libmnl's callers.
#[repr(C)]
pub struct Socket {
    fd: c_int,
    addr: sockaddr_nl,
}

fn netlink_addr() -> sockaddr_nl {
    // SAFETY: sockaddr_nl is plain integers, for which all zeroes is valid.
    let mut addr: sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

#[no_mangle]
pub unsafe extern "C" fn mnl_socket_open(bus: c_int) -> *mut Socket {
    // Unlike libmnl, close-on-exec: a hook must not leak netlink sockets into children.
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, bus) };
    if fd < 0 {
        return ptr::null_mut();
    }
    let nl = allocate(Socket {
        fd,
        addr: netlink_addr(),
    });
    if nl.is_null() {
        // SAFETY: the descriptor was just opened here and nothing else holds it.
        unsafe { libc::close(fd) };
    }
    nl
}

#[no_mangle]
pub unsafe extern "C" fn mnl_socket_bind(
    nl: *mut Socket,
    groups: c_uint,
    pid: libc::pid_t,
) -> c_int {
    let addr_size = size_of::<sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `nl` is live (from mnl_socket_open); bind and getsockname get its address
    // field with that field's size.
    unsafe {
        let nl = &mut *nl;
        nl.addr = netlink_addr();
        nl.addr.nl_groups = groups;
        nl.addr.nl_pid = pid as u32;
        let addr = ptr::from_mut(&mut nl.addr).cast::<libc::sockaddr>();
        if libc::bind(nl.fd, addr, addr_size) < 0 {
            return -1;
        }
        let mut len = addr_size;
        if libc::getsockname(nl.fd, addr, &mut len) < 0 {
            return -1;
        }
        if len != addr_size || c_int::from(nl.addr.nl_family) != libc::AF_NETLINK {
            set_errno(libc::EINVAL);
            return -1;
        }
    }
    0
}

#[no_mangle]
pub unsafe extern "C" fn mnl_socket_get_portid(nl: *const Socket) -> c_uint {
    // SAFETY: `nl` is live.
    unsafe { (*nl).addr.nl_pid }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_socket_sendto(
    nl: *const Socket,
    buf: *const c_void,
    len: usize,
) -> isize {
    let kernel = netlink_addr();
    // SAFETY: `nl` is live and `buf` holds `len` bytes; the address is a local.
    unsafe {
        libc::sendto(
            (*nl).fd,
            buf,
            len,
            0,
            ptr::from_ref(&kernel).cast(),
            size_of::<sockaddr_nl>() as libc::socklen_t,
        )
    }
}

/// One datagram; a message cut short by a small buffer is an error (ENOSPC), not data.
#[no_mangle]
pub unsafe extern "C" fn mnl_socket_recvfrom(
    nl: *const Socket,
    buf: *mut c_void,
    size: usize,
) -> isize {
    let mut from = netlink_addr();
    let mut iov = libc::iovec {
        iov_base: buf,
        iov_len: size,
    };
    // SAFETY: msghdr is plain integers and pointers, for which all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = ptr::from_mut(&mut from).cast();
    msg.msg_namelen = size_of::<sockaddr_nl>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `nl` is live; `msg` points to locals that outlive the call and to the
    // caller's `size`-byte buffer.
    let n = unsafe { libc::recvmsg((*nl).fd, &mut msg, 0) };
    if n < 0 {
        return n;
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        set_errno(libc::ENOSPC);
        return -1;
    }
    if msg.msg_namelen as usize != size_of::<sockaddr_nl>() {
        set_errno(libc::EINVAL);
        return -1;
    }
    n
}

#[no_mangle]
pub unsafe extern "C" fn mnl_socket_close(nl: *mut Socket) -> c_int {
    // SAFETY: `nl` came from mnl_socket_open (malloc) and is closed once; the socket owns
    // its descriptor, closed here once too.
    unsafe {
        let ret = libc::close((*nl).fd);
        libc::free(nl.cast());
        ret
    }
}

/// What the kernel's error message says: MNL_CB_STOP for an acknowledgement (error 0),
/// MNL_CB_ERROR with errno set otherwise.
unsafe fn error_message(nlh: *const nlmsghdr) -> c_int {
    // SAFETY: the loop in mnl_cb_run checked that `nlmsg_len` bytes are there, and the
    // length check below that they hold a `struct nlmsgerr`.
    unsafe {
        if ((*nlh).nlmsg_len as usize) < NLMSG_HDRLEN + size_of::<nlmsgerr>() {
            set_errno(libc::EBADMSG);
            return -1;
        }
        let err = ptr::read_unaligned(mnl_nlmsg_get_payload(nlh).cast::<nlmsgerr>()).error;
        // Netlink families disagree on the sign.
        set_errno(err.wrapping_abs());
        if err == 0 {
            MNL_CB_STOP
        } else {
            -1
        }
    }
}

/// Walks the messages of one received datagram: checks that each comes from `portid`
/// and answers `seq` (0 skips either check), hands data messages to `cb`, and ends at an
/// acknowledgement, an error or NLMSG_DONE.
#[no_mangle]
pub unsafe extern "C" fn mnl_cb_run(
    buf: *const c_void,
    size: usize,
    seq: c_uint,
    portid: c_uint,
    cb: MsgCallback,
    data: *mut c_void,
) -> c_int {
    let mut ret = MNL_CB_OK;
    let mut left = size as isize;
    let mut nlh = buf.cast::<nlmsghdr>();
    // SAFETY: a header is read only when `left` bytes of the caller's `size`-byte buffer
    // hold it, and a message only when they hold its whole `nlmsg_len`.
    unsafe {
        while left >= NLMSG_HDRLEN as isize
            && (*nlh).nlmsg_len as usize >= NLMSG_HDRLEN
            && (*nlh).nlmsg_len as isize <= left
        {
            let h = nlh.read();
            if h.nlmsg_pid != 0 && portid != 0 && h.nlmsg_pid != portid {
                set_errno(libc::ESRCH);
                return -1;
            }
            if h.nlmsg_seq != 0 && seq != 0 && h.nlmsg_seq != seq {
                set_errno(libc::EPROTO);
                return -1;
            }
            if c_int::from(h.nlmsg_flags) & libc::NLM_F_DUMP_INTR != 0 {
                set_errno(libc::EINTR);
                return -1;
            }
            // Messages nobody handles leave the last result as it was, as in libmnl.
            ret = match c_int::from(h.nlmsg_type) {
                t if t >= libc::NLMSG_MIN_TYPE => cb.map_or(ret, |cb| cb(nlh, data)),
                libc::NLMSG_ERROR => error_message(nlh),
                libc::NLMSG_DONE => MNL_CB_STOP,
                libc::NLMSG_NOOP | libc::NLMSG_OVERRUN => MNL_CB_OK,
                _ => ret,
            };
            if ret <= MNL_CB_STOP {
                return ret;
            }
            let step = align(h.nlmsg_len as usize);
            left -= step as isize;
            // May step just past the datagram (padding); the loop checks `left` first.
            nlh = nlh.cast::<u8>().wrapping_add(step).cast();
        }
    }
    ret
}
