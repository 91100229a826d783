//! Privileged tests of services in nftables (issue 22, design P): fake containers (processes in
//! their own netns on a bridge) serve their own name on TCP 8080 and UDP 5353, a client reaches
//! them through a VIP (10.89.0.10 / fd89::10, ports 80/tcp and 53/udp), and member changes ride
//! in `firewall::add`/`firewall::delete` batches as the hooks send them. Each test runs in a
//! throwaway network namespace (`sandbox`), never the machine's own.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use nethook::firewall::{
    self, Elements, FirewallError, MemberChange, Proto, Service, ServicePort, ServicePublish, Slot,
};

const SERVER: &str = r#"import socket,sys,threading
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
const CLIENT: &str = r#"import socket,sys
addr,port,proto,n=sys.argv[1],int(sys.argv[2]),sys.argv[3],int(sys.argv[4])
fam=socket.AF_INET6 if ':' in addr else socket.AF_INET
for i in range(n):
    try:
        c=socket.socket(fam,socket.SOCK_STREAM if proto=='tcp' else socket.SOCK_DGRAM);c.settimeout(2)
        c.connect((addr,port))
        if proto=='udp': c.send(b'x')
        print(c.recv(100).decode().strip());c.close()
    except ConnectionRefusedError: print('REFUSED')
    except socket.timeout: print('TIMEOUT')
    except OSError as e: print('ERR',e.errno)"#;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 10);
const VIP6: &str = "fd89::10";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Bridge br0 (10.88.0.1/24, fd88::1/64), forwarding on, routes to the VIP ranges, and the
/// firewall's per-network elements for it.
fn network() {
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
struct Box_ {
    c: FakeContainer,
    n: u8,
    _server: Option<Server>,
}

impl Box_ {
    fn new(n: u8, name: &str, serve: bool) -> Self {
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
            wait_until(10, "member server", || c.sh_ok("ss -ltn | grep -q :8080"));
            s
        });
        Box_ {
            c,
            n,
            _server: server,
        }
    }

    fn slot(&self, slot: u32) -> Slot {
        Slot {
            slot,
            v4: Some(Ipv4Addr::new(10, 88, 0, self.n)),
            v6: Some(v6(&format!("fd88::{}", self.n))),
        }
    }

    fn prefix(&self) -> String {
        ns(&self.c)
    }
}

