//! Privileged tests. Each test re-executes this test binary, running only itself, under
//! `unshare --net`: the scenario runs in a throwaway network namespace and never touches the
//! machine's own netns or nftables. The child refuses to run if its netns is PID 1's.
//! Skipped (with a message) when not root or when `unshare --net` is not possible.

mod common;

use std::net::Ipv4Addr;

use common::*;
use nethook::firewall::{self, Elements, FirewallError, PortMapping, PortMapping6, Proto, Source};
use nethook::kernel::conntrack;
use nethook::model::mac::Mac;

fn pm(
    host_ip: Option<[u8; 4]>,
    proto: Proto,
    host_port: u16,
    ip: [u8; 4],
    port: u16,
) -> PortMapping {
    PortMapping {
        host_ip: host_ip.map(Ipv4Addr::from),
        proto,
        host_port,
        container_ip: Ipv4Addr::from(ip),
        container_port: port,
    }
}

fn net(s: &str) -> ipnetwork::Ipv4Network {
    s.parse().unwrap()
}

#[test]
fn skeleton_matches_nft() {
    sandbox("skeleton_matches_nft", || {
        assert!(!firewall::table_exists().unwrap());
        assert!(firewall::ensure_skeleton().unwrap(), "created");
        assert!(
            !firewall::ensure_skeleton().unwrap(),
            "second call finds it"
        );
        let ours = sh("nft list table inet nethook");
        let ours_bridge = sh("nft list table bridge nethook");
        for needle in [
            "set masq4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n",
            "map ports4 {\n\t\ttype inet_proto . inet_service : ipv4_addr . inet_service\n",
            "map hports4 {\n\t\ttype ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service\n",
            "fib daddr type local jump publish comment",
            "ip saddr @masq4 ip daddr != @masq4 ip saddr . ip daddr != @nomasq4 masquerade comment",
            "set nomasq4 {\n\t\ttype ipv4_addr . ipv4_addr\n\t\tflags interval\n",
            "iif != \"lo\" ip daddr 127.0.0.0/8 drop comment \"CVE-2020-8558",
            "iifname \"nr*\" jump rantispoof comment",
            "iifname . ether saddr . ip saddr != @raddrs4 drop comment",
            "oifname \"nr*\" jump isolate comment",
            "iifname \"nr*\" ip saddr . ip daddr @intra4 accept comment",
        ] {
            assert!(ours.contains(needle), "missing {needle:?} in\n{ours}");
        }
        // The whole listing (sets, maps, chain types/hooks/priorities/policies, rules, comments) is
        // identical to what nft makes of the reference source.
        assert!(firewall::delete_table().unwrap());
        assert!(!firewall::delete_table().unwrap(), "already gone");
        sh(&format!(
            "nft -f {}/testdata/nft/skeleton.nft",
            env!("CARGO_MANIFEST_DIR")
        ));
        let theirs = sh("nft list table inet nethook");
        assert_eq!(ours, theirs);
        // skeleton.nft looks the ND target and option MAC up in twin sets (nft 1.0.6 cannot
        // write those lookups into addrs6 and macs, see regen.sh); nethook uses the real ones.
        let theirs_bridge = nft_bridge_listing();
        assert_eq!(ours_bridge, theirs_bridge);
        // With elements too (our encoding vs nft's).
        firewall::add(&Elements {
            masq4: vec![net("10.77.0.0/16"), net("255.255.255.0/24")],
            nomasq4: vec![
                (net("10.77.0.0/16"), net("10.244.0.0/16")),
                (net("10.77.0.0/16"), net("192.168.7.9/32")),
                (net("255.255.255.0/24"), net("0.0.0.0/0")),
            ],
            ports4: vec![
                pm(None, Proto::Tcp, 8080, [10, 77, 0, 2], 80),
                pm(Some([127, 0, 0, 1]), Proto::Udp, 53, [10, 77, 0, 2], 5353),
                pm(None, Proto::Sctp, 9, [10, 77, 0, 2], 9),
            ],
            bridges: vec!["nethook0".into(), "nh-blue".into()],
            sources: vec![
                Source {
                    host_interface: "nh0123456789ab".into(),
                    mac: Mac([0x02, 0x4e, 10, 77, 0, 2]),
                    ipv4: vec![Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 9)],
                    ipv6: vec![
                        "fd00:77::2".parse().unwrap(),
                        "fe80::4e:aff:fe4d:2".parse().unwrap(),
                    ],
                },
                Source {
                    host_interface: "nhffffffffffff".into(),
                    mac: Mac([0x02, 0, 0, 0, 0, 1]),
                    ipv4: vec![],
                    ipv6: vec![],
                },
            ],
            any_ethertype: vec!["nhffffffffffff".into()],
            intra4: vec![net("10.88.0.0/24"), net("10.89.0.7/16")],
            masq6: vec![
                "fd00:77::5/64".parse().unwrap(),
                "ffff::/16".parse().unwrap(),
            ],
            nomasq6: vec![("fd00:77::/64".parse().unwrap(), "fd00::/8".parse().unwrap())],
            ports6: vec![
                PortMapping6 {
                    host_ip: None,
                    proto: Proto::Tcp,
                    host_port: 8080,
                    container_ip: "fd00:77::2".parse().unwrap(),
                    container_port: 80,
                },
                PortMapping6 {
                    host_ip: Some("2001:db8::1".parse().unwrap()),
                    proto: Proto::Udp,
                    host_port: 53,
                    container_ip: "fd00:77::2".parse().unwrap(),
                    container_port: 5353,
                },
            ],
            routed_sources: vec![Source {
                host_interface: "nr0123456789ab".into(),
                mac: Mac([0x02, 0x4e, 10, 88, 0, 2]),
                ipv4: vec![Ipv4Addr::new(10, 88, 0, 2)],
                ipv6: vec![],
            }],
            services: vec![],
        })
        .unwrap();
        let ours = sh("nft list table inet nethook");
        let ours_bridge = sh("nft list table bridge nethook");
        sh("nft delete table inet nethook");
        sh("nft delete table bridge nethook");
        sh(&format!(
            "nft -f {}/testdata/nft/skeleton.nft",
            env!("CARGO_MANIFEST_DIR")
        ));
        sh("nft add element inet nethook masq4 '{ 10.77.0.0/16, 255.255.255.0/24 }'");
        sh("nft add element inet nethook nomasq4 '{ 10.77.0.0/16 . 10.244.0.0/16, 10.77.0.0/16 . 192.168.7.9, 255.255.255.0/24 . 0.0.0.0/0 }'");
        // The probe elements every element batch re-adds (see firewall/probe.rs).
        sh("nft add element inet nethook ports4 '{ tcp . 8080 : 10.77.0.2 . 80, sctp . 9 : 10.77.0.2 . 9 }'");
        sh("nft add element inet nethook hports4 '{ 127.0.0.1 . udp . 53 : 10.77.0.2 . 5353 }'");
        sh(r#"nft add element inet nethook nets '{ "nethook0", "nh-blue" }'"#);
        sh(
            r#"nft add element inet nethook intra '{ "nethook0" . "nethook0", "nh-blue" . "nh-blue" }'"#,
        );
        sh(
            r#"nft add element bridge nethook macs '{ "nh0123456789ab" . 02:4e:0a:4d:00:02, "nhffffffffffff" . 02:00:00:00:00:01 }'"#,
        );
        sh(
            r#"nft add element bridge nethook addrs4 '{ "nh0123456789ab" . 02:4e:0a:4d:00:02 . 10.77.0.2, "nh0123456789ab" . 02:4e:0a:4d:00:02 . 10.77.0.9 }'"#,
        );
        sh(r#"nft add element bridge nethook l2open '{ "nhffffffffffff" }'"#);
        sh("nft add element inet nethook intra4 '{ 10.88.0.0/24 . 10.88.0.0/24, 10.89.0.0/16 . 10.89.0.0/16 }'");
        sh(
            r#"nft add element inet nethook raddrs4 '{ "nr0123456789ab" . 02:4e:0a:58:00:02 . 10.88.0.2 }'"#,
        );
        sh("nft add element inet nethook probe_svc '{ 0 }'");
        sh(r#"nft add element bridge nethook probe_ipv6 '{ "nethook/probe" }'"#);
        sh("nft add element inet nethook masq6 '{ fd00:77::/64, ffff::/16 }'");
        sh("nft add element inet nethook nomasq6 '{ fd00:77::/64 . fd00::/8 }'");
        sh("nft add element inet nethook ports6 '{ tcp . 8080 : fd00:77::2 . 80 }'");
        sh("nft add element inet nethook hports6 '{ 2001:db8::1 . udp . 53 : fd00:77::2 . 5353 }'");
        sh(
            r#"nft add element bridge nethook addrs6 '{ "nh0123456789ab" . 02:4e:0a:4d:00:02 . fd00:77::2, "nh0123456789ab" . 02:4e:0a:4d:00:02 . fe80::4e:aff:fe4d:2 }'"#,
        );
        assert_eq!(ours, sh("nft list table inet nethook"));
        // Both tables came from skeleton.nft here, twin sets included.
        assert_eq!(ours_bridge, sh("nft list table bridge nethook"));
    });
}

/// `nft list table bridge nethook` of a table loaded from skeleton.nft, as nethook's own would
/// list: skeleton.nft looks the ND target and option MAC up in twin sets (nft 1.0.6 cannot
/// write those lookups into addrs6 and macs, see regen.sh); nethook uses the real ones.
fn nft_bridge_listing() -> String {
    sh("nft list table bridge nethook")
        .replace(
            "\tset ndtgt {\n\t\ttypeof iifname . ether saddr . @th,64,128\n\t}\n\n",
            "",
        )
        .replace("\tset ndll {\n\t\ttypeof iifname . @th,208,48\n\t}\n\n", "")
        .replace("!= @ndtgt drop", "!= @addrs6 drop")
        .replace("!= @ndll drop", "!= @macs drop")
}

/// Masquerade exceptions are per-network elements like the subnet: re-added by every container
/// of the network, deleted with its last, and gone from nft's listing then.
#[test]
fn masquerade_exceptions_add_and_delete() {
    sandbox("masquerade_exceptions_add_and_delete", || {
        firewall::ensure_skeleton().unwrap();
        let pods = Elements {
            masq4: vec![net("10.244.1.0/24")],
            nomasq4: vec![(net("10.244.1.0/24"), net("10.244.0.0/16"))],
            ..Default::default()
        };
        let other = Elements {
            masq4: vec![net("10.77.0.0/16")],
            nomasq4: vec![(net("10.77.0.0/16"), net("172.16.0.0/12"))],
            ..Default::default()
        };
        firewall::add(&pods).unwrap();
        firewall::add(&pods).unwrap();
        firewall::add(&other).unwrap();
        let set = sh("nft list set inet nethook nomasq4");
        assert!(set.contains("10.244.1.0/24 . 10.244.0.0/16"), "{set}");
        assert!(set.contains("10.77.0.0/16 . 172.16.0.0/12"), "{set}");
        firewall::delete(&pods).unwrap();
        let set = sh("nft list set inet nethook nomasq4");
        assert!(!set.contains("10.244.1.0/24"), "{set}");
        assert!(set.contains("10.77.0.0/16 . 172.16.0.0/12"), "{set}");
        // Deleting again (teardown is idempotent), also as kernels before 6.3 delete.
        firewall::delete(&pods).unwrap();
        firewall::delete(&other).unwrap();
        let set = sh("nft list set inet nethook nomasq4");
        assert!(!set.contains("elements"), "{set}");
    });
}

#[test]
fn elements_add_delete() {
    sandbox("elements_add_delete", || {
        let a = Elements {
            masq4: vec![net("10.77.0.0/16")],
            ports4: vec![
                pm(None, Proto::Tcp, 8080, [10, 77, 0, 2], 80),
                pm(Some([127, 0, 0, 1]), Proto::Udp, 53, [10, 77, 0, 2], 5353),
            ],
            ..Default::default()
        };
        // No table yet: add fails with the kernel's ENOENT, delete (teardown) succeeds.
        let e = firewall::add(&a).unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::ENOENT), "{e}");
        firewall::delete(&a).unwrap();

        firewall::ensure_skeleton().unwrap();
        firewall::add(&a).unwrap();
        let ports = sh("nft list map inet nethook ports4");
        assert!(ports.contains("tcp . 8080 : 10.77.0.2 . 80"), "{ports}");
        let json = sh("nft --json list map inet nethook hports4");
        assert!(json.contains("\"127.0.0.1\""), "{json}");
        assert!(json.contains("5353"), "{json}");
        assert!(sh("nft list set inet nethook masq4").contains("elements = { 10.77.0.0/16 }"));

        // A second container of the same network: the shared subnet is re-added fine, but it
        // tries to take 8080/tcp → PortTaken, and nothing of its batch (9090, 10.88/16) remains.
        let b = Elements {
            masq4: vec![net("10.77.0.0/16"), net("10.88.0.0/16")],
            ports4: vec![
                pm(None, Proto::Tcp, 9090, [10, 77, 0, 3], 80),
                pm(None, Proto::Tcp, 8080, [10, 77, 0, 3], 80),
            ],
            ..Default::default()
        };
        match firewall::add(&b) {
            Err(FirewallError::PortTaken {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
            }) => {}
            other => panic!("expected PortTaken, got {other:?}"),
        }
        let all = sh("nft list table inet nethook");
        assert!(!all.contains("9090"), "failed batch left 9090:\n{all}");
        assert!(
            !all.contains("10.88.0.0"),
            "failed batch left 10.88.0.0/16:\n{all}"
        );
        // Same for a port bound to one host address.
        let c = Elements {
            masq4: vec![],
            ports4: vec![pm(Some([127, 0, 0, 1]), Proto::Udp, 53, [10, 77, 0, 4], 53)],
            ..Default::default()
        };
        match firewall::add(&c) {
            Err(e @ FirewallError::PortTaken { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "host port 127.0.0.1:53/udp is already published"
                )
            }
            other => panic!("expected PortTaken, got {other:?}"),
        }
        // Re-adding the subnet alone, plus another port: fine, and adjacent/open intervals too.
        let d = Elements {
            masq4: vec![
                net("10.77.0.0/16"),
                net("10.78.0.0/16"),
                net("255.255.255.0/24"),
            ],
            ports4: vec![pm(None, Proto::Tcp, 9090, [10, 77, 0, 3], 80)],
            ..Default::default()
        };
        firewall::add(&d).unwrap();
        firewall::add(&Elements {
            masq4: d.masq4.clone(),
            ports4: vec![],
            ..Default::default()
        })
        .unwrap();
        let masq = sh("nft list set inet nethook masq4");
        assert!(
            masq.contains("10.77.0.0/16")
                && masq.contains("10.78.0.0/16")
                && masq.contains("255.255.255.0/24"),
            "{masq}"
        );

        // Teardown of a: its ports go; the shared subnet stays (the caller deletes subnets only
        // with the network's last endpoint, so `a` for teardown lists none here).
        let a_ports = Elements {
            masq4: vec![],
            ports4: a.ports4.clone(),
            ..Default::default()
        };
        firewall::delete(&a_ports).unwrap();
        firewall::delete(&a_ports).unwrap(); // already gone: still fine
        let all = sh("nft list table inet nethook");
        assert!(!all.contains("8080") && !all.contains("5353"), "{all}");
        assert!(all.contains("9090"), "{all}");
        // A mix of present and missing elements: the present ones are deleted.
        let mix = Elements {
            masq4: vec![net("10.78.0.0/16"), net("10.99.0.0/16")],
            ports4: vec![
                pm(None, Proto::Udp, 1, [10, 77, 0, 9], 1),
                pm(None, Proto::Tcp, 9090, [10, 77, 0, 3], 80),
            ],
            ..Default::default()
        };
        firewall::delete(&mix).unwrap();
        let all = sh("nft list table inet nethook");
        assert!(!all.contains("9090") && !all.contains("10.78.0.0"), "{all}");
        assert!(
            all.contains("10.77.0.0/16") && all.contains("255.255.255.0/24"),
            "{all}"
        );
        firewall::delete(&d).unwrap();
        let masq = sh("nft list set inet nethook masq4");
        assert!(!masq.contains("elements"), "{masq}");
        // The port is free again.
        firewall::add(&b).unwrap();
        firewall::delete(&b).unwrap();
        // Empty element lists are no-ops.
        firewall::add(&Elements::default()).unwrap();
        firewall::delete(&Elements::default()).unwrap();
    });
}

