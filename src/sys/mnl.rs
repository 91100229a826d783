//! The part of libmnl that libnftnl links against, so the binary can be linked statically.
//!
//! Why: a hook is a process per container event, and loading shared objects was most of
//! its start-up (a static `nethook hook` starts in 0.73 ms where the dynamic one took
//! 1.16 ms; `/bin/true` takes 0.79). Debian ships `libnftnl.a` but no `libmnl.a`
//! (libmnl-dev has only the shared object), and the 40 functions libnftnl's objects
//! reference are a few lines each: write or read a `struct nlattr` or `struct nlmsghdr`
//! in a caller's buffer, keep a batch's offsets, wrap a netlink socket. They follow
//! libmnl's documented contract (libmnl.h), including errno values; the tests below pin
//! it, and the rest of the test suite sends what libnftnl builds with them to the kernel.
//! Checked once against Debian 12's libmnl 1.0.4 (loaded with dlopen): the same bytes for
//! every builder and the same result and errno from `mnl_attr_validate` for every type,
//! except that attribute padding is zeroed here, as libmnl does since 1.0.5.
//!
//! Of these, nethook's paths call the attribute and message builders and the batch
//! helpers. The socket and callback functions are reached only from libnftnl functions
//! nethook does not call (`nftnl_batch_is_supported`), but they are real, not stubs:
//! libnftnl's object files need them to link, and a future caller gets libmnl's behaviour.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::size_of;
use std::ptr;

use libc::{nlattr, nlmsgerr, nlmsghdr, sockaddr_nl};

const ALIGNTO: usize = 4;
const ATTR_HDRLEN: usize = align(size_of::<nlattr>());
const NLMSG_HDRLEN: usize = align(size_of::<nlmsghdr>());
/// The attribute type without the nested and byte-order flags (`NLA_TYPE_MASK`).
const TYPE_MASK: u16 = !((libc::NLA_F_NESTED | libc::NLA_F_NET_BYTEORDER) as u16);

/// `enum mnl_attr_data_type` values that `mnl_attr_validate` treats specially.
const MNL_TYPE_U8: c_int = 1;
const MNL_TYPE_U16: c_int = 2;
const MNL_TYPE_U32: c_int = 3;
const MNL_TYPE_U64: c_int = 4;
const MNL_TYPE_STRING: c_int = 5;
const MNL_TYPE_FLAG: c_int = 6;
const MNL_TYPE_MSECS: c_int = 7;
const MNL_TYPE_NESTED: c_int = 8;
const MNL_TYPE_NUL_STRING: c_int = 10;
const MNL_TYPE_MAX: c_int = 12;

const MNL_CB_STOP: c_int = 0;
const MNL_CB_OK: c_int = 1;

type AttrCallback = Option<unsafe extern "C" fn(*const nlattr, *mut c_void) -> c_int>;
type MsgCallback = Option<unsafe extern "C" fn(*const nlmsghdr, *mut c_void) -> c_int>;

const fn align(len: usize) -> usize {
    (len + ALIGNTO - 1) & !(ALIGNTO - 1)
}

fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() = code };
}

