//! Issue 17, firewall part: teardown whatever is missing and huge batches (defect 5), a wildcard
//! publish leaving 127.0.0.0/8 alone (defect 1), the forwarding guard (defect 3), and the
//! ethertype filter ("also tighten"). Each test runs in its own sandbox namespace.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use common::*;
use nethook::firewall::{self, Elements, PortMapping, Proto, Source};
use nethook::model::mac::Mac;

fn ports(first: u16, n: u16) -> Vec<PortMapping> {
    (first..first + n)
        .map(|p| PortMapping {
            host_ip: None,
            proto: Proto::Tcp,
            host_port: p,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: p,
        })
        .collect()
}

fn map_len(map: &str) -> usize {
    let text = sh(&format!("nft -j list map inet nethook {map}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("map"))
        .map(|m| m.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len))
        .sum()
}

/// Deletes `elems` and returns how many batches that took.
fn batches_to_delete(elems: &Elements) -> u64 {
    let before = firewall::batches_sent();
    firewall::delete(elems).unwrap();
    firewall::batches_sent() - before
}

/// 1500 ports and a source; returns the elements.
fn big_endpoint() -> Elements {
    Elements {
        masq4: vec!["10.77.0.0/16".parse().unwrap()],
        nomasq4: vec![(
            "10.77.0.0/16".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        )],
        bridges: vec!["nethook0".into()],
        ports4: ports(20000, 1500),
        sources: vec![Source {
            host_interface: "nh0123456789ab".into(),
            mac: Mac([0x02, 0x4e, 10, 77, 0, 2]),
            ipv4: vec![Ipv4Addr::new(10, 77, 0, 2)],
            ipv6: vec![],
        }],
        any_ethertype: vec!["nh0123456789ab".into()],
        ..Elements::default()
    }
}

/// Teardown of 1500 ports costs one or two batches whatever is missing: all there, the map
/// flushed, half of it deleted, a table gone; with destroy-element semantics and without
/// (the fallback of kernels before 6.3, forced here).
fn deletes_cost_at_most_two_batches() {
    firewall::ensure_skeleton().unwrap();
    let e = big_endpoint();
    firewall::add(&e).unwrap();
    assert_eq!(map_len("ports4"), 1500);
    assert_eq!(batches_to_delete(&e), 1, "everything there");
    assert_eq!(map_len("ports4"), 0);

    firewall::add(&e).unwrap();
    sh("nft flush map inet nethook ports4");
    assert!(batches_to_delete(&e) <= 2);
    assert!(!sh("nft list table bridge nethook").contains("nh0123456789ab"));

    firewall::add(&e).unwrap();
    let half: Vec<String> = (20000..20750).map(|p| format!("tcp . {p}")).collect();
    sh(&format!(
        "nft delete element inet nethook ports4 '{{ {} }}'",
        half.join(", ")
    ));
    assert_eq!(map_len("ports4"), 750);
    assert!(batches_to_delete(&e) <= 2);
    assert_eq!(map_len("ports4"), 0);
    assert!(!sh("nft list set inet nethook masq4").contains("10.77"));

    firewall::add(&e).unwrap();
    sh("nft delete table bridge nethook");
    assert!(batches_to_delete(&e) <= 2);
    assert_eq!(map_len("ports4"), 0);
    firewall::delete_table().unwrap();
    assert!(batches_to_delete(&e) <= 2, "no table at all");
}

#[test]
fn teardown_with_missing_elements_costs_at_most_two_batches() {
    sandbox(
        "teardown_with_missing_elements_costs_at_most_two_batches",
        || {
            deletes_cost_at_most_two_batches();
        },
    );
}

#[test]
fn teardown_without_destroy_support_costs_at_most_two_batches() {
    sandbox(
        "teardown_without_destroy_support_costs_at_most_two_batches",
        || {
            firewall::assume_no_destroy();
            deletes_cost_at_most_two_batches();
        },
    );
}

#[test]
fn thousands_of_ports_add_in_one_batch_and_a_taken_one_is_named() {
    sandbox(
        "thousands_of_ports_add_in_one_batch_and_a_taken_one_is_named",
        || {
            firewall::ensure_skeleton().unwrap();
            let mut e = Elements {
                ports4: ports(10000, 3000),
                ..Elements::default()
            };
            e.ports4
                .extend(ports(40000, 3000).into_iter().map(|p| PortMapping {
                    proto: Proto::Udp,
                    ..p
                }));
            let before = firewall::batches_sent();
            firewall::add(&e).unwrap();
            assert_eq!(firewall::batches_sent() - before, 1);
            assert_eq!(map_len("ports4"), 6000);
            // Restoring everything again (after a reload, for every live endpoint) is fine.
            firewall::restore(&e).unwrap();
            // Another container taking one port in the middle of a big message: named.
            let other = Elements {
                ports4: ports(9000, 2000)
                    .into_iter()
                    .map(|p| PortMapping {
                        container_ip: Ipv4Addr::new(10, 77, 0, 3),
                        ..p
                    })
                    .collect(),
                ..Elements::default()
            };
            match firewall::add(&other) {
                Err(firewall::FirewallError::PortTaken {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 10000,
                }) => {}
                r => panic!("expected port 10000/tcp taken, got {r:?}"),
            }
            assert_eq!(map_len("ports4"), 6000, "nothing of the failed batch stays");
            // A restore with the port mapped elsewhere is refused too, naming it.
            match firewall::restore(&other) {
                Err(firewall::FirewallError::PortTaken {
                    host_port: 10000, ..
                }) => {}
                r => panic!("expected port 10000 taken, got {r:?}"),
            }
        },
    );
}

#[test]
fn hook_publishes_3000_ports_and_tears_down_1500_after_a_flush() {
    sandbox!(
        "hook_publishes_3000_ports_and_tears_down_1500_after_a_flush",
        {
            let nh = Nethook::new("bigports");
            // The descriptor limit most services get (systemd's default soft limit): one socket
            // per element ran out of it.
            sh(&format!(
                "prlimit --pid {} --nofile=1024:",
                std::process::id()
            ));
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "10000-12999:10000-12999")]);
            assert_eq!(map_len("ports4"), 3000);
            nh.teardown(&a);
            assert_eq!(map_len("ports4"), 0);

            let b = FakeContainer::start("ctr-b");
            nh.setup(&b, &[("nethook.ports", "20000-21499:20000-21499")]);
            assert_eq!(map_len("ports4"), 1500);
            sh("nft flush map inet nethook ports4");
            sh("nft flush set bridge nethook macs");
            nh.teardown(&b);
            assert_eq!(nh.records(), 0, "the record is gone");
        }
    );
}

