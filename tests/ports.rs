//! Published ports and masquerade through the hook, with real traffic between
//! namespaces the test builds: the sandbox is the host, fake containers sit on the
//! default network, and an "outside world" namespace is joined to the host by a veth
//! on documentation addresses (192.0.2.0/24, 198.51.100.0/24).

mod common;

use common::*;

const HOST: &str = "192.0.2.1";
const HOST2: &str = "198.51.100.1";
const OUT: &str = "192.0.2.2";

/// The outside world: its own namespace with 192.0.2.2 and 198.51.100.2.
fn outside() -> FakeContainer {
    let o = FakeContainer::start("outside");
    sh(&format!(
        "ip link add wan0 type veth peer name eth0 netns {}",
        o.pid()
    ));
    sh(&format!(
        "ip addr add {HOST}/24 dev wan0 && ip addr add {HOST2}/24 dev wan0 && ip link set wan0 up"
    ));
    o.sh(&format!("ip link set lo up && ip addr add {OUT}/24 dev eth0 && ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up"));
    o
}

fn map_elements(map: &str) -> usize {
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

#[test]
fn published_ports_masquerade_hairpin_and_localhost_work_end_to_end() {
    sandbox!(
        "published_ports_masquerade_hairpin_and_localhost_work_end_to_end",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("ports");
            let world = outside();
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(
                &a,
                &[(
                    "nethook.ports",
                    &format!("8080:80,5353:53/udp,{HOST2}:8081:80"),
                )],
            );
            nh.setup(&b, &[("nethook.ports", "9090:80")]);
            assert_eq!(nh.endpoint("ctr-a")["ports"].as_array().unwrap().len(), 3);
            let (ok, table, _) = nh.cli(&["ls"]);
            assert!(
                ok && table.contains("8080->80/tcp") && table.contains("198.51.100.1:8081->80/tcp"),
                "{table}"
            );

            let _srv_a = Server(tagged_tcp_server(&ns(&a), 80, 100, "a "));
            let _srv_b = Server(tagged_tcp_server(&ns(&b), 80, 100, "b "));
            let _udp_a = udp_server(&ns(&a), 53, "a ");

            // Outside → host:8080 → A:80; A sees the real client.
            assert_eq!(tcp_client(&ns(&world), HOST, 8080), format!("a from {OUT}"));
            // UDP mapping.
            assert_eq!(
                try_udp(&ns(&world), HOST, 5353, 40001, 10).unwrap(),
                format!("a from {OUT}")
            );
            // Host itself, via its outside address; not via 127.0.0.1: a publish on every
            // address leaves the host's loopback to host services (publish on 127.0.0.1 for that).
            assert!(tcp_client("", HOST, 8080).starts_with("a from "));
            assert!(
                try_tcp("", "127.0.0.1", 8080, 3).is_err(),
                "a wildcard publish captured 127.0.0.1:8080"
            );
            // Hairpin: A reaches itself and B through the host address.
            assert!(tcp_client(&ns(&a), HOST, 8080).starts_with("a from "));
            assert!(tcp_client(&ns(&a), HOST, 9090).starts_with("b from "));
            // A host-IP-bound mapping answers on that address only.
            assert_eq!(tcp_client(&ns(&world), HOST2, 8081), "a from 198.51.100.2");
            assert!(
                try_tcp(&ns(&world), HOST, 8081, 3).is_err(),
                "8081 must not answer on {HOST}"
            );

            // Container → outside: the outside listener sees the host's address.
            let _seen = Server(tcp_server(&ns(&world), 7000, 1));
            assert_eq!(tcp_client(&ns(&a), OUT, 7000), format!("from {HOST}"));

            // Nothing from outside reaches an unpublished container port... (81 is not published)
            let _srv81 = Server(tagged_tcp_server(&ns(&a), 81, 10, "a81 "));
            assert!(try_tcp(&ns(&world), HOST, 81, 3).is_err());
            assert_eq!(map_elements("ports4"), 3);
            assert_eq!(map_elements("hports4"), 1);
            drop(world);
        }
    );
}

#[test]
fn route_localnet_does_not_let_containers_reach_host_loopback_services() {
    sandbox!(
        "route_localnet_does_not_let_containers_reach_host_loopback_services",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("localnet");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "127.0.0.1:8080:80")]);
            assert_eq!(
                sh("cat /proc/sys/net/ipv4/conf/nethook0/route_localnet").trim(),
                "1"
            );
            // A service only the host should reach.
            let _secret = tcp_server_on("", "127.0.0.1", 7777, 10, "secret ");
            assert!(tcp_client("", "127.0.0.1", 7777).starts_with("secret"));
            // The attacker routes 127.0.0.0/8 to the gateway (CVE-2020-8558).
            a.sh(
                "sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1",
            );
            a.sh("ip addr flush dev lo && ip route add 127.0.0.0/8 via 10.77.0.1 dev eth0");
            assert!(
                try_tcp(&ns(&a), "127.0.0.1", 7777, 5).is_err(),
                "a container reached the host's 127.0.0.1"
            );
            // The attack path is real: without the guard chain's rule it succeeds.
            sh("nft flush chain inet nethook guard");
            assert!(
                try_tcp(&ns(&a), "127.0.0.1", 7777, 10).is_ok(),
                "the attack should work without the guard"
            );
        }
    );
}

