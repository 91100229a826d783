//! Messages and batches: headers in a caller's buffer, and a run of messages in one buffer.

use std::ffi::c_void;
use std::ptr;

use libc::nlmsghdr;

use crate::{align, allocate, NLMSG_HDRLEN};

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
