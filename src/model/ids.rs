//! Container ids and the names derived from them.
//!
//! A container id becomes a file name (`endpoints/<id>.json`) and, hashed, an
//! interface name, so it is validated before anything else sees it.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("container id is empty")]
    Empty,
    #[error("container id is {len} bytes; at most 128 are allowed")]
    TooLong { len: usize },
    #[error("container id {id:?} has a character outside [A-Za-z0-9_.+-] or does not start with a letter or digit")]
    BadChar { id: String },
    #[error("interface name {name:?} {reason}")]
    BadIfname { name: String, reason: String },
}

/// What separates the container id from the interface name in a CNI attachment's key
/// (`ID@IFNAME`). A container id never holds it (see `ContainerId::parse`), so no hook
/// container's id can equal a CNI attachment's key, and the first one splits a key.
pub const ATTACHMENT_SEPARATOR: char = '@';

/// What endpoints are keyed by: a validated container id, `[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}`
/// (a hook's container), or a CNI attachment's key `ID@IFNAME` (`ContainerId::attachment`).
/// Everything derived from it (record file, host veth names, owner tag) takes the whole
/// key, so a hook container and a CNI attachment never share one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > 128 {
            return Err(IdError::TooLong { len: raw.len() });
        }
        let bytes = raw.as_bytes();
        let ok_first = bytes[0].is_ascii_alphanumeric();
        let ok_rest = bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'));
        if !ok_first || !ok_rest {
            // Debug-format so NUL and control characters show up escaped in the message.
            return Err(IdError::BadChar {
                id: raw.chars().take(64).collect(),
            });
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key of CNI attachment `ifname` of `container` (a CNI container id follows the
    /// same rules as a hook's). The interface name is checked as the kernel would
    /// (`validate_ifname`), so the key is also a safe file name: no `/`, no NUL.
    pub fn attachment(container: &ContainerId, ifname: &str) -> Result<Self, IdError> {
        validate_ifname(ifname).map_err(|reason| IdError::BadIfname {
            name: ifname.chars().take(32).collect(),
            reason,
        })?;
        Ok(Self(format!("{container}{ATTACHMENT_SEPARATOR}{ifname}")))
    }

    /// A key as records, IPAM and claim files hold it: a container id or an attachment key.
    pub fn parse_key(raw: &str) -> Result<Self, IdError> {
        match raw.split_once(ATTACHMENT_SEPARATOR) {
            Some((container, ifname)) => Self::attachment(&Self::parse(container)?, ifname),
            None => Self::parse(raw),
        }
    }

    /// The container id and interface name of a CNI attachment's key; `None` for a hook's.
    pub fn attachment_parts(&self) -> Option<(&str, &str)> {
        self.0.split_once(ATTACHMENT_SEPARATOR)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Host-side veth name: `nh` + 13 base32 digits of a stable hash of the id (15 bytes,
    /// the most IFNAMSIZ leaves). 64 bits of hash: two ids share a name with odds of about
    /// n²/2⁶⁵ for n ids (the 48 bits before were found to collide in seconds). The `nh`
    /// prefix is what nethook's nftables rules match host veths by. FNV-1a plus a final
    /// mix is used because it is fixed forever (unlike std's hasher) and similar ids such
    /// as `web-1`/`web-2` get unrelated names.
    ///
    /// Test builds (`failpoints`) take `NETHOOK_TEST_HOST_VETH_NAME` instead when it is
    /// set, so a test can give two containers the same first name: a collision without a
    /// search for one.
    pub fn host_veth_name(&self) -> String {
        #[cfg(feature = "failpoints")]
        if let Ok(forced) = std::env::var("NETHOOK_TEST_HOST_VETH_NAME") {
            return forced;
        }
        veth_name(mix64(fnv1a64(self.0.as_bytes())))
    }

    /// The name setup falls back to when `host_veth_name` is held by another container's
    /// link (a hash collision, or a name planted on purpose): the same hash of the id with a
    /// salt, so it is unrelated to the first and still fixed for the id.
    pub fn alt_host_veth_name(&self) -> String {
        let mut salted = Vec::with_capacity(ALT_SALT.len() + self.0.len());
        salted.extend_from_slice(ALT_SALT);
        salted.extend_from_slice(self.0.as_bytes());
        veth_name(mix64(fnv1a64(&salted)))
    }

    /// The name nethook versions before the owner alias gave the host veth (`nh` + 12 hex
    /// digits, 48 bits). Their veths carry no alias; teardown still recognises them by it.
    pub fn legacy_host_veth_name(&self) -> String {
        let hash = mix64(fnv1a64(self.0.as_bytes()));
        format!("nh{:012x}", hash >> 16)
    }

    /// Every name a host veth of this id may have had: the names an alias-less veth of
    /// this id can carry (see `link::HostVeth`), routed ones included.
    pub fn host_veth_names(&self) -> [String; 5] {
        let first = self.host_veth_name();
        let second = self.alt_host_veth_name();
        [
            routed_veth_name(&first),
            routed_veth_name(&second),
            first,
            second,
            self.legacy_host_veth_name(),
        ]
    }

    /// The alias (IFLA_IFALIAS) of this container's host veth, which says whose it is.
    /// At most 8 + 128 bytes, well within the kernel's IFALIASZ (256), so the id is kept
    /// whole and readable in `ip link`.
    pub fn owner_tag(&self) -> String {
        format!("{OWNER_TAG_PREFIX}{}", self.0)
    }
}

/// A routed network's host veth name for a bridge port's name (`nh…` → `nr…`): the firewall
/// tells routed veths apart by the prefix alone, so no per-container element is needed to
/// isolate them or to send them to their anti-spoofing chain.
pub fn routed_veth_name(name: &str) -> String {
    match name.strip_prefix("nh") {
        Some(rest) => format!("{ROUTED_VETH_PREFIX}{rest}"),
        None => name.to_owned(),
    }
}

/// What the names of routed networks' host veths start with.
pub const ROUTED_VETH_PREFIX: &str = "nr";

/// What every host veth's alias starts with; the container id follows.
pub const OWNER_TAG_PREFIX: &str = "nethook:";

/// The salt of `alt_host_veth_name`.
const ALT_SALT: &[u8] = b"nethook/alt\0";

/// `nh` + the 64-bit `hash` in 13 digits of base32hex, lowercase (the top digit holds 4
/// bits): 15 bytes of `[0-9a-v]`, valid in any interface name.
fn veth_name(hash: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut name = String::with_capacity(15);
    name.push_str("nh");
    for i in (0..13).rev() {
        name.push(char::from(DIGITS[((hash >> (5 * i)) & 31) as usize]));
    }
    name
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The murmur3/splitmix finaliser: spreads every input bit over the whole word.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Interface names (the container's, a bridge's): what the kernel takes as it is. Its
/// `dev_valid_name` refuses names over 15 bytes, `.`/`..`, and any `/`, `:` or whitespace
/// (its `isspace`: tab, newline, vertical tab, form feed, carriage return, space, and the
/// byte 0xa0, which a UTF-8 character may contain). A `%` makes the kernel treat the name
/// as a pattern: `e%d` becomes the first free `e0`, `e1`… (and any other `%` is refused),
/// so the container would get another name than the one asked for.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 15 {
        return Err(format!("is {} bytes; at most 15 are allowed", name.len()));
    }
    if name == "." || name == ".." {
        return Err("may not be '.' or '..'".into());
    }
    if name.contains('%') {
        return Err("may not contain '%': the kernel would take it as a pattern and pick another name (e%d becomes e0)".into());
    }
    if name.bytes().any(|b| {
        matches!(
            b,
            b'/' | b':' | 0 | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0xa0
        )
    }) {
        return Err("may not contain '/', ':', NUL or whitespace".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runtime_style_ids() {
        for id in ["a", "abc123", "0f3e", "my_ctr.v1+build-2", &"x".repeat(128)] {
            assert!(ContainerId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_ids_that_could_escape_the_state_dir() {
        for id in [
            "",
            "../etc",
            "a/b",
            "a b",
            "a\0b",
            ".hidden",
            "-x",
            &"x".repeat(129),
            "ünï",
        ] {
            assert!(ContainerId::parse(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn attachment_keys_never_equal_a_container_id_and_round_trip() {
        let c = ContainerId::parse("abc").unwrap();
        let key = ContainerId::attachment(&c, "eth0").unwrap();
        assert_eq!(key.as_str(), "abc@eth0");
        assert!(
            ContainerId::parse(key.as_str()).is_err(),
            "hook ids refuse the separator"
        );
        assert_eq!(ContainerId::parse_key(key.as_str()).unwrap(), key);
        assert_eq!(ContainerId::parse_key("abc").unwrap(), c);
        assert_eq!(key.attachment_parts(), Some(("abc", "eth0")));
        assert_eq!(c.attachment_parts(), None);
        assert_ne!(key.host_veth_name(), c.host_veth_name());
        let other = ContainerId::attachment(&c, "net1").unwrap();
        assert_ne!(key.host_veth_name(), other.host_veth_name());
        // An interface name may hold the separator itself: the first one splits.
        let odd = ContainerId::parse_key("abc@a@b").unwrap();
        assert_eq!(odd.attachment_parts(), Some(("abc", "a@b")));
        for bad in [
            "abc@",
            "abc@a/b",
            "@eth0",
            "a b@eth0",
            "abc@sixteen-bytes-xx",
        ] {
            assert!(ContainerId::parse_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_veth_name_is_stable_and_fills_ifnamsiz() {
        let a = ContainerId::parse("container-1").unwrap();
        assert_eq!(a.host_veth_name(), a.host_veth_name());
        assert_eq!(a.host_veth_name().len(), 15);
        assert!(a.host_veth_name().starts_with("nh"));
        assert!(validate_ifname(&a.host_veth_name()).is_ok());
        let b = ContainerId::parse("container-2").unwrap();
        assert_ne!(a.host_veth_name(), b.host_veth_name());
        // Pinned: records written by one version must name the same link in the next, and
        // the alias-less veths of older versions are recognised by these names.
        let abc = ContainerId::parse("abc").unwrap();
        assert_eq!(abc.host_veth_name(), "nh37qtfj4jsnhdt");
        assert_eq!(abc.legacy_host_veth_name(), "nh33ebaf9927cb");
        assert_eq!(abc.alt_host_veth_name(), abc.alt_host_veth_name());
    }

    #[test]
    fn the_fallback_name_is_unrelated_to_the_first() {
        for raw in ["a", "abc", "container-1", &"x".repeat(128)] {
            let id = ContainerId::parse(raw).unwrap();
            let alt = id.alt_host_veth_name();
            assert_ne!(alt, id.host_veth_name(), "{raw}");
            assert_ne!(alt[2..7], id.host_veth_name()[2..7], "{raw}");
            assert!(
                alt.starts_with("nh") && alt.len() == 15 && validate_ifname(&alt).is_ok(),
                "{alt}"
            );
        }
    }

    #[test]
    fn the_owner_tag_holds_the_whole_id_within_ifaliasz() {
        let long = ContainerId::parse(&"x".repeat(128)).unwrap();
        assert_eq!(long.owner_tag(), format!("nethook:{}", "x".repeat(128)));
        assert!(long.owner_tag().len() < 256);
    }

    #[test]
    fn ifname_rules_match_the_kernel() {
        for ok in [
            "eth0",
            "a",
            "fifteen-bytes-x",
            "e-d",
            "net1.100",
            "...",
            "ünï",
        ] {
            assert!(validate_ifname(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "a/b",
            "sixteen-bytes-xx",
            ".",
            "..",
            "a:1",
            "a b",
            "a\tb",
            "a\x0bb",
            "a\0b",
            "a\u{a0}b",
        ] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ifnames_the_kernel_would_rename_are_refused() {
        for bad in ["e%d", "eth%d", "%d", "a%", "a%x", "%%"] {
            let err = validate_ifname(bad).unwrap_err();
            assert!(
                err.contains('%') && err.contains("e%d becomes e0"),
                "{bad:?}: {err}"
            );
        }
    }
}
