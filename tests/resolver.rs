//! The resolver (`nethook dns`) end to end, in a sandbox: containers on two networks ask
//! it, an upstream in another netns answers what it forwards. See resolver_lab for the bench.

mod common;
mod resolver_lab;

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nethook::resolver::{deliver, Delivery, Update, Zone};

use common::{sh, sh_ok, wait_until};
use resolver_lab::*;

#[test]
fn containers_get_their_own_networks_names_and_never_anothers() {
    sandbox!(
        "containers_get_their_own_networks_names_and_never_anothers",
        {
            let lab = Lab::new("dns-names");
            lab.start(&two_zones());
            let a = lab.ask1("web", RecordType::A).unwrap();
            assert_eq!(data(&a), ["10.88.0.10"]);
            assert_eq!(a.answers[0].ttl, 0);
            assert!(a.metadata.authoritative);
            assert_eq!(
                data(&lab.ask1("WWW.Net1.", RecordType::AAAA).unwrap()),
                ["fd00:88::10"]
            );
            let ptr = lab
                .ask1("10.0.88.10.in-addr.arpa", RecordType::PTR)
                .unwrap();
            assert_eq!(data(&ptr), ["web.net1.", "www.net1."]);
            // Over IPv6 and over TCP, the same zone.
            let v6 = ask_in(lab.c1.pid(), GW1_6, "web.net1", RecordType::A, false).unwrap();
            assert_eq!(data(&v6), ["10.88.0.10"]);
            let tcp = ask_in(lab.c1.pid(), GW1, "web.net1", RecordType::A, true).unwrap();
            assert_eq!(data(&tcp), ["10.88.0.10"]);
            // The network's own domain is never forwarded.
            let nx = lab.ask1("nobody.net1", RecordType::A).unwrap();
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
            // net2's names are not answered on net1's address: they go upstream (NXDOMAIN there).
            for name in ["db", "db.net2"] {
                let m = lab.ask1(name, RecordType::A).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
                assert!(m.answers.is_empty());
            }
            let asked = lab.asked.lock().unwrap().clone();
            assert!(
                asked.contains(&"db.".to_owned()) && asked.contains(&"db.net2.".to_owned()),
                "{asked:?}"
            );
            assert!(
                !asked
                    .iter()
                    .any(|n| n.contains("net1") || n.starts_with("web")),
                "{asked:?}"
            );
            // ... and net2's container gets them from net2's address.
            let db = ask_in(lab.c2.pid(), GW2, "db.net2", RecordType::A, false).unwrap();
            assert_eq!(data(&db), ["10.89.0.10"]);
            let web = ask_in(lab.c2.pid(), GW2, "web", RecordType::A, false).unwrap();
            assert!(web.answers.is_empty());
            // c1 reaches net2's gateway too (it is a host address): refused there, for
            // net2's names and for forwarding alike, over UDP and TCP.
            for (name, tcp) in [("db", false), ("db.net2", true), ("example.com", false)] {
                let m = ask_in(lab.c1.pid(), GW2, name, RecordType::A, tcp).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
                assert!(m.answers.is_empty());
            }
            // It listens on the gateways only, never on a wildcard.
            let bound = sh("cat /proc/net/udp /proc/net/udp6 /proc/net/tcp /proc/net/tcp6");
            assert!(!bound.contains("00000000:0035"), "{bound}");
            assert!(
                !bound.contains("00000000000000000000000000000000:0035"),
                "{bound}"
            );
        }
    );
}

