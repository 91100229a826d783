//! Issue 17, the core's part: publishing never takes a port a host process or another
//! container holds, a flushed ruleset comes back with every container's elements at the
//! next setup, route_localnet only where a 127.0.0.1 publish needs it, forwarding that
//! nethook turns on is recorded, and MAC clashes are refused. Each test runs in its own
//! sandbox namespace (see tests/common).

mod common;

use std::process::{Command, Stdio};

use common::*;

const HOST: &str = "192.0.2.1";

/// An address on the sandbox host other than loopback, to reach wildcard publishes.
fn host_address() {
    sh(&format!("ip link add up0 type veth peer name up1 && ip link set up1 up && ip addr add {HOST}/24 dev up0 && ip link set up0 up"));
}

fn refused(nh: &Nethook, c: &FakeContainer, ports: &str) -> String {
    let out = nh.hook(&c.state("creating", &[("nethook.ports", ports)]));
    assert!(!out.status.success(), "publishing {ports} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A UDP socket bound the way systemd-resolved's stub is, killed on drop.
fn udp_listener(addr: &str, port: u16) -> Server {
    let script = format!("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{addr}',{port}))\nprint('ready',flush=True)\ntime.sleep(120)");
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    Server(child)
}

#[test]
fn a_port_a_host_process_serves_is_refused_naming_the_process() {
    sandbox!(
        "a_port_a_host_process_serves_is_refused_naming_the_process",
        {
            if !needs("python3") {
                return;
            }
            let nh = Nethook::new("hostsock");
            let _loop = tcp_server_on("", "127.0.0.1", 9999, 10, "host ");
            let _any = tcp_server_on("", "0.0.0.0", 7777, 10, "host ");
            let _stub = udp_listener("127.0.0.53", 53);
            wait_until(5, "host listeners", || {
                sh_ok("ss -ltn | grep -q ':9999' && ss -ltn | grep -q ':7777'")
            });
            let c = FakeContainer::start("ctr-a");
            for (ports, port) in [
                ("9999:80", "9999/tcp"),
                ("7777:80", "7777/tcp"),
                ("53:53/udp", "53/udp"),
                ("127.0.0.1:9999:80", "9999/tcp"),
                ("192.0.2.1:7777:80", "7777/tcp"),
            ] {
                let err = refused(&nh, &c, ports);
                assert!(
                    err.contains(&format!(
                        "host port {port} is in use on the host by process python3"
                    )),
                    "{ports}: {err}"
                );
            }
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("nethook"), 0);
            assert!(host_veths().is_empty());
            // A specific address the host socket is not on is free; so is another port.
            nh.setup(
                &c,
                &[("nethook.ports", "127.0.0.2:9999:80,9998:80,54:53/udp")],
            );
        }
    );
}

#[test]
fn a_wildcard_and_a_specific_publish_of_one_port_by_two_containers_conflict() {
    sandbox!(
        "a_wildcard_and_a_specific_publish_of_one_port_by_two_containers_conflict",
        {
            let nh = Nethook::new("shadow");
            host_address();
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[("nethook.ports", "8080:80,192.0.2.1:9090:80")]);
            let err = refused(&nh, &b, &format!("{HOST}:8080:80"));
            assert!(err.contains("host port 8080/tcp is already published by container ctr-a on every host address"), "{err}");
            let err = refused(&nh, &b, "9090:80");
            assert!(
                err.contains(
                    "host port 9090/tcp is already published by container ctr-a on 192.0.2.1"
                ),
                "{err}"
            );
            assert_eq!(nh.records(), 1);
            // The port is free again once its owner goes.
            nh.teardown(&a);
            nh.setup(&b, &[("nethook.ports", &format!("{HOST}:8080:80,9090:80"))]);
        }
    );
}

