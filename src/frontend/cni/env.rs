//! The `CNI_*` environment variables a runtime passes (SPEC.md, "Parameters").

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{CniError, Code};
use crate::model::ids::ContainerId;
use crate::model::mac::Mac;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        Ok(match raw {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!(
                    "CNI_COMMAND {other:?} is unknown; use ADD, DEL, CHECK, GC, STATUS or VERSION"
                ),
                ))
            }
        })
    }
}

/// The environment of one invocation, read through `get` (the process's environment,
/// or a map in tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
}

impl Env {
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        Env {
            container_id: non_empty("CNI_CONTAINERID"),
            netns: non_empty("CNI_NETNS"),
            ifname: non_empty("CNI_IFNAME"),
            args: non_empty("CNI_ARGS"),
        }
    }

    /// The attachment's key: container id + interface name (both required).
    pub fn key(&self) -> Result<ContainerId, CniError> {
        let cid = self.require("CNI_CONTAINERID", &self.container_id)?;
        let cid = ContainerId::parse(cid)
            .map_err(|e| CniError::new(Code::InvalidEnv, format!("CNI_CONTAINERID: {e}")))?;
        let ifname = self.require("CNI_IFNAME", &self.ifname)?;
        ContainerId::attachment(&cid, ifname)
            .map_err(|e| CniError::new(Code::InvalidEnv, format!("CNI_IFNAME: {e}")))
    }

    pub fn require<'a>(&self, name: &str, value: &'a Option<String>) -> Result<&'a str, CniError> {
        value.as_deref().ok_or_else(|| {
            CniError::new(
                Code::InvalidEnv,
                format!("{name} is not set; the runtime must pass it"),
            )
        })
    }

    /// `IP=` and `MAC=` of CNI_ARGS (`K=V;K=V`), as the reference plugins take them; other
    /// keys (K8S_POD_NAME, IgnoreUnknown...) are ignored.
    pub fn args(&self) -> Result<CniArgs, CniError> {
        let mut out = CniArgs::default();
        let Some(raw) = &self.args else {
            return Ok(out);
        };
        let pairs: BTreeMap<&str, &str> = raw
            .split(';')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .collect();
        // As host-local takes it: one address, or one of each family separated by a comma.
        if let Some(list) = pairs.get("IP") {
            let bad = |why: &str| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_ARGS IP={list} {why}; pass e.g. IP=10.88.0.5 or IP=10.88.0.5,fd00:88::5"),
                )
            };
            for one in list.split(',') {
                match one.trim().parse::<IpAddr>() {
                    Ok(IpAddr::V4(ip)) if out.ip.is_none() => out.ip = Some(ip),
                    Ok(IpAddr::V6(ip)) if out.ip6.is_none() => out.ip6 = Some(ip),
                    Ok(_) => return Err(bad("names two addresses of one family")),
                    Err(_) => return Err(bad("is not a list of IP addresses")),
                }
            }
        }
        // The pod's name is the attachment's DNS name when it is a DNS label (Podman passes
        // container names here too, which may not be: then it has none).
        out.pod_name = pairs
            .get("K8S_POD_NAME")
            .and_then(|n| crate::model::service::label(n).ok());
        if let Some(mac) = pairs.get("MAC") {
            out.mac = Some(mac.parse().map_err(|e| {
                CniError::new(Code::InvalidEnv, format!("CNI_ARGS MAC={mac}: {e}"))
            })?);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    /// `K8S_POD_NAME`, when it is a DNS label.
    pub pod_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::read(|k| map.get(k).cloned())
    }

    #[test]
    fn the_key_is_container_id_and_ifname() {
        let e = env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(e.key().unwrap().as_str(), "abc@eth0");
        let e = env(&[("CNI_IFNAME", "eth0")]);
        assert_eq!(e.key().unwrap_err().code, Code::InvalidEnv);
        let e = env(&[("CNI_CONTAINERID", "a/b"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(e.key().unwrap_err().code, Code::InvalidEnv);
    }

    #[test]
    fn cni_args_take_ip_and_mac_and_ignore_the_rest() {
        let e = env(&[(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.9;MAC=02:00:00:00:00:09",
        )]);
        let a = e.args().unwrap();
        assert_eq!(a.ip, Some(Ipv4Addr::new(10, 1, 0, 9)));
        assert_eq!(a.mac.unwrap().to_string(), "02:00:00:00:00:09");
        let e = env(&[("CNI_ARGS", "IP=nope")]);
        assert_eq!(e.args().unwrap_err().code, Code::InvalidEnv);
        let dual = env(&[("CNI_ARGS", "IP=fd00::9,10.1.0.9")]).args().unwrap();
        assert_eq!(dual.ip, Some(Ipv4Addr::new(10, 1, 0, 9)));
        assert_eq!(dual.ip6, Some("fd00::9".parse().unwrap()));
        let two = env(&[("CNI_ARGS", "IP=10.1.0.9,10.1.0.8")])
            .args()
            .unwrap_err();
        assert!(
            two.msg.contains("two addresses of one family"),
            "{}",
            two.msg
        );
    }

    #[test]
    fn commands_parse_and_unknown_ones_are_code_4() {
        assert_eq!(Command::parse("ADD").unwrap(), Command::Add);
        assert_eq!(Command::parse("add").unwrap_err().code, Code::InvalidEnv);
    }
}