/// Defect 1 (firewall part): a port published on every address does not capture the host's
/// own connections to 127.0.0.0/8; connections to its other addresses still reach the
/// container.
#[test]
fn wildcard_publish_leaves_loopback_alone() {
    sandbox!("wildcard_publish_leaves_loopback_alone", {
        if !needs("python3") {
            return;
        }
        sh("ip link add wan0 up type veth peer name wan1 && ip link set wan1 up && ip addr add 192.0.2.1/24 dev wan0");
        let nh = Nethook::new("loopback");
        let a = FakeContainer::start("ctr-a");
        nh.setup(&a, &[("nethook.ports", "8080:80")]);
        let _srv = Server(tagged_tcp_server(&ns(&a), 80, 10, "a "));
        let _host = tcp_server_on("", "127.0.0.1", 8080, 10, "host ");
        assert!(tcp_client("", "192.0.2.1", 8080).starts_with("a from "));
        assert_eq!(tcp_client("", "127.0.0.1", 8080), "host from 127.0.0.1");
        assert!(
            try_tcp("", "127.0.0.2", 8080, 3).is_err(),
            "127.0.0.2 must not lead to the container"
        );
    });
}

/// Defect 3: with forwarding on and the guard element set, the host routes nothing between two
/// networks of its own (a LAN and a VPN); a nethook network still reaches out and gets its
/// replies. Without the element, the host routes as it did.
#[test]
fn forwarding_guard_stops_routing_between_other_networks() {
    sandbox!("forwarding_guard_stops_routing_between_other_networks", {
        if !needs("python3") {
            return;
        }
        let lan = FakeContainer::start("lan");
        let vpn = FakeContainer::start("vpn");
        let ctr = FakeContainer::start("ctr");
        for (ns, host_if, host, peer) in [
            (&lan, "lan0", "192.0.2.1", "192.0.2.2"),
            (&vpn, "vpn0", "198.51.100.1", "198.51.100.2"),
        ] {
            sh(&format!(
                "ip link add {host_if} type veth peer name eth0 netns {}",
                ns.pid()
            ));
            sh(&format!(
                "ip addr add {host}/24 dev {host_if} && ip link set {host_if} up"
            ));
            ns.sh(&format!("ip link set lo up && ip addr add {peer}/24 dev eth0 && ip link set eth0 up && ip route add default via {host}"));
        }
        // A nethook network: bridge in `nets`, a container behind it (no anti-spoofing here:
        // its host veth is not named nh*).
        sh("ip link add nhbr0 type bridge && ip addr add 10.77.0.1/16 dev nhbr0 && ip link set nhbr0 up");
        sh(&format!(
            "ip link add cv0 master nhbr0 up type veth peer name eth0 netns {}",
            ctr.pid()
        ));
        ctr.sh("ip link set lo up && ip addr add 10.77.0.2/16 dev eth0 && ip link set eth0 up && ip route add default via 10.77.0.1");
        sh("sysctl -qw net.ipv4.ip_forward=1");
        firewall::ensure_skeleton().unwrap();
        firewall::add(&Elements {
            bridges: vec!["nhbr0".into()],
            ..Elements::default()
        })
        .unwrap();
        let _vpn_srv = Server(tagged_tcp_server(&ns(&vpn), 7000, 100, "vpn "));
        let _lan_srv = Server(tagged_tcp_server(&ns(&lan), 7000, 100, "lan "));

        assert_eq!(
            tcp_client(&ns(&lan), "198.51.100.2", 7000),
            "vpn from 192.0.2.2",
            "guard off: routed"
        );
        firewall::guard_forwarding(true).unwrap();
        firewall::guard_forwarding(true).unwrap();
        assert!(sh("nft list set inet nethook fwd_guard").contains("ipv4 }"));
        assert!(
            try_tcp(&ns(&lan), "198.51.100.2", 7000, 3).is_err(),
            "guard on: LAN to VPN is routed"
        );
        assert!(
            try_tcp(&ns(&vpn), "192.0.2.2", 7000, 3).is_err(),
            "guard on: VPN to LAN is routed"
        );
        // The nethook network still reaches out (no masquerade here: the LAN routes back).
        assert_eq!(
            tcp_client(&ns(&ctr), "192.0.2.2", 7000),
            "lan from 10.77.0.2"
        );
        firewall::guard_forwarding(false).unwrap();
        firewall::guard_forwarding(false).unwrap();
        assert_eq!(
            tcp_client(&ns(&lan), "198.51.100.2", 7000),
            "vpn from 192.0.2.2",
            "guard off again"
        );
        // Off without a table is fine; on without one says ENOENT (ensure_skeleton first).
        firewall::delete_table().unwrap();
        firewall::guard_forwarding(false).unwrap();
        let e = firewall::guard_forwarding(true).unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::ENOENT), "{e}");
    });
}

