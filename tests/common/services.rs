//! Support for the services tests (tests/firewall_services.rs): members that serve their own
//! name (TCP 8080, UDP 5353, both families), a client that counts who answered, the bridge
//! they share, and the slot table a caller keeps for a service.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use nethook::firewall::{
    self, Elements, MemberChange, Proto, Service, ServicePort, ServicePublish, Slot,
};

pub const SERVER: &str = r#"import socket,sys,threading
name=sys.argv[1].encode()
def tcp():
    s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
    s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0);s.bind(('::',8080));s.listen(256)
    while True:
        c,a=s.accept();c.sendall(name+b'\n');c.close()
def udp():
    s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)
    s.bind(('::',5353))
    while True:
        d,a=s.recvfrom(100);s.sendto(name,a)
threading.Thread(target=udp,daemon=True).start();tcp()"#;

/// `n` connections (or UDP exchanges from fresh ports), one answer per line: the member's
/// name, REFUSED, TIMEOUT or ERR.
pub const CLIENT: &str = r#"import socket,sys
addr,port,proto,n=sys.argv[1],int(sys.argv[2]),sys.argv[3],int(sys.argv[4])
fam=socket.AF_INET6 if ':' in addr else socket.AF_INET
for i in range(n):
    try:
        c=socket.socket(fam,socket.SOCK_STREAM if proto=='tcp' else socket.SOCK_DGRAM);c.settimeout(2)
        c.connect((addr,port))
        if proto=='udp':
            # As real UDP clients do, ask again once: a first datagram may wait on neighbour
            # discovery, or be dropped by a loaded machine.
            c.settimeout(1)
            for attempt in range(2):
                c.send(b'x')
                try: print(c.recv(100).decode().strip()); break
                except socket.timeout:
                    if attempt: raise
            c.close(); continue
        print(c.recv(100).decode().strip());c.close()
    except ConnectionRefusedError: print('REFUSED')
    except socket.timeout: print('TIMEOUT')
    except OSError as e: print('ERR',e.errno)"#;

pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 10);
pub const VIP6: &str = "fd89::10";

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Bridge br0 (10.88.0.1/24, fd88::1/64), forwarding on, routes to the VIP ranges, and the
/// firewall's per-network elements for it.
pub fn network() {
    sh("ip link add br0 type bridge && ip addr add 10.88.0.1/24 dev br0 && ip addr add fd88::1/64 dev br0 nodad && ip link set br0 up");
    sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    sh("ip route add 10.89.0.0/24 dev br0 && ip -6 route add fd89::/64 dev br0");
    assert!(firewall::ensure_skeleton().unwrap());
    firewall::add(&Elements {
        masq4: vec!["10.88.0.0/24".parse().unwrap()],
        masq6: vec!["fd88::/64".parse().unwrap()],
        bridges: vec!["br0".into()],
        ..Elements::default()
    })
    .unwrap();
}

/// A fake container `n` on br0 (10.88.0.n, fd88::n; host veth `vsvcN`, no anti-spoofing:
/// not an nh* port), serving its name when `serve`, its bridge port in hairpin mode (the
/// kernel side of a member reaching its own VIP, set by the attach code in nethook).
pub struct Box_ {
    pub c: FakeContainer,
    pub n: u8,
    _server: Option<Server>,
}

impl Box_ {
    pub fn new(n: u8, name: &str, serve: bool) -> Self {
        let c = FakeContainer::start(name);
        sh(&format!(
            "ip link add vsvc{n} type veth peer name eth0 netns {} && ip link set vsvc{n} master br0 up && ip link set vsvc{n} type bridge_slave hairpin on",
            c.pid()
        ));
        c.sh(&format!(
            "ip link set lo up && ip link set eth0 up && ip addr add 10.88.0.{n}/24 dev eth0 && ip addr add fd88::{n}/64 dev eth0 nodad && ip route add default via 10.88.0.1 && ip -6 route add default via fd88::1"
        ));
        let server = serve.then(|| {
            let s = Server(
                std::process::Command::new("nsenter")
                    .args([
                        "-t",
                        &c.pid().to_string(),
                        "-n",
                        "python3",
                        "-c",
                        SERVER,
                        name,
                    ])
                    .spawn()
                    .expect("spawn server"),
            );
            // Both sockets: the UDP one is bound by a thread of its own, which a loaded
            // machine may run after the TCP listener is up.
            wait_until(10, "member server", || {
                c.sh_ok("ss -ltn | grep -q :8080 && ss -lun | grep -q :5353")
            });
            s
        });
        Box_ {
            c,
            n,
            _server: server,
        }
    }

