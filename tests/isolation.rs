//! Isolation between networks and anti-spoofing, through the hook with real traffic between
//! namespaces the test builds: the sandbox is the host, fake containers sit on the default
//! network (10.77.0.0/16, bridge nethook0) and on "blue" (10.90.0.0/24, bridge nh-blue), and an
//! "outside world" namespace joined to the host by a veth (192.0.2.0/24) routes the container
//! subnets via the host, as a neighbour on the LAN could.
//!
//! Every test also shows that what it forbids does happen without nethook's rules (the relevant
//! chain flushed, or rule/element deleted, inside the sandbox), so a passing test means the rules
//! work, not that the traffic was impossible anyway.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const HOST: &str = "192.0.2.1";
const OUT: &str = "192.0.2.2";
const GATEWAY: &str = "10.77.0.1";

/// The outside world: its own namespace with 192.0.2.2, routing `routes` via the host.
fn outside(routes: &[&str]) -> FakeContainer {
    let o = FakeContainer::start("outside");
    sh(&format!(
        "ip link add wan0 type veth peer name eth0 netns {}",
        o.pid()
    ));
    sh(&format!(
        "ip addr add {HOST}/24 dev wan0 && ip link set wan0 up"
    ));
    o.sh(&format!(
        "ip link set lo up && ip addr add {OUT}/24 dev eth0 && ip link set eth0 up"
    ));
    for r in routes {
        o.sh(&format!("ip route add {r} via {HOST}"));
    }
    o
}

fn ipv4(nh: &Nethook, id: &str) -> String {
    nh.endpoint(id)["ipv4"]
        .as_str()
        .expect("endpoint has an IPv4 address")
        .to_owned()
}

fn mac(nh: &Nethook, id: &str) -> String {
    nh.endpoint(id)["mac"]
        .as_str()
        .expect("endpoint has a MAC")
        .to_owned()
}

/// A TCP server answering "<tag>from <peer>" until the test ends.
fn server(c: &FakeContainer, port: u16, tag: &str) -> Server {
    Server(tagged_tcp_server(&ns(c), port, 1000, tag))
}

fn reaches(prefix: &str, addr: &str, port: u16) -> Result<String, String> {
    try_tcp(prefix, addr, port, 20)
}

/// A short attempt (3 connects, 1 s timeout each): a dropped SYN shows as a timeout.
fn blocked(prefix: &str, addr: &str, port: u16) -> bool {
    try_tcp(prefix, addr, port, 3).is_err()
}

// ---- one-way UDP and raw ARP, to see exactly what reaches a neighbour ----

/// Appends "<source address> <payload>" for every datagram to `log`.
const UDP_SINK: &str = r#"import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])))
f=open(sys.argv[2],'a',buffering=1)
while True:
    d,a=s.recvfrom(100);f.write('%s %s\n'%(a[0],d.decode()))"#;

/// Sends `count` datagrams carrying `tag` from source address `src` (bound, so it may be any
/// address the sender's interface holds).
const UDP_SEND: &str = r#"import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],0))
for i in range(int(sys.argv[4])):
    s.sendto(sys.argv[5].encode(),(sys.argv[2],int(sys.argv[3])));time.sleep(0.05)"#;

/// Broadcasts one ARP request "who has <target>? tell <sender ip>" from `ifname`, with the
/// interface's own MAC as Ethernet source and ARP sender MAC.
const ARP_SEND: &str = r#"import socket,sys
ifc,spa,tpa=sys.argv[1],sys.argv[2],sys.argv[3]
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind((ifc,0))
mac=s.getsockname()[4];ip=socket.inet_aton
s.send(b'\xff'*6+mac+b'\x08\x06'+b'\x00\x01\x08\x00\x06\x04\x00\x01'+mac+ip(spa)+b'\x00'*6+ip(tpa))"#;

/// Runs a python script in a namespace (`prefix`: e.g. `nsenter -t PID -n`); panics on failure.
fn run_python(prefix: &str, script: &str, args: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("exec {prefix} python3 -c \"$NH_PY\" {args}")])
        .env("NH_PY", script)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Sink {
    log: PathBuf,
    _server: Server,
}

