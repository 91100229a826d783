//! Privileged tests of services in nftables (issue 22, design P): fake containers (processes in
//! their own netns on a bridge) serve their own name on TCP 8080 and UDP 5353, a client reaches
//! them through a VIP (10.89.0.10 / fd89::10, ports 80/tcp and 53/udp), and member changes ride
//! in `firewall::add`/`firewall::delete` batches as the hooks send them. Each test runs in a
//! throwaway network namespace (`sandbox`), never the machine's own.

mod common;

use std::net::Ipv4Addr;

use common::services::*;
use common::*;
use nethook::firewall::{
    self, Elements, FirewallError, MemberChange, Proto, Service, ServicePublish, Slot,
};

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
        let got = ask(&client.prefix(), "10.88.0.1", 9099, "tcp", 3);
        assert!(
            !got.keys().any(|k| k.starts_with('m')),
            "9099 on another host address reached a member: {got:?}"
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
            assert!(is_member(&got), "{prefix} -> {addr}: {got:?}");
        }
        // The member a client sticks to leaves: it goes to one of the others, and sticks again.
        let first = ask(&client.prefix(), "10.89.0.10", 80, "tcp", 1);
        let name = names(&first)[0].to_owned();
        let leaver = &m[name[1..].parse::<usize>().unwrap() - 1];
        firewall::delete(&change(sticky.leave(leaver))).unwrap();
        let got = ask(&client.prefix(), "10.89.0.10", 80, "tcp", 30);
        assert_eq!(got.len(), 1, "sticks again: {got:?}");
        assert!(is_member(&got), "{got:?}");
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
            // The slot maps list as nft writes them (nethook gives them nft's typeof user data).
            assert!(
                before.contains("typeof numgen random mod 1 : ip daddr")
                    && before.contains("elements = { 0 : 10.88.0.11, 1 : 10.88.0.12 }"),
                "{before}"
            );
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
        assert!(is_member(&got), "affinity: {got:?}");
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

/// A member change at 1000 members costs what it costs at 2 (the batch's bytes are pinned by
/// a unit test; this measures the kernel's side and checks the result). Prints the medians.
#[test]
fn member_change_time_is_flat_in_members() {
    sandbox("member_change_time_is_flat_in_members", || {
        network();
        let fake = |k: u32| Slot {
            slot: k,
            v4: Some(Ipv4Addr::from(0x0a58_0000 + 0x100 + k)),
            v6: Some(format!("fd88::1:{k:x}").parse().unwrap()),
        };
        // As the hooks do: sockets stay open until exit, so a close does not wait for the
        // kernel's deferred free of what the commit deleted (an RCU grace period, ~10 ms).
        firewall::defer_netfilter_release();
        let median = |mut times: Vec<std::time::Duration>| {
            times.sort();
            times[times.len() / 2]
        };
        // Baseline: a container's published port added and deleted.
        let port = Elements {
            ports4: vec![nethook::firewall::PortMapping {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 9000,
                container_ip: Ipv4Addr::new(10, 88, 0, 2),
                container_port: 80,
            }],
            ..Elements::default()
        };
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            firewall::add(&port).unwrap();
            firewall::delete(&port).unwrap();
            times.push(t.elapsed() / 2);
        }
        let baseline = median(times);
        let mut medians = Vec::new();
        for n in [2u32, 1000] {
            let service = web(None);
            let slots: Vec<Slot> = (0..n).map(fake).collect();
            firewall::restore_services(&[(service.clone(), slots)]).unwrap();
            let join = MemberChange {
                service: service.clone(),
                after: n + 1,
                set: vec![fake(n)],
                unset: vec![],
            };
            let leave = MemberChange {
                service: service.clone(),
                after: n,
                set: vec![Slot { slot: 0, ..fake(n) }],
                unset: vec![n],
            };
            let mut times = Vec::new();
            for _ in 0..30 {
                let t = std::time::Instant::now();
                firewall::add(&change(join.clone())).unwrap();
                times.push(t.elapsed());
                assert!(
                    sh("nft list chain inet nethook svc-web").contains(&format!("mod {}", n + 1))
                );
                let t = std::time::Instant::now();
                firewall::delete(&change(leave.clone())).unwrap();
                times.push(t.elapsed());
            }
            medians.push(median(times));
            let m4 = sh("nft list map inet nethook svc-web-m4");
            assert_eq!(
                m4.matches(" : 10.88.").count(),
                n as usize,
                "{n} slots stay dense"
            );
            firewall::delete_service(&service).unwrap();
        }
        eprintln!(
            "median batch: port element {baseline:?}; member change at N=2 {:?}, at N=1000 {:?}",
            medians[0], medians[1]
        );
    });
}
