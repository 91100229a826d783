//! The parts of libnftnl that the safe `nftnl` crate does not wrap: generic expressions,
//! map/interval set attributes, set elements with data, flags and user data, and rendering a
//! rule for the golden tests.
//!
//! The rest of the firewall builds plain Rust values (`RawExpr`, `ElemSpec`) and hands them to the
//! few functions below.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::set::Set;
use nftnl::{MsgType, NlMsg, Rule, Table};

/// The value of one libnftnl expression attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    U32(u32),
    Str(CString),
    Data(Vec<u8>),
}

/// An nftables expression described as data: its libnftnl name (`"payload"`, `"lookup"`, ...)
/// and its `NFTNL_EXPR_*` attributes. Turned into an `nftnl_expr` only when added to a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawExpr {
    pub name: &'static CStr,
    pub attrs: Vec<(u32, Val)>,
}

impl Expression for RawExpr {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: `name` is a valid NUL-terminated C string that outlives the call; libnftnl copies
        // what it needs and returns NULL for unknown names or allocation failure.
        let expr = unsafe { sys::nftnl_expr_alloc(self.name.as_ptr()) };
        let Some(expr) = NonNull::new(expr) else {
            // Invariant: every name used by this crate is a builtin libnftnl expression (pinned by
            // the golden tests), so NULL only means out of memory; do what libstd does.
            std::process::abort();
        };
        for (attr, val) in &self.attrs {
            let attr = *attr as u16;
            match val {
                // SAFETY: `expr` is a live expression we own; the setter copies the value.
                Val::U32(v) => unsafe { sys::nftnl_expr_set_u32(expr.as_ptr(), attr, *v) },
                Val::Str(s) => {
                    // SAFETY: as above; `s` is NUL-terminated and libnftnl strdup()s it.
                    unsafe { sys::nftnl_expr_set_str(expr.as_ptr(), attr, s.as_ptr()) };
                }
                Val::Data(d) => {
                    // SAFETY: as above; `d` is valid for `d.len()` bytes, which libnftnl copies
                    // (it rejects lengths above its register size, checked by the golden tests).
                    unsafe {
                        sys::nftnl_expr_set(
                            expr.as_ptr(),
                            attr,
                            d.as_ptr().cast::<c_void>(),
                            d.len() as u32,
                        )
                    };
                }
            }
        }
        // Ownership passes to the rule (`nftnl_rule_add_expr`), which frees it.
        expr
    }
}

/// Borrowing adapter: lets batch items refer to objects owned elsewhere (and unsized ones).
pub(crate) struct Borrowed<'a, T: NlMsg + ?Sized>(pub(crate) &'a T);

// SAFETY: pure delegation to the wrapped object's own `NlMsg::write`, with the caller's
// guarantees passed through unchanged.
unsafe impl<T: NlMsg + ?Sized> NlMsg for Borrowed<'_, T> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, ty: MsgType) {
        // SAFETY: see above.
        unsafe { self.0.write(buf, seq, ty) }
    }
}

/// Set attributes that `nftnl::set::Set` does not expose: key type/length (concatenations), flags,
/// map data type/length, the field lengths of an interval concatenation (`NFTA_SET_DESC_CONCAT`:
/// the kernel picks its pipapo backend by them; empty for other sets), user data.
pub(crate) fn configure_set<K>(
    set: &Set<'_, K>,
    key_type: u32,
    key_len: u32,
    flags: u32,
    data: Option<(u32, u32)>,
    concat: &[u8],
    userdata: &[u8],
) {
    let s = set.as_ptr().as_ptr();
    // SAFETY: `s` is the live `nftnl_set` owned by `set`, which outlives this call; the setters
    // copy their arguments.
    unsafe {
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, key_type);
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, key_len);
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, flags);
        if let Some((ty, len)) = data {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, ty);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_LEN as u16, len);
        }
    }
    if !concat.is_empty() {
        // SAFETY: as above; `concat` is valid for its length, which libnftnl checks against
        // its field array (NFT_REG32_COUNT bytes) before copying.
        unsafe {
            sys::nftnl_set_set_data(
                s,
                sys::NFTNL_SET_DESC_CONCAT as u16,
                concat.as_ptr().cast::<c_void>(),
                concat.len() as u32,
            )
        };
    }
    if !userdata.is_empty() {
        // SAFETY: as above; `userdata` is valid for its length and copied by libnftnl.
        unsafe {
            sys::nftnl_set_set_data(
                s,
                sys::NFTNL_SET_USERDATA as u16,
                userdata.as_ptr().cast::<c_void>(),
                userdata.len() as u32,
            )
        };
    }
}