impl Sink {
    fn start(prefix: &str, port: u16, log: PathBuf) -> Sink {
        let _ = std::fs::remove_file(&log);
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "exec {prefix} python3 -c \"$NH_PY\" {port} {}",
                    log.display()
                ),
            ])
            .env("NH_PY", UDP_SINK)
            .spawn()
            .expect("spawn udp sink");
        Sink {
            log,
            _server: Server(child),
        }
    }

    fn lines(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Did a datagram tagged `tag` arrive (waiting up to `secs`)? It shows its source address.
    fn got(&self, tag: &str, secs: f64) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(l) = self
                .lines()
                .lines()
                .find(|l| l.ends_with(&format!(" {tag}")))
            {
                return l.split(' ').next().map(str::to_owned);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn udp_send(c: &FakeContainer, src: &str, dst: &str, port: u16, tag: &str) {
    run_python(&ns(c), UDP_SEND, &format!("{src} {dst} {port} 5 {tag}"));
}

fn arp_request(c: &FakeContainer, sender_ip: &str, target_ip: &str) {
    run_python(&ns(c), ARP_SEND, &format!("eth0 {sender_ip} {target_ip}"));
}

/// The MAC `c` has for `ip` in its neighbour table, if any.
fn neighbour(c: &FakeContainer, ip: &str) -> Option<String> {
    let out = c.sh(&format!("ip neigh show {ip} dev eth0"));
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

fn log_path(nh: &Nethook, name: &str) -> PathBuf {
    nh.dirs.0.join(name)
}

fn br_netfilter_on() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1")
}

// ---- isolation ----

#[test]
fn networks_are_isolated_but_published_ports_cross_them() {
    sandbox!("networks_are_isolated_but_published_ports_cross_them", {
        if !needs("python3 && command -v nft") {
            return;
        }
        let nh = Nethook::new("iso-nets");
        let (ok, _, err) = nh.cli(&["network", "create", "blue", "--subnet", "10.90.0.0/24"]);
        assert!(ok, "network create: {err}");
        let a1 = FakeContainer::start("ctr-a1");
        let a2 = FakeContainer::start("ctr-a2");
        let b1 = FakeContainer::start("ctr-b1");
        nh.setup(&a1, &[("nethook.ports", "8080:80")]);
        nh.setup(&a2, &[]);
        nh.setup(
            &b1,
            &[("nethook.network", "blue"), ("nethook.ports", "9090:80")],
        );
        let (ip_a1, ip_a2, ip_b1) = (
            ipv4(&nh, "ctr-a1"),
            ipv4(&nh, "ctr-a2"),
            ipv4(&nh, "ctr-b1"),
        );
        assert!(ip_b1.starts_with("10.90.0."), "{ip_b1}");
        let _s_a1 = server(&a1, 80, "a1 ");
        let _s_a2 = server(&a2, 80, "a2 ");
        let _s_b1 = server(&b1, 80, "b1 ");

        // The same network: direct, both ways, TCP and ICMP (bridged; with br_netfilter the
        // frames pass the inet forward hook with iif = oif = nethook0).
        assert_eq!(
            reaches(&ns(&a1), &ip_a2, 80).unwrap(),
            format!("a2 from {ip_a1}")
        );
        assert_eq!(
            reaches(&ns(&a2), &ip_a1, 80).unwrap(),
            format!("a1 from {ip_a2}")
        );
        assert!(a1.sh_ok(&format!("ping -c1 -W2 {ip_a2}")));

        // Across networks, directly: nothing, either way.
        assert!(
            blocked(&ns(&a1), &ip_b1, 80),
            "default → blue reached b1 directly"
        );
        assert!(
            blocked(&ns(&b1), &ip_a1, 80),
            "blue → default reached a1 directly"
        );
        assert!(
            !a1.sh_ok(&format!("ping -c1 -W1 {ip_b1}")),
            "ping crossed networks"
        );

        // Across networks through a published port (host address → DNAT): fine, both ways.
        assert!(reaches(&ns(&a1), GATEWAY, 9090)
            .unwrap()
            .starts_with("b1 from "));
        assert!(reaches(&ns(&b1), "10.90.0.1", 8080)
            .unwrap()
            .starts_with("a1 from "));

        // The host reaches every container directly (output path, not forwarded).
        assert_eq!(reaches("", &ip_b1, 80).unwrap(), "b1 from 10.90.0.1");
        assert_eq!(
            reaches("", &ip_a1, 80).unwrap(),
            format!("a1 from {GATEWAY}")
        );

        let table = sh("nft list table inet nethook");
        for needle in [
            "\"nh-blue\" . \"nh-blue\"",
            "\"nethook0\" . \"nethook0\"",
            "oifname @nets jump isolate",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in\n{table}");
        }

        // Can fail: the isolate chain is what stops it.
        sh("nft flush chain inet nethook isolate");
        assert!(
            reaches(&ns(&a1), &ip_b1, 80)
                .unwrap()
                .starts_with("b1 from "),
            "without isolation the networks are routed to each other"
        );
    });
}

#[test]
fn same_network_traffic_needs_the_intra_element_under_br_netfilter() {
    sandbox!(
        "same_network_traffic_needs_the_intra_element_under_br_netfilter",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            if !br_netfilter_on() {
                eprintln!("SKIP: br_netfilter is not active here: bridged frames never reach the inet forward hook");
                return;
            }
            let nh = Nethook::new("iso-intra");
            let a1 = FakeContainer::start("ctr-a1");
            let a2 = FakeContainer::start("ctr-a2");
            nh.setup(&a1, &[]);
            nh.setup(&a2, &[]);
            let ip_a2 = ipv4(&nh, "ctr-a2");
            let _s = server(&a2, 80, "a2 ");
            assert!(reaches(&ns(&a1), &ip_a2, 80).is_ok());
            // Can fail: without the bridge . bridge element, bridged traffic of one network is dropped
            // like traffic from another one (so the rule is really what lets it through).
            sh(r#"nft delete element inet nethook intra '{ "nethook0" . "nethook0" }'"#);
            assert!(
                blocked(&ns(&a1), &ip_a2, 80),
                "bridged traffic did not pass the forward hook"
            );
        }
    );
}

#[test]
fn from_outside_only_published_ports_and_replies_reach_containers() {
    sandbox!(
        "from_outside_only_published_ports_and_replies_reach_containers",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("iso-outside");
            let (ok, _, err) = nh.cli(&[
                "network",
                "create",
                "plain",
                "--subnet",
                "10.91.0.0/24",
                "--no-masquerade",
            ]);
            assert!(ok, "network create: {err}");
            let world = outside(&["10.77.0.0/16", "10.91.0.0/24"]);
            let a = FakeContainer::start("ctr-a");
            let p = FakeContainer::start("ctr-p");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            nh.setup(&p, &[("nethook.network", "plain")]);
            let (ip_a, ip_p) = (ipv4(&nh, "ctr-a"), ipv4(&nh, "ctr-p"));
            let _s80 = server(&a, 80, "a ");
            let _s81 = server(&a, 81, "a81 ");
            let _sp = server(&p, 80, "p ");

            // The published port: yes, with the real client address.
            assert_eq!(
                reaches(&ns(&world), HOST, 8080).unwrap(),
                format!("a from {OUT}")
            );
            // The container's address directly: neither the published nor an unpublished port, nor
            // a container of an unmasqueraded network (its address is routable from outside).
            assert!(
                blocked(&ns(&world), &ip_a, 80),
                "outside reached {ip_a}:80 directly"
            );
            assert!(
                blocked(&ns(&world), &ip_a, 81),
                "outside reached {ip_a}:81 directly"
            );
            assert!(
                blocked(&ns(&world), &ip_p, 80),
                "outside reached {ip_p}:80 directly"
            );
            assert!(!world.sh_ok(&format!("ping -c1 -W1 {ip_a}")));

            // Replies to connections the containers opened come back: masqueraded, and (network
            // "plain") unmasqueraded, where the reply is routed to the container's own address.
            let _w = Server(tagged_tcp_server(&ns(&world), 7000, 10, "w "));
            assert_eq!(
                reaches(&ns(&a), OUT, 7000).unwrap(),
                format!("w from {HOST}")
            );
            assert_eq!(
                reaches(&ns(&p), OUT, 7000).unwrap(),
                format!("w from {ip_p}")
            );

            // Can fail: without the isolate chain the outside reaches the addresses directly.
            sh("nft flush chain inet nethook isolate");
            assert_eq!(
                reaches(&ns(&world), &ip_a, 81).unwrap(),
                format!("a81 from {OUT}")
            );
            assert_eq!(
                reaches(&ns(&world), &ip_p, 80).unwrap(),
                format!("p from {OUT}")
            );
            drop(world);
        }
    );
}

// ---- anti-spoofing ----

/// Two containers on the default network; b listens on UDP 5000 and a knows b's MAC for
/// good, so a's IPv4 frames to b need no ARP (ARP is tested apart).
struct Neighbours {
    a: FakeContainer,
    b: FakeContainer,
    ip_a: String,
    ip_b: String,
    at_b: Sink,
}

fn neighbours(nh: &Nethook) -> Neighbours {
    let a = FakeContainer::start("ctr-a");
    let b = FakeContainer::start("ctr-b");
    nh.setup(&a, &[]);
    nh.setup(&b, &[]);
    let (ip_a, ip_b) = (ipv4(nh, "ctr-a"), ipv4(nh, "ctr-b"));
    let at_b = Sink::start(&ns(&b), 5000, log_path(nh, "b.log"));
    a.sh(&format!(
        "ip neigh replace {ip_b} lladdr {} dev eth0 nud permanent",
        mac(nh, "ctr-b")
    ));
    Neighbours {
        a,
        b,
        ip_a,
        ip_b,
        at_b,
    }
}

#[test]
fn a_spoofed_source_address_is_dropped_at_the_host_veth() {
    sandbox!("a_spoofed_source_address_is_dropped_at_the_host_veth", {
        if !needs("python3 && command -v nft") {
            return;
        }
        let nh = Nethook::new("spoof-ip");
        let Neighbours {
            a,
            b: _b,
            ip_a,
            ip_b,
            at_b,
        } = neighbours(&nh);
        let at_host = Sink::start("", 5000, log_path(&nh, "host.log"));

        // The real address works (and the sinks are up).
        udp_send(&a, &ip_a, &ip_b, 5000, "real");
        assert_eq!(
            at_b.got("real", 5.0).as_deref(),
            Some(ip_a.as_str()),
            "{}",
            at_b.lines()
        );
        udp_send(&a, &ip_a, GATEWAY, 5000, "real-gw");
        assert_eq!(at_host.got("real-gw", 5.0).as_deref(), Some(ip_a.as_str()));

        // Another address of the subnet, and one from elsewhere: nobody sees them.
        a.sh("ip addr add 10.77.0.200/16 dev eth0 && ip addr add 192.0.2.77/32 dev eth0");
        udp_send(&a, "10.77.0.200", &ip_b, 5000, "spoof-neighbour");
        udp_send(&a, "10.77.0.200", GATEWAY, 5000, "spoof-gw");
        udp_send(&a, "192.0.2.77", &ip_b, 5000, "spoof-foreign");
        assert_eq!(at_b.got("spoof-neighbour", 1.0), None, "{}", at_b.lines());
        assert_eq!(at_b.got("spoof-foreign", 0.2), None, "{}", at_b.lines());
        assert_eq!(at_host.got("spoof-gw", 0.2), None, "{}", at_host.lines());
        // ... while the real address still works.
        udp_send(&a, &ip_a, &ip_b, 5000, "real-again");
        assert!(at_b.got("real-again", 5.0).is_some());
        // The same with the address swapped out entirely (flush + another one).
        a.sh(&format!("ip addr flush dev eth0 && ip addr add 10.77.0.201/16 dev eth0 && ip neigh replace {ip_b} lladdr {} dev eth0 nud permanent", mac(&nh, "ctr-b")));
        udp_send(&a, "10.77.0.201", &ip_b, 5000, "spoof-swapped");
        assert_eq!(at_b.got("spoof-swapped", 1.0), None, "{}", at_b.lines());

        let bridge = sh("nft list table bridge nethook");
        assert!(
            bridge.contains(&format!(". {} . {ip_a}", mac(&nh, "ctr-a"))),
            "{bridge}"
        );

        // Can fail: without the anti-spoofing chain the forged datagrams arrive.
        sh("nft flush chain bridge nethook antispoof");
        udp_send(&a, "10.77.0.201", &ip_b, 5000, "spoof-unguarded");
        assert_eq!(
            at_b.got("spoof-unguarded", 5.0).as_deref(),
            Some("10.77.0.201"),
            "{}",
            at_b.lines()
        );
    });
}

#[test]
fn arp_claiming_another_address_is_dropped_so_neighbours_are_not_poisoned() {
    sandbox!(
        "arp_claiming_another_address_is_dropped_so_neighbours_are_not_poisoned",
        {
            if !needs("python3 && command -v nft") {
                return;
            }
            let nh = Nethook::new("spoof-arp");
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[]);
            nh.setup(&b, &[]);
            let (ip_a, ip_b, mac_a) = (ipv4(&nh, "ctr-a"), ipv4(&nh, "ctr-b"), mac(&nh, "ctr-a"));
            // A request with a's own address: b learns a (the request is for b's address).
            b.sh("ip neigh flush dev eth0");
            arp_request(&a, &ip_a, &ip_b);
            wait_until(5, "b to learn a from its ARP request", || {
                neighbour(&b, &ip_a).as_deref() == Some(mac_a.as_str())
            });
            // A request claiming the gateway's address: b must not take a for the gateway.
            arp_request(&a, GATEWAY, &ip_b);
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(neighbour(&b, GATEWAY), None, "b was poisoned");
            // Can fail: without the anti-spoofing chain the same request poisons b.
            sh("nft flush chain bridge nethook antispoof");
            arp_request(&a, GATEWAY, &ip_b);
            wait_until(5, "the unguarded ARP request to poison b", || {
                neighbour(&b, GATEWAY).as_deref() == Some(mac_a.as_str())
            });
        }
    );
}

