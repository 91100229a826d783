//! The `nethook.*` annotations of an OCI container: the hook front end's way of reading a
//! container's `Options`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::core::request::Options;
use crate::model::ids::validate_ifname;
use crate::model::mac::Mac;
use crate::model::ports::{parse_ports, PortSpecError};
use crate::model::service::label;

pub const NETWORK: &str = "nethook.network";
pub const PORTS: &str = "nethook.ports";
pub const IP: &str = "nethook.ip";
pub const IP6: &str = "nethook.ip6";
pub const MAC: &str = "nethook.mac";
pub const IFNAME: &str = "nethook.ifname";
pub const DISABLE: &str = "nethook.disable";
pub const NAME: &str = "nethook.name";
pub const ALIASES: &str = "nethook.aliases";
pub const SERVICE: &str = "nethook.service";
pub const RESOLV: &str = "nethook.resolv";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error(transparent)]
    Ports(#[from] PortSpecError),
    #[error("annotation {key}={value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl Options {
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Self, OptionsError> {
        let mut opts = Options::default();
        let invalid = |key: &'static str, value: &str, reason: String| OptionsError::Invalid {
            key,
            value: value.chars().take(80).collect(),
            reason,
        };
        if let Some(v) = annotations.get(DISABLE) {
            opts.disabled = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => return Err(invalid(DISABLE, v, "expected true or false".into())),
            };
        }
        if let Some(v) = annotations.get(NETWORK) {
            crate::model::network::validate_name(v.trim()).map_err(|r| invalid(NETWORK, v, r))?;
            opts.network = v.trim().to_owned();
        }
        if let Some(v) = annotations.get(PORTS) {
            opts.ports = parse_ports(v)?;
        }
        if let Some(v) = annotations.get(IP) {
            let ip: Ipv4Addr = v
                .trim()
                .parse()
                .map_err(|_| invalid(IP, v, "not an IPv4 address, e.g. 10.77.0.10".into()))?;
            opts.ip = Some(ip);
        }
        if let Some(v) = annotations.get(IP6) {
            let ip: Ipv6Addr = v
                .trim()
                .parse()
                .map_err(|_| invalid(IP6, v, "not an IPv6 address, e.g. fd00:88::10".into()))?;
            opts.ip6 = Some(ip);
        }
        if let Some(v) = annotations.get(MAC) {
            opts.mac = Some(v.trim().parse::<Mac>().map_err(|r| invalid(MAC, v, r))?);
        }
        if let Some(v) = annotations.get(NAME) {
            opts.name = Some(label(v.trim()).map_err(|r| invalid(NAME, v, r))?);
        }
        if let Some(v) = annotations.get(ALIASES) {
            opts.aliases = labels(v).map_err(|r| invalid(ALIASES, v, r))?;
        }
        if let Some(v) = annotations.get(SERVICE) {
            opts.services = labels(v).map_err(|r| invalid(SERVICE, v, r))?;
        }
        if let Some(v) = annotations.get(RESOLV) {
            opts.write_resolv_conf = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" | "" => false,
                _ => return Err(invalid(RESOLV, v, "expected true or false".into())),
            };
        }
        if let Some(v) = annotations.get(IFNAME) {
            validate_ifname(v).map_err(|r| invalid(IFNAME, v, format!("interface name {r}")))?;
            opts.ifname = v.clone();
        }
        Ok(opts)
    }
}

/// A comma-separated list of DNS labels, each once.
fn labels(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in v.split(',').map(str::trim) {
        let l = label(part).map_err(|r| format!("{part:?} {r}"))?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_means_default_network_and_eth0() {
        let o = Options::from_annotations(&HashMap::new()).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.network, "nethook");
        assert_eq!(o.ifname, "eth0");
    }

    #[test]
    fn every_key_is_read() {
        let o = Options::from_annotations(&ann(&[
            (NETWORK, "backend"),
            (PORTS, "8080:80"),
            (IP, "10.77.0.9"),
            (IP6, "fd00:88::9"),
            (MAC, "02:00:00:00:00:09"),
            (IFNAME, "net0"),
            (DISABLE, "false"),
            (NAME, "Web-1"),
            (ALIASES, "www, api,www"),
            (SERVICE, "web"),
            (RESOLV, "true"),
            ("unrelated.key", "whatever"),
        ]))
        .unwrap();
        assert_eq!(o.name.as_deref(), Some("web-1"));
        assert_eq!(o.aliases, vec!["www", "api"]);
        assert_eq!(o.services, vec!["web"]);
        assert!(o.write_resolv_conf);
        assert_eq!(o.network, "backend");
        assert_eq!(o.ports.len(), 1);
        assert_eq!(o.ip, Some("10.77.0.9".parse().unwrap()));
        assert_eq!(o.ip6, Some("fd00:88::9".parse().unwrap()));
        assert_eq!(o.mac.unwrap().to_string(), "02:00:00:00:00:09");
        assert_eq!(o.ifname, "net0");
        assert!(!o.disabled);
    }

    #[test]
    fn disable_true_is_honoured() {
        assert!(
            Options::from_annotations(&ann(&[(DISABLE, "true")]))
                .unwrap()
                .disabled
        );
        assert!(Options::from_annotations(&ann(&[(DISABLE, "maybe")])).is_err());
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (k, v) in [
            (IP, "10.77.0"),
            (IP6, "10.77.0.9"),
            (IP6, "fd00::1::2"),
            (MAC, "01:00:5e:00:00:01"),
            (MAC, "zz:00:00:00:00:01"),
            (IFNAME, ""),
            (IFNAME, "a/b"),
            (IFNAME, "waytoolonginterface"),
            (NETWORK, "../x"),
            (NAME, "web.example"),
            (NAME, "-web"),
            (ALIASES, "a,,b"),
            (SERVICE, "web_1"),
            (RESOLV, "maybe"),
        ] {
            let e = Options::from_annotations(&ann(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
    }
}