/// Where the next attribute of `nlh` goes: its aligned end.
///
/// SAFETY (for callers): `nlh` points to a message header at the start of a buffer that has
/// room for what the caller writes there (libmnl's contract: the caller sized the buffer).
unsafe fn tail(nlh: *mut nlmsghdr) -> *mut nlattr {
    nlh.cast::<u8>()
        .add(align((*nlh).nlmsg_len as usize))
        .cast()
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_get_type(attr: *const nlattr) -> u16 {
    // SAFETY: libnftnl passes an attribute it has checked with mnl_attr_ok.
    unsafe { (*attr).nla_type & TYPE_MASK }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_get_payload_len(attr: *const nlattr) -> u16 {
    // SAFETY: as in mnl_attr_get_type. A valid attribute is at least its header long.
    unsafe { (*attr).nla_len.wrapping_sub(ATTR_HDRLEN as u16) }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_get_payload(attr: *const nlattr) -> *mut c_void {
    // SAFETY: the payload follows the header within the same attribute.
    unsafe { attr.cast::<u8>().add(ATTR_HDRLEN).cast_mut().cast() }
}

/// Reads a `T` from the payload; netlink only aligns to 4 bytes, so a u64 may be unaligned.
unsafe fn payload<T: Copy>(attr: *const nlattr) -> T {
    // SAFETY: the caller validated the attribute's length for `T` (mnl_attr_validate).
    unsafe { ptr::read_unaligned(mnl_attr_get_payload(attr).cast::<T>()) }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_get_str(attr: *const nlattr) -> *const c_char {
    // SAFETY: see mnl_attr_get_payload.
    unsafe { mnl_attr_get_payload(attr).cast_const().cast() }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_put(
    nlh: *mut nlmsghdr,
    kind: u16,
    len: usize,
    data: *const c_void,
) {
    // SAFETY: the caller's buffer has room for the attribute (libmnl's contract, see
    // `tail`); `data` points to `len` readable bytes. Header, payload and padding are all
    // written inside the aligned attribute.
    unsafe {
        let attr = tail(nlh);
        let attr_len = ATTR_HDRLEN + len;
        // nla_len is 16 bits on the wire, so a payload of 64 KiB or more (libnftnl never
        // puts one) gets a truncated nla_len, as in libmnl; the message length below still
        // covers all of it, where libmnl's would let the next attribute overwrite the data.
        attr.write_unaligned(nlattr {
            nla_len: attr_len as u16,
            nla_type: kind,
        });
        let payload = mnl_attr_get_payload(attr).cast::<u8>();
        if len > 0 {
            // An empty attribute (a flag) may come with a null `data`.
            ptr::copy_nonoverlapping(data.cast::<u8>(), payload, len);
        }
        ptr::write_bytes(payload.add(len), 0, align(len) - len);
        (*nlh).nlmsg_len += align(attr_len) as u32;
    }
}

/// `mnl_attr_get_uN` and `mnl_attr_put_uN` for each integer width: the value in host byte
/// order as the whole payload.
macro_rules! integer_attributes {
    ($($int:ty: $get:ident, $put:ident;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $get(attr: *const nlattr) -> $int {
            // SAFETY: see `payload`.
            unsafe { payload(attr) }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $put(nlh: *mut nlmsghdr, kind: u16, data: $int) {
            // SAFETY: as mnl_attr_put; `data` is a local of the stated size.
            unsafe { mnl_attr_put(nlh, kind, size_of::<$int>(), ptr::from_ref(&data).cast()) }
        }
    )*};
}

integer_attributes! {
    u8: mnl_attr_get_u8, mnl_attr_put_u8;
    u16: mnl_attr_get_u16, mnl_attr_put_u16;
    u32: mnl_attr_get_u32, mnl_attr_put_u32;
    u64: mnl_attr_get_u64, mnl_attr_put_u64;
}

/// The string without its NUL, as libmnl's mnl_attr_put_str.
#[no_mangle]
pub unsafe extern "C" fn mnl_attr_put_str(nlh: *mut nlmsghdr, kind: u16, data: *const c_char) {
    // SAFETY: `data` is a NUL-terminated C string (the function's contract).
    unsafe {
        mnl_attr_put(
            nlh,
            kind,
            CStr::from_ptr(data).to_bytes().len(),
            data.cast(),
        )
    }
}

/// The string with its NUL, as libmnl's mnl_attr_put_strz.
#[no_mangle]
pub unsafe extern "C" fn mnl_attr_put_strz(nlh: *mut nlmsghdr, kind: u16, data: *const c_char) {
    // SAFETY: as mnl_attr_put_str.
    unsafe {
        mnl_attr_put(
            nlh,
            kind,
            CStr::from_ptr(data).to_bytes_with_nul().len(),
            data.cast(),
        )
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_nest_start(nlh: *mut nlmsghdr, kind: u16) -> *mut nlattr {
    // SAFETY: as mnl_attr_put, for the header alone; its length is set by nest_end.
    unsafe {
        let start = tail(nlh);
        start.write_unaligned(nlattr {
            nla_len: 0,
            nla_type: libc::NLA_F_NESTED as u16 | kind,
        });
        (*nlh).nlmsg_len += ATTR_HDRLEN as u32;
        start
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_nest_end(nlh: *mut nlmsghdr, start: *mut nlattr) {
    // SAFETY: `start` came from mnl_attr_nest_start on this message, so it lies before the
    // tail in the same buffer.
    unsafe {
        let len = tail(nlh).cast::<u8>().offset_from(start.cast::<u8>());
        ptr::addr_of_mut!((*start).nla_len).write_unaligned(len as u16);
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_type_valid(attr: *const nlattr, max: u16) -> c_int {
    // SAFETY: as mnl_attr_get_type.
    if unsafe { mnl_attr_get_type(attr) } > max {
        set_errno(libc::EOPNOTSUPP);
        return -1;
    }
    1
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_validate(attr: *const nlattr, kind: c_int) -> c_int {
    if !(0..MNL_TYPE_MAX).contains(&kind) {
        set_errno(libc::EINVAL);
        return -1;
    }
    let expected = match kind {
        MNL_TYPE_U8 => 1,
        MNL_TYPE_U16 => 2,
        MNL_TYPE_U32 => 4,
        MNL_TYPE_U64 | MNL_TYPE_MSECS => 8,
        _ => 0,
    };
    // SAFETY: libnftnl validates attributes it got from mnl_attr_ok, so the header is
    // inside the message.
    let len = usize::from(unsafe { mnl_attr_get_payload_len(attr) });
    // SAFETY: as above, and the payload it announces, `len` > 0 bytes, is inside too.
    let ends_in_nul = || unsafe { *mnl_attr_get_payload(attr).cast::<u8>().add(len - 1) } == 0;
    let verdict = match kind {
        _ if len < expected => Err(libc::ERANGE),
        MNL_TYPE_FLAG if len > 0 => Err(libc::ERANGE),
        MNL_TYPE_NUL_STRING | MNL_TYPE_STRING if len == 0 => Err(libc::ERANGE),
        MNL_TYPE_NUL_STRING if !ends_in_nul() => Err(libc::EINVAL),
        MNL_TYPE_NESTED if len != 0 && len < ATTR_HDRLEN => Err(libc::ERANGE),
        _ if expected != 0 && len > expected => Err(libc::ERANGE),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => 0,
        Err(code) => {
            set_errno(code);
            -1
        }
    }
}

/// Whether an attribute header and its announced length fit in the `len` bytes left.
#[no_mangle]
pub unsafe extern "C" fn mnl_attr_ok(attr: *const nlattr, len: c_int) -> bool {
    // SAFETY: the header is read only once `len` says it is there.
    len >= size_of::<nlattr>() as c_int && {
        let nla_len = unsafe { (*attr).nla_len };
        usize::from(nla_len) >= size_of::<nlattr>() && c_int::from(nla_len) <= len
    }
}

/// The next attribute's address, which may be just past the message (by up to 3 bytes
/// of padding): callers check it with mnl_attr_ok before reading, hence `wrapping_add`.
#[no_mangle]
pub unsafe extern "C" fn mnl_attr_next(attr: *const nlattr) -> *mut nlattr {
    // SAFETY: the caller checked `attr` with mnl_attr_ok, so its header is readable.
    let len = usize::from(unsafe { (*attr).nla_len });
    attr.cast::<u8>().wrapping_add(align(len)).cast_mut().cast()
}

/// Bytes from `from` to `end`, negative once `from` has stepped past it.
fn room(from: *const nlattr, end: *const u8) -> c_int {
    (end as isize - from as isize) as c_int
}

/// Calls `cb` for each attribute in `[attr, end)` until it says stop or error.
///
/// SAFETY (for callers): `[attr, end)` lies inside one message buffer.
unsafe fn parse_attrs(
    mut attr: *const nlattr,
    end: *const u8,
    cb: AttrCallback,
    data: *mut c_void,
) -> c_int {
    let Some(cb) = cb else {
        return MNL_CB_OK;
    };
    let mut ret = MNL_CB_OK;
    // SAFETY: mnl_attr_ok checks the room left in the range (at most a message's length,
    // so it fits a c_int) before an attribute is read, so only attributes inside it are.
    unsafe {
        while mnl_attr_ok(attr, room(attr, end)) {
            ret = cb(attr, data);
            if ret <= MNL_CB_STOP {
                return ret;
            }
            attr = mnl_attr_next(attr);
        }
    }
    ret
}

#[no_mangle]
pub unsafe extern "C" fn mnl_attr_parse_nested(
    nested: *const nlattr,
    cb: AttrCallback,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `nested` is a checked attribute, so its payload is inside the message.
    unsafe {
        let first = mnl_attr_get_payload(nested).cast::<u8>();
        parse_attrs(
            first.cast(),
            first.wrapping_add(usize::from(mnl_attr_get_payload_len(nested))),
            cb,
            data,
        )
    }
}

/// The attributes after the family header of `offset` bytes, up to the message's end.
#[no_mangle]
pub unsafe extern "C" fn mnl_attr_parse(
    nlh: *const nlmsghdr,
    offset: c_uint,
    cb: AttrCallback,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `nlh` is a complete message of `nlmsg_len` bytes (checked by the caller's
    // receive loop), so both ends of the range are inside it or at its end.
    unsafe {
        let base = nlh.cast::<u8>();
        let first = base.wrapping_add(NLMSG_HDRLEN + align(offset as usize));
        parse_attrs(
            first.cast(),
            base.wrapping_add(align((*nlh).nlmsg_len as usize)),
            cb,
            data,
        )
    }
}

// --- messages and batches -----------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_put_header(buf: *mut c_void) -> *mut nlmsghdr {
    // SAFETY: the caller's buffer has room for at least a header (libmnl's contract).
    unsafe {
        ptr::write_bytes(buf.cast::<u8>(), 0, NLMSG_HDRLEN);
        let nlh = buf.cast::<nlmsghdr>();
        (*nlh).nlmsg_len = NLMSG_HDRLEN as u32;
        nlh
    }
}

/// Room for a family header (e.g. `struct nfgenmsg`) at the tail, zeroed.
#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_put_extra_header(
    nlh: *mut nlmsghdr,
    size: usize,
) -> *mut c_void {
    // SAFETY: as mnl_attr_put: the buffer has room for what the caller adds.
    unsafe {
        let extra = nlh.cast::<u8>().add((*nlh).nlmsg_len as usize);
        let len = align(size);
        (*nlh).nlmsg_len += len as u32;
        ptr::write_bytes(extra, 0, len);
        extra.cast()
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_get_payload(nlh: *const nlmsghdr) -> *mut c_void {
    // SAFETY: the payload follows the header within the same message.
    unsafe { nlh.cast::<u8>().add(NLMSG_HDRLEN).cast_mut().cast() }
}

/// A run of messages in one caller-owned buffer; opaque to libmnl's callers.
#[repr(C)]
pub struct Batch {
    buf: *mut u8,
    /// Bytes the batch may hold; the buffer itself is bigger, so that the message that
    /// does not fit can still be written, then carried over by the caller.
    limit: usize,
    len: usize,
    cur: *mut u8,
}

/// `value` in memory from malloc, or null when there is none: libmnl's callers (libnftnl's
/// batch pages) handle that as an error instead of the process aborting.
fn allocate<T>(value: T) -> *mut T {
    // SAFETY: malloc takes a size; the result is null or fit for a T (malloc's alignment
    // covers these pointer-and-integer structs), and is written before it is returned.
    unsafe {
        let p = libc::malloc(size_of::<T>()).cast::<T>();
        if !p.is_null() {
            p.write(value);
        }
        p
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_start(buf: *mut c_void, limit: usize) -> *mut Batch {
    allocate(Batch {
        buf: buf.cast(),
        limit,
        len: 0,
        cur: buf.cast(),
    })
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_stop(batch: *mut Batch) {
    // SAFETY: `batch` came from mnl_nlmsg_batch_start (malloc) and is stopped once; Batch
    // owns nothing that needs dropping.
    unsafe { libc::free(batch.cast()) }
}

/// Takes the message just written at the current position into the batch; false (and the
/// message stays where it is) if it would pass the limit.
#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_next(batch: *mut Batch) -> bool {
    // SAFETY: `batch` is live, and the caller wrote a message header at `cur`.
    unsafe {
        let b = &mut *batch;
        let len = (*b.cur.cast::<nlmsghdr>()).nlmsg_len as usize;
        if b.len + len > b.limit {
            return false;
        }
        b.len += len;
        b.cur = b.buf.add(b.len);
        true
    }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_size(batch: *const Batch) -> usize {
    // SAFETY: `batch` is live (from mnl_nlmsg_batch_start, not yet stopped).
    unsafe { (*batch).len }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_head(batch: *const Batch) -> *mut c_void {
    // SAFETY: as mnl_nlmsg_batch_size.
    unsafe { (*batch).buf.cast() }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_current(batch: *const Batch) -> *mut c_void {
    // SAFETY: as mnl_nlmsg_batch_size.
    unsafe { (*batch).cur.cast() }
}

#[no_mangle]
pub unsafe extern "C" fn mnl_nlmsg_batch_is_empty(batch: *const Batch) -> bool {
    // SAFETY: as mnl_nlmsg_batch_size.
    unsafe { (*batch).len == 0 }
}

// --- sockets and receive callbacks -------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message buffer, 8-byte aligned so that offsets below are also addresses mod 8.
    #[repr(C, align(8))]
    struct Msg([u8; 512]);

    impl Msg {
        fn new() -> Box<Self> {
            let mut m = Box::new(Msg([0; 512]));
            m.0[..4].copy_from_slice(&(size_of::<nlmsghdr>() as u32).to_ne_bytes());
            m
        }
        fn nlh(&mut self) -> *mut nlmsghdr {
            self.0.as_mut_ptr().cast()
        }
        fn len(&self) -> usize {
            u32::from_ne_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize
        }
        fn bytes(&self) -> &[u8] {
            &self.0[..self.len()]
        }
        fn attr(&self, offset: usize) -> *const nlattr {
            self.0[offset..].as_ptr().cast()
        }
    }

    const FIRST: usize = size_of::<nlmsghdr>();

    #[test]
    fn put_pads_the_payload_to_four_bytes_with_zeros_and_counts_the_padding() {
        let mut m = Msg::new();
        m.0[FIRST + 7] = 0xff; // garbage where the padding goes
        unsafe { mnl_attr_put(m.nlh(), 7, 3, b"abc".as_ptr().cast()) };
        assert_eq!(m.len(), FIRST + 8);
        assert_eq!(&m.bytes()[FIRST..], &[7, 0, 7, 0, b'a', b'b', b'c', 0]);
    }

    #[test]
    fn str_leaves_out_the_nul_and_strz_keeps_it() {
        let mut m = Msg::new();
        unsafe {
            mnl_attr_put_str(m.nlh(), 1, c"eth0".as_ptr());
            mnl_attr_put_strz(m.nlh(), 2, c"eth0".as_ptr());
        }
        let (a, b) = (m.attr(FIRST), m.attr(FIRST + 8));
        unsafe {
            assert_eq!(mnl_attr_get_payload_len(a), 4);
            assert_eq!(mnl_attr_get_payload_len(b), 5);
            assert_eq!(CStr::from_ptr(mnl_attr_get_str(b)), c"eth0");
            assert_eq!(mnl_attr_validate(b, MNL_TYPE_NUL_STRING), 0);
        }
        assert_eq!(m.len(), FIRST + 8 + 12);
    }

    #[test]
    fn integers_read_back_as_written_even_a_u64_at_a_four_byte_offset() {
        let mut m = Msg::new();
        unsafe {
            mnl_attr_put_u8(m.nlh(), 1, 0xab);
            mnl_attr_put_u16(m.nlh(), 2, 0xbeef);
            mnl_attr_put_u32(m.nlh(), 3, 0xdead_beef);
            mnl_attr_put_u64(m.nlh(), 4, 0x0123_4567_89ab_cdef);
        }
        unsafe {
            assert_eq!(mnl_attr_get_u8(m.attr(FIRST)), 0xab);
            assert_eq!(mnl_attr_get_u16(m.attr(FIRST + 8)), 0xbeef);
            assert_eq!(mnl_attr_get_u32(m.attr(FIRST + 16)), 0xdead_beef);
            let big = m.attr(FIRST + 24);
            assert_eq!(
                mnl_attr_get_payload(big) as usize % 8,
                4,
                "the u64 should sit at a 4-byte offset"
            );
            assert_eq!(mnl_attr_get_u64(big), 0x0123_4567_89ab_cdef);
            assert_eq!(mnl_attr_get_type(big), 4);
        }
    }

    #[test]
    fn a_nest_covers_its_children_and_carries_the_nested_flag_outside_the_type() {
        let mut m = Msg::new();
        unsafe {
            let nest = mnl_attr_nest_start(m.nlh(), 9);
            mnl_attr_put_u32(m.nlh(), 1, 10);
            mnl_attr_put_strz(m.nlh(), 2, c"ab".as_ptr());
            mnl_attr_nest_end(m.nlh(), nest);
        }
        let nest = m.attr(FIRST);
        unsafe {
            assert_eq!((*nest).nla_len, 4 + 8 + 8);
            assert_eq!((*nest).nla_type, libc::NLA_F_NESTED as u16 | 9);
            assert_eq!(mnl_attr_get_type(nest), 9);
            assert_eq!(mnl_attr_validate(nest, MNL_TYPE_NESTED), 0);
        }
        assert_eq!(m.len(), FIRST + 20);

        unsafe extern "C" fn collect(attr: *const nlattr, data: *mut c_void) -> c_int {
            let seen = unsafe { &mut *data.cast::<Vec<u16>>() };
            seen.push(unsafe { mnl_attr_get_type(attr) });
            MNL_CB_OK
        }
        let mut seen: Vec<u16> = Vec::new();
        let ret =
            unsafe { mnl_attr_parse_nested(nest, Some(collect), ptr::from_mut(&mut seen).cast()) };
        assert_eq!((ret, seen), (MNL_CB_OK, vec![1, 2]));
    }

    #[test]
    fn parsing_a_nest_stops_where_the_callback_says_stop_or_error() {
        let mut m = Msg::new();
        unsafe {
            let nest = mnl_attr_nest_start(m.nlh(), 1);
            for kind in 1..=3 {
                mnl_attr_put_u32(m.nlh(), kind, 0);
            }
            mnl_attr_nest_end(m.nlh(), nest);
        }
        unsafe extern "C" fn stop_at_two(attr: *const nlattr, data: *mut c_void) -> c_int {
            unsafe { *data.cast::<u32>() += 1 };
            if unsafe { mnl_attr_get_type(attr) } == 2 {
                -1
            } else {
                MNL_CB_OK
            }
        }
        let mut calls = 0u32;
        let ret = unsafe {
            mnl_attr_parse_nested(
                m.attr(FIRST),
                Some(stop_at_two),
                ptr::from_mut(&mut calls).cast(),
            )
        };
        assert_eq!((ret, calls), (-1, 2));
    }

    #[test]
    fn parsing_a_nest_ignores_a_child_that_claims_more_than_the_nest_holds() {
        let mut m = Msg::new();
        unsafe {
            let nest = mnl_attr_nest_start(m.nlh(), 1);
            mnl_attr_put_u32(m.nlh(), 1, 0);
            mnl_attr_put_u32(m.nlh(), 2, 0);
            mnl_attr_nest_end(m.nlh(), nest);
        }
        // The second child now announces 64 bytes, past the nest's end.
        m.0[FIRST + 12..FIRST + 16].copy_from_slice(&(64u32 | (2 << 16)).to_ne_bytes());
        unsafe extern "C" fn count(_: *const nlattr, data: *mut c_void) -> c_int {
            unsafe { *data.cast::<u32>() += 1 };
            MNL_CB_OK
        }
        let mut calls = 0u32;
        unsafe {
            mnl_attr_parse_nested(m.attr(FIRST), Some(count), ptr::from_mut(&mut calls).cast())
        };
        assert_eq!(calls, 1);
    }

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn validation_rejects_wrong_sizes_with_erange_and_an_unterminated_string_with_einval() {
        let mut m = Msg::new();
        unsafe {
            mnl_attr_put_u16(m.nlh(), 1, 5); // at FIRST
            mnl_attr_put_str(m.nlh(), 2, c"ab".as_ptr()); // at FIRST + 8
            mnl_attr_put(m.nlh(), 3, 0, ptr::null()); // at FIRST + 16, an empty flag
        }
        let (short, unterminated, flag) = (m.attr(FIRST), m.attr(FIRST + 8), m.attr(FIRST + 16));
        unsafe {
            assert_eq!(mnl_attr_validate(short, MNL_TYPE_U16), 0);
            assert_eq!(
                (mnl_attr_validate(short, MNL_TYPE_U32), errno()),
                (-1, libc::ERANGE)
            );
            assert_eq!(
                (mnl_attr_validate(short, MNL_TYPE_U8), errno()),
                (-1, libc::ERANGE)
            );
            assert_eq!(
                (
                    mnl_attr_validate(unterminated, MNL_TYPE_NUL_STRING),
                    errno()
                ),
                (-1, libc::EINVAL)
            );
            assert_eq!(mnl_attr_validate(unterminated, MNL_TYPE_STRING), 0);
            assert_eq!(mnl_attr_validate(flag, MNL_TYPE_FLAG), 0);
            assert_eq!(
                (mnl_attr_validate(flag, MNL_TYPE_STRING), errno()),
                (-1, libc::ERANGE)
            );
            assert_eq!(
                (mnl_attr_validate(short, MNL_TYPE_FLAG), errno()),
                (-1, libc::ERANGE)
            );
            assert_eq!(
                (mnl_attr_validate(short, MNL_TYPE_MAX), errno()),
                (-1, libc::EINVAL)
            );
        }
    }

    #[test]
    fn a_type_above_the_maximum_is_invalid_with_eopnotsupp() {
        let mut m = Msg::new();
        unsafe { mnl_attr_put_u32(m.nlh(), 5, 0) };
        unsafe {
            assert_eq!(mnl_attr_type_valid(m.attr(FIRST), 5), 1);
            assert_eq!(
                (mnl_attr_type_valid(m.attr(FIRST), 4), errno()),
                (-1, libc::EOPNOTSUPP)
            );
        }
    }

    #[test]
    fn a_header_and_its_family_header_start_zeroed_and_attributes_parse_after_them() {
        let mut m = Msg::new();
        m.0[..64].fill(0xee);
        let extra_len = unsafe {
            let nlh = mnl_nlmsg_put_header(m.0.as_mut_ptr().cast());
            let extra = mnl_nlmsg_put_extra_header(nlh, 3);
            assert_eq!(extra.cast::<u8>(), m.0.as_mut_ptr().add(FIRST));
            mnl_attr_put_u32(nlh, 1, 7);
            mnl_attr_put_u32(nlh, 2, 8);
            4
        };
        assert_eq!(m.len(), FIRST + extra_len + 16);
        assert!(
            m.0[4..FIRST + extra_len].iter().all(|&b| b == 0),
            "header and family header not zeroed"
        );

        unsafe extern "C" fn sum(attr: *const nlattr, data: *mut c_void) -> c_int {
            unsafe { *data.cast::<u32>() += mnl_attr_get_u32(attr) };
            MNL_CB_OK
        }
        let mut total = 0u32;
        let ret =
            unsafe { mnl_attr_parse(m.nlh(), 3, Some(sum), ptr::from_mut(&mut total).cast()) };
        assert_eq!((ret, total), (MNL_CB_OK, 15));
    }

    #[test]
    fn a_batch_takes_messages_up_to_its_limit_and_leaves_the_one_that_does_not_fit_current() {
        let mut buf = Msg::new();
        let base = buf.0.as_mut_ptr();
        unsafe {
            let b = mnl_nlmsg_batch_start(base.cast(), 40);
            assert!(mnl_nlmsg_batch_is_empty(b));
            // Two 24-byte messages against a 40-byte limit: the first fits, the second not.
            for (already, fits) in [(0, true), (24, false)] {
                let nlh = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
                mnl_attr_put_u32(nlh, 1, 0);
                assert_eq!((*nlh).nlmsg_len, 24);
                assert_eq!(
                    mnl_nlmsg_batch_next(b),
                    fits,
                    "a 24-byte message after {already} bytes"
                );
            }
            assert_eq!(mnl_nlmsg_batch_size(b), 24);
            assert_eq!(mnl_nlmsg_batch_head(b).cast::<u8>(), base);
            assert_eq!(
                mnl_nlmsg_batch_current(b).cast::<u8>(),
                base.add(24),
                "the refused message stays current"
            );
            assert!(!mnl_nlmsg_batch_is_empty(b));
            mnl_nlmsg_batch_stop(b);
        }
    }

    /// Counts data messages; the dump's NLMSG_DONE ends the walk.
    unsafe extern "C" fn count_messages(_: *const nlmsghdr, data: *mut c_void) -> c_int {
        unsafe { *data.cast::<u32>() += 1 };
        MNL_CB_OK
    }

    /// Sends one RTM_GETLINK (a read: nothing in the namespace changes) and runs the replies
    /// through mnl_cb_run; returns its result, errno and the data messages seen.
    fn getlink(flags: c_int, index: c_int, seq_expected: c_uint) -> (c_int, c_int, u32) {
        let mut req = Msg::new();
        let mut reply = vec![0u8; 32 * 1024];
        let mut seen = 0u32;
        unsafe {
            let nl = mnl_socket_open(libc::NETLINK_ROUTE);
            assert!(
                !nl.is_null(),
                "netlink socket: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(
                mnl_socket_bind(nl, 0, 0),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            let portid = mnl_socket_get_portid(nl);
            assert_ne!(portid, 0, "the kernel assigns a port id at bind");

            let nlh = mnl_nlmsg_put_header(req.0.as_mut_ptr().cast());
            (*nlh).nlmsg_type = libc::RTM_GETLINK;
            (*nlh).nlmsg_flags = (libc::NLM_F_REQUEST | flags) as u16;
            (*nlh).nlmsg_seq = 42;
            let ifi = mnl_nlmsg_put_extra_header(nlh, size_of::<libc::ifinfomsg>())
                .cast::<libc::ifinfomsg>();
            (*ifi).ifi_index = index;
            let len = (*nlh).nlmsg_len as usize;
            assert_eq!(mnl_socket_sendto(nl, nlh.cast(), len), len as isize);

            let mut ret = MNL_CB_OK;
            while ret > MNL_CB_STOP {
                let n = mnl_socket_recvfrom(nl, reply.as_mut_ptr().cast(), reply.len());
                assert!(n > 0, "recv: {}", std::io::Error::last_os_error());
                ret = mnl_cb_run(
                    reply.as_ptr().cast(),
                    n as usize,
                    seq_expected,
                    portid,
                    Some(count_messages),
                    ptr::from_mut(&mut seen).cast(),
                );
            }
            let err = errno();
            assert_eq!(mnl_socket_close(nl), 0);
            (ret, err, seen)
        }
    }

    #[test]
    fn a_dump_from_the_kernel_runs_through_every_link_and_ends_at_done() {
        let (ret, _, seen) = getlink(libc::NLM_F_DUMP, 0, 42);
        assert_eq!(ret, MNL_CB_STOP);
        assert!(seen >= 1, "every namespace has lo");
    }

    #[test]
    fn the_kernel_error_reply_becomes_mnl_cb_error_with_its_errno() {
        let (ret, err, seen) = getlink(libc::NLM_F_ACK, c_int::MAX, 42);
        assert_eq!((ret, err, seen), (-1, libc::ENODEV, 0));
    }

    #[test]
    fn a_reply_to_another_sequence_number_is_refused_with_eproto() {
        let (ret, err, _) = getlink(libc::NLM_F_DUMP, 0, 41);
        assert_eq!((ret, err), (-1, libc::EPROTO));
    }
}
