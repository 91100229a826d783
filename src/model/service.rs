//! Services: a stable virtual IP (one per address family of the network) whose ports spread
//! new connections over the containers that joined it (`nethook.service=NAME`). Pure data
//! and the grammar of `nethook service create`; the store keeps definitions in
//! `/etc/nethook/services/NAME.json` and the members in slot order under the run directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::model::ports::Proto;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("service name {name:?} {reason}")]
    BadName { name: String, reason: String },
    #[error("--port {entry:?}: {reason}")]
    BadPort { entry: String, reason: String },
    #[error("--publish {entry:?}: {reason}")]
    BadPublish { entry: String, reason: String },
    #[error("--affinity {value:?}: expected client-ip or none")]
    BadAffinity { value: String },
    #[error("a service needs at least one port: give --port 80/tcp[:TARGET]")]
    NoPorts,
}

/// A port of the service: connections to `VIP:port/proto` go to a member's `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    pub proto: Proto,
    pub port: u16,
    pub target: u16,
}

/// A host port that reaches one of the service's ports (`--publish`), on every host address
/// or on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePublish {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub proto: Proto,
    /// The service port it reaches (which names the members' target port).
    pub port: u16,
}

/// How long a client keeps its member under `--affinity client-ip` (kube-proxy's default).
pub const AFFINITY_TIMEOUT_S: u32 = 10800;

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub network: String,
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<ServicePublish>,
    /// Seconds a client sticks to its member (`--affinity client-ip`); `None`: every new
    /// connection picks at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<u32>,
}

impl Service {
    /// The target port of a service port, for a publish.
    pub fn target_of(&self, proto: Proto, port: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.proto == proto && p.port == port)
            .map(|p| p.target)
    }

    /// Its virtual addresses, IPv4 first.
    pub fn vips(&self) -> Vec<IpAddr> {
        let v4 = self.vip4.map(IpAddr::V4);
        let v6 = self.vip6.map(IpAddr::V6);
        [v4, v6].into_iter().flatten().collect()
    }

    /// Whether members must have their UDP conntrack entries flushed when they leave.
    pub fn has_udp(&self) -> bool {
        self.ports.iter().any(|p| p.proto == Proto::Udp)
    }
}

/// A DNS label (RFC 1123): 1 to 63 letters, digits and '-', not starting or ending with
/// '-'. Container names, aliases and service names are looked up by it; the caller stores
/// it in lower case (DNS compares without case).
pub fn validate_label(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Err("must be 1 to 63 characters (a DNS label)".into());
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return Err("may only use letters, digits and '-' (a DNS label)".into());
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err("must not start or end with '-' (a DNS label)".into());
    }
    Ok(())
}

/// A DNS label as nethook keeps it: checked, in lower case.
pub fn label(name: &str) -> Result<String, String> {
    validate_label(name)?;
    Ok(name.to_ascii_lowercase())
}

/// A service name: a DNS label, so that it is also its name in the resolver.
pub fn validate_service_name(name: &str) -> Result<String, ServiceError> {
    label(name).map_err(|reason| ServiceError::BadName {
        name: name.chars().take(80).collect(),
        reason,
    })
}

fn parse_proto(p: &str) -> Result<Proto, String> {
    p.parse()
        .map_err(|()| format!("unknown protocol {p:?}; use tcp, udp or sctp"))
}

fn parse_port_number(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{what} {s:?} is not a port from 1 to 65535")),
        Ok(p) => Ok(p),
    }
}

/// `80/tcp[:TARGET][,53/udp,...]` (the protocol may be left out: tcp). Each port once.
pub fn parse_ports<S: AsRef<str>>(values: &[S]) -> Result<Vec<ServicePort>, ServiceError> {
    let mut out: Vec<ServicePort> = Vec::new();
    for value in values {
        for entry in value.as_ref().split(',') {
            let entry = entry.trim();
            let bad = |reason: String| ServiceError::BadPort {
                entry: entry.chars().take(80).collect(),
                reason,
            };
            let (head, target) = match entry.split_once(':') {
                Some((h, t)) => (h, Some(t)),
                None => (entry, None),
            };
            let (port, proto) = match head.split_once('/') {
                Some((p, proto)) => (p, parse_proto(proto).map_err(bad)?),
                None => (head, Proto::Tcp),
            };
            let port = parse_port_number(port, "port").map_err(bad)?;
            let target = match target {
                Some(t) => parse_port_number(t, "target port").map_err(bad)?,
                None => port,
            };
            if out.iter().any(|p| p.proto == proto && p.port == port) {
                return Err(bad(format!("{port}/{proto} is given twice")));
            }
            out.push(ServicePort {
                proto,
                port,
                target,
            });
        }
    }
    if out.is_empty() {
        return Err(ServiceError::NoPorts);
    }
    Ok(out)
}

/// `[IP:]HOSTPORT[:PORT][/PROTO]` (an IPv6 host address in brackets): the host port that
/// reaches the service port `PORT`; with one service port, `HOSTPORT` alone is enough.
pub fn parse_publish(entry: &str, ports: &[ServicePort]) -> Result<ServicePublish, ServiceError> {
    let entry = entry.trim();
    let bad = |reason: String| ServiceError::BadPublish {
        entry: entry.chars().take(80).collect(),
        reason,
    };
    let (body, proto) = match entry.rsplit_once('/') {
        Some((b, p)) => (b, Some(parse_proto(p).map_err(bad)?)),
        None => (entry, None),
    };
    let (host_ip, rest) = split_host_ip(body).map_err(bad)?;
    let (host_port, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(parse_port_number(p, "service port").map_err(bad)?)),
        None => (rest, None),
    };
    let host_port = parse_port_number(host_port, "host port").map_err(bad)?;
    let candidates: Vec<&ServicePort> = ports
        .iter()
        .filter(|p| proto.is_none_or(|pr| pr == p.proto) && port.is_none_or(|n| n == p.port))
        .collect();
    let target = match candidates.as_slice() {
        [one] => **one,
        [] => {
            return Err(bad(
                "names no port of the service; give HOSTPORT:PORT/PROTO of one of its --port"
                    .into(),
            ))
        }
        _ => {
            return Err(bad(
                "the service has several ports; say which: HOSTPORT:PORT/PROTO".into(),
            ))
        }
    };
    Ok(ServicePublish {
        host_ip,
        host_port,
        proto: target.proto,
        port: target.port,
    })
}

/// `[v6]:rest`, `v4:rest` (an address has dots) or `rest`.
fn split_host_ip(body: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(after) = body.strip_prefix('[') {
        let (ip, rest) = after.split_once(']').ok_or("\"[\" has no closing \"]\"")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("[{ip}] is not an IPv6 address"))?;
        let rest = rest.strip_prefix(':').ok_or("needs \":\" after \"]\"")?;
        return Ok((Some(IpAddr::V6(ip)), rest));
    }
    match body.split_once(':') {
        Some((ip, rest)) if ip.contains('.') => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("host IP {ip:?} is not an IPv4 address"))?;
            Ok((Some(IpAddr::V4(ip)), rest))
        }
        _ => Ok((None, body)),
    }
}

/// `--affinity client-ip|none`.
pub fn parse_affinity(value: &str) -> Result<Option<u32>, ServiceError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "client-ip" | "clientip" => Ok(Some(AFFINITY_TIMEOUT_S)),
        "none" | "" => Ok(None),
        _ => Err(ServiceError::BadAffinity {
            value: value.chars().take(40).collect(),
        }),
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
