//! The part of libmnl that libnftnl links against, in Rust, standing in for the crates.io
//! `mnl-sys` crate (nethook's Cargo.toml patches it in), so nethook can be linked statically
//! without libmnl.
//!
//! Why: a hook is a process per container event, and loading shared objects was most of
//! its start-up (a static `nethook hook` starts in 0.73 ms where the dynamic one took
//! 1.16 ms; `/bin/true` takes 0.79). Debian ships `libnftnl.a` but no `libmnl.a`
//! (libmnl-dev has only the shared object), and the 40 functions libnftnl's objects
//! reference are a few lines each: write or read a `struct nlattr` or `struct nlmsghdr`
//! in a caller's buffer, keep a batch's offsets, wrap a netlink socket. They follow
//! libmnl's documented contract (libmnl.h), including errno values; the tests pin it, and
//! nethook's test suite sends what libnftnl builds with them to the kernel. Checked once
//! against Debian 12's libmnl 1.0.4 (loaded with dlopen): the same bytes for every builder
//! and the same result and errno from `mnl_attr_validate` for every type, except that
//! attribute padding is zeroed here, as libmnl does since 1.0.5.
//!
//! Of these, nethook's paths call the attribute and message builders and the batch
//! helpers. The socket and callback functions are reached only from libnftnl functions
//! nethook does not call (`nftnl_batch_is_supported`), but they are real, not stubs:
//! libnftnl's object files need them to link, and a future caller gets libmnl's behaviour.
//!
//! # Linking
//!
//! The crate declares `links = "mnl"`, so Cargo lets no second libmnl into a build, and
//! nftnl-sys's dependency on `mnl-sys` resolves here (nethook's `[patch.crates-io]`).
//! nftnl-sys names `mnl-sys` in its Cargo.toml but never in its code, so rustc would not
//! load it there, and would leave it out of the link: nethook names it (`extern crate
//! mnl_sys` in src/sys/mod.rs). Once linked, no definition depends on where the archive
//! sits on the link line: rustc puts a synthetic `symbols.o` first that references every
//! `#[no_mangle]` symbol of every linked crate, so the linker takes these functions before
//! it reaches `libnftnl.a` (checked with rustc 1.91: moving this crate's archive before
//! nftnl-sys's by hand still links).
//!
//! `pkgconfig/libmnl.pc` (made visible to nftnl-sys's build script by nethook's
//! `.cargo/config.toml`) answers pkg-config's question for libmnl, which `libnftnl.pc`
//! requires: version 1.0.4, no flags. So neither libmnl-dev nor a `-lmnl` is needed.
#![warn(clippy::undocumented_unsafe_blocks)]
// The C functions' contract is libmnl's (libmnl.h), not restated per function here.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_void};
use std::mem::size_of;

use libc::{nlattr, nlmsghdr};

mod attr;
mod msg;
mod socket;
#[cfg(test)]
mod tests;

pub use attr::*;
pub use msg::*;
pub use socket::*;

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