#[test]
fn a_mac_another_container_or_the_bridge_holds_is_refused() {
    sandbox!("a_mac_another_container_or_the_bridge_holds_is_refused", {
        let nh = Nethook::new("mac");
        let a = FakeContainer::start("ctr-a");
        let b = FakeContainer::start("ctr-b");
        let c = FakeContainer::start("ctr-c");
        nh.setup(&a, &[]);
        let a_mac = nh.endpoint("ctr-a")["mac"].as_str().unwrap().to_owned();
        for mac in [a_mac.as_str(), "02:4e:0a:4d:00:01"] {
            let out = nh.hook(&b.state("creating", &[("nethook.mac", mac)]));
            assert!(!out.status.success(), "MAC {mac} accepted");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("02:4e:00:00:00:00/16"), "{err}");
        }
        nh.setup(&b, &[("nethook.mac", "02:00:00:00:00:01")]);
        let out = nh.hook(&c.state("creating", &[("nethook.mac", "02:00:00:00:00:01")]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains(
                    "MAC 02:00:00:00:00:01 is already used on network nethook by container ctr-b"
                ),
            "{err}"
        );
        assert_eq!(nh.records(), 2);
    });
}

#[test]
fn after_a_ruleset_flush_the_next_setup_restores_every_container_without_gc() {
    sandbox!(
        "after_a_ruleset_flush_the_next_setup_restores_every_container_without_gc",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("flush");
            host_address();
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            nh.setup(&b, &[("nethook.ports", "127.0.0.1:8081:80")]);
            let _srv_a = Server(tagged_tcp_server(&ns(&a), 80, 10, "a "));
            let _srv_b = Server(tagged_tcp_server(&ns(&b), 80, 10, "b "));
            assert!(tcp_client("", HOST, 8080).starts_with("a "));
            let before = sh("nft list ruleset");

            sh("nft flush ruleset");
            assert!(try_tcp("", HOST, 8080, 3).is_err());
            let c = FakeContainer::start("ctr-c");
            nh.setup(&c, &[("nethook.ports", "8082:80")]);
            // Both older containers are published again, and isolated, anti-spoofed as before.
            assert!(tcp_client("", HOST, 8080).starts_with("a "));
            assert!(tcp_client("", "127.0.0.1", 8081).starts_with("b "));
            let after = sh("nft list ruleset");
            for needle in [
                "8080 : 10.77.0.2 . 80",
                "127.0.0.1 . tcp . 8081",
                "10.77.0.0/16",
            ] {
                assert!(
                    before.contains(needle) && after.contains(needle),
                    "{needle} missing:\n{after}"
                );
            }
            for veth in host_veths() {
                assert!(
                    after.contains(&format!("\"{veth}\"")),
                    "anti-spoofing of {veth} missing:\n{after}"
                );
            }
            // nethook turned forwarding on in this sandbox, so its guard is back too.
            assert!(
                sh("nft list set inet nethook fwd_guard").contains("ipv4"),
                "forwarding guard not restored"
            );
            // gc finds nothing left to repair.
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok && out.trim() == "nothing to collect", "{out}{err}");
        }
    );
}

#[test]
fn gc_re_adds_live_elements_even_when_a_setup_recreated_the_tables_first() {
    sandbox!(
        "gc_re_adds_live_elements_even_when_a_setup_recreated_the_tables_first",
        {
            if !needs("nft") {
                return;
            }
            let nh = Nethook::new("gcreadd");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            // Another tool empties one map only: nothing of the skeleton is missing.
            sh("nft flush map inet nethook ports4");
            assert!(!sh("nft list map inet nethook ports4").contains("8080"));
            let (ok, _, err) = nh.cli(&["gc"]);
            assert!(ok, "{err}");
            assert!(
                sh("nft list map inet nethook ports4").contains("8080"),
                "gc did not re-add the live endpoint's port"
            );
        }
    );
}

#[test]
fn route_localnet_is_on_only_while_a_container_publishes_on_127_0_0_1() {
    sandbox!(
        "route_localnet_is_on_only_while_a_container_publishes_on_127_0_0_1",
        {
            let nh = Nethook::new("localnet-scope");
            let value = || {
                sh("cat /proc/sys/net/ipv4/conf/nethook0/route_localnet")
                    .trim()
                    .to_owned()
            };
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            let c = FakeContainer::start("ctr-c");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            assert_eq!(value(), "0", "a wildcard publish needs no route_localnet");
            nh.setup(&b, &[("nethook.ports", "127.0.0.1:8081:80")]);
            nh.setup(&c, &[("nethook.ports", "127.0.0.1:8082:80")]);
            assert_eq!(value(), "1");
            nh.teardown(&b);
            assert_eq!(value(), "1", "ctr-c still publishes on 127.0.0.1");
            nh.teardown(&c);
            assert_eq!(value(), "0", "the last 127.0.0.1 publish went");
            // An older nethook left it on for a bridge without such a publish: gc clears it.
            sh("sysctl -qw net.ipv4.conf.nethook0.route_localnet=1");
            let (ok, out, _) = nh.cli(&["gc"]);
            assert!(
                ok && out.contains("turn route_localnet off on nethook0"),
                "{out}"
            );
            assert_eq!(value(), "0");
        }
    );
}

