//! The upstream servers, from the host's resolv.conf, and forwarding to them.
//!
//! Forwarding relays the upstream's bytes as they are: that is the only way its rcode,
//! TC bit, TTLs and EDNS all reach the container unchanged. A UDP query goes out over UDP
//! and a TCP query over TCP, so a client that retries over TCP after TC gets TCP upstream.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Where the host's servers are named: resolv.conf, then systemd-resolved's list of its
/// real upstreams for when resolv.conf names only its stub (127.0.0.53).
pub(super) const RESOLV_CONF: &str = "/etc/resolv.conf";
pub(super) const RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// glibc reads at most three `nameserver` lines.
const MAX_UPSTREAMS: usize = 3;
/// The time a forwarded query may take across all upstreams: glibc's client gives up at 5 s.
const BUDGET: Duration = Duration::from_secs(4);
/// How often the files are looked at again (on the forward path, only when queries come).
const RECHECK: Duration = Duration::from_secs(1);

/// The `nameserver` addresses of a resolv.conf, without loopback ones (a stub listening in
/// the host's namespace), at most three. `fe80::1%eth0` keeps its scope.
pub(super) fn parse(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(server) else {
            continue;
        };
        if !addr.ip().is_loopback() && !out.contains(&addr) {
            out.push(addr);
        }
        if out.len() == MAX_UPSTREAMS {
            break;
        }
    }
    out
}

fn server(word: &str) -> Option<SocketAddr> {
    let (ip, scope) = match word.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (word, None),
    };
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => {
            let scope_id = match scope {
                Some(s) => s
                    .parse()
                    .ok()
                    .or_else(|| nix::net::if_::if_nametoindex(s).ok())?,
                None => 0,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(v6, 53, 0, scope_id)))
        }
        v4 => Some(SocketAddr::new(v4, 53)),
    }
}

/// The servers to use: resolv.conf's, else systemd-resolved's (both without loopback).
pub(super) fn choose(resolv_conf: &str, resolved_conf: Option<&str>) -> Vec<SocketAddr> {
    let first = parse(resolv_conf);
    if !first.is_empty() {
        return first;
    }
    resolved_conf.map(parse).unwrap_or_default()
}

/// The upstream list, read again when one of the files changed (resolv.conf is usually
/// replaced by a rename, or is a symlink, so a watch on the file itself would be lost).
pub(super) struct Upstreams {
    paths: [PathBuf; 2],
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    checked: Option<Instant>,
    /// The files' identity when last read; `None` before the first read.
    stamps: Option<[Option<Stamp>; 2]>,
    servers: Vec<SocketAddr>,
    /// Whether "no upstream" was logged for the current files (once, not per query).
    warned: bool,
}

type Stamp = (u64, u64, Option<SystemTime>, u64);

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.modified().ok(), m.len()))
}

impl Upstreams {
    pub(super) fn new(resolv_conf: PathBuf, resolved_conf: PathBuf) -> Self {
        Upstreams {
            paths: [resolv_conf, resolved_conf],
            state: Mutex::new(State::default()),
        }
    }

    /// The servers now, re-reading the files at most once a second when they changed.
    pub(super) fn servers(&self) -> Vec<SocketAddr> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return s.servers.clone();
        }
        s.checked = Some(Instant::now());
        let stamps = Some([stamp(&self.paths[0]), stamp(&self.paths[1])]);
        if s.stamps == stamps {
            return s.servers.clone();
        }
        s.stamps = stamps;
        let read = |p: &PathBuf| std::fs::read_to_string(p).ok();
        let servers = choose(
            &read(&self.paths[0]).unwrap_or_default(),
            read(&self.paths[1]).as_deref(),
        );
        if servers != s.servers || (servers.is_empty() && !s.warned) {
            if servers.is_empty() && !s.warned {
                crate::log::line(&format!(
                    "DNS resolver: no upstream server: {} names none but loopback stubs and {} has none; names outside nethook's networks get SERVFAIL until one is there",
                    self.paths[0].display(),
                    self.paths[1].display()
                ));
                s.warned = true;
            } else if !servers.is_empty() {
                let list: Vec<String> = servers.iter().map(|a| a.ip().to_string()).collect();
                crate::log::notice(&format!(
                    "DNS resolver: upstream servers {}",
                    list.join(" ")
                ));
                s.warned = false;
            }
        }
        s.servers = servers;
        s.servers.clone()
    }
}

