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
}

/// A validated container id: `[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}`.
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
            return Err(IdError::BadChar { id: raw.chars().take(64).collect() });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Host-side veth name: `nh` + 12 hex digits of a stable hash of the id (14 bytes,
    /// under IFNAMSIZ). FNV-1a plus a final mix is used because it is fixed forever
    /// (unlike std's hasher) and similar ids such as `web-1`/`web-2` get unrelated names.
    pub fn host_veth_name(&self) -> String {
        let hash = mix64(fnv1a64(self.0.as_bytes()));
        format!("nh{:012x}", hash >> 16)
    }
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

/// Interface names inside the container: at most 15 bytes, no `/`, no whitespace,
/// not `.`/`..` (the kernel's `dev_valid_name`).
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
    if name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0) {
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
        for id in ["", "../etc", "a/b", "a b", "a\0b", ".hidden", "-x", &"x".repeat(129), "ünï"] {
            assert!(ContainerId::parse(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn host_veth_name_is_stable_and_fits_ifnamsiz() {
        let a = ContainerId::parse("container-1").unwrap();
        assert_eq!(a.host_veth_name(), a.host_veth_name());
        assert_eq!(a.host_veth_name().len(), 14);
        assert!(a.host_veth_name().starts_with("nh"));
        let b = ContainerId::parse("container-2").unwrap();
        assert_ne!(a.host_veth_name(), b.host_veth_name());
        // Pinned: records written by one version must name the same link in the next.
        assert_eq!(ContainerId::parse("abc").unwrap().host_veth_name(), "nh33ebaf9927cb");
    }

    #[test]
    fn ifname_rules_match_the_kernel() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("sixteen-bytes-xx").is_err());
        assert!(validate_ifname("..").is_err());
    }
}