/// Sends, from `c`'s eth0 with its own MAC, an STP BPDU, an LLC frame (802.3 length field),
/// a PPPoE discovery frame and last a (valid) ARP request, each marked; returns the kinds
/// a sniffer on `peer`'s eth0 saw by the time the ARP request arrived.
fn l2_frames_seen(c: &FakeContainer, mac: &str, ip: &str, peer: &FakeContainer) -> String {
    const SNIFF: &str = r#"import socket,sys
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3));s.bind(('eth0',0));s.settimeout(10)
print('ready',flush=True);seen=[]
while True:
    f=s.recv(2000)
    i=f.find(b'NHMARK')
    if i<0: continue
    k=f[i+6:i+10].decode()
    if k=='arp.': break
    seen.append(k)
print(' '.join(sorted(set(seen))) or 'none',flush=True)"#;
    const SEND: &str = r#"import socket,sys
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind(('eth0',0))
src=bytes.fromhex(sys.argv[1].replace(':',''));ip=socket.inet_aton(sys.argv[2]);bc=b'\xff'*6
stp=bytes.fromhex('0180c2000000')
def llc(dst,body): return dst+src+len(body).to_bytes(2,'big')+body
s.send(llc(stp,b'\x42\x42\x03'+b'\x00'*35+b'NHMARKstp.'))
s.send(llc(bc,b'\xaa\xaa\x03\x00\x00\x00\x88\xb5NHMARKllc.'+b'\x00'*30))
s.send(bc+src+b'\x88\x63'+b'\x11\x09\x00\x00\x00\x00NHMARKppp.'+b'\x00'*30)
arp=b'\x00\x01\x08\x00\x06\x04\x00\x01'+src+ip+b'\x00'*6+socket.inet_aton('10.77.0.1')
s.send(bc+src+b'\x08\x06'+arp+b'NHMARKarp.')"#;
    let mut sniffer = Command::new("sh")
        .args(["-c", &format!("exec {} python3 -c \"$NH_PY\"", ns(peer))])
        .env("NH_PY", SNIFF)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sniffer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("exec {} python3 -c \"$NH_PY\" {mac} {ip}", ns(c)),
        ])
        .env("NH_PY", SEND)
        .status()
        .unwrap();
    assert!(status.success());
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = sniffer.wait();
    line.trim().to_owned()
}

