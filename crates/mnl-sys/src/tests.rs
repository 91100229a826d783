//! libmnl's contract, pinned: bytes written, results and errno values, and a round trip
//! through the kernel (a read-only RTM_GETLINK, no privileges needed).

use std::ffi::{c_int, c_uint, c_void, CStr};
use std::mem::size_of;
use std::ptr;

use libc::{nlattr, nlmsghdr};

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
                           // SAFETY: `m` has room for the attribute; `data` is 3 readable bytes.
    unsafe { mnl_attr_put(m.nlh(), 7, 3, b"abc".as_ptr().cast()) };
    assert_eq!(m.len(), FIRST + 8);
    assert_eq!(&m.bytes()[FIRST..], &[7, 0, 7, 0, b'a', b'b', b'c', 0]);
}

#[test]
fn str_leaves_out_the_nul_and_strz_keeps_it() {
    let mut m = Msg::new();
    // SAFETY: `m` has room for both attributes; the strings are NUL-terminated literals.
    unsafe {
        mnl_attr_put_str(m.nlh(), 1, c"eth0".as_ptr());
        mnl_attr_put_strz(m.nlh(), 2, c"eth0".as_ptr());
    }
    let (a, b) = (m.attr(FIRST), m.attr(FIRST + 8));
    // SAFETY: `a` and `b` are the attributes just written, inside `m`.
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
    // SAFETY: `m` has room for the four attributes.
    unsafe {
        mnl_attr_put_u8(m.nlh(), 1, 0xab);
        mnl_attr_put_u16(m.nlh(), 2, 0xbeef);
        mnl_attr_put_u32(m.nlh(), 3, 0xdead_beef);
        mnl_attr_put_u64(m.nlh(), 4, 0x0123_4567_89ab_cdef);
    }
    // SAFETY: the offsets are those of the attributes just written.
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
    // SAFETY: `m` has room for the nest and its children; `nest` is from this message.
    unsafe {
        let nest = mnl_attr_nest_start(m.nlh(), 9);
        mnl_attr_put_u32(m.nlh(), 1, 10);
        mnl_attr_put_strz(m.nlh(), 2, c"ab".as_ptr());
        mnl_attr_nest_end(m.nlh(), nest);
    }
    let nest = m.attr(FIRST);
    // SAFETY: `nest` is the attribute just written, inside `m`.
    unsafe {
        assert_eq!((*nest).nla_len, 4 + 8 + 8);
        assert_eq!((*nest).nla_type, libc::NLA_F_NESTED as u16 | 9);
        assert_eq!(mnl_attr_get_type(nest), 9);
        assert_eq!(mnl_attr_validate(nest, MNL_TYPE_NESTED), 0);
    }
    assert_eq!(m.len(), FIRST + 20);

    unsafe extern "C" fn collect(attr: *const nlattr, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `Vec` the test passes to the parse below, alive throughout it.
        let seen = unsafe { &mut *data.cast::<Vec<u16>>() };
        // SAFETY: the parser hands over only attributes it checked with mnl_attr_ok.
        seen.push(unsafe { mnl_attr_get_type(attr) });
        MNL_CB_OK
    }
    let mut seen: Vec<u16> = Vec::new();
    // SAFETY: `nest` is complete; `collect` gets the `Vec` it expects.
    let ret =
        unsafe { mnl_attr_parse_nested(nest, Some(collect), ptr::from_mut(&mut seen).cast()) };
    assert_eq!((ret, seen), (MNL_CB_OK, vec![1, 2]));
}

