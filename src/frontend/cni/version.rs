//! `cniVersion`: the versions nethook speaks and what each allows.

use std::fmt;

use super::error::{CniError, Code};

/// The versions nethook speaks, oldest first. Results differ between 0.4.0 and 1.0.0
/// (`version` in each IP, see `result`); CHECK came with 0.4.0, GC and STATUS with 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V030,
    V031,
    V040,
    V100,
    V110,
}

pub const SUPPORTED: [Version; 5] = [
    Version::V030,
    Version::V031,
    Version::V040,
    Version::V100,
    Version::V110,
];

/// The newest: what VERSION and errors speak when the request names none it can read.
pub const NEWEST: Version = Version::V110;

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, CniError> {
        SUPPORTED
            .into_iter()
            .find(|v| v.as_str() == raw)
            .ok_or_else(|| {
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion {raw:?} is not supported; set cniVersion to one of {}",
                        supported_list()
                    ),
                )
            })
    }

    /// Results before 1.0.0 carry `"version": "4"` in each IP.
    pub fn ips_have_version(self) -> bool {
        self < Version::V100
    }

    /// Refuses a command the version does not have (CHECK before 0.4.0, GC and STATUS
    /// before 1.1.0).
    pub fn require(self, command: &str, since: Version) -> Result<(), CniError> {
        if self >= since {
            return Ok(());
        }
        Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "{command} needs cniVersion {} or later; the config says {self}: raise cniVersion",
                since.as_str()
            ),
        ))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn supported_list() -> String {
    SUPPORTED.map(Version::as_str).join(", ")
}

/// VERSION's answer.
pub fn version_info(requested: Version) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.as_str(),
        "supportedVersions": SUPPORTED.map(Version::as_str),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_parses_and_others_are_code_1() {
        for v in SUPPORTED {
            assert_eq!(Version::parse(v.as_str()).unwrap(), v);
        }
        let e = Version::parse("0.2.0").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(
            e.msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn check_needs_040_and_gc_needs_110() {
        assert!(Version::V031.require("CHECK", Version::V040).is_err());
        assert!(Version::V040.require("CHECK", Version::V040).is_ok());
        assert!(Version::V100.require("GC", Version::V110).is_err());
        assert!(Version::V110.require("GC", Version::V110).is_ok());
    }
}
