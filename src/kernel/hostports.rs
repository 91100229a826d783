//! Host sockets that a publish would capture. A DNAT rule for a host port takes every new
//! connection to it away from whatever host process serves that port, silently: the host's
//! own clients of, say, systemd-resolved's stub on 127.0.0.53:53 would reach a container
//! instead. So before publishing, setup looks for a host socket that holds the port.
//!
//! For TCP and UDP the kernel answers directly: binding a socket to the host address (or
//! the wildcard) and port fails with EADDRINUSE exactly when a socket there would clash,
//! with SO_REUSEADDR on for TCP so only listeners count (not connections in TIME_WAIT or a
//! client's ephemeral port). The socket never listens and is closed at once. That costs
//! four syscalls per port; reading `/proc/self/net/tcp` instead walks the kernel's whole
//! established-connections hash of every namespace, ~5 ms per file on this 2-core VM with
//! two sockets open. So `/proc/self/net/*` is read only to name the holder once a bind
//! said the port is taken, and for SCTP, whose endpoint list (`sctp/eps`, present only
//! when the module is loaded) is short, and whose socket would load the module.
//! Which process holds a socket is found by walking `/proc/*/fd`, for the message only.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::model::ports::Proto;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the host's sockets from {path}")]
pub struct HostPortsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A socket bound to a local port on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSocket {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    pub inode: u64,
}

impl HostSocket {
    /// Does a publish of `proto`/`port` on `host_ip` take connections away from this socket?
    /// `host_ip` unspecified (`0.0.0.0`, `::`) is a publish on every host address of that
    /// family. A wildcard publish captures every address of its family but loopback, and a
    /// socket on 127.0.0.1 or ::1 is refused all the same: the user meant the port to be
    /// theirs. A socket on its family's wildcard is captured by a publish on any address of
    /// the family. `::` (without IPV6_V6ONLY, which /proc does not show) takes IPv4 too, so
    /// IPv4 publishes count it; a socket on 0.0.0.0 or a v4-mapped address is never reached
    /// over IPv6.
    pub fn captured_by(&self, proto: Proto, host_ip: IpAddr, port: u16) -> bool {
        if self.proto != proto || self.port != port {
            return false;
        }
        match host_ip {
            IpAddr::V4(ip) => {
                let Some(addr) = ipv4_view(self.address) else {
                    return false;
                };
                ip.is_unspecified() || addr.is_unspecified() || addr == ip
            }
            IpAddr::V6(ip) => {
                let IpAddr::V6(addr) = self.address else {
                    return false;
                };
                if addr.to_ipv4_mapped().is_some() {
                    return false;
                }
                ip.is_unspecified() || addr.is_unspecified() || addr == ip
            }
        }
    }
}

/// The IPv4 address a socket answers on: its own, or the mapped/wildcard form of an
/// IPv6 socket; `None` for an IPv6-only address.
fn ipv4_view(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) if a.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

/// Who holds a host port a publish would take, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The address the holder is bound to.
    pub address: String,
    /// "process NAME (pid N)", or "a process" when none could be found.
    pub holder: String,
}

/// Is `port` of `proto` held on the host where a publish on `host_ip` would take it?
/// `host_ip` unspecified: every host address of its family (`0.0.0.0` for IPv4, `::` for
/// IPv6; a publish on every address of a dual-stack endpoint asks for both). A specific
/// address that is not the host's cannot be tested and cannot be bound to: for it (rare) the
/// socket lists are read, and a socket on the wildcard counts, as it would be taken once the
/// address is added.
pub fn busy(proto: Proto, host_ip: IpAddr, port: u16) -> Result<Option<Busy>, HostPortsError> {
    let taken = match proto {
        Proto::Tcp | Proto::Udp => bind_test(proto, host_ip, port),
        Proto::Sctp => BindTest::Unknown,
    };
    match taken {
        BindTest::Free => return Ok(None),
        BindTest::Taken => {}
        BindTest::Unknown => {
            let sockets = host_sockets(&[proto])?;
            if !sockets.iter().any(|s| s.captured_by(proto, host_ip, port)) {
                return Ok(None);
            }
        }
    }
    let sockets = host_sockets(&[proto])?;
    match sockets.iter().find(|s| s.captured_by(proto, host_ip, port)) {
        Some(s) => {
            let holder = socket_owner(s.inode).map_or_else(
                || "a process".to_owned(),
                |(comm, pid)| format!("process {comm} (pid {pid})"),
            );
            Ok(Some(Busy {
                address: s.address.to_string(),
                holder,
            }))
        }
        // The bind said taken, but the socket left (or sits in another state): report what
        // the kernel said.
        None => Ok(Some(Busy {
            address: match host_ip {
                IpAddr::V4(ip) if ip.is_unspecified() => "every address".to_owned(),
                IpAddr::V6(ip) if ip.is_unspecified() => "every IPv6 address".to_owned(),
                ip => ip.to_string(),
            },
            holder: "a process".to_owned(),
        })),
    }
}