/// Runs the client from `prefix` ("" = the host): the answers, counted.
fn ask(prefix: &str, addr: &str, port: u16, proto: &str, n: u32) -> BTreeMap<String, u32> {
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

fn web(affinity: Option<u32>) -> Service {
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
struct Members {
    service: Service,
    slots: Vec<Slot>,
}

impl Members {
    fn join(&mut self, b: &Box_) -> MemberChange {
        let slot = b.slot(self.slots.len() as u32);
        self.slots.push(slot);
        MemberChange {
            service: self.service.clone(),
            after: self.slots.len() as u32,
            set: vec![slot],
            unset: vec![],
        }
    }

    fn leave(&mut self, b: &Box_) -> MemberChange {
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

fn change(c: MemberChange) -> Elements {
    Elements {
        services: vec![c],
        ..Elements::default()
    }
}

fn names(counts: &BTreeMap<String, u32>) -> Vec<&str> {
    counts.keys().map(String::as_str).collect()
}

#[test]
fn vip_balances_over_members_refuses_without_and_drops_a_leaver_at_once() {
    sandbox(
        "vip_balances_over_members_refuses_without_and_drops_a_leaver_at_once",
        || {
            network();
            let m: Vec<Box_> = (1..=3)
                .map(|i| Box_::new(10 + i, &format!("m{i}"), true))
                .collect();
            let client = Box_::new(20, "client", false);
            let cp = client.prefix();
            let mut members = Members {
                service: web(None),
                slots: vec![],
            };
            firewall::create_service(&members.service).unwrap();
            firewall::create_service(&members.service).expect_err("created twice");

            // No members: refused at once, TCP and UDP, both families, from a container and the
            // host. The host's own UDP is rejected in output, before it leaves: its send fails
            // at once with EPERM (the ICMP error cannot reach a datagram that was never sent).
            for (prefix, addr) in [
                (&cp[..], "10.89.0.10"),
                (&cp[..], VIP6),
                ("", "10.89.0.10"),
                ("", VIP6),
            ] {
                assert_eq!(
                    names(&ask(prefix, addr, 80, "tcp", 2)),
                    ["REFUSED"],
                    "{prefix} -> {addr}"
                );
                let udp = if prefix.is_empty() {
                    "ERR 1"
                } else {
                    "REFUSED"
                };
                assert_eq!(
                    names(&ask(prefix, addr, 53, "udp", 2)),
                    [udp],
                    "{prefix} -> {addr} udp"
                );
            }

            for b in &m {
                firewall::add(&change(members.join(b))).unwrap();
            }
            for addr in ["10.89.0.10", VIP6] {
                let got = ask(&cp, addr, 80, "tcp", 45);
                assert_eq!(
                    names(&got),
                    ["m1", "m2", "m3"],
                    "all three members answer {addr}: {got:?}"
                );
                let got = ask(&cp, addr, 53, "udp", 45);
                assert_eq!(names(&got), ["m1", "m2", "m3"], "udp {addr}: {got:?}");
                let got = ask("", addr, 80, "tcp", 45);
                assert_eq!(
                    names(&got),
                    ["m1", "m2", "m3"],
                    "from the host {addr}: {got:?}"
                );
            }
            // Hairpin: a member reaches its own service, itself included.
            let got = ask(&m[0].prefix(), "10.89.0.10", 80, "tcp", 45);
            assert_eq!(names(&got), ["m1", "m2", "m3"], "hairpin: {got:?}");
            let got = ask(&m[0].prefix(), VIP6, 80, "tcp", 45);
            assert_eq!(names(&got), ["m1", "m2", "m3"], "hairpin IPv6: {got:?}");

            // m1 (slot 0) leaves while it still serves: from the moment delete returns, no new
            // connection reaches it.
            firewall::delete(&change(members.leave(&m[0]))).unwrap();
            for addr in ["10.89.0.10", VIP6] {
                let got = ask(&cp, addr, 80, "tcp", 45);
                assert_eq!(names(&got), ["m2", "m3"], "m1 left ({addr}): {got:?}");
            }
            // The same change again (a retry) changes nothing.
            let again = MemberChange {
                service: members.service.clone(),
                after: 2,
                set: vec![members.slots[0]],
                unset: vec![2],
            };
            firewall::delete(&change(again)).unwrap();
            assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 30)), ["m2", "m3"]);

            // Everyone leaves: refused again.
            for i in [1, 2] {
                firewall::delete(&change(members.leave(&m[i]))).unwrap();
            }
            assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 3)), ["REFUSED"]);
            assert_eq!(names(&ask(&cp, VIP6, 53, "udp", 3)), ["REFUSED"]);

            // A rollback of the last leave is the inverse change: m3 is back alone.
            firewall::add(&change(members.join(&m[2]))).unwrap();
            assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 10)), ["m3"]);

            assert!(
                firewall::service_destroys_sent() > 0,
                "this kernel destroys"
            );
            firewall::delete_service(&members.service).unwrap();
            firewall::delete_service(&members.service).unwrap();
            let table = sh("nft list table inet nethook");
            assert!(!table.contains("svc-web"), "service objects gone:\n{table}");
            assert!(
                !table.contains("10.89.0.10"),
                "dispatch elements gone:\n{table}"
            );
            // A member change for a service that is gone fails the container's batch.
            let e = firewall::add(&change(members.join(&m[0]))).unwrap_err();
            assert!(e.to_string().contains("svc-web"), "{e}");
            drop(client);
        },
    );
}