#[test]
fn forwarded_answers_keep_the_upstreams_rcode_tc_and_ttl_over_udp_and_tcp() {
    sandbox!(
        "forwarded_answers_keep_the_upstreams_rcode_tc_and_ttl_over_udp_and_tcp",
        {
            let lab = Lab::new("dns-fwd");
            lab.start(&two_zones());
            let m = lab.ask1("example.com", RecordType::A).unwrap();
            assert_eq!(data(&m), ["93.184.216.34"]);
            assert_eq!(m.answers[0].ttl, 300);
            assert!(!m.metadata.authoritative);
            let nx = lab.ask1("nx.example", RecordType::A).unwrap();
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
            let refused = lab.ask1("refuse.example", RecordType::A).unwrap();
            assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
            let tc = lab.ask1("big.example", RecordType::A).unwrap();
            assert!(tc.metadata.truncation && tc.answers.is_empty());
            let big = ask_in(lab.c1.pid(), GW1, "big.example", RecordType::A, true).unwrap();
            assert!(!big.metadata.truncation);
            assert_eq!(big.answers.len(), 100);
            // The stub named first in resolv.conf was skipped, not tried and timed out.
            let t0 = Instant::now();
            lab.ask1("example.com", RecordType::A).unwrap();
            assert!(t0.elapsed() < Duration::from_millis(500));
        }
    );
}

#[test]
fn a_changed_resolv_conf_is_read_again_and_no_upstream_means_servfail() {
    sandbox!(
        "a_changed_resolv_conf_is_read_again_and_no_upstream_means_servfail",
        {
            let lab = Lab::new("dns-conf");
            lab.start(&two_zones());
            assert_eq!(
                data(&lab.ask1("example.com", RecordType::A).unwrap()),
                ["93.184.216.34"]
            );
            // Written in place (the bind mount pins the inode): size and mtime change.
            std::fs::write(&lab.resolv_conf, format!("nameserver {UPSTREAM_B}\n")).unwrap();
            wait_until(3, "the new upstream", || {
                lab.ask1("example.com", RecordType::A).map(|m| data(&m))
                    == Some(vec!["192.0.2.99".into()])
            });
            // Only the stub left, and no systemd-resolved list: SERVFAIL, said once in the log.
            std::fs::write(&lab.resolv_conf, "nameserver 127.0.0.53\n").unwrap();
            wait_until(3, "no upstream", || {
                lab.ask1("example.com", RecordType::A)
                    .is_some_and(|m| m.metadata.response_code == ResponseCode::ServFail)
            });
            let log = lab.log().join("\n");
            assert_eq!(log.matches("no upstream server").count(), 1, "{log}");
            // systemd-resolved's own list is the fallback behind its stub.
            sh("mkdir -p /run/systemd/resolve");
            std::fs::write(
                "/run/systemd/resolve/resolv.conf",
                format!("nameserver {UPSTREAM}\n"),
            )
            .unwrap();
            wait_until(3, "the systemd-resolved upstream", || {
                lab.ask1("example.com", RecordType::A).map(|m| data(&m))
                    == Some(vec!["93.184.216.34".into()])
            });
            // Local names never depended on any of it.
            assert_eq!(
                data(&lab.ask1("web", RecordType::A).unwrap()),
                ["10.88.0.10"]
            );
        }
    );
}

#[test]
fn start_deliver_exit_then_a_killed_resolver_is_not_running_and_starts_again() {
    sandbox!(
        "start_deliver_exit_then_a_killed_resolver_is_not_running_and_starts_again",
        {
            let lab = Lab::new("dns-life");
            let run = lab.nh.run_dir();
            assert_eq!(deliver(&run, &[]).unwrap(), Delivery::NotRunning);
            lab.start(&two_zones());
            let pid = lab.pid().unwrap();
            // Its own session, stdio on /dev/null, and no descriptor but its own sockets.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let sid: u32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(sid, pid);
            for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .flatten()
            {
                let link = std::fs::read_link(fd.path()).unwrap();
                let l = link.to_string_lossy();
                assert!(
                    l == "/dev/null" || l.starts_with("socket:["),
                    "fd {:?} -> {l}",
                    fd.file_name()
                );
            }
            let log = lab.log().join("\n");
            assert!(log.contains("started without a systemd scope"), "{log}");
            // A new entry answers as soon as deliver returns.
            let add = Update::Upsert {
                network: "net1".into(),
                entry: entry("c3", &["api"], &["10.88.0.30"]),
            };
            assert_eq!(lab.deliver(&[add]), "applied");
            assert_eq!(
                data(&lab.ask1("api.net1", RecordType::A).unwrap()),
                ["10.88.0.30"]
            );
            // No entry left anywhere: it says so, exits, and its files are gone.
            let all = [
                Update::Remove {
                    network: "net1".into(),
                    key: "c1".into(),
                },
                Update::Remove {
                    network: "net1".into(),
                    key: "c3".into(),
                },
                Update::Remove {
                    network: "net2".into(),
                    key: "c2".into(),
                },
            ];
            assert_eq!(lab.deliver(&all), "exited");
            assert!(!run.join("dns/ctl").exists() && !run.join("dns/pid").exists());
            wait_until(3, "the resolver to exit", || gone(pid));
            assert_eq!(lab.deliver(&[]), "not-running");
            // Killed: the next deliver finds nobody, and start works again.
            lab.start(&two_zones());
            let pid = lab.pid().unwrap();
            sh(&format!("kill -9 {pid}"));
            wait_until(3, "the kill", || gone(pid));
            assert_eq!(lab.deliver(&[]), "not-running");
            lab.start(&two_zones());
            assert_ne!(lab.pid().unwrap(), pid);
            assert_eq!(
                data(&lab.ask1("web", RecordType::A).unwrap()),
                ["10.88.0.10"]
            );
        }
    );
}