    pub fn slot(&self, slot: u32) -> Slot {
        Slot {
            slot,
            v4: Some(Ipv4Addr::new(10, 88, 0, self.n)),
            v6: Some(v6(&format!("fd88::{}", self.n))),
        }
    }

    pub fn prefix(&self) -> String {
        ns(&self.c)
    }
}

/// Runs the client from `prefix` ("" = the host): the answers, counted.
pub fn ask(prefix: &str, addr: &str, port: u16, proto: &str, n: u32) -> BTreeMap<String, u32> {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("exec {prefix} python3 -c \"$NH_PY\" {addr} {port} {proto} {n}"),
        ])
        .env("NH_PY", CLIENT)
        .output()
        .expect("run client");
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

pub fn web(affinity: Option<u32>) -> Service {
    Service {
        name: "web".into(),
        vip4: Some(VIP4),
        vip6: Some(v6(VIP6)),
        ports: vec![
            ServicePort {
                proto: Proto::Tcp,
                port: 80,
                target_port: 8080,
            },
            ServicePort {
                proto: Proto::Udp,
                port: 53,
                target_port: 5353,
            },
        ],
        publish: vec![],
        affinity,
    }
}

/// The slot table a caller keeps, and the changes it computes (join: slot N; leave of slot k:
/// the last member moves into k).
pub struct Members {
    pub service: Service,
    pub slots: Vec<Slot>,
}

impl Members {
    pub fn join(&mut self, b: &Box_) -> MemberChange {
        let slot = b.slot(self.slots.len() as u32);
        self.slots.push(slot);
        MemberChange {
            service: self.service.clone(),
            after: self.slots.len() as u32,
            set: vec![slot],
            unset: vec![],
        }
    }

    pub fn leave(&mut self, b: &Box_) -> MemberChange {
        let k = self
            .slots
            .iter()
            .position(|s| s.v4 == b.slot(0).v4)
            .expect("a member");
        let last = self.slots.pop().expect("a member");
        let mut set = vec![];
        if (k as u32) < last.slot {
            self.slots[k] = Slot {
                slot: k as u32,
                ..last
            };
            set.push(self.slots[k]);
        }
        MemberChange {
            service: self.service.clone(),
            after: self.slots.len() as u32,
            set,
            unset: vec![last.slot],
        }
    }
}

pub fn change(c: MemberChange) -> Elements {
    Elements {
        services: vec![c],
        ..Elements::default()
    }
}

/// Every answer came from a member (`mN`), none is an error or a timeout.
pub fn is_member(counts: &BTreeMap<String, u32>) -> bool {
    !counts.is_empty() && counts.keys().all(|k| k.starts_with('m'))
}

pub fn names(counts: &BTreeMap<String, u32>) -> Vec<&str> {
    counts.keys().map(String::as_str).collect()
}

pub fn publish_web() -> Service {
    Service {
        publish: vec![
            ServicePublish {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8088,
                target_port: 8080,
            },
            ServicePublish {
                host_ip: Some("192.168.77.1".parse().unwrap()),
                proto: Proto::Tcp,
                host_port: 9099,
                target_port: 8080,
            },
        ],
        ..web(None)
    }
}

impl Members {
    /// The change a join would send, without recording it.
    pub fn clone_join(&self, b: &Box_) -> MemberChange {
        let mut copy = Members {
            service: self.service.clone(),
            slots: self.slots.clone(),
        };
        copy.join(b)
    }
}