fn per_server(n: usize) -> Duration {
    BUDGET / n.max(1) as u32
}

/// The first upstream reply to a UDP query, bytes unchanged; `None` when none answered.
pub(super) fn forward_udp(servers: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    let wait = per_server(servers.len());
    let mut buf = vec![0u8; 65535];
    for up in servers {
        let local: SocketAddr = if up.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        // A fresh socket per query: a random source port, and a connected socket drops
        // datagrams from anyone but the upstream.
        let Ok(s) = UdpSocket::bind(local) else {
            continue;
        };
        if s.connect(up).is_err() || s.send(query).is_err() {
            continue;
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match s.recv(&mut buf) {
                Ok(n) if n >= 12 && &buf[..2] == id => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// The first upstream reply to a query over TCP (framed with its length), `None` if none.
pub(super) fn forward_tcp(servers: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let wait = per_server(servers.len());
    for up in servers {
        let Ok(mut s) = TcpStream::connect_timeout(up, wait) else {
            continue;
        };
        if s.set_read_timeout(Some(wait)).is_err() || write_framed(&mut s, query).is_err() {
            continue;
        }
        if let Ok(reply) = read_framed(&mut s) {
            return Some(reply);
        }
    }
    None
}

/// One DNS message from a TCP stream (a two-byte length, then the message).
pub(super) fn read_framed(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

pub(super) fn write_framed(s: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[SocketAddr]) -> Vec<String> {
        v.iter().map(|a| a.ip().to_string()).collect()
    }

    #[test]
    fn nameservers_skip_loopback_stubs_comments_and_stop_at_three() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver ::1\n\
                    nameserver 10.0.0.2 # office\n;nameserver 10.9.9.9\nnameserver   2001:db8::53\n\
                    nameserver 10.0.0.2\nnameserver bogus\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n";
        assert_eq!(ips(&parse(text)), ["10.0.0.2", "2001:db8::53", "10.0.0.3"]);
        assert!(parse(text).iter().all(|a| a.port() == 53));
    }

    #[test]
    fn a_link_local_server_keeps_its_numeric_scope() {
        let got = parse("nameserver fe80::1%7\n");
        let SocketAddr::V6(v6) = got[0] else {
            panic!("not v6")
        };
        assert_eq!(v6.scope_id(), 7);
        // A scope naming no interface here is no usable server.
        assert!(parse("nameserver fe80::1%nosuchif0\n").is_empty());
    }

    #[test]
    fn only_the_stub_falls_back_to_systemd_resolveds_list() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        let resolved = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        assert_eq!(
            ips(&choose(stub, Some(resolved))),
            ["192.0.2.1", "192.0.2.2"]
        );
        assert_eq!(
            ips(&choose("nameserver 10.0.0.2\n", Some(resolved))),
            ["10.0.0.2"]
        );
        assert!(choose(stub, None).is_empty());
        assert!(choose(stub, Some("nameserver 127.0.0.1\n")).is_empty());
    }

    #[test]
    fn a_changed_file_is_read_again_after_the_recheck_interval() {
        let dir = std::env::temp_dir().join(format!("nethook-ups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (conf, resolved) = (dir.join("resolv.conf"), dir.join("none"));
        std::fs::write(&conf, "nameserver 10.0.0.2\n").unwrap();
        let ups = Upstreams::new(conf.clone(), resolved);
        assert_eq!(ips(&ups.servers()), ["10.0.0.2"]);
        // Replaced by rename, as resolvconf and NetworkManager do.
        std::fs::write(dir.join("new"), "nameserver 10.0.0.9\n").unwrap();
        std::fs::rename(dir.join("new"), &conf).unwrap();
        assert_eq!(ips(&ups.servers()), ["10.0.0.2"], "read again too soon");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(ips(&ups.servers()), ["10.0.0.9"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_time_budget_is_split_across_the_servers() {
        assert_eq!(per_server(1), BUDGET);
        assert_eq!(per_server(3), BUDGET / 3);
        assert_eq!(per_server(0), BUDGET);
    }
}