#[test]
fn queries_running_during_1000_updates_are_all_answered() {
    sandbox!("queries_running_during_1000_updates_are_all_answered", {
        let lab = Lab::new("dns-churn");
        lab.start(&two_zones());
        let run = lab.nh.run_dir();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pid, flag) = (lab.c1.pid(), stop.clone());
        let asker = std::thread::spawn(move || {
            in_ns(pid, move || {
                let (mut ok, mut lost) = (0, 0);
                while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    match ask(GW1.parse().unwrap(), "web.net1", RecordType::A, false) {
                        Some(m) if data(&m) == ["10.88.0.10"] => ok += 1,
                        _ => lost += 1,
                    }
                }
                (ok, lost)
            })
        });
        for i in 0..1000 {
            let u = if i % 2 == 0 {
                Update::Upsert {
                    network: "net1".into(),
                    entry: entry("churn", &[&format!("c{i}")], &["10.88.0.99"]),
                }
            } else {
                Update::Remove {
                    network: "net1".into(),
                    key: "churn".into(),
                }
            };
            assert_eq!(deliver(&run, &[u]).unwrap(), Delivery::Applied);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (ok, lost) = asker.join().unwrap();
        assert_eq!(lost, 0, "{ok} answered");
        assert!(ok > 100, "only {ok} queries ran during the updates");
    });
}

#[test]
fn a_port_held_by_another_program_is_named_and_leaves_the_resolver_as_it_was() {
    sandbox!(
        "a_port_held_by_another_program_is_named_and_leaves_the_resolver_as_it_was",
        {
            let lab = Lab::new("dns-held");
            // Something like a default dnsmasq: UDP port 53 on every address.
            let holder = std::net::UdpSocket::bind("0.0.0.0:53").unwrap();
            let (ok, out, err) = lab.dns("start", &serde_json::to_string(&two_zones()).unwrap());
            assert!(!ok, "{out}");
            let me = std::process::id();
            assert!(
                err.contains(&format!("DNS for network net1 needs {GW1}:53/udp, but "))
                    && err.contains(&format!("(pid {me}) holds 0.0.0.0:53")),
                "{err}"
            );
            drop(holder);
            // A new network whose address is taken is refused, and nothing else changes.
            lab.start(&two_zones());
            sh("ip link add nh3 type bridge && ip link set nh3 up && ip addr add 10.90.0.1/24 dev nh3");
            let holder = std::net::TcpListener::bind("10.90.0.1:53").unwrap();
            let zone3 = Update::Zone(Zone {
                network: "net3".into(),
                listen: vec!["10.90.0.1".parse().unwrap()],
                clients: vec![],
                entries: vec![entry("c9", &["x"], &["10.90.0.9"])],
            });
            let drop2 = Update::DropZone {
                network: "net2".into(),
            };
            let e = deliver(&lab.nh.run_dir(), &[drop2.clone(), zone3.clone()]).unwrap_err();
            assert!(
                e.to_string().contains("10.90.0.1:53/tcp, but")
                    && e.to_string().contains(&format!("(pid {me})")),
                "{e}"
            );
            let db = ask_in(lab.c2.pid(), GW2, "db", RecordType::A, false).unwrap();
            assert_eq!(
                data(&db),
                ["10.89.0.10"],
                "net2 was dropped by a refused request"
            );
            drop(holder);
            // Dropping a zone closes its sockets (the address is free), adding it back binds again.
            assert_eq!(
                deliver(&lab.nh.run_dir(), &[drop2]).unwrap(),
                Delivery::Applied
            );
            drop(std::net::UdpSocket::bind(format!("{GW2}:53")).expect("net2's port freed"));
            assert_eq!(
                deliver(
                    &lab.nh.run_dir(),
                    &[Update::Zone(two_zones().zones[1].clone())]
                )
                .unwrap(),
                Delivery::Applied
            );
            let db = ask_in(lab.c2.pid(), GW2, "db", RecordType::A, false).unwrap();
            assert_eq!(data(&db), ["10.89.0.10"]);
            // An address on no interface yet (an IPv6 gateway during DAD) binds all the same.
            let early = Update::Zone(Zone {
                network: "net4".into(),
                listen: vec!["fd00:91::1".parse().unwrap(), "10.91.0.1".parse().unwrap()],
                clients: vec![],
                entries: vec![],
            });
            assert_eq!(
                deliver(&lab.nh.run_dir(), &[early]).unwrap(),
                Delivery::Applied
            );
        }
    );
}