/// "Also tighten": only IPv4 and ARP leave a container's veth, unless its network opted out
/// (its host veth in `l2open`); the MAC check stays either way.
#[test]
fn containers_send_only_ipv4_and_arp_unless_opted_out() {
    sandbox!("containers_send_only_ipv4_and_arp_unless_opted_out", {
        if !needs("python3") {
            return;
        }
        let a = FakeContainer::start("ctr-a");
        let b = FakeContainer::start("ctr-b");
        sh("ip link add nhbr0 type bridge stp_state 0 && ip addr add 10.77.0.1/16 dev nhbr0 && ip link set nhbr0 up");
        let mut sources = Vec::new();
        for (c, veth, last) in [(&a, "nh00000000000a", 2u8), (&b, "nh00000000000b", 3)] {
            let mac = format!("02:4e:0a:4d:00:0{last}");
            sh(&format!(
                "ip link add {veth} master nhbr0 up type veth peer name eth0 netns {}",
                c.pid()
            ));
            c.sh(&format!("ip link set lo up && ip link set eth0 address {mac} && ip addr add 10.77.0.{last}/16 dev eth0 && ip link set eth0 up"));
            sources.push(Source {
                host_interface: veth.into(),
                mac: Mac([0x02, 0x4e, 10, 77, 0, last]),
                ipv4: vec![Ipv4Addr::new(10, 77, 0, last)],
                ipv6: vec![],
            });
        }
        firewall::ensure_skeleton().unwrap();
        let strict = Elements {
            bridges: vec!["nhbr0".into()],
            sources,
            ..Elements::default()
        };
        firewall::add(&strict).unwrap();
        assert_eq!(
            l2_frames_seen(&a, "02:4e:0a:4d:00:02", "10.77.0.2", &b),
            "none"
        );

        let open = Elements {
            any_ethertype: vec!["nh00000000000a".into()],
            ..Elements::default()
        };
        firewall::add(&open).unwrap();
        assert_eq!(
            l2_frames_seen(&a, "02:4e:0a:4d:00:02", "10.77.0.2", &b),
            "llc. ppp. stp."
        );
        // Deleted with the endpoint's own elements: filtered again.
        firewall::delete(&open).unwrap();
        assert_eq!(
            l2_frames_seen(&a, "02:4e:0a:4d:00:02", "10.77.0.2", &b),
            "none"
        );
    });
}

/// Upgrades: the tables of the previous release make the next element batch fail with ENOENT, and
/// `ensure_skeleton` re-creates it whole, returning true so every endpoint is restored.
#[test]
fn an_old_table_is_noticed_by_the_next_add_and_recreated() {
    sandbox!("an_old_table_is_noticed_by_the_next_add_and_recreated", {
        sh(&format!(
            "nft -f {}/testdata/nft/skeleton-previous.nft",
            env!("CARGO_MANIFEST_DIR")
        ));
        assert!(!firewall::missing_skeleton().unwrap().is_empty());
        let e = big_endpoint();
        let err = firewall::add(&e).unwrap_err();
        assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT), "{err}");
        assert!(firewall::ensure_skeleton().unwrap(), "re-created");
        assert!(firewall::missing_skeleton().unwrap().is_empty());
        assert!(!firewall::ensure_skeleton().unwrap());
        firewall::add(&e).unwrap();
        let inet = sh("nft list table inet nethook");
        assert!(inet.contains("ip daddr 127.0.0.0/8 return"), "{inet}");
        assert!(inet.contains("meta nfproto @fwd_guard"), "{inet}");
        assert!(
            inet.contains("ip saddr . ip daddr != @nomasq4 masquerade"),
            "{inet}"
        );
        // The probe element stays (no packet matches it): re-adding it later is no kernel work.
        assert!(sh("nft list set inet nethook probe_svc").contains("elements = { 0 }"));
        // Re-created whole: the masquerade exceptions of the restored endpoints go in.
        assert!(sh("nft list set inet nethook nomasq4").contains("10.77.0.0/16 . 10.244.0.0/16"));
        assert!(sh("nft list set bridge nethook l2open").contains("nh0123456789ab"));
    });
}