#[test]
fn conntrack_flush() {
    sandbox("conntrack_flush", || {
        // Nothing to flush (and possibly no conntrack table in this netns yet).
        assert_eq!(
            conntrack::flush_for(&[Ipv4Addr::new(10, 77, 0, 2).into()], &[(Proto::Udp, 5353)])
                .unwrap(),
            0
        );
        sh("ip link set lo up");
        sh("ip link add nhveth0 type veth peer name nhveth1");
        sh("ip addr add 192.0.2.1/24 dev nhveth0");
        // Entries are inserted through ctnetlink by the conntrack tool (no traffic is sent).
        for args in [
            // the container's own connection → goes
            "-p udp -s 10.77.0.2 -d 192.0.2.1 --sport 1234 --dport 53 -t 100",
            // DNATed to the container (reply source is it) → goes
            "-p tcp -s 192.0.2.9 -d 192.0.2.1 --sport 5555 --dport 8080 -r 10.77.0.2 -q 192.0.2.9 --reply-port-src 80 --reply-port-dst 5555 --state ESTABLISHED -t 100",
            // stale entry to the host's own 5353/udp (no DNAT) → goes
            "-p udp -s 192.0.2.9 -d 192.0.2.1 --sport 4000 --dport 5353 -t 100",
            // the host's own connection to a remote 5353/udp → stays
            "-p udp -s 192.0.2.1 -d 192.0.2.7 --sport 4444 --dport 5353 -t 100",
            // another container → stays
            "-p udp -s 10.77.0.3 -d 192.0.2.1 --sport 1234 --dport 53 -t 100",
        ] {
            sh(&format!("conntrack -I {args}"));
        }
        assert_eq!(sh("conntrack -L 2>/dev/null").lines().count(), 5);
        let n = conntrack::flush_for(
            &[Ipv4Addr::new(10, 77, 0, 2).into()],
            &[(Proto::Udp, 5353), (Proto::Tcp, 8080)],
        )
        .unwrap();
        assert_eq!(n, 3);
        let left = sh("conntrack -L 2>/dev/null");
        assert_eq!(left.lines().count(), 2, "{left}");
        assert!(
            left.contains("src=192.0.2.1 dst=192.0.2.7") && left.contains("src=10.77.0.3"),
            "{left}"
        );
        assert_eq!(
            conntrack::flush_for(&[Ipv4Addr::new(10, 77, 0, 2).into()], &[(Proto::Udp, 5353)])
                .unwrap(),
            0
        );
    });
}