#[test]
fn a_spoofed_mac_is_dropped_at_the_host_veth() {
    sandbox!("a_spoofed_mac_is_dropped_at_the_host_veth", {
        if !needs("python3 && command -v nft") {
            return;
        }
        let nh = Nethook::new("spoof-mac");
        let Neighbours {
            a,
            ip_a,
            ip_b,
            at_b,
            ..
        } = neighbours(&nh);
        udp_send(&a, &ip_a, &ip_b, 5000, "real");
        assert!(at_b.got("real", 5.0).is_some(), "{}", at_b.lines());
        assert!(a.sh_ok(&format!("ping -c1 -W2 {GATEWAY}")));

        // Own address, someone else's MAC: dropped (IPv4, ARP and anything else).
        a.sh("ip link set eth0 address 02:aa:bb:cc:dd:ee");
        udp_send(&a, &ip_a, &ip_b, 5000, "spoofed-mac");
        assert_eq!(at_b.got("spoofed-mac", 1.0), None, "{}", at_b.lines());
        assert!(
            !a.sh_ok(&format!("ping -c1 -W1 {GATEWAY}")),
            "the gateway answered a forged MAC"
        );

        // Can fail: without the anti-spoofing chain the forged frames arrive. a's ARP entry
        // for b may have failed while its requests were dropped: resend until it resolves.
        sh("nft flush chain bridge nethook antispoof");
        let arrived = (0..5).any(|_| {
            udp_send(&a, &ip_a, &ip_b, 5000, "unguarded");
            at_b.got("unguarded", 1.0).is_some()
        });
        assert!(arrived, "{}", at_b.lines());
        assert!(a.sh_ok(&format!("ping -c1 -W2 {GATEWAY}")));
    });
}