enum BindTest {
    Free,
    Taken,
    /// The address is not the host's (or the test could not run): look at the lists.
    Unknown,
}

/// Does binding `addr:port` fail because a socket holds it? An IPv6 test socket is
/// IPV6_V6ONLY: a publish over IPv6 takes nothing from IPv4 sockets (0.0.0.0), while a
/// socket on `::` or on an IPv6 address still clashes.
fn bind_test(proto: Proto, addr: IpAddr, port: u16) -> BindTest {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        SockaddrIn6,
    };
    use std::os::fd::AsRawFd;
    let ty = if proto == Proto::Tcp {
        SockType::Stream
    } else {
        SockType::Datagram
    };
    let family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let Ok(sock) = socket(family, ty, SockFlag::SOCK_CLOEXEC, None) else {
        return BindTest::Unknown;
    };
    if proto == Proto::Tcp && setsockopt(&sock, sockopt::ReuseAddr, &true).is_err() {
        return BindTest::Unknown;
    }
    let bound = match addr {
        IpAddr::V4(a) => bind(
            sock.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(a, port)),
        ),
        IpAddr::V6(a) => {
            if setsockopt(&sock, sockopt::Ipv6V6Only, &true).is_err() {
                return BindTest::Unknown;
            }
            bind(
                sock.as_raw_fd(),
                &SockaddrIn6::from(std::net::SocketAddrV6::new(a, port, 0, 0)),
            )
        }
    };
    match bound {
        Ok(()) => BindTest::Free,
        Err(nix::errno::Errno::EADDRINUSE) => BindTest::Taken,
        Err(_) => BindTest::Unknown,
    }
}

/// The listening TCP, bound unconnected UDP, and SCTP endpoint sockets of `protos`.
pub fn host_sockets(protos: &[Proto]) -> Result<Vec<HostSocket>, HostPortsError> {
    let mut out = Vec::new();
    for &proto in protos {
        match proto {
            Proto::Tcp | Proto::Udp => {
                for file in [proto.as_str().to_owned(), format!("{}6", proto.as_str())] {
                    let path = Path::new("/proc/self/net").join(file);
                    if let Some(text) = read_optional(&path)? {
                        out.extend(parse_inet(&text, proto));
                    }
                }
            }
            Proto::Sctp => {
                let path = Path::new("/proc/self/net/sctp/eps");
                if let Some(text) = read_optional(path)? {
                    out.extend(parse_sctp_eps(&text));
                }
            }
        }
    }
    Ok(out)
}

/// A missing file is a kernel without that protocol (IPv6 off, sctp not loaded): no sockets.
fn read_optional(path: &Path) -> Result<Option<String>, HostPortsError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostPortsError {
            path: path.to_owned(),
            source,
        }),
    }
}

/// TCP state 0A is LISTEN. A UDP socket holds a port for others when it is not connected
/// (remote port 0): a connected one is a client's ephemeral port.
const TCP_LISTEN: &str = "0A";

/// Parses `/proc/net/{tcp,udp}{,6}`: `sl local_address rem_address st ... inode`, addresses
/// as hex in the kernel's byte order, ports as big-endian hex.
pub fn parse_inet(text: &str, proto: Proto) -> Vec<HostSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(9)?);
            let holds = match proto {
                Proto::Tcp => *state == TCP_LISTEN,
                _ => remote.rsplit(':').next() == Some("0000"),
            };
            if !holds {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(HostSocket {
                proto,
                address: parse_hex_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word of an address as `%08X` of its in-memory value,
/// so on a little-endian host every word's bytes come out reversed.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect();
    let bytes: Vec<u8> = words?.into_iter().flat_map(u32::to_ne_bytes).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let arr: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(arr)))
        }
        _ => None,
    }
}