#[test]
fn conntrack_flush_ipv6_and_both_families_in_one_walk() {
    sandbox("conntrack_flush_ipv6_and_both_families_in_one_walk", || {
        sh("ip link set lo up");
        sh("ip link add nhveth0 type veth peer name nhveth1");
        sh("ip addr add 192.0.2.1/24 dev nhveth0");
        sh("ip addr add 2001:db8:9::1/64 dev nhveth0 nodad");
        for args in [
            // the container's own IPv6 connection → goes
            "-p udp -s fd00:1::2 -d 2001:db8:9::7 --sport 1234 --dport 53 -t 100",
            // DNATed to the container's IPv6 address (reply source is it) → goes
            "-p tcp -s 2001:db8:9::9 -d 2001:db8:9::1 --sport 5555 --dport 8080 -r fd00:1::2 -q 2001:db8:9::9 --reply-port-src 80 --reply-port-dst 5555 --state ESTABLISHED -t 100",
            // stale entry to the host's own IPv6 address on 5353/udp (no DNAT) → goes
            "-p udp -s 2001:db8:9::9 -d 2001:db8:9::1 --sport 4000 --dport 5353 -t 100",
            // the host's own connection to a remote [..]:5353 → stays
            "-p udp -s 2001:db8:9::1 -d 2001:db8:9::7 --sport 4444 --dport 5353 -t 100",
            // another container → stays
            "-p udp -s fd00:1::3 -d 2001:db8:9::7 --sport 1234 --dport 53 -t 100",
            // the container's IPv4 connection → goes in the same walk
            "-p udp -s 10.77.0.2 -d 192.0.2.1 --sport 1234 --dport 53 -t 100",
        ] {
            sh(&format!("conntrack -I {args}"));
        }
        assert_eq!(sh("conntrack -L -f ipv6 2>/dev/null").lines().count(), 5);
        let ips: [std::net::IpAddr; 2] = [
            Ipv4Addr::new(10, 77, 0, 2).into(),
            "fd00:1::2".parse().unwrap(),
        ];
        let n = conntrack::flush_for(&ips, &[(Proto::Udp, 5353)]).unwrap();
        assert_eq!(n, 4);
        let left = sh("conntrack -L -f ipv6 2>/dev/null");
        assert_eq!(left.lines().count(), 2, "{left}");
        assert!(
            left.contains("src=2001:db8:9::1 dst=2001:db8:9::7") && left.contains("src=fd00:1::3"),
            "{left}"
        );
        assert_eq!(sh("conntrack -L -f ipv4 2>/dev/null").lines().count(), 0);
        // An IPv6-only container: only the IPv6 table is walked and flushed.
        let n = conntrack::flush_for(&["fd00:1::3".parse().unwrap()], &[]).unwrap();
        assert_eq!(n, 1);
    });
}