/// One set element as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ElemSpec {
    pub key: Vec<u8>,
    /// The inclusive end of an interval of a concatenation (`NFTA_SET_ELEM_KEY_END`).
    pub key_end: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
    /// `NFT_SET_ELEM_*` flags (e.g. `NFT_SET_ELEM_INTERVAL_END`).
    pub flags: u32,
    pub userdata: Vec<u8>,
    /// Verdict-map data: the verdict (`NFT_GOTO`, `NFT_JUMP`) and its chain, in place of `data`.
    pub verdict: Option<(i32, CString)>,
}

/// A NEWSETELEM/DELSETELEM message for the elements of one set, with the netlink flags chosen by
/// the caller (the `nftnl` crate always adds elements with `NLM_F_EXCL`).
pub(crate) struct ElemMsg {
    set: NonNull<sys::nftnl_set>,
    family: u16,
    nl_flags: u16,
    /// Deletes are sent as NFT_MSG_DESTROYSETELEM (kernel 6.3+: a missing element is no error).
    destroy: bool,
}

/// `NFT_MSG_DESTROYSETELEM` (linux/netfilter/nf_tables.h, kernel 6.3+; not in libc). Careful:
/// 26 is NFT_MSG_DESTROYTABLE, whose table-name attribute has the number of the set-element
/// list's table attribute: sent with an element list it deletes the whole table.
pub(crate) const NFT_MSG_DESTROYSETELEM: u16 = 30;

/// At most this many elements go in one message: libnftnl nests them in one attribute, whose
/// length is a u16 (the largest element, an `addrs4` key, takes 40 bytes: 256 take ~10 KiB).
pub(crate) const MAX_ELEMS_PER_MSG: usize = 256;

impl ElemMsg {
    /// `nl_flags` is used for `MsgType::Add` (e.g. `NLM_F_CREATE`, or `NLM_F_CREATE|NLM_F_EXCL`);
    /// deletes always use `NLM_F_ACK` only. `NLM_F_ACK` is added in both cases.
    pub(crate) fn new(table: &Table, set_name: &CStr, nl_flags: u16, elems: &[ElemSpec]) -> Self {
        // SAFETY: plain allocation; NULL is handled below.
        let Some(set) = NonNull::new(unsafe { sys::nftnl_set_alloc() }) else {
            std::process::abort(); // out of memory, as the nftnl crate does
        };
        let family = table.get_family() as u16;
        let s = set.as_ptr();
        // SAFETY: `s` is the live set allocated above; strings are NUL-terminated and copied.
        unsafe {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, u32::from(family));
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.get_name().as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, set_name.as_ptr());
        }
        for e in elems {
            // SAFETY: plain allocation; NULL is handled below.
            let Some(elem) = NonNull::new(unsafe { sys::nftnl_set_elem_alloc() }) else {
                std::process::abort();
            };
            let el = elem.as_ptr();
            // SAFETY: `el` is the live element allocated above; every buffer is valid for the
            // given length and copied by libnftnl; `nftnl_set_elem_add` then takes ownership of
            // `el` (freed with the set).
            unsafe {
                sys::nftnl_set_elem_set(
                    el,
                    sys::NFTNL_SET_ELEM_KEY as u16,
                    e.key.as_ptr().cast::<c_void>(),
                    e.key.len() as u32,
                );
                if let Some(end) = &e.key_end {
                    sys::nftnl_set_elem_set(
                        el,
                        sys::NFTNL_SET_ELEM_KEY_END as u16,
                        end.as_ptr().cast::<c_void>(),
                        end.len() as u32,
                    );
                }
                if let Some(d) = &e.data {
                    sys::nftnl_set_elem_set(
                        el,
                        sys::NFTNL_SET_ELEM_DATA as u16,
                        d.as_ptr().cast::<c_void>(),
                        d.len() as u32,
                    );
                }
                if let Some((code, chain)) = &e.verdict {
                    sys::nftnl_set_elem_set_u32(
                        el,
                        sys::NFTNL_SET_ELEM_VERDICT as u16,
                        *code as u32,
                    );
                    sys::nftnl_set_elem_set_str(
                        el,
                        sys::NFTNL_SET_ELEM_CHAIN as u16,
                        chain.as_ptr(),
                    );
                }
                if e.flags != 0 {
                    sys::nftnl_set_elem_set_u32(el, sys::NFTNL_SET_ELEM_FLAGS as u16, e.flags);
                }
                if !e.userdata.is_empty() {
                    sys::nftnl_set_elem_set(
                        el,
                        sys::NFTNL_SET_ELEM_USERDATA as u16,
                        e.userdata.as_ptr().cast::<c_void>(),
                        e.userdata.len() as u32,
                    );
                }
                sys::nftnl_set_elem_add(s, el);
            }
        }
        ElemMsg {
            set,
            family,
            nl_flags,
            destroy: false,
        }
    }

    /// Send deletes as NFT_MSG_DESTROYSETELEM instead of NFT_MSG_DELSETELEM.
    pub(crate) fn destroying(mut self, destroy: bool) -> Self {
        self.destroy = destroy;
        self
    }
}