#[test]
fn ipv6_from_a_container_is_dropped_at_its_port() {
    sandbox!("ipv6_from_a_container_is_dropped_at_its_port", {
        if !needs("python3 && command -v nft") {
            return;
        }
        let nh = Nethook::new("no-ipv6");
        let Neighbours { a, b, .. } = neighbours(&nh);
        // The containers keep their own link-local addresses; what they send never gets past
        // the bridge, so their neighbour-discovery chatter is not flooded to everyone.
        let _ll_a = wait_for_link_local(&a);
        let ll_b = wait_for_link_local(&b);
        assert!(
            !a.sh_ok(&format!("ping -6 -c1 -W1 {ll_b}%eth0")),
            "IPv6 crossed the bridge"
        );

        // Can fail: without the anti-spoofing chain IPv6 link-local goes through.
        sh("nft flush chain bridge nethook antispoof");
        assert!(
            a.sh_ok(&format!("ping -6 -c1 -W2 {ll_b}%eth0")),
            "IPv6 link-local without the rule"
        );
    });
}

/// A container's IPv6 link-local address once duplicate address detection is done.
fn wait_for_link_local(c: &FakeContainer) -> String {
    let mut addr = None;
    wait_until(10, "an IPv6 link-local address without DAD pending", || {
        let out = c.sh("ip -6 -o addr show dev eth0 scope link");
        addr = out
            .lines()
            .find(|l| !l.contains("tentative"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|a| a.split('/').next())
            .map(str::to_owned);
        addr.is_some()
    });
    addr.unwrap_or_default()
}

#[test]
fn elements_come_and_go_with_endpoints_and_networks() {
    sandbox!("elements_come_and_go_with_endpoints_and_networks", {
        if !needs("nft") {
            return;
        }
        let nh = Nethook::new("iso-elements");
        let (ok, _, err) = nh.cli(&[
            "network",
            "create",
            "blue",
            "--subnet",
            "10.90.0.0/24",
            "--no-masquerade",
        ]);
        assert!(ok, "network create: {err}");
        let mut a1 = FakeContainer::start("ctr-a1");
        let a2 = FakeContainer::start("ctr-a2");
        let b1 = FakeContainer::start("ctr-b1");
        nh.setup(&a1, &[]);
        nh.setup(&a2, &[]);
        // A network without masquerade and without ports still gets isolation and anti-spoofing.
        nh.setup(&b1, &[("nethook.network", "blue")]);
        let count = |set: &str, family: &str| -> usize {
            let text = sh(&format!("nft -j list set {family} nethook {set}"));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o.get("set"))
                .map(|s| s.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len))
                .sum()
        };
        assert_eq!((count("nets", "inet"), count("intra", "inet")), (2, 2));
        assert_eq!((count("macs", "bridge"), count("addrs4", "bridge")), (3, 3));
        let ip_b1 = ipv4(&nh, "ctr-b1");
        assert!(
            b1.sh_ok("ping -c1 -W2 10.90.0.1"),
            "b1 cannot reach its gateway"
        );
        assert!(
            sh_ok(&format!("ping -c1 -W2 {ip_b1}")),
            "host cannot reach b1"
        );

        // One endpoint goes: its own elements go, the network's stay for a2.
        a1.stop();
        nh.teardown(&a1);
        assert_eq!(
            (
                count("nets", "inet"),
                count("macs", "bridge"),
                count("addrs4", "bridge")
            ),
            (2, 2, 2)
        );
        // The network's last endpoint goes: the network's elements go too.
        nh.teardown(&a2);
        let nets = sh("nft list set inet nethook nets");
        assert!(
            !nets.contains("nethook0") && nets.contains("nh-blue"),
            "{nets}"
        );
        assert!(!sh("nft list set inet nethook intra").contains("nethook0"));
        assert_eq!((count("macs", "bridge"), count("addrs4", "bridge")), (1, 1));
        nh.teardown(&b1);
        assert_eq!((count("nets", "inet"), count("intra", "inet")), (0, 0));
        assert_eq!((count("macs", "bridge"), count("addrs4", "bridge")), (0, 0));
    });
}

