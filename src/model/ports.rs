//! The `nethook.ports` grammar: `[hostIP:]hostPort[-end]:containerPort[-end][/tcp|udp|sctp]`,
//! comma-separated, an IPv6 host IP in brackets (`[2001:db8::1]:8080:80`). Parsing only; what
//! the kernel gets is derived in `plan` and `core::elements`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// IANA protocol number, as nftables' `meta l4proto` sees it.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            132 => Some(Proto::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// `tcp`, `udp` or `sctp`, in any case.
impl FromStr for Proto {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("nethook.ports entry {entry:?}: {reason}; expected [hostIP:]hostPort[-end]:containerPort[-end][/tcp|udp|sctp], e.g. 8080:80/tcp or [2001:db8::1]:8080:80")]
pub struct PortSpecError {
    pub entry: String,
    pub reason: String,
}

/// One entry of `nethook.ports`, ranges kept as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None`: every host address (of each family the endpoint has). An IPv4 address only
    /// publishes over IPv4, an IPv6 one only over IPv6. Serialized as the plain address text,
    /// so records written when this was an IPv4 address load unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    /// Number of consecutive ports (1 for a single port).
    pub count: u16,
    pub proto: Proto,
}

impl PortSpec {
    /// Every (host port, container port) pair this entry publishes.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(move |i| (self.host_port + i, self.container_port + i))
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        let range = |start: u16| {
            if self.count > 1 {
                format!("{start}-{}", start + (self.count - 1))
            } else {
                start.to_string()
            }
        };
        write!(
            f,
            "{}->{}/{}",
            range(self.host_port),
            range(self.container_port),
            self.proto
        )
    }
}