// SAFETY: `write` serializes one set-element list; callers keep the element count per message
// at most `MAX_ELEMS_PER_MSG` (~10 KiB), far below the 64 KiB attribute limit that
// `nft_nlmsg_maxsize()` reserves.
unsafe impl NlMsg for ElemMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (ty, flags) = match msg_type {
            MsgType::Add => (
                libc::NFT_MSG_NEWSETELEM,
                self.nl_flags | libc::NLM_F_ACK as u16,
            ),
            MsgType::Del if self.destroy => (NFT_MSG_DESTROYSETELEM as i32, libc::NLM_F_ACK as u16),
            MsgType::Del => (libc::NFT_MSG_DELSETELEM, libc::NLM_F_ACK as u16),
        };
        // SAFETY: the caller (nftnl's `Batch`) guarantees `buf` has room for the largest netlink
        // message; `self.set` is live.
        unsafe {
            let hdr = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                ty as u16,
                self.family,
                flags,
                seq,
            );
            sys::nftnl_set_elems_nlmsg_build_payload(hdr, self.set.as_ptr());
        }
    }
}

impl Drop for ElemMsg {
    fn drop(&mut self) {
        // SAFETY: we own the set (and through it its elements); freed exactly once.
        unsafe { sys::nftnl_set_free(self.set.as_ptr()) };
    }
}

/// Render a rule the way `nft --debug=netlink` does (`nftnl_rule_snprintf`, default format), from
/// the netlink message it serializes to: the golden tests thus pin what goes on the wire.
#[cfg(test)]
pub(crate) fn render_rule(rule: &Rule<'_>) -> String {
    let mut msg = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    // SAFETY: `msg` has room for `nft_nlmsg_maxsize()` bytes as `NlMsg::write` requires.
    unsafe { rule.write(msg.as_mut_ptr().cast::<c_void>(), 0, MsgType::Add) };
    // SAFETY: plain allocation; NULL is handled below.
    let Some(parsed) = NonNull::new(unsafe { sys::nftnl_rule_alloc() }) else {
        std::process::abort();
    };
    let mut out = vec![0u8; 16 * 1024];
    // SAFETY: `msg` starts with the complete netlink message just written (its length field is
    // set), `parsed` is live; snprintf writes at most `out.len()` bytes including the NUL.
    let n = unsafe {
        let r = sys::nftnl_rule_nlmsg_parse(msg.as_ptr().cast::<libc::nlmsghdr>(), parsed.as_ptr());
        let n = if r < 0 {
            -1
        } else {
            sys::nftnl_rule_snprintf(
                out.as_mut_ptr().cast::<c_char>(),
                out.len(),
                parsed.as_ptr(),
                sys::NFTNL_OUTPUT_DEFAULT,
                0,
            )
        };
        sys::nftnl_rule_free(parsed.as_ptr());
        n
    };
    if n < 0 {
        return String::from("<unparsable rule>");
    }
    let n = (n as usize).min(out.len() - 1);
    String::from_utf8_lossy(&out[..n]).into_owned()
}
