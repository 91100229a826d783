//! Who holds the port we could not bind: read only on that failure path, so the error can
//! name the program to reconfigure (typically a dnsmasq or a DNS server bound to a wildcard).
//!
//! /proc/net/{udp,tcp}{,6} list the sockets of our network namespace with their inode;
//! /proc/PID/fd links to `socket:[INODE]` name the process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A socket holding the port: the program, its pid and the address it is bound to.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub comm: String,
    pub pid: u32,
    pub bound: SocketAddr,
}

/// The holder of `addr` for UDP or TCP (a listener), on that address or a wildcard.
pub(super) fn find(addr: SocketAddr, tcp: bool) -> Option<Holder> {
    let proto = if tcp { "tcp" } else { "udp" };
    let mut sockets = Vec::new();
    for file in [proto.to_owned(), format!("{proto}6")] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) {
            sockets.extend(bound_on(&text, addr, tcp));
        }
    }
    let (bound, inode) = *sockets.first()?;
    let (pid, comm) = owner(inode)?;
    Some(Holder { comm, pid, bound })
}

/// The (address, inode) of the sockets in a /proc/net table that keep `addr` from us:
/// bound to its port on that address or a wildcard (listening, for TCP).
pub(super) fn bound_on(table: &str, addr: SocketAddr, tcp: bool) -> Vec<(SocketAddr, u64)> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        // 0A: TCP_LISTEN; 07: TCP_CLOSE, which is what a bound UDP socket shows.
        if *state != if tcp { "0A" } else { "07" } {
            continue;
        }
        let (Some(bound), Ok(inode)) = (hex_addr(local), inode.parse()) else {
            continue;
        };
        let same_ip = bound.ip() == addr.ip() || bound.ip().is_unspecified();
        if bound.port() == addr.port() && same_ip {
            out.push((bound, inode));
        }
    }
    out
}

/// `0100580A:0035` (IPv4, one u32 in host order) or 32 hex digits (IPv6, four u32s).
fn hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The first process with the socket open, and its name.
fn owner(inode: u64) -> Option<(u32, String)> {
    let want = format!("socket:[{inode}]");
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_owned()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 0
  2: 0100580A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 0
  3: 0100590A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0000000000000000 0
  4: 0100580A:0036 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4444 2 0000000000000000 0
";

    #[test]
    fn the_wildcard_and_the_same_address_on_port_53_hold_it_others_do_not() {
        let want: SocketAddr = "10.88.0.1:53".parse().unwrap();
        let got: Vec<u64> = bound_on(UDP, want, false).iter().map(|b| b.1).collect();
        assert_eq!(got, [1111, 2222]);
        assert_eq!(bound_on(UDP, want, false)[1].0, want);
        // A TCP socket counts only when it listens.
        assert!(bound_on(UDP, want, true).is_empty());
    }

    #[test]
    fn ipv6_addresses_decode_word_by_word() {
        // fd00:88::1 as /proc/net/udp6 prints it on a little-endian host.
        let line = format!(
            "hdr\n 0: {}:0035 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 77 2 0 0\n",
            if cfg!(target_endian = "little") {
                "880000FD000000000000000001000000"
            } else {
                "FD000088000000000000000000000001"
            }
        );
        let want: SocketAddr = "[fd00:88::1]:53".parse().unwrap();
        let got = bound_on(&line, want, false);
        assert_eq!(got.len(), 1, "{line}");
        assert_eq!(got[0].1, 77);
    }

    #[test]
    fn a_socket_of_this_process_is_found_with_its_name() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let h = find(addr, false).expect("own socket found");
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.bound, addr);
        assert!(!h.comm.is_empty());
    }
}