/// A process parked in a new network namespace ("container" / "outside world"); killed on drop.
struct Ns {
    child: std::process::Child,
}

impl Ns {
    fn new() -> Ns {
        let child = std::process::Command::new("unshare")
            .args(["--net", "--", "sleep", "120"])
            .spawn()
            .expect("spawn");
        // Wait until the child is in its own netns (unshare has exec'd sleep).
        let me = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap();
        for _ in 0..100 {
            let ino = std::fs::metadata(format!("/proc/{}/ns/net", child.id()))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
            if matches!(ino, Ok(i) if i != me) && exe.to_string_lossy().contains("sleep") {
                return Ns { child };
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("namespace holder did not start");
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Command prefix to run something in this namespace.
    fn run(&self, cmd: &str) -> String {
        format!("nsenter --net=/proc/{}/ns/net {cmd}", self.pid())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real traffic in the sandbox ("host") with a bridge, a container netns and an outside netns:
/// DNAT through ports4 from outside, masquerade seen by an outside listener, hairpin, and
/// publishing on 127.0.0.1 (route_localnet), then conntrack flush of the real entries.
#[test]
fn real_traffic() {
    sandbox("real_traffic", || traffic_scenario(true));
}

/// The same without br_netfilter in the sandbox (plain routed bridge): hairpin works without
/// hairpin mode on the port.
#[test]
fn real_traffic_no_br_netfilter() {
    sandbox("real_traffic_no_br_netfilter", || {
        let (ok, _) = try_sh("test -e /proc/sys/net/bridge/bridge-nf-call-iptables && sysctl -qw net.bridge.bridge-nf-call-iptables=0");
        if !ok {
            eprintln!("note: br_netfilter not loaded; same as real_traffic without it");
        }
        traffic_scenario(false)
    });
}

fn traffic_scenario(hairpin_mode: bool) {
    {
        if !try_sh("command -v python3 && command -v nsenter").0 {
            eprintln!("SKIP real_traffic: needs python3 and nsenter");
            return;
        }
        let ctr = Ns::new();
        let outside = Ns::new();
        let (c, o) = (ctr.pid(), outside.pid());
        for cmd in [
            "ip link set lo up".to_string(),
            "sysctl -qw net.ipv4.ip_forward=1".into(),
            "ip link add nh0 type bridge".into(),
            "ip addr add 10.77.0.1/16 dev nh0".into(),
            "ip link set nh0 up".into(),
            format!("ip link add nhc0 master nh0 up type veth peer name eth0 netns {c}"),
            // With br_netfilter active (bridge-nf-call-iptables=1, the default wherever the module
            // is loaded, as on this machine), a DNATed frame whose new destination is on the same
            // bridge is bridged, not routed: back out of the port it came in needs hairpin mode.
            format!(
                "ip link set nhc0 type bridge_slave hairpin {}",
                if hairpin_mode { "on" } else { "off" }
            ),
            format!("ip link add nho0 up type veth peer name eth0 netns {o}"),
            "ip addr add 192.0.2.1/24 dev nho0".into(),
            ctr.run("ip link set lo up"),
            ctr.run("ip link set eth0 address 02:4e:0a:4d:00:02"),
            ctr.run("ip addr add 10.77.0.2/16 dev eth0"),
            ctr.run("ip link set eth0 up"),
            ctr.run("ip route add default via 10.77.0.1"),
            outside.run("ip link set lo up"),
            outside.run("ip addr add 192.0.2.2/24 dev eth0"),
            outside.run("ip link set eth0 up"),
        ] {
            sh(&cmd);
        }
        firewall::ensure_skeleton().unwrap();
        let elems = Elements {
            masq4: vec![net("10.77.0.0/16")],
            ports4: vec![
                pm(None, Proto::Tcp, 8080, [10, 77, 0, 2], 80),
                pm(Some([127, 0, 0, 1]), Proto::Tcp, 8081, [10, 77, 0, 2], 80),
            ],
            // Isolation and anti-spoofing on too: nothing here may be dropped by them.
            bridges: vec!["nh0".into()],
            sources: vec![Source {
                host_interface: "nhc0".into(),
                mac: Mac([0x02, 0x4e, 10, 77, 0, 2]),
                ipv4: vec![Ipv4Addr::new(10, 77, 0, 2)],
                ipv6: vec![],
            }],
            any_ethertype: vec![],
            ..Default::default()
        };
        firewall::add(&elems).unwrap();

        // Outside → host:8080 → container:80 (DNAT); the container sees the real client.
        let mut srv = tcp_server(&ctr.run(""), 80, 3);
        assert_eq!(
            tcp_client(&outside.run(""), "192.0.2.1", 8080),
            "from 192.0.2.2"
        );
        // Hairpin: the container reaches its own published port via the host address.
        assert_eq!(
            tcp_client(&ctr.run(""), "192.0.2.1", 8080),
            "from 10.77.0.1"
        );
        // Host process → 127.0.0.1:8081 (hports4) → container, masqueraded to the bridge address.
        sh("sysctl -qw net.ipv4.conf.nh0.route_localnet=1");
        assert_eq!(tcp_client("", "127.0.0.1", 8081), "from 10.77.0.1");
        let _ = srv.wait();

        // Container → outside: masqueraded to the host's outside address.
        let mut srv = tcp_server(&outside.run(""), 9000, 1);
        assert_eq!(
            tcp_client(&ctr.run(""), "192.0.2.2", 9000),
            "from 192.0.2.1"
        );
        let _ = srv.wait();

        // Conntrack: the real entries of the container go.
        let before = sh("conntrack -L 2>/dev/null");
        assert!(before.contains("10.77.0.2"), "{before}");
        let n = conntrack::flush_for(
            &[Ipv4Addr::new(10, 77, 0, 2).into()],
            &[(Proto::Tcp, 8080), (Proto::Tcp, 8081)],
        )
        .unwrap();
        assert!(n >= 4, "deleted {n}:\n{before}");
        let after = sh("conntrack -L 2>/dev/null");
        assert!(!after.contains("10.77.0.2"), "{after}");

        // After teardown, the published port no longer leads anywhere.
        firewall::delete(&Elements {
            masq4: vec![],
            ports4: elems.ports4.clone(),
            ..Default::default()
        })
        .unwrap();
        let (ok, out) = try_sh(&outside.run(
            "python3 -c 'import socket;socket.create_connection((\"192.0.2.1\",8080),timeout=1)'",
        ));
        assert!(!ok, "8080 still reachable: {out}");
    }
}