#[test]
fn parsing_a_nest_stops_where_the_callback_says_stop_or_error() {
    let mut m = Msg::new();
    // SAFETY: `m` has room for the nest and its three children.
    unsafe {
        let nest = mnl_attr_nest_start(m.nlh(), 1);
        for kind in 1..=3 {
            mnl_attr_put_u32(m.nlh(), kind, 0);
        }
        mnl_attr_nest_end(m.nlh(), nest);
    }
    unsafe extern "C" fn stop_at_two(attr: *const nlattr, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the u32 counter passed to the parse below.
        unsafe { *data.cast::<u32>() += 1 };
        // SAFETY: the parser hands over only checked attributes.
        if unsafe { mnl_attr_get_type(attr) } == 2 {
            -1
        } else {
            MNL_CB_OK
        }
    }
    let mut calls = 0u32;
    // SAFETY: the nest is complete; `stop_at_two` gets the u32 counter it expects.
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
    // SAFETY: `m` has room for the nest and its two children.
    unsafe {
        let nest = mnl_attr_nest_start(m.nlh(), 1);
        mnl_attr_put_u32(m.nlh(), 1, 0);
        mnl_attr_put_u32(m.nlh(), 2, 0);
        mnl_attr_nest_end(m.nlh(), nest);
    }
    // The second child now announces 64 bytes, past the nest's end.
    m.0[FIRST + 12..FIRST + 16].copy_from_slice(&(64u32 | (2 << 16)).to_ne_bytes());
    unsafe extern "C" fn count(_: *const nlattr, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the u32 counter passed to the parse below.
        unsafe { *data.cast::<u32>() += 1 };
        MNL_CB_OK
    }
    let mut calls = 0u32;
    // SAFETY: the nest and its children are inside `m` (the second child's overstated length is
    // the point of the test); `count` gets the u32 counter it expects.
    unsafe { mnl_attr_parse_nested(m.attr(FIRST), Some(count), ptr::from_mut(&mut calls).cast()) };
    assert_eq!(calls, 1);
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn validation_rejects_wrong_sizes_with_erange_and_an_unterminated_string_with_einval() {
    let mut m = Msg::new();
    // SAFETY: `m` has room for the three attributes; the empty flag has no data to read.
    unsafe {
        mnl_attr_put_u16(m.nlh(), 1, 5); // at FIRST
        mnl_attr_put_str(m.nlh(), 2, c"ab".as_ptr()); // at FIRST + 8
        mnl_attr_put(m.nlh(), 3, 0, ptr::null()); // at FIRST + 16, an empty flag
    }
    let (short, unterminated, flag) = (m.attr(FIRST), m.attr(FIRST + 8), m.attr(FIRST + 16));
    // SAFETY: the three attributes just written, inside `m`.
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
    // SAFETY: `m` has room for the attribute.
    unsafe { mnl_attr_put_u32(m.nlh(), 5, 0) };
    // SAFETY: the attribute just written.
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
    // SAFETY: the 512-byte buffer has room for the header, the family header and two attributes.
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
        // SAFETY: `data` is the u32 total passed to the parse below; attributes come checked.
        unsafe { *data.cast::<u32>() += mnl_attr_get_u32(attr) };
        MNL_CB_OK
    }
    let mut total = 0u32;
    // SAFETY: the message is complete; `sum` gets the u32 total it expects.
    let ret = unsafe { mnl_attr_parse(m.nlh(), 3, Some(sum), ptr::from_mut(&mut total).cast()) };
    assert_eq!((ret, total), (MNL_CB_OK, 15));
}

#[test]
fn a_batch_takes_messages_up_to_its_limit_and_leaves_the_one_that_does_not_fit_current() {
    let mut buf = Msg::new();
    let base = buf.0.as_mut_ptr();
    // SAFETY: the 512-byte buffer has room for both messages; the batch is stopped once, at the end.
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
    // SAFETY: `data` is the u32 counter `getlink` passes to mnl_cb_run.
    unsafe { *data.cast::<u32>() += 1 };
    MNL_CB_OK
}

/// Sends one RTM_GETLINK (a read: nothing in the namespace changes) and runs the replies
/// through mnl_cb_run; returns its result, errno and the data messages seen.
fn getlink(flags: c_int, index: c_int, seq_expected: c_uint) -> (c_int, c_int, u32) {
    let mut req = Msg::new();
    let mut reply = vec![0u8; 32 * 1024];
    let mut seen = 0u32;
    // SAFETY: the socket is used only between open and close; the request fits `req`, `reply` has
    // `reply.len()` bytes, and `count_messages` gets the u32 counter it expects.
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
        let ifi =
            mnl_nlmsg_put_extra_header(nlh, size_of::<libc::ifinfomsg>()).cast::<libc::ifinfomsg>();
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