fn publish_web() -> Service {
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

#[test]
fn published_service_balances_and_affinity_sticks() {
    sandbox("published_service_balances_and_affinity_sticks", || {
        network();
        // An outside host on up0 (192.168.77.0/24), the sandbox host is 192.168.77.1.
        let outside = FakeContainer::start("outside");
        sh(&format!("ip link add up0 type veth peer name eth0 netns {} && ip addr add 192.168.77.1/24 dev up0 && ip link set up0 up", outside.pid()));
        outside.sh("ip link set lo up && ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0 && ip route add default via 192.168.77.1");
        let op = ns(&outside);
        let m: Vec<Box_> = (1..=3)
            .map(|i| Box_::new(10 + i, &format!("m{i}"), true))
            .collect();
        let client = Box_::new(20, "client", false);
        let mut members = Members {
            service: publish_web(),
            slots: vec![],
        };
        firewall::create_service(&members.service).unwrap();
        // Published host ports of a service without members are closed ports.
        assert_eq!(
            names(&ask(&op, "192.168.77.1", 8088, "tcp", 2)),
            ["REFUSED"]
        );
        for b in &m {
            firewall::add(&change(members.join(b))).unwrap();
        }
        for (prefix, addr, port) in [
            (&op[..], "192.168.77.1", 8088),
            (&op[..], "192.168.77.1", 9099),
            (&client.prefix()[..], "10.88.0.1", 8088),
            ("", "192.168.77.1", 8088),
        ] {
            let got = ask(prefix, addr, port, "tcp", 45);
            assert_eq!(
                names(&got),
                ["m1", "m2", "m3"],
                "{prefix} -> {addr}:{port}: {got:?}"
            );
        }
        // 9099 is published on 192.168.77.1 only.
        assert_ne!(
            names(&ask(&client.prefix(), "10.88.0.1", 9099, "tcp", 1)),
            ["m1"]
        );
        // Another service cannot take a taken host port or VIP port; nothing of it stays.
        let mut other = publish_web();
        other.name = "other".into();
        other.vip4 = Some(Ipv4Addr::new(10, 89, 0, 11));
        other.vip6 = None;
        let e = firewall::create_service(&other).unwrap_err();
        assert!(matches!(e, FirewallError::ServiceTaken { .. }), "{e}");
        assert!(e.to_string().contains("host port 8088/tcp"), "{e}");
        other.publish.clear();
        other.vip4 = Some(VIP4);
        let e = firewall::create_service(&other).unwrap_err();
        assert!(e.to_string().contains("VIP 10.89.0.10 port 80/tcp"), "{e}");
        assert!(!sh("nft list table inet nethook").contains("svc-other"));
        firewall::delete_service(&members.service).unwrap();

        // Affinity: every connection of one client goes to one member, IPv4 and IPv6, host too.
        let mut sticky = Members {
            service: web(Some(600)),
            slots: vec![],
        };
        firewall::create_service(&sticky.service).unwrap();
        for b in &m {
            firewall::add(&change(sticky.join(b))).unwrap();
        }
        for (prefix, addr) in [
            (&client.prefix()[..], "10.89.0.10"),
            (&client.prefix()[..], VIP6),
            ("", "10.89.0.10"),
        ] {
            let got = ask(prefix, addr, 80, "tcp", 30);
            assert_eq!(got.len(), 1, "one member for {prefix} -> {addr}: {got:?}");
        }
        // The member a client sticks to leaves: it goes to one of the others, and sticks again.
        let first = ask(&client.prefix(), "10.89.0.10", 80, "tcp", 1);
        let name = names(&first)[0].to_owned();
        let leaver = &m[name[1..].parse::<usize>().unwrap() - 1];
        firewall::delete(&change(sticky.leave(leaver))).unwrap();
        let got = ask(&client.prefix(), "10.89.0.10", 80, "tcp", 30);
        assert_eq!(got.len(), 1, "sticks again: {got:?}");
        assert!(
            !got.contains_key(&name),
            "not to the leaver {name}: {got:?}"
        );
    });
}

#[test]
fn flush_ruleset_then_skeleton_and_restore_bring_services_back() {
    sandbox(
        "flush_ruleset_then_skeleton_and_restore_bring_services_back",
        || {
            network();
            let m: Vec<Box_> = (1..=2)
                .map(|i| Box_::new(10 + i, &format!("m{i}"), true))
                .collect();
            let client = Box_::new(20, "client", false);
            let cp = client.prefix();
            let mut members = Members {
                service: publish_web(),
                slots: vec![],
            };
            let mut empty = web(None);
            empty.name = "empty".into();
            empty.vip4 = Some(Ipv4Addr::new(10, 89, 0, 12));
            empty.vip6 = None;
            firewall::create_service(&members.service).unwrap();
            firewall::create_service(&empty).unwrap();
            for b in &m {
                firewall::add(&change(members.join(b))).unwrap();
            }
            let before = sh("nft list table inet nethook");
            sh("nft flush ruleset");
            // The next member change fails (the hook then re-creates and restores).
            assert!(firewall::add(&change(members.clone_join(&m[0]))).is_err());
            assert!(firewall::ensure_skeleton().unwrap());
            firewall::add(&Elements {
                masq4: vec!["10.88.0.0/24".parse().unwrap()],
                masq6: vec!["fd88::/64".parse().unwrap()],
                bridges: vec!["br0".into()],
                ..Elements::default()
            })
            .unwrap();
            let all = vec![
                (members.service.clone(), members.slots.clone()),
                (empty.clone(), vec![]),
            ];
            firewall::restore_services(&all).unwrap();
            firewall::restore_services(&all).unwrap();
            assert_eq!(
                sh("nft list table inet nethook"),
                before,
                "restored as it was"
            );
            assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 30)), ["m1", "m2"]);
            assert_eq!(names(&ask(&cp, "10.89.0.12", 80, "tcp", 2)), ["REFUSED"]);
        },
    );
}