/// Parses `/proc/net/sctp/eps`: `ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...`.
pub fn parse_sctp_eps(text: &str) -> Vec<HostSocket> {
    text.lines()
        .skip(1)
        .flat_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(5).and_then(|p| p.parse::<u16>().ok());
            let inode = f.get(7).and_then(|i| i.parse::<u64>().ok());
            let addrs: Vec<IpAddr> = f.iter().skip(8).filter_map(|a| a.parse().ok()).collect();
            match (port, inode) {
                (Some(port), Some(inode)) => addrs
                    .into_iter()
                    .map(|address| HostSocket {
                        proto: Proto::Sctp,
                        address,
                        port,
                        inode,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        })
        .collect()
}

/// `comm` and pid of a process that has the socket open, for the error message; `None`
/// when none is found (a process of another user namespace, or one that just exited).
pub fn socket_owner(inode: u64) -> Option<(String, u32)> {
    let target = format!("socket:[{inode}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                let comm = fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some((comm.trim().to_owned(), pid));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:270F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:270F 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_tcp_sockets_are_read_and_established_ones_skipped() {
        let s = parse_inet(TCP, Proto::Tcp);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s[0].port, 9999);
        assert_eq!(s[0].inode, 4242);
        assert_eq!(s[1].address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(s[1].port, 7777);
    }

    #[test]
    fn unconnected_udp_sockets_hold_their_port_and_connected_ones_do_not() {
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 5050 2 0000000000000000 0
  2: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 5151 2 0000000000000000 0
";
        let s = parse_inet(udp, Proto::Udp);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].address, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)));
        assert_eq!(s[0].port, 53);
    }

    #[test]
    fn ipv6_wildcard_and_mapped_addresses_are_read() {
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6060 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6161 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6262 1 0000000000000000 100 0 0 10 0
";
        let s = parse_inet(tcp6, Proto::Tcp);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].address, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            s[1].address,
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        );
        assert_eq!(s[2].address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        assert!(s[0].captured_by(Proto::Tcp, v4([10, 0, 0, 1]), 22));
        assert!(s[1].captured_by(Proto::Tcp, v4([127, 0, 0, 1]), 80));
        assert!(
            !s[2].captured_by(Proto::Tcp, v4([0, 0, 0, 0]), 81),
            "an IPv6-only socket is not reached by IPv4 DNAT"
        );
        // Over IPv6: `::` and ::1 are reached by a publish on every IPv6 address, the
        // v4-mapped socket is not.
        let every6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert!(s[0].captured_by(Proto::Tcp, every6, 22));
        assert!(!s[1].captured_by(Proto::Tcp, every6, 80));
        assert!(s[2].captured_by(Proto::Tcp, every6, 81));
    }

    fn sock6(addr: &str, port: u16) -> HostSocket {
        HostSocket {
            proto: Proto::Tcp,
            address: IpAddr::V6(addr.parse().unwrap()),
            port,
            inode: 1,
        }
    }

    #[test]
    fn an_ipv6_publish_conflicts_with_ipv6_sockets_only() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(sock6("2001:db8::1", 80).captured_by(Proto::Tcp, ip, 80));
        assert!(sock6("::", 80).captured_by(Proto::Tcp, ip, 80));
        assert!(!sock6("2001:db8::2", 80).captured_by(Proto::Tcp, ip, 80));
        assert!(!sock6("::1", 80).captured_by(Proto::Tcp, ip, 80));
        assert!(!sock([0, 0, 0, 0], 80, Proto::Tcp).captured_by(Proto::Tcp, ip, 80));
        assert!(!sock([0, 0, 0, 0], 80, Proto::Tcp).captured_by(
            Proto::Tcp,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            80
        ));
        assert!(!sock6("2001:db8::1", 80).captured_by(
            Proto::Tcp,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            80
        ));
    }

    fn sock(addr: [u8; 4], port: u16, proto: Proto) -> HostSocket {
        HostSocket {
            proto,
            address: IpAddr::V4(Ipv4Addr::from(addr)),
            port,
            inode: 1,
        }
    }

    #[test]
    fn a_wildcard_publish_conflicts_with_a_socket_on_any_address() {
        let every = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(sock([127, 0, 0, 1], 9999, Proto::Tcp).captured_by(Proto::Tcp, every, 9999));
        assert!(sock([127, 0, 0, 53], 53, Proto::Udp).captured_by(Proto::Udp, every, 53));
        assert!(sock([0, 0, 0, 0], 7777, Proto::Tcp).captured_by(Proto::Tcp, every, 7777));
    }

    #[test]
    fn a_specific_publish_conflicts_with_that_address_or_the_wildcard_only() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(sock([192, 0, 2, 1], 80, Proto::Tcp).captured_by(Proto::Tcp, ip, 80));
        assert!(sock([0, 0, 0, 0], 80, Proto::Tcp).captured_by(Proto::Tcp, ip, 80));
        assert!(!sock([127, 0, 0, 1], 80, Proto::Tcp).captured_by(Proto::Tcp, ip, 80));
        assert!(
            !sock([192, 0, 2, 1], 80, Proto::Udp).captured_by(Proto::Tcp, ip, 80),
            "other protocol"
        );
        assert!(
            !sock([192, 0, 2, 1], 81, Proto::Tcp).captured_by(Proto::Tcp, ip, 80),
            "other port"
        );
    }

    #[test]
    fn sctp_endpoints_list_every_bound_address() {
        let eps = " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
ffff88810a4c4000 ffff888104f1d000 2   10  29   9000      0 7070 10.0.0.1 127.0.0.1
";
        let s = parse_sctp_eps(eps);
        assert_eq!(s.len(), 2);
        assert!(s
            .iter()
            .all(|h| h.port == 9000 && h.inode == 7070 && h.proto == Proto::Sctp));
    }
}
