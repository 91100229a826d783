//! CNI errors: the spec's codes and the JSON the runtime reads from stdout
//! (`{cniVersion, code, msg, details}`), with the process exiting non-zero.

use serde::Serialize;

/// Error codes of the CNI spec (SPEC.md, "Error"), and nethook's own from 100 up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// ADD failed: the kernel or nethook's state said no.
    Setup = 100,
    /// DEL failed: the attachment's record stays for a later DEL or `nethook gc`.
    Teardown = 101,
    /// CHECK found part of the attachment missing.
    CheckFailed = 102,
    /// GC could not collect an attachment.
    Gc = 103,
}

/// A CNI error: a code and one line saying what was wrong and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON the runtime reads, in the version the request spoke (or the newest when
    /// it could not be read).
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version: version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(Code::InvalidConfig, "bad subnet").with_details("x");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"bad subnet","details":"x"}"#
        );
        let e = CniError::new(Code::Decode, "not JSON");
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":6,"msg":"not JSON"}"#
        );
    }
}