impl Members {
    /// The change a join would send, without recording it.
    fn clone_join(&self, b: &Box_) -> MemberChange {
        let mut copy = Members {
            service: self.service.clone(),
            slots: self.slots.clone(),
        };
        copy.join(b)
    }
}

#[test]
fn bad_services_are_refused_before_any_batch() {
    sandbox("bad_services_are_refused_before_any_batch", || {
        assert!(firewall::ensure_skeleton().unwrap());
        let before = firewall::batches_sent();
        for (s, why) in [
            (
                Service {
                    name: "Web".into(),
                    ..web(None)
                },
                "DNS label",
            ),
            (
                Service {
                    name: "-web".into(),
                    ..web(None)
                },
                "DNS label",
            ),
            (
                Service {
                    name: "a".repeat(64),
                    ..web(None)
                },
                "DNS label",
            ),
            (
                Service {
                    vip4: None,
                    vip6: None,
                    ..web(None)
                },
                "no VIP",
            ),
            (
                Service {
                    ports: vec![],
                    ..web(None)
                },
                "no port",
            ),
        ] {
            let e = firewall::create_service(&s).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        let mut clash = web(None);
        clash.publish.push(ServicePublish {
            host_ip: None,
            proto: Proto::Tcp,
            host_port: 80,
            target_port: 9,
        });
        let e = firewall::create_service(&clash).unwrap_err();
        assert!(
            e.to_string()
                .contains("port 80/tcp leads to target port 8080 and to 9"),
            "{e}"
        );
        let e = firewall::add(&change(MemberChange {
            service: web(None),
            after: 1,
            set: vec![Slot {
                slot: 1,
                v4: Some(VIP4),
                v6: None,
            }],
            unset: vec![],
        }))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("slot 1 is set but the service has 1 members"),
            "{e}"
        );
        assert_eq!(firewall::batches_sent(), before, "nothing was sent");
    });
}

/// Debian 12's kernel (6.1) has no NFT_MSG_DESTROYSETELEM: member changes then delete only
/// what the maps hold (read back first), and stay idempotent.
#[test]
fn member_changes_work_without_destroysetelem() {
    sandbox("member_changes_work_without_destroysetelem", || {
        firewall::assume_no_destroy();
        network();
        let m: Vec<Box_> = (1..=2)
            .map(|i| Box_::new(10 + i, &format!("m{i}"), true))
            .collect();
        let client = Box_::new(20, "client", false);
        let cp = client.prefix();
        let mut members = Members {
            service: web(Some(60)),
            slots: vec![],
        };
        firewall::create_service(&members.service).unwrap();
        assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 2)), ["REFUSED"]);
        for b in &m {
            let c = members.join(b);
            firewall::add(&change(c.clone())).unwrap();
            firewall::add(&change(c)).unwrap();
        }
        let got = ask(&cp, VIP6, 53, "udp", 3);
        assert_eq!(got.len(), 1, "affinity: {got:?}");
        let c = members.leave(&m[0]);
        firewall::delete(&change(c.clone())).unwrap();
        firewall::delete(&change(c)).unwrap();
        assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 20)), ["m2"]);
        firewall::delete(&change(members.leave(&m[1]))).unwrap();
        assert_eq!(names(&ask(&cp, "10.89.0.10", 80, "tcp", 2)), ["REFUSED"]);
        let all = vec![(members.service.clone(), vec![m[0].slot(0), m[1].slot(1)])];
        firewall::restore_services(&all).unwrap();
        firewall::restore_services(&all).unwrap();
        let m4 = sh("nft list map inet nethook svc-web-m4");
        assert!(
            m4.contains("10.88.0.11") && m4.contains("10.88.0.12"),
            "{m4}"
        );
        // Affinity: the client sticks to the one member it gets.
        assert_eq!(ask(&cp, "10.89.0.10", 80, "tcp", 20).len(), 1);
        firewall::delete_service(&members.service).unwrap();
        firewall::delete_service(&members.service).unwrap();
        assert!(!sh("nft list table inet nethook").contains("svc-web"));
        assert_eq!(firewall::service_destroys_sent(), 0, "plain deletes only");
    });
}