#[test]
fn forwarding_nethook_turns_on_is_recorded_and_forwarding_already_on_is_not_claimed() {
    sandbox!(
        "forwarding_nethook_turns_on_is_recorded_and_forwarding_already_on_is_not_claimed",
        {
            let nh = Nethook::new("fwd");
            let marker = nh.run_dir().join("forwarding");
            assert_eq!(sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            assert_eq!(sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
            assert!(
                path_exists(&marker),
                "nethook turned forwarding on without recording it"
            );

            let other = Nethook::new("fwd-other");
            let b = FakeContainer::start("ctr-b");
            other.setup(&b, &[("nethook.network", "nethook")]);
            assert!(
                !path_exists(&other.run_dir().join("forwarding")),
                "forwarding was on already: not nethook's"
            );
        }
    );
}

#[test]
fn gc_removes_the_published_ports_of_a_record_it_had_to_quarantine() {
    sandbox!(
        "gc_removes_the_published_ports_of_a_record_it_had_to_quarantine",
        {
            if !needs("nft") {
                return;
            }
            let nh = Nethook::new("prune");
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            nh.setup(&b, &[("nethook.ports", "9090:80")]);
            let ip_a = nh.endpoint("ctr-a")["ipv4"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned();
            std::fs::write(
                nh.run_dir().join("endpoints/ctr-a.json"),
                "{\"id\": \"ctr-a\", \"netw",
            )
            .unwrap();
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "{err}");
            assert!(out.contains("quarantine endpoint record"), "{out}");
            assert!(
                out.contains(&format!("delete tcp 8080 -> {ip_a}:80 from set ports4")),
                "{out}"
            );
            let ports = sh("nft list map inet nethook ports4");
            assert!(!ports.contains("8080") && ports.contains("9090"), "{ports}");
            // The address is free and nothing else is left to do.
            let (_, out, _) = nh.cli(&["gc"]);
            assert_eq!(out.trim(), "nothing to collect");
        }
    );
}

#[test]
fn network_create_and_rm_leave_a_bridge_nethook_did_not_make_alone() {
    sandbox!(
        "network_create_and_rm_leave_a_bridge_nethook_did_not_make_alone",
        {
            let nh = Nethook::new("bridge-owner");
            sh("ip link add br-user type bridge");
            let (ok, _, err) = nh.cli(&[
                "network",
                "create",
                "lab",
                "--subnet",
                "10.91.0.0/24",
                "--bridge",
                "br-user",
            ]);
            assert!(
                !ok && err.contains(
                    "a link named br-user already exists on this host and nethook did not make it"
                ),
                "{err}"
            );
            // Someone else makes a bridge under a network's name after `network create`.
            let (ok, _, err) = nh.cli(&[
                "network",
                "create",
                "green",
                "--subnet",
                "10.92.0.0/24",
                "--bridge",
                "br-green",
            ]);
            assert!(ok, "{err}");
            sh("ip link add br-green type bridge");
            let (ok, _, err) = nh.cli(&["network", "rm", "green"]);
            assert!(
                ok && err.contains("br-green was not made by nethook for network green"),
                "{err}"
            );
            assert!(
                sh_ok("ip link show br-green"),
                "network rm deleted a bridge nethook did not make"
            );
            // The bridge nethook makes carries its tag and goes with the network.
            let (ok, _, err) = nh.cli(&["network", "create", "red", "--subnet", "10.93.0.0/24"]);
            assert!(ok, "{err}");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.network", "red")]);
            assert!(sh("ip -d link show nh-red").contains("alias nethook-network:red"));
            nh.teardown(&a);
            let (ok, _, err) = nh.cli(&["network", "rm", "red"]);
            assert!(ok, "{err}");
            assert!(!sh_ok("ip link show nh-red"), "nethook's own bridge stayed");
        }
    );
}