#[test]
fn a_host_with_an_older_inet_table_gets_the_missing_parts_and_gc_restores_elements() {
    sandbox!(
        "a_host_with_an_older_inet_table_gets_the_missing_parts_and_gc_restores_elements",
        {
            if !needs("nft") {
                return;
            }
            let nh = Nethook::new("iso-upgrade");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[("nethook.ports", "8080:80")]);
            let ip_a = ipv4(&nh, "ctr-a");
            // What an older nethook left: the inet table without the isolation objects, no bridge
            // table.
            sh("nft delete table bridge nethook");
            sh("nft flush chain inet nethook forward && nft delete chain inet nethook isolate && nft delete set inet nethook nets && nft delete set inet nethook intra && nft delete set inet nethook fwd_guard && nft delete set inet nethook probe_svc");
            let (ok, out, err) = nh.cli(&["gc", "--dry-run"]);
            assert!(ok, "{err}");
            assert!(out.contains("would re-create an older version of table inet nethook and the elements of 1 live endpoint(s)"), "{out}");
            assert!(
                out.contains("would re-create table bridge nethook"),
                "{out}"
            );
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "gc: {out}{err}");
            // Everything is back, the existing port element untouched, a's elements re-added.
            let inet = sh("nft list table inet nethook");
            assert!(
                inet.contains("oifname @nets jump isolate")
                    && inet.contains("\"nethook0\" . \"nethook0\""),
                "{inet}"
            );
            assert!(inet.contains("tcp . 8080 : "), "{inet}");
            let bridge = sh("nft list table bridge nethook");
            assert!(bridge.contains(&format!(". {ip_a}")), "{bridge}");
            assert!(
                a.sh_ok(&format!("ping -c1 -W2 {GATEWAY}")),
                "a lost its network"
            );
            // Nothing left to repair.
            let (ok, out, _) = nh.cli(&["gc", "--dry-run"]);
            assert!(ok && !out.contains("re-create"), "{out}");
        }
    );
}