#[test]
fn a_port_clash_is_refused_and_leaves_nothing() {
    sandbox!("a_port_clash_is_refused_and_leaves_nothing", {
        if !needs("nft") {
            return;
        }
        let nh = Nethook::new("clash");
        let a = FakeContainer::start("ctr-a");
        let c = FakeContainer::start("ctr-c");
        nh.setup(&a, &[("nethook.ports", "8080:80")]);
        let before = sh("nft list table inet nethook");
        let out = nh.hook(&c.state("creating", &[("nethook.ports", "7070:70,8080:80")]));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("host port 8080/tcp is already published by container ctr-a"),
            "{err}"
        );
        assert_eq!(sh("nft list table inet nethook"), before);
        assert_eq!(nh.records(), 1);
        assert_eq!(nh.allocations("nethook"), 1);
        assert_eq!(host_veths().len(), 1);
    });
}

#[test]
fn after_stop_the_port_is_closed_maps_are_empty_and_udp_reaches_the_new_container_at_once() {
    sandbox!(
        "after_stop_the_port_is_closed_maps_are_empty_and_udp_reaches_the_new_container_at_once",
        {
            if !needs("python3 && command -v nft && command -v conntrack") {
                return;
            }
            let nh = Nethook::new("restart");
            let world = outside();
            let mut a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "8080:80,5353:53/udp")]);
            {
                let _tcp = Server(tagged_tcp_server(&ns(&a), 80, 10, "a "));
                let _udp = udp_server(&ns(&a), 53, "old ");
                assert!(tcp_client(&ns(&world), HOST, 8080).starts_with("a "));
                // A steady UDP flow from a fixed source port: its conntrack entry points at A.
                assert!(try_udp(&ns(&world), HOST, 5353, 40002, 10)
                    .unwrap()
                    .starts_with("old "));
            }
            a.stop();
            nh.teardown(&a);
            assert!(
                try_tcp(&ns(&world), HOST, 8080, 3).is_err(),
                "8080 still answers after stop"
            );
            assert_eq!(map_elements("ports4"), 0);
            assert_eq!(map_elements("hports4"), 0);
            assert!(
                !sh("nft list set inet nethook masq4").contains("10.77.0.0/16"),
                "last endpoint gone: subnet leaves masq4"
            );

            // A new container takes over the host port; the same UDP flow reaches it at once
            // (one try, no waiting for a stale conntrack entry to time out).
            let a2 = FakeContainer::start("ctr-a2");
            nh.setup(&a2, &[("nethook.ports", "5353:53/udp")]);
            let _udp2 = udp_server(&ns(&a2), 53, "new ");
            std::thread::sleep(std::time::Duration::from_millis(300));
            let answer = try_udp(&ns(&world), HOST, 5353, 40002, 2);
            assert!(
                answer.as_deref().is_ok_and(|a| a.starts_with("new ")),
                "{answer:?}"
            );
            drop(world);
        }
    );
}

#[test]
fn gc_restores_the_table_and_live_elements_after_another_tool_flushed_the_ruleset() {
    sandbox!(
        "gc_restores_the_table_and_live_elements_after_another_tool_flushed_the_ruleset",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("reconcile");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "127.0.0.1:8080:80")]);
            let _srv = Server(tagged_tcp_server(&ns(&a), 80, 10, "a "));
            assert!(tcp_client("", "127.0.0.1", 8080).starts_with("a "));

            sh("nft flush ruleset");
            assert!(try_tcp("", "127.0.0.1", 8080, 3).is_err());
            let (ok, out, _) = nh.cli(&["gc", "--dry-run"]);
            assert!(
                ok && out.contains("would re-create table inet nethook"),
                "{out}"
            );
            assert!(
                !sh_ok("nft list table inet nethook"),
                "dry run changed the ruleset"
            );

            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "{err}");
            assert!(
                out.contains("re-create table inet nethook and the elements of 1 live endpoint"),
                "{out}"
            );
            assert_eq!(map_elements("hports4"), 1);
            assert!(tcp_client("", "127.0.0.1", 8080).starts_with("a "));
            // Nothing more to do the second time.
            let (_, out, _) = nh.cli(&["gc"]);
            assert_eq!(out.trim(), "nothing to collect");
        }
    );
}

#[test]
fn a_port_published_over_ipv4_leaves_the_hosts_ipv6_only_service_on_that_port_alone() {
    sandbox!(
        "a_port_published_over_ipv4_leaves_the_hosts_ipv6_only_service_on_that_port_alone",
        {
            if !needs("nft python3") {
                return;
            }
            let nh = Nethook::new("v6only");
            let c = FakeContainer::start("ctr-v4");
            // The host serves 18080 over IPv6 only (IPV6_V6ONLY), which an IPv4 publish of
            // 18080 does not clash with; nethook's IPv4 DNAT must not take its connections.
            let mut server = std::process::Command::new("python3")
                .args(["-c", "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\ns.bind(('::1', 18080)); s.listen()\nwhile True:\n    c,_=s.accept(); c.sendall(b'host-v6\\n'); c.close()"])
                .spawn()
                .expect("start the IPv6 service");
            wait_until(5, "the IPv6 service listens", || {
                sh("ss -ltnH 'sport = :18080'").contains("[::1]")
            });
            nh.setup(&c, &[("nethook.ports", "18080:80")]);
            let got = sh("python3 -c \"import socket; s=socket.create_connection(('::1', 18080), timeout=3); print(s.recv(64).decode().strip())\"");
            let _ = server.kill();
            let _ = server.wait();
            assert_eq!(
                got.trim(),
                "host-v6",
                "the IPv6 connection went elsewhere: {got}"
            );
            nh.teardown(&c);
        }
    );
}
