//! Attributes: building them at a message's tail, reading, validating and walking them.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::size_of;
use std::ptr;

use libc::{nlattr, nlmsghdr};

use crate::{
    align, set_errno, AttrCallback, ATTR_HDRLEN, MNL_CB_OK, MNL_CB_STOP, MNL_TYPE_FLAG,
    MNL_TYPE_MAX, MNL_TYPE_MSECS, MNL_TYPE_NESTED, MNL_TYPE_NUL_STRING, MNL_TYPE_STRING,
    MNL_TYPE_U16, MNL_TYPE_U32, MNL_TYPE_U64, MNL_TYPE_U8, NLMSG_HDRLEN, TYPE_MASK,
};

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
    len >= size_of::<nlattr>() as c_int && {
        // SAFETY: the header is read only once `len` says it is there.
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
