//! The resolver's test bench, inside a sandbox: two networks (bridges nh1 10.88.0.1 +
//! fd00:88::1 and nh2 10.89.0.1) with a "container" on each, an "upstream" netns at
//! 10.99.0.2 and 10.99.0.3 running a small DNS server built here, and /etc/resolv.conf
//! replaced by a bind mount (and /run by a tmpfs) naming the systemd stub first (it must be skipped) and then
//! 10.99.0.2. The resolver is the real binary (`nethook dns start|deliver`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nethook::resolver::{Entry, Snapshot, Update, Zone};

use crate::common::{sh, FakeContainer, Nethook};

pub const GW1: &str = "10.88.0.1";
pub const GW1_6: &str = "fd00:88::1";
pub const GW2: &str = "10.89.0.1";
pub const UPSTREAM: &str = "10.99.0.2";
pub const UPSTREAM_B: &str = "10.99.0.3";

pub struct Lab {
    pub nh: Nethook,
    pub c1: FakeContainer,
    pub c2: FakeContainer,
    pub up: FakeContainer,
    /// The names the upstream was asked, in order.
    pub asked: Arc<Mutex<Vec<String>>>,
    pub resolv_conf: PathBuf,
    log: UnixDatagram,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        // A /run of our own: on a systemd host the resolver must not find the real
        // /run/systemd/system and start itself through the host's systemd.
        sh("mount -t tmpfs tmpfs /run");
        let nh = Nethook::new(tag);
        std::fs::create_dir_all(nh.run_dir()).unwrap();
        let (c1, c2, up) = (
            FakeContainer::start("c1"),
            FakeContainer::start("c2"),
            FakeContainer::start("up"),
        );
        sh("ip link add nh1 type bridge && ip link set nh1 up && ip addr add 10.88.0.1/24 dev nh1 \
            && ip addr add fd00:88::1/64 dev nh1 nodad \
            && ip link add nh2 type bridge && ip link set nh2 up && ip addr add 10.89.0.1/24 dev nh2");
        plug(&c1, "nh1", "10.88.0.10/24", Some("fd00:88::10/64"));
        // A route to the other gateways: the host answers for them whatever the bridge.
        c1.sh("ip route add default via 10.88.0.1");
        plug(&c2, "nh2", "10.89.0.10/24", None);
        sh(&format!(
            "ip link add vu type veth peer name vuc && ip link set vuc netns {} \
             && ip addr add 10.99.0.1/24 dev vu && ip link set vu up",
            up.pid()
        ));
        up.sh("ip link set lo up && ip addr add 10.99.0.2/24 dev vuc && ip addr add 10.99.0.3/24 dev vuc && ip link set vuc up");
        let asked = Arc::new(Mutex::new(Vec::new()));
        upstream(up.pid(), asked.clone());
        // The systemd stub first: the resolver must skip it (it listens in the host's
        // namespace, not where containers could reach it through us).
        let resolv_conf = nh.dirs.0.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("nameserver 127.0.0.53\nnameserver {UPSTREAM}\n"),
        )
        .unwrap();
        sh(&format!(
            "mount --bind {} /etc/resolv.conf",
            resolv_conf.display()
        ));
        let log_path = nh.dirs.0.join("syslog");
        let log = UnixDatagram::bind(&log_path).unwrap();
        log.set_nonblocking(true).unwrap();
        Lab {
            nh,
            c1,
            c2,
            up,
            asked,
            resolv_conf,
            log,
        }
    }

    /// Runs `nethook dns ACTION` with `input` on stdin: (success, stdout, stderr).
    pub fn dns(&self, action: &str, input: &str) -> (bool, String, String) {
        let mut child = self
            .nh
            .command()
            .args(["dns", action])
            .env("NETHOOK_SYSLOG_SOCKET", self.nh.dirs.0.join("syslog"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    }

    pub fn start(&self, snap: &Snapshot) {
        let (ok, out, err) = self.dns("start", &serde_json::to_string(snap).unwrap());
        assert!(ok && out == "started", "start: {out} {err}");
    }

    pub fn deliver(&self, updates: &[Update]) -> String {
        let (ok, out, err) = self.dns("deliver", &serde_json::to_string(updates).unwrap());
        assert!(ok, "deliver: {out} {err}");
        out
    }

    pub fn pid(&self) -> Option<u32> {
        let p = std::fs::read_to_string(self.nh.run_dir().join("dns/pid")).ok()?;
        p.trim().parse().ok()
    }

    /// The system log lines the resolver and its starters wrote so far.
    pub fn log(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.log.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    pub fn ask1(&self, name: &str, qtype: RecordType) -> Option<Message> {
        ask_in(self.c1.pid(), GW1, name, qtype, false)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The resolver left its session and would outlive the sandbox: end it by its pid.
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        let _ = std::process::Command::new("umount")
            .arg("/etc/resolv.conf")
            .status();
    }
}

fn plug(c: &FakeContainer, bridge: &str, v4: &str, v6: Option<&str>) {
    let host = format!("v{bridge}");
    sh(&format!(
        "ip link add {host} type veth peer name {host}c && ip link set {host} master {bridge} up \
         && ip link set {host}c netns {}",
        c.pid()
    ));
    let mut cmd =
        format!("ip link set lo up && ip link set {host}c name eth0 && ip addr add {v4} dev eth0");
    if let Some(v6) = v6 {
        cmd += &format!(" && ip addr add {v6} dev eth0 nodad");
    }
    c.sh(&format!("{cmd} && ip link set eth0 up"));
}

pub fn entry(key: &str, names: &[&str], addrs: &[&str]) -> Entry {
    Entry {
        key: key.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

/// net1 (web on c1's addresses) and net2 (db on c2's).
pub fn two_zones() -> Snapshot {
    Snapshot {
        zones: vec![
            Zone {
                network: "net1".into(),
                listen: vec![GW1.parse().unwrap(), GW1_6.parse().unwrap()],
                clients: vec![
                    "10.88.0.0/16".parse().unwrap(),
                    "fd00:88::/64".parse().unwrap(),
                ],
                entries: vec![entry("c1", &["web", "www"], &["10.88.0.10", "fd00:88::10"])],
            },
            Zone {
                network: "net2".into(),
                listen: vec![GW2.parse().unwrap()],
                clients: vec!["10.89.0.0/24".parse().unwrap()],
                entries: vec![entry("c2", &["db"], &["10.89.0.10"])],
            },
        ],
    }
}

/// Runs `f` on a thread inside the network namespace of `pid`.
pub fn in_ns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One query from inside `pid`'s netns; `None` when no answer came within 2 s.
pub fn ask_in(pid: u32, server: &str, name: &str, qtype: RecordType, tcp: bool) -> Option<Message> {
    let (server, name) = (server.parse().unwrap(), name.to_owned());
    in_ns(pid, move || ask(server, &name, qtype, tcp))
}

pub fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

pub fn ask(server: IpAddr, name: &str, qtype: RecordType, tcp: bool) -> Option<Message> {
    let q = query_bytes(0x5151, name, qtype);
    let sa = SocketAddr::new(server, 53);
    let reply = if tcp {
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(&framed(&q)).ok()?;
        read_framed(&mut s)?
    } else {
        let s = UdpSocket::bind(if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .ok()?;
        s.connect(sa).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.send(&q).ok()?;
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).ok()?;
        buf[..n].to_vec()
    };
    Message::from_vec(&reply).ok()
}

fn framed(m: &[u8]) -> Vec<u8> {
    let mut v = (m.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(m);
    v
}

fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

pub fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

/// The upstream: `example.com` → 93.184.216.34 TTL 300 (192.0.2.99 from 10.99.0.3),
/// `nx.example` NXDOMAIN, `refuse.example` REFUSED, `big.example` TC over UDP and 100
/// records over TCP; anything else NXDOMAIN. Serves until the sandbox ends.
fn upstream(pid: u32, asked: Arc<Mutex<Vec<String>>>) {
    let ready = Arc::new(Mutex::new(0));
    for (addr, tcp) in [(UPSTREAM, false), (UPSTREAM_B, false), (UPSTREAM, true)] {
        let (asked, ready) = (asked.clone(), ready.clone());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let sa: SocketAddr = format!("{addr}:53").parse().unwrap();
            if tcp {
                let l = TcpListener::bind(sa).unwrap();
                *ready.lock().unwrap() += 1;
                for c in l.incoming() {
                    let Ok(mut c) = c else { continue };
                    while let Some(q) = read_framed(&mut c) {
                        let r = upstream_reply(&q, addr, true, &asked);
                        if c.write_all(&framed(&r)).is_err() {
                            break;
                        }
                    }
                }
            } else {
                let s = UdpSocket::bind(sa).unwrap();
                *ready.lock().unwrap() += 1;
                let mut buf = vec![0u8; 65535];
                while let Ok((n, peer)) = s.recv_from(&mut buf) {
                    let r = upstream_reply(&buf[..n], addr, false, &asked);
                    let _ = s.send_to(&r, peer);
                }
            }
        });
    }
    crate::common::wait_until(5, "the upstream server", || *ready.lock().unwrap() == 3);
}

fn upstream_reply(q: &[u8], at: &str, tcp: bool, asked: &Mutex<Vec<String>>) -> Vec<u8> {
    let req = Message::from_vec(q).unwrap();
    let query = req.queries[0].clone();
    let name = query.name().to_ascii().to_lowercase();
    asked.lock().unwrap().push(name.clone());
    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_available = true;
    m.add_query(query.clone());
    let a = |ip: &str, ttl| {
        Record::from_rdata(query.name().clone(), ttl, RData::A(A(ip.parse().unwrap())))
    };
    match name.as_str() {
        "example.com." => {
            m.add_answer(a(
                if at == UPSTREAM {
                    "93.184.216.34"
                } else {
                    "192.0.2.99"
                },
                300,
            ));
        }
        "refuse.example." => m.metadata.response_code = ResponseCode::Refused,
        "big.example." if !tcp => m.metadata.truncation = true,
        "big.example." => {
            for i in 0..100 {
                m.add_answer(a(&format!("198.51.100.{i}"), 60));
            }
        }
        _ => m.metadata.response_code = ResponseCode::NXDomain,
    }
    m.to_vec().unwrap()
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Its anonymous part (heap, stacks), KiB.
pub fn rss_anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The p50 and p99 of durations, µs.
pub fn percentiles(mut v: Vec<Duration>) -> (u128, u128) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_micros();
    (at(0.5), at(0.99))
}

pub fn counts(names: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

/// Whether a process has exited with all its threads, so its sockets are closed: gone, or
/// a zombie leader with no other thread left. (Its exe link goes before its sockets, and
/// the leader turns zombie while other threads may still hold them.)
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let zombie = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
            let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.count())
                .unwrap_or(0);
            zombie && threads <= 1
        }
        Err(_) => true,
    }
}