#[test]
fn under_systemd_it_starts_in_its_own_scope_through_systemd_run() {
    sandbox!(
        "under_systemd_it_starts_in_its_own_scope_through_systemd_run",
        {
            if !std::path::Path::new("/usr/bin/systemd-run").is_file() {
                eprintln!("SKIP: no /usr/bin/systemd-run to bind a fake over");
                return;
            }
            let lab = Lab::new("dns-systemd");
            sh("mkdir -p /run/systemd/system");
            let fake = lab.nh.dirs.0.join("systemd-run");
            let args = lab.nh.dirs.0.join("systemd-run.args");
            // Records its arguments and execs what follows "--", as systemd-run --scope does.
            std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" > {}\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n", args.display()),
        )
        .unwrap();
            sh(&format!(
                "chmod 755 {0} && mount --bind {0} /usr/bin/systemd-run",
                fake.display()
            ));
            lab.start(&two_zones());
            let called = std::fs::read_to_string(&args).unwrap();
            assert!(
                called.starts_with("--scope --quiet --collect --unit nethook-dns-"),
                "{called}"
            );
            assert!(
                called.contains(" -- ")
                    && called.trim_end().ends_with(&format!(
                        "dns serve --run-dir {}",
                        lab.nh.run_dir().display()
                    )),
                "{called}"
            );
            assert_eq!(
                data(&lab.ask1("web", RecordType::A).unwrap()),
                ["10.88.0.10"]
            );
            assert!(lab.log().join("\n").contains(".scope"));
            // A systemd-run that fails (no D-Bus, say): the resolver starts without a scope.
            let pid = lab.pid().unwrap();
            sh(&format!("kill -9 {pid}"));
            wait_until(3, "the kill", || gone(pid));
            std::fs::write(&fake, "#!/bin/sh\necho 'Failed to start transient scope unit: Connection refused' >&2\nexit 1\n").unwrap();
            lab.start(&two_zones());
            assert_eq!(
                data(&lab.ask1("web", RecordType::A).unwrap()),
                ["10.88.0.10"]
            );
            let log = lab.log().join("\n");
            assert!(
                log.contains("Failed to start transient scope unit")
                    && log.contains("without a scope"),
                "{log}"
            );
            assert!(sh_ok("umount /usr/bin/systemd-run"));
        }
    );
}

