//! The sockets on port 53 of one gateway address and the threads serving them: one UDP
//! thread (a short-lived thread per forwarded query) and one TCP accept thread (a thread
//! per connection). They read the zones through `Shared`, so records change under them
//! without a socket being closed.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::Message;
use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};

use super::daemon::Shared;
use super::upstream::{forward_tcp, forward_udp, read_framed, write_framed};
use super::zone::{refused, servfail, Answer};
use super::{holder, ResolverError};

/// Small stacks: the threads parse one DNS message at a time, and RSS is what counts.
const STACK: usize = 256 << 10;
/// Forwarded UDP queries in flight; more get SERVFAIL (a flood must not spawn unbounded threads).
const MAX_FORWARDS: usize = 256;
const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Both sockets of one address, bound but not served yet.
pub(super) struct Bound {
    pub addr: IpAddr,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds `addr`:53 for UDP and TCP, or says in one line why not (naming the holder).
///
/// IP_FREEBIND: a new IPv6 gateway stays tentative during duplicate address detection, and
/// for good on a bridge with no port up yet. SO_REUSEADDR on TCP only, to bind again past
/// TIME_WAIT; not on UDP, where it would let us share the port with a wildcard holder that
/// set it too (dnsmasq does) and leave UDP to us and TCP to it.
pub(super) fn bind(addr: IpAddr, network: &str) -> Result<Bound, ResolverError> {
    let sa = SocketAddr::new(addr, 53);
    let udp = open(sa, SockType::Datagram).map_err(|e| failure(network, sa, false, e))?;
    let tcp = open(sa, SockType::Stream).map_err(|e| failure(network, sa, true, e))?;
    Ok(Bound {
        addr,
        udp: UdpSocket::from(udp),
        tcp: TcpListener::from(tcp),
    })
}

fn open(sa: SocketAddr, ty: SockType) -> Result<OwnedFd, Errno> {
    let family = match sa {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::IpFreebind, &true)?;
    if sa.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if ty == SockType::Stream {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(sa))?;
    if ty == SockType::Stream {
        socket::listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))?;
    }
    Ok(fd)
}

fn failure(network: &str, sa: SocketAddr, tcp: bool, e: Errno) -> ResolverError {
    let proto = if tcp { "tcp" } else { "udp" };
    let what = format!("DNS for network {network} needs {sa}/{proto}");
    ResolverError::Refused(match (e, holder::find(sa, tcp)) {
        (Errno::EADDRINUSE, Some(h)) => format!(
            "{what}, but {} (pid {}) holds {}: make it bind only its own addresses (dnsmasq: bind-interfaces) or stop it",
            h.comm, h.pid, h.bound
        ),
        (Errno::EADDRINUSE, None) => format!(
            "{what}, but another socket holds it (its owner was not found): free the port"
        ),
        (e, _) => format!("{what}: {}", e.desc()),
    })
}

/// The serving threads of one address; `stop` closes its sockets.
pub(super) struct Listener {
    stop: Arc<AtomicBool>,
    fds: [std::os::fd::RawFd; 2],
    threads: Vec<JoinHandle<()>>,
    // Held so the fds above stay valid until the threads are joined.
    _sockets: (Arc<UdpSocket>, Arc<TcpListener>),
}

impl Listener {
    pub(super) fn start(b: Bound, shared: &Arc<Shared>) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let (udp, tcp) = (Arc::new(b.udp), Arc::new(b.tcp));
        let fds = [udp.as_raw_fd(), tcp.as_raw_fd()];
        let spawn = |name: String| std::thread::Builder::new().name(name).stack_size(STACK);
        let (u, s, f) = (udp.clone(), shared.clone(), stop.clone());
        let addr = b.addr;
        let t1 = spawn(format!("udp {addr}")).spawn(move || serve_udp(addr, u, s, f))?;
        let (t, s, f) = (tcp.clone(), shared.clone(), stop.clone());
        let t2 = spawn(format!("tcp {addr}")).spawn(move || serve_tcp(addr, t, s, f))?;
        Ok(Listener {
            stop,
            fds,
            threads: vec![t1, t2],
            _sockets: (udp, tcp),
        })
    }

    /// Wakes both threads (shutdown makes a blocked recv or accept return) and waits for
    /// them. A forward still in flight holds the UDP socket until its answer is sent.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for fd in self.fds {
            // ENOTCONN on UDP is expected: the shutdown still wakes the reader.
            let _ = socket::shutdown(fd, socket::Shutdown::Both);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Whether the bytes look like a query (QR clear): garbage and stray replies are dropped.
fn is_query(pkt: &[u8]) -> bool {
    pkt.len() >= 12 && pkt[2] & 0x80 == 0
}

fn serve_udp(addr: IpAddr, sock: Arc<UdpSocket>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let got = sock.recv_from(&mut buf);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((n, peer)) = got else {
            continue;
        };
        let pkt = &buf[..n];
        if !is_query(pkt) {
            continue;
        }
        // A message hickory cannot parse is still forwarded: the upstream may know it.
        let req = Message::from_vec(pkt).ok();
        match (shared.answer(addr, peer.ip(), req.as_ref()), &req) {
            (Some(Answer::Forward), _) => {}
            (Some(Answer::Local(reply)), _) => {
                let _ = sock.send_to(&reply, peer);
                continue;
            }
            (None, Some(req)) => {
                let _ = sock.send_to(&refused(req), peer);
                continue;
            }
            (None, None) => continue,
        }
        let Some(slot) = Slot::take(&shared.forwards, MAX_FORWARDS) else {
            if let Some(req) = &req {
                let _ = sock.send_to(&servfail(req), peer);
            }
            continue;
        };
        let (pkt, sock, shared) = (pkt.to_vec(), sock.clone(), shared.clone());
        let job = move || {
            let _slot = slot;
            let reply = forward_udp(&shared.upstreams.servers(), &pkt);
            if let Some(r) = reply.or_else(|| req.as_ref().map(servfail)) {
                let _ = sock.send_to(&r, peer);
            }
        };
        let _ = std::thread::Builder::new().stack_size(STACK).spawn(job);
    }
}

fn serve_tcp(addr: IpAddr, l: Arc<TcpListener>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let conns = Arc::new(AtomicUsize::new(0));
    loop {
        let got = l.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (c, peer) = match got {
            Ok(c) => c,
            Err(_) => {
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = Slot::take(&conns, MAX_TCP_CONNECTIONS) else {
            continue;
        };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let _slot = slot;
                serve_connection(addr, peer.ip(), c, &shared);
            });
    }
}

fn serve_connection(addr: IpAddr, peer: IpAddr, mut c: TcpStream, shared: &Shared) {
    if c.set_read_timeout(Some(TCP_IDLE)).is_err() {
        return;
    }
    while let Ok(pkt) = read_framed(&mut c) {
        if !is_query(&pkt) {
            return;
        }
        let req = Message::from_vec(&pkt).ok();
        let reply = match shared.answer(addr, peer, req.as_ref()) {
            Some(Answer::Local(r)) => Some(r),
            Some(Answer::Forward) => forward_tcp(&shared.upstreams.servers(), &pkt)
                .or_else(|| req.as_ref().map(servfail)),
            None => req.as_ref().map(refused),
        };
        match reply {
            Some(r) if write_framed(&mut c, &r).is_ok() => {}
            _ => return,
        }
    }
}

/// One of a bounded number of places (forwards, connections), given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        let taken = count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