/// Set elements of `family nethook set`, as nft prints them (one string per element).
#[cfg(feature = "failpoints")]
fn set_elements(family: &str, set: &str) -> Vec<String> {
    let text = sh(&format!("nft -j list set {family} nethook {set}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("nft -j output");
    v["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|o| o.get("set"))
        .filter_map(|s| s.get("elem").and_then(|e| e.as_array()).cloned())
        .flatten()
        .map(|e| e.to_string())
        .collect()
}

#[cfg(feature = "failpoints")]
#[test]
fn a_rolled_back_setup_removes_its_own_elements_but_not_its_networks() {
    sandbox!(
        "a_rolled_back_setup_removes_its_own_elements_but_not_its_networks",
        {
            if !needs("nft") {
                return;
            }
            let nh = Nethook::new("iso-rollback");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            let c = FakeContainer::start("ctr-c");
            let out = nh
                .command()
                .env("NETHOOK_FAILPOINT", "firewall")
                .arg("hook")
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut ch| {
                    use std::io::Write;
                    ch.stdin.take().expect("stdin").write_all(
                        c.state("creating", &[("nethook.ports", "8080:80")])
                            .as_bytes(),
                    )?;
                    ch.wait_with_output()
                })
                .expect("run hook");
            assert!(!out.status.success(), "the failure point did not fire");
            // c's own elements are gone; the network's stay for a, which keeps working.
            assert_eq!(
                set_elements("bridge", "macs").len(),
                1,
                "{:?}",
                set_elements("bridge", "macs")
            );
            assert_eq!(set_elements("bridge", "addrs4").len(), 1);
            assert_eq!(set_elements("inet", "nets").len(), 1);
            assert_eq!(set_elements("inet", "intra").len(), 1);
            assert!(!sh("nft list map inet nethook ports4").contains("8080"));
            assert!(a.sh_ok(&format!("ping -c1 -W2 {GATEWAY}")));
            nh.teardown(&a);
            assert!(
                set_elements("inet", "nets").is_empty()
                    && set_elements("bridge", "macs").is_empty()
            );
        }
    );
}