/// The numbers for the report (printed; run the test binary by hand with --nocapture to
/// see them) and the two limits that must hold: nothing lost, RSS within 10 MiB.
#[test]
fn measure_latency_memory_and_delivery() {
    sandbox!("measure_latency_memory_and_delivery", {
        let lab = Lab::new("dns-measure");
        let mut snap = two_zones();
        for i in 0..1000 {
            snap.zones[0].entries.push(entry(
                &format!("{i:064x}"),
                &[&format!("c{i}"), &format!("alias{i}")],
                &[
                    &format!("10.88.{}.{}", 1 + i / 250, 2 + i % 250),
                    &format!("fd00:88::1:{i:x}"),
                ],
            ));
        }
        lab.start(&snap);
        let pid = lab.pid().unwrap();
        let rss_start = rss_kib(pid);
        let timed = |name: &'static str, n: usize| {
            in_ns(lab.c1.pid(), move || {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let t0 = Instant::now();
                    let m =
                        ask(GW1.parse().unwrap(), name, RecordType::A, false).expect("answered");
                    v.push(t0.elapsed());
                    assert!(!m.answers.is_empty(), "{name}");
                }
                percentiles(v)
            })
        };
        let (l50, l99) = timed("c500.net1", 2000);
        let (f50, f99) = timed("example.com", 2000);
        let (u50, u99) = in_ns(lab.up.pid(), || {
            let mut v = Vec::new();
            for _ in 0..2000 {
                let t0 = Instant::now();
                ask(
                    UPSTREAM.parse().unwrap(),
                    "example.com",
                    RecordType::A,
                    false,
                )
                .expect("upstream");
                v.push(t0.elapsed());
            }
            percentiles(v)
        });
        let rss_queries = rss_kib(pid);
        let run = lab.nh.run_dir();
        let time_deliver = |make: &dyn Fn(usize) -> Vec<Update>| {
            let mut v = Vec::new();
            for i in 0..200 {
                let u = make(i);
                let t0 = Instant::now();
                assert_eq!(deliver(&run, &u).unwrap(), Delivery::Applied);
                v.push(t0.elapsed());
            }
            percentiles(v)
        };
        // One entry changed while its zone holds 1 entry (net2) or 1001 (net1: 2002
        // names); then a whole zone of 10 or 2000 entries sent at once.
        let upsert = |net: &str, i: usize| Update::Upsert {
            network: net.into(),
            entry: entry("churn", &[&format!("n{i}")], &["10.89.0.77"]),
        };
        let (d1, d1_99) = time_deliver(&|i| vec![upsert("net2", i)]);
        let (d1000, d1000_99) = time_deliver(&|i| vec![upsert("net1", i)]);
        let mut zone10 = snap.zones[1].clone();
        zone10.entries = snap.zones[0].entries[..10].to_vec();
        let (z10, z10_99) = time_deliver(&|_| vec![Update::Zone(zone10.clone())]);
        let mut big = snap.zones[0].clone();
        for i in 1000..1999 {
            big.entries.push(entry(
                &format!("{i:064x}"),
                &[&format!("c{i}")],
                &[&format!("10.88.9.{}", i % 250)],
            ));
        }
        let (z2000, z2000_99) = time_deliver(&|_| vec![Update::Zone(big.clone())]);
        let rss_end = rss_kib(pid);
        eprintln!(
            "MEASURE local A udp p50 {l50} us p99 {l99} us | forwarded p50 {f50} us p99 {f99} us | upstream direct p50 {u50} us p99 {u99} us\n\
             MEASURE RSS KiB: 1001 entries at start {rss_start}, after 6000 queries {rss_queries}, after 800 deliveries {rss_end}\n\
             MEASURE deliver one upsert: zone of 1 p50 {d1} us p99 {d1_99} us, zone of 1001 p50 {d1000} us p99 {d1000_99} us\n\
             MEASURE deliver a whole zone: 10 entries p50 {z10} us p99 {z10_99} us, 2000 entries p50 {z2000} us p99 {z2000_99} us"
        );
        // Anonymous memory: what the resolver allocates, whatever the build (a debug
        // binary's text alone is several MiB of file pages).
        let anon = rss_anon_kib(pid);
        eprintln!("MEASURE RssAnon at the end {anon} KiB");
        assert!(anon <= 10 * 1024, "RssAnon {anon} KiB over 10 MiB");
        assert_eq!(
            data(&lab.ask1("c1998.net1", RecordType::A).unwrap()),
            ["10.88.9.248"]
        );
    });
}
