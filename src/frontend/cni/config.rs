//! The network configuration on stdin: nethook's keys, the runtime's capabilities
//! (`runtimeConfig`), `prevResult` and GC's valid attachments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use serde::Deserialize;
use serde_json::Value;

use super::error::{CniError, Code};
use super::version::Version;
use crate::model::ipam::Family;
use crate::model::mac::Mac;
use crate::model::network::DriverKind;
use crate::model::ports::{parse_ports, PortSpec};

/// What nethook reads of a network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub version: Version,
    /// The conflist's `name`.
    pub name: String,
    /// The nethook network: `network`, or the conflist's `name`.
    pub network: String,
    /// Defines the network on first use (with `subnet6`, or alone).
    pub subnet: Option<String>,
    /// The IPv6 subnet of a network defined here; a defined network's must match.
    pub subnet6: Option<String>,
    /// The bridge of a network defined here (default `nh-NETWORK`).
    pub bridge: Option<String>,
    /// The driver of a network defined here (default bridge); a defined network's must match.
    pub driver: Option<DriverKind>,
    /// The macvlan parent of a network defined here.
    pub parent: Option<String>,
    pub run_dir: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    /// Destinations whose traffic keeps its source address (a cluster CIDR).
    pub no_masquerade_to: Vec<Ipv4Network>,
    pub ports: Vec<PortSpec>,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    pub prev_result: Option<Value>,
    /// GC: `cni.dev/valid-attachments` as (container id, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// `dns`: a network the conflist defines gets a resolver (`network create --dns`).
    pub dns: bool,
    /// `services`: the services every attachment of this conflist joins.
    pub services: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    name: Option<String>,
    network: Option<String>,
    subnet: Option<String>,
    subnet6: Option<String>,
    bridge: Option<String>,
    driver: Option<String>,
    parent: Option<String>,
    run_dir: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    #[serde(default)]
    no_masquerade_to: Vec<String>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(default)]
    dns: bool,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMapping {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: String,
    #[serde(rename = "hostIP", default)]
    host_ip: String,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// DNS labels (service names), lower case.
fn labels(key: &str, list: &[String]) -> Result<Vec<String>, CniError> {
    list.iter()
        .map(|l| {
            crate::model::service::label(l).map_err(|r| invalid(format!("{key} entry {l:?} {r}")))
        })
        .collect()
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

/// The `cniVersion` of a configuration, for VERSION and for rendering errors; the text must
/// be JSON (code 6 otherwise).
pub fn parse_json(stdin: &[u8]) -> Result<Value, CniError> {
    serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            Code::Decode,
            format!("the network configuration on stdin is not JSON ({e}); fix the conflist"),
        )
    })
}

/// The `cniVersion` as written (None when absent).
pub fn raw_version(v: &Value) -> Option<&str> {
    v.get("cniVersion").and_then(Value::as_str)
}

pub fn parse(v: &Value) -> Result<Config, CniError> {
    let version = match raw_version(v) {
        Some(raw) => Version::parse(raw)?,
        None => {
            return Err(invalid(
                "the network configuration has no cniVersion; add \"cniVersion\": \"1.0.0\"".into(),
            ))
        }
    };
    let raw: Raw = serde_json::from_value(v.clone()).map_err(|e| {
        invalid(format!(
            "the network configuration has a bad key: {e}; fix the conflist"
        ))
    })?;
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("the network configuration has no name; add \"name\"".into()))?;
    let network = raw.network.unwrap_or_else(|| name.clone());
    let no_masquerade_to = raw
        .no_masquerade_to
        .iter()
        .map(|c| {
            c.parse::<Ipv4Network>().map_err(|_| {
                invalid(format!(
                    "noMasqueradeTo entry {c:?} is not an IPv4 CIDR like 10.244.0.0/16"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let rc = raw.runtime_config;
    Ok(Config {
        version,
        name,
        network,
        subnet: raw.subnet,
        subnet6: raw.subnet6,
        bridge: raw.bridge,
        driver: raw
            .driver
            .map(|d| d.parse().map_err(|e| invalid(format!("driver: {e}"))))
            .transpose()?,
        parent: raw.parent,
        run_dir: raw.run_dir,
        config_dir: raw.config_dir,
        no_masquerade_to,
        ports: ports(&rc.port_mappings)?,
        ip: static_ip(&rc.ips)?,
        ip6: static_ip(&rc.ips)?,
        mac: rc
            .mac
            .map(|m| {
                m.parse()
                    .map_err(|e| invalid(format!("runtimeConfig mac {m:?}: {e}")))
            })
            .transpose()?,
        prev_result: raw.prev_result,
        dns: raw.dns,
        services: labels("services", &raw.services)?,
        valid_attachments: raw.valid_attachments.map(|list| {
            list.into_iter()
                .map(|a| (a.container_id, a.ifname))
                .collect()
        }),
    })
}

/// `portMappings` become the entries of a `nethook.ports` annotation, parsed by the same
/// parser, so both front ends publish (and refuse) the same things.
fn ports(mappings: &[PortMapping]) -> Result<Vec<PortSpec>, CniError> {
    let mut entries = Vec::with_capacity(mappings.len());
    for m in mappings {
        let proto = if m.protocol.is_empty() {
            "tcp"
        } else {
            &m.protocol
        };
        let host = match m.host_ip.parse::<IpAddr>() {
            _ if m.host_ip.is_empty() => String::new(),
            Ok(IpAddr::V4(ip)) => format!("{ip}:"),
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:"),
            Err(_) => {
                return Err(invalid(format!(
                    "portMappings hostIP {:?} is not an IP address: leave hostIP empty or give an IPv4 or IPv6 address",
                    m.host_ip
                )))
            }
        };
        entries.push(format!(
            "{host}{}:{}/{proto}",
            m.host_port, m.container_port
        ));
    }
    parse_ports(&entries.join(",")).map_err(|e| {
        invalid(format!(
            "runtimeConfig portMappings entry {}: {}; fix that mapping",
            e.entry, e.reason
        ))
    })
}

/// The `ips` capability: at most one address of family `A` (a prefix, if given, is the
/// network's anyway).
fn static_ip<A: Family>(ips: &[String]) -> Result<Option<A>, CniError> {
    let mut found = None;
    for raw in ips {
        let addr = raw.split_once('/').map_or(raw.as_str(), |(a, _)| a);
        if addr.parse::<IpAddr>().is_err() {
            return Err(invalid(format!(
                "runtimeConfig ips entry {raw:?} is not an IP address; give e.g. 10.88.0.5 or fd00:88::5"
            )));
        }
        let Ok(ip) = addr.parse::<A>() else {
            continue;
        };
        if found.is_some() {
            return Err(invalid(format!(
                "runtimeConfig ips asks for more than one {} address ({}); an attachment has one of each family",
                A::NAME,
                ips.join(", ")
            )));
        }
        found = Some(ip);
    }
    Ok(found)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