/// Parses the whole annotation value. Empty entries (e.g. a trailing comma) are errors
/// because they usually mean a typo.
pub fn parse_ports(value: &str) -> Result<Vec<PortSpec>, PortSpecError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let specs = value
        .split(',')
        .map(|e| parse_one(e.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    check_no_overlap(&specs)?;
    Ok(specs)
}

fn parse_one(entry: &str) -> Result<PortSpec, PortSpecError> {
    let err = |reason: &str| PortSpecError {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    if entry.is_empty() {
        return Err(err("empty entry"));
    }
    let (body, proto) = match entry.rsplit_once('/') {
        Some((body, p)) => {
            let proto = p
                .parse()
                .map_err(|()| err(&format!("unknown protocol {p:?}")))?;
            (body, proto)
        }
        None => (entry, Proto::Tcp),
    };
    let (host_ip, rest) = split_host_ip(body).map_err(|r| err(&r))?;
    let parts: Vec<&str> = rest.split(':').collect();
    let [host, ctr] = parts.as_slice() else {
        return Err(err("needs hostPort:containerPort"));
    };
    let host_ip = match host_ip {
        Some(ip) => checked_host_ip(ip).map_err(|r| err(&r))?,
        None => None,
    };
    let (hs, he) = parse_range(host).map_err(|r| err(&format!("host port {r}")))?;
    let (cs, ce) = parse_range(ctr).map_err(|r| err(&format!("container port {r}")))?;
    if he - hs != ce - cs {
        return Err(err("host and container ranges differ in length"));
    }
    Ok(PortSpec {
        host_ip,
        host_port: hs,
        container_port: cs,
        count: he - hs + 1,
        proto,
    })
}

/// Split a leading host IP off `body`: `[v6]:rest` or `v4:rest` (with two more colons after
/// it). `None` when there is none (`hostPort:containerPort`).
fn split_host_ip(body: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(after) = body.strip_prefix('[') {
        let (ip, rest) = after
            .split_once(']')
            .ok_or("host IP \"[\" has no closing \"]\"")?;
        let ip =
            Ipv6Addr::from_str(ip).map_err(|_| format!("host IP [{ip}] is not an IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("needs \":\" after the bracketed host IP")?;
        return Ok((Some(IpAddr::V6(ip)), rest));
    }
    match body.matches(':').count() {
        0 | 1 => Ok((None, body)),
        2 => {
            let (ip, rest) = body.split_once(':').unwrap_or((body, ""));
            let ip = Ipv4Addr::from_str(ip)
                .map_err(|_| format!("host IP {ip:?} is not an IPv4 address"))?;
            Ok((Some(IpAddr::V4(ip)), rest))
        }
        // An unbracketed IPv6 address (or too many fields): the ports cannot be told apart
        // from the address's own colons.
        _ => match body.rsplitn(3, ':').nth(2).map(Ipv6Addr::from_str) {
            Some(Ok(ip)) => {
                checked_host_ip(IpAddr::V6(ip))?;
                Err(format!(
                    "write an IPv6 host IP in brackets: [{ip}]:hostPort:containerPort"
                ))
            }
            _ => Err("needs hostPort:containerPort".into()),
        },
    }
}

/// Why `::1` cannot be published on (measured in issue 21's research).
fn loopback6_reason() -> String {
    "cannot publish on ::1 because the kernel drops IPv6 packets for ::1 that come back from a \
     container (no route_localnet for IPv6); publish on 127.0.0.1 for the host only, or on a \
     host IPv6 address or all addresses"
        .into()
}

/// A host IP a port may be published on; the unspecified addresses (`0.0.0.0`, `[::]`) mean
/// every address, which is what omitting it says (`None`). `[::]` then publishes over both
/// families, as an omitted one does.
fn checked_host_ip(ip: IpAddr) -> Result<Option<IpAddr>, String> {
    match ip {
        IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => {
            Err(format!("host IP {v4} is not a unicast address"))
        }
        IpAddr::V6(v6) if v6.is_loopback() => Err(loopback6_reason()),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) => {
            Err(loopback6_reason())
        }
        IpAddr::V6(v6) if v6.is_multicast() => {
            Err(format!("host IP [{v6}] is not a unicast address"))
        }
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Err(format!(
            "host IP [{v6}] is an IPv4-mapped address; write it as IPv4"
        )),
        ip if ip.is_unspecified() => Ok(None),
        ip => Ok(Some(ip)),
    }
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let port = |t: &str| -> Result<u16, String> {
        match t.parse::<u16>() {
            Ok(0) => Err("0 is not a port".into()),
            Ok(p) => Ok(p),
            Err(_) => Err(format!("{t:?} is not a number from 1 to 65535")),
        }
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            Ok((a, b))
        }
        None => port(text).map(|p| (p, p)),
    }
}

/// Two entries publishing the same host port and protocol on overlapping addresses
/// would fight over one map key; say so instead of letting the kernel answer EEXIST.
/// A publish on every address and one on 127.0.0.1 do not overlap: the first leaves the
/// host's loopback alone, so a container that wants both says so with both.
fn check_no_overlap(specs: &[PortSpec]) -> Result<(), PortSpecError> {
    let loopback = |s: &PortSpec| s.host_ip.is_some_and(|ip| ip.is_loopback());
    for (i, a) in specs.iter().enumerate() {
        for b in &specs[i + 1..] {
            let one_wildcard = a.host_ip.is_none() != b.host_ip.is_none();
            let same_addr =
                a.host_ip == b.host_ip || (one_wildcard && !loopback(a) && !loopback(b));
            let a_end = u32::from(a.host_port) + u32::from(a.count);
            let b_end = u32::from(b.host_port) + u32::from(b.count);
            let ports_overlap = u32::from(a.host_port) < b_end && u32::from(b.host_port) < a_end;
            if a.proto == b.proto && same_addr && ports_overlap {
                return Err(PortSpecError {
                    entry: b.to_string(),
                    reason: format!("publishes a host port that {a} already publishes"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_port_defaults_to_tcp() {
        let p = parse_ports("8080:80").unwrap();
        assert_eq!(
            p,
            vec![PortSpec {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                count: 1,
                proto: Proto::Tcp
            }]
        );
    }

    #[test]
    fn host_ip_ranges_and_protocols() {
        let p = parse_ports("127.0.0.1:8080:80, 5000-5002:6000-6002/udp,9:9/SCTP").unwrap();
        assert_eq!(p[0].host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            p[1].pairs().collect::<Vec<_>>(),
            vec![(5000, 6000), (5001, 6001), (5002, 6002)]
        );
        assert_eq!(p[1].proto, Proto::Udp);
        assert_eq!(p[2].proto, Proto::Sctp);
        assert_eq!(p[1].to_string(), "5000-5002->6000-6002/udp");
    }

    #[test]
    fn unspecified_host_ip_means_all_addresses() {
        assert_eq!(parse_ports("0.0.0.0:80:80").unwrap()[0].host_ip, None);
    }

    #[test]
    fn empty_value_publishes_nothing() {
        assert!(parse_ports("  ").unwrap().is_empty());
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry_named() {
        for bad in [
            "80",
            "0:80",
            "65536:80",
            "a:80",
            "80:80/icmp",
            "1-3:1-2",
            "5-1:5-1",
            "80:80,",
            ",80:80",
            "1.2.3:80:80",
            "::1:80:80",
            "224.0.0.1:80:80",
            "80:80:80:80",
            "-1:80",
            "80:",
        ] {
            let e = parse_ports(bad).unwrap_err();
            assert!(e.to_string().contains("expected [hostIP:]"), "{bad}: {e}");
        }
    }

    #[test]
    fn duplicate_host_ports_in_one_annotation_are_refused() {
        assert!(parse_ports("8080:80,8080:81").is_err());
        assert!(parse_ports("8000-8010:8000-8010,8005:80").is_err());
        assert!(parse_ports("192.0.2.1:8080:80,8080:81").is_err());
        // Same port, different protocol or different host IPs is fine.
        assert!(parse_ports("8080:80/tcp,8080:80/udp").is_ok());
        assert!(parse_ports("127.0.0.1:8080:80,127.0.0.2:8080:80").is_ok());
    }

    #[test]
    fn ipv6_host_ips_are_written_in_brackets() {
        let p = parse_ports("[2001:db8::1]:8080-8081:80-81/udp,[::]:9:9").unwrap();
        assert_eq!(p[0].host_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(
            (p[0].host_port, p[0].count, p[0].proto),
            (8080, 2, Proto::Udp)
        );
        assert_eq!(p[0].to_string(), "[2001:db8::1]:8080-8081->80-81/udp");
        // [::] is every address, as 0.0.0.0 and no address are.
        assert_eq!(p[1].host_ip, None);
        for bad in [
            "2001:db8::1:8080:80",
            "[2001:db8::1:8080:80",
            "[10.0.0.1]:80:80",
            "[fe80::1]80:80",
        ] {
            let e = parse_ports(bad).unwrap_err();
            assert!(e.to_string().contains("expected [hostIP:]"), "{bad}: {e}");
        }
        assert!(parse_ports("2001:db8::1:8080:80")
            .unwrap_err()
            .reason
            .contains("[2001:db8::1]:hostPort"));
        assert!(parse_ports("[ff02::1]:80:80").is_err());
    }

    #[test]
    fn ipv6_loopback_is_refused_with_what_to_use_instead() {
        for bad in [
            "[::1]:8080:80",
            "::1:8080:80",
            "[::ffff:127.0.0.1]:80:80",
            "[::ffff:127.1.2.3]:80:80/udp",
        ] {
            let e = parse_ports(bad).unwrap_err();
            assert!(
                e.reason
                    .starts_with("cannot publish on ::1 because the kernel drops IPv6 packets")
                    && e.reason.contains("publish on 127.0.0.1 for the host only"),
                "{bad}: {e}"
            );
            assert_eq!(e.to_string().lines().count(), 1);
        }
    }

    #[test]
    fn families_overlap_only_through_every_address() {
        // A publish on an IPv4 and one on an IPv6 address never share a map key.
        assert!(parse_ports("192.0.2.1:8080:80,[2001:db8::1]:8080:80").is_ok());
        assert!(parse_ports("8080:80,[2001:db8::1]:8080:81").is_err());
        assert!(parse_ports("[2001:db8::1]:8080:80,[2001:db8::1]:8080:81").is_err());
    }

    #[test]
    fn records_with_an_ipv4_host_ip_string_still_load() {
        let old = r#"{"host_ip":"127.0.0.1","host_port":8080,"container_port":80,"count":1,"proto":"tcp"}"#;
        let p: PortSpec = serde_json::from_str(old).unwrap();
        assert_eq!(p.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(serde_json::to_string(&p).unwrap(), old);
        let v6 = PortSpec {
            host_ip: Some("2001:db8::1".parse().unwrap()),
            ..p
        };
        let text = serde_json::to_string(&v6).unwrap();
        assert!(text.contains(r#""host_ip":"2001:db8::1""#), "{text}");
        assert_eq!(serde_json::from_str::<PortSpec>(&text).unwrap(), v6);
    }

    #[test]
    fn a_publish_on_every_address_and_one_on_loopback_go_together() {
        assert!(parse_ports("8080:80,127.0.0.1:8080:80").is_ok());
        assert!(parse_ports("127.0.0.1:8080:80,8080:80").is_ok());
    }
}
