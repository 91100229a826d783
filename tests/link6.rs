//! The IPv6 link side straight against the kernel: a dual-stack and an IPv6-only container
//! side, the bridge's IPv6 gateway, and turning IPv6 forwarding on. Privileged, each in a
//! sandbox (its own network namespace, so its sysctls are the sandbox's).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::Path;

use common::*;
use nethook::kernel::link::{self, BridgeSpec, ContainerAddrs, ContainerIp, Rtnl, VethSpec};
use nethook::kernel::netns::Netns;
use nethook::kernel::sysctl;
use nethook::model::ids::ContainerId;
use nethook::model::mac::Mac;

const GW4: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);

fn gw6() -> Ipv6Addr {
    "fd00:98::1".parse().unwrap()
}

fn v6(last: u16) -> ContainerIp<Ipv6Addr> {
    ContainerIp {
        address: Ipv6Addr::new(0xfd00, 0x98, 0, 0, 0, 0, 0, last),
        prefix: 64,
        gateway: gw6(),
    }
}

fn bridge_spec(name: &str, ipv4: bool) -> BridgeSpec<'_> {
    BridgeSpec {
        name,
        mac: Mac([0x02, 0x4e, 0x0a, 0x62, 0, 1]),
        ipv4: ipv4.then_some((GW4, 24)),
        ipv6: Some((gw6(), 64)),
        owner_tag: "nethook-network:k6",
        routes: &[],
    }
}

/// A veth from the bridge into `c`'s namespace, IPv6 off on the host end as the driver
/// leaves it (a bridge port forwards IPv6 frames without IPv6 of its own).
fn plug(rtnl: &Rtnl, bridge_index: u32, c: &FakeContainer, last: u8) -> Netns {
    let netns = Netns::open(&c.netns()).expect("open the container's netns");
    let id = ContainerId::parse(&c.id).unwrap();
    let host = id.host_veth_name();
    let tag = id.owner_tag();
    rtnl.create_veth(
        &VethSpec {
            host_name: &host,
            bridge_index,
            host_mac: None,
            peer_name: "eth0",
            peer_mac: Mac([0x02, 0x4e, 0x0a, 0x62, 0, last]),
            owner_tag: &tag,
        },
        &netns,
    )
    .expect("create_veth");
    assert!(sysctl::disable_ipv6(&host).expect("disable_ipv6"));
    netns
}

/// What `ip -6 address` shows on the container's eth0, as one line per address.
fn addrs6(c: &FakeContainer) -> String {
    c.sh("ip -6 -o address show dev eth0")
}

/// The address is usable the moment configure_container returns: bind() fails on a
/// tentative address (EADDRNOTAVAIL).
fn binds_at_once(netns: &Netns, address: Ipv6Addr) {
    netns
        .enter_briefly(|| UdpSocket::bind((address, 0)))
        .expect("enter")
        .unwrap_or_else(|e| panic!("bind to {address} right after setup: {e}"));
}

#[test]
fn dual_stack_and_ipv6_only_containers_get_usable_addresses_no_link_local_and_a_route() {
    sandbox!(
        "dual_stack_and_ipv6_only_containers_get_usable_addresses_no_link_local_and_a_route",
        {
            let rtnl = Rtnl::open().expect("open");
            let index = rtnl
                .ensure_bridge(&bridge_spec("nh6k0", true))
                .expect("ensure_bridge");
            let shown = sh("ip -6 -o address show dev nh6k0");
            assert!(shown.contains("inet6 fd00:98::1/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            // With no port yet (no carrier), only a no-DAD address is usable.
            UdpSocket::bind((gw6(), 0)).expect("bind to the bridge's IPv6 gateway at once");
            assert!(sh("ip -4 -o address show dev nh6k0").contains("10.98.0.1/24"));

            // Dual stack.
            let c1 = FakeContainer::start("k6-dual");
            let ns1 = plug(&rtnl, index, &c1, 2);
            let dual = ContainerAddrs {
                ipv4: Some(ContainerIp {
                    address: Ipv4Addr::new(10, 98, 0, 2),
                    prefix: 24,
                    gateway: GW4,
                }),
                ipv6: Some(v6(2)),
            };
            link::configure_container(&ns1, "eth0", &dual).expect("configure dual stack");
            binds_at_once(&ns1, v6(2).address);
            let shown = addrs6(&c1);
            assert!(shown.contains("inet6 fd00:98::2/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            assert!(!shown.contains("fe80"), "no link-local: {shown}");
            assert!(c1
                .sh("ip -4 -o address show dev eth0")
                .contains("inet 10.98.0.2/24"));
            let routes = c1.sh("ip -6 route show default");
            assert!(
                routes.contains("default via fd00:98::1 dev eth0"),
                "{routes}"
            );
            let routes = c1.sh("ip -4 route show default");
            assert!(
                routes.contains("default via 10.98.0.1 dev eth0"),
                "{routes}"
            );
            assert!(c1.sh("ip link show lo").contains(",UP"));

            // IPv6 only: no IPv4 at all, loopback up all the same.
            let c2 = FakeContainer::start("k6-only");
            let ns2 = plug(&rtnl, index, &c2, 3);
            let only = ContainerAddrs {
                ipv4: None,
                ipv6: Some(v6(3)),
            };
            link::configure_container(&ns2, "eth0", &only).expect("configure IPv6 only");
            binds_at_once(&ns2, v6(3).address);
            let shown = addrs6(&c2);
            assert!(shown.contains("inet6 fd00:98::3/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            assert!(!shown.contains("fe80"), "no link-local: {shown}");
            assert_eq!(c2.sh("ip -4 -o address show dev eth0").trim(), "");
            assert!(c2.sh("ip link show lo").contains(",UP"));
            assert!(c2.sh("ip -6 -o address show dev lo").contains("::1/128"));
            let routes = c2.sh("ip -6 route show default");
            assert!(
                routes.contains("default via fd00:98::1 dev eth0"),
                "{routes}"
            );

            // Both reach the gateway and each other without a link-local address, across
            // host ports that have IPv6 off.
            assert!(c1.sh_ok("ping -6 -c1 -W2 fd00:98::1"), "c1 → gateway");
            assert!(c2.sh_ok("ping -6 -c1 -W2 fd00:98::2"), "c2 → c1");
            assert!(c1.sh_ok("ping -4 -c1 -W2 10.98.0.1"), "c1 → gateway (IPv4)");

            // CHECK reads both families back.
            let view = link::inspect_container(&ns1, "eth0")
                .expect("inspect")
                .expect("eth0 is there");
            assert_eq!(view.ipv6_addresses, vec![(v6(2).address, 64)]);
            assert_eq!(view.ipv6_default_gateways, vec![gw6()]);
            assert_eq!(view.addresses, vec![(Ipv4Addr::new(10, 98, 0, 2), 24)]);
            assert_eq!(view.default_gateways, vec![GW4]);

            // A second time, the kernel refuses the address, and the error names it.
            let err = link::configure_container(&ns2, "eth0", &only).unwrap_err();
            let text = nethook::describe(&err);
            assert!(text.contains("add fd00:98::3/64 to eth0"), "{text}");
            assert!(text.contains("exists"), "{text}");

            // A container whose IPv6 is off (its own sysctl): one line saying so.
            let c3 = FakeContainer::start("k6-off");
            let ns3 = plug(&rtnl, index, &c3, 4);
            c3.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
            let off = ContainerAddrs {
                ipv4: None,
                ipv6: Some(v6(4)),
            };
            let err = link::configure_container(&ns3, "eth0", &off).unwrap_err();
            let text = nethook::describe(&err);
            assert!(
                text.contains("IPv6 is turned off in the container"),
                "{text}"
            );
        }
    );
}

#[test]
fn the_bridges_ipv6_gateway_comes_back_after_a_down_and_on_a_host_that_disables_ipv6() {
    sandbox!(
        "the_bridges_ipv6_gateway_comes_back_after_a_down_and_on_a_host_that_disables_ipv6",
        {
            let rtnl = Rtnl::open().expect("open");
            rtnl.ensure_bridge(&bridge_spec("nh6k0", false))
                .expect("ensure_bridge");
            // A link going down loses its IPv6 addresses (keep_addr_on_down is 0).
            sh("ip link set nh6k0 down");
            assert!(!sh("ip -6 -o address show dev nh6k0").contains("fd00:98::1"));
            rtnl.ensure_bridge(&bridge_spec("nh6k0", false))
                .expect("ensure_bridge after a down");
            let shown = sh("ip -6 -o address show dev nh6k0");
            assert!(shown.contains("inet6 fd00:98::1/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            // The bridge of an IPv6-only network has no IPv4 address.
            assert_eq!(sh("ip -4 -o address show dev nh6k0").trim(), "");
            // CHECK sees the gateway, and sees it gone.
            assert!(rtnl
                .has_ipv6_address("nh6k0", gw6())
                .expect("has_ipv6_address"));
            sh("ip -6 address del fd00:98::1/64 dev nh6k0");
            assert!(!rtnl
                .has_ipv6_address("nh6k0", gw6())
                .expect("has_ipv6_address"));
            assert!(!rtnl
                .has_ipv6_address("nh6nope", gw6())
                .expect("no such link"));
            sh("ip -6 address add fd00:98::1/64 dev nh6k0 nodad");

            // A network that gains IPv6 while its bridge stays: setup's cheap checks see
            // nothing to fix, `add_bridge_ipv6` puts the gateway on.
            let mut v4_only = bridge_spec("nh6k2", true);
            v4_only.ipv6 = None;
            rtnl.ensure_bridge(&v4_only)
                .expect("ensure_bridge IPv4 only");
            rtnl.ensure_bridge(&bridge_spec("nh6k2", true))
                .expect("ensure_bridge, now dual stack");
            assert!(!sh("ip -6 -o address show dev nh6k2").contains("fd00:98::1"));
            assert!(rtnl
                .add_bridge_ipv6("nh6k2", gw6(), 64)
                .expect("add_bridge_ipv6"));
            let shown = sh("ip -6 -o address show dev nh6k2");
            assert!(shown.contains("inet6 fd00:98::1/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            assert!(rtnl
                .add_bridge_ipv6("nh6k2", gw6(), 64)
                .expect("again: EEXIST is fine"));
            assert!(!rtnl
                .add_bridge_ipv6("nh6nope", gw6(), 64)
                .expect("no bridge yet"));

            // A bridge whose IPv6 gateway the kernel refuses is not left half made (the
            // next setup would find it and not add the gateway): it is deleted again.
            let mut bad = bridge_spec("nh6bad", true);
            bad.ipv6 = Some(("ff02::1234".parse().unwrap(), 64));
            let err = rtnl.ensure_bridge(&bad).unwrap_err();
            let text = nethook::describe(&err);
            assert!(
                text.contains("add gateway ff02::1234/64 to bridge nh6bad"),
                "{text}"
            );
            assert!(!link::link_present("nh6bad").expect("link_present"));

            // A host whose new links start with IPv6 off: nethook's bridge alone gets it.
            sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
            rtnl.ensure_bridge(&bridge_spec("nh6k1", false))
                .expect("ensure_bridge with default disable_ipv6=1");
            let shown = sh("ip -6 -o address show dev nh6k1");
            assert!(shown.contains("inet6 fd00:98::1/64"), "{shown}");
            assert!(!shown.contains("tentative"), "{shown}");
            let read = |key: &str| {
                std::fs::read_to_string(Path::new("/proc/sys/net/ipv6/conf").join(key))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            assert_eq!(read("nh6k1/disable_ipv6"), "0");
            // nethook's IPv6 bridges take no router advertisements, whatever the default.
            assert_eq!(read("nh6k0/accept_ra"), "0");
            assert_eq!(read("nh6k1/accept_ra"), "0");
            assert_eq!(read("nh6k2/accept_ra"), "0");
            assert_eq!(
                read("default/disable_ipv6"),
                "1",
                "the host's default is kept"
            );
        }
    );
}

#[test]
fn ipv6_forwarding_first_moves_uplinks_that_take_router_adverts_to_accept_ra_2() {
    sandbox!(
        "ipv6_forwarding_first_moves_uplinks_that_take_router_adverts_to_accept_ra_2",
        {
            for name in ["up0", "up1", "nh6k2", "nhabcdef"] {
                sh(&format!("ip link add {name} type bridge"));
            }
            sh("sysctl -qw net.ipv6.conf.up1.accept_ra=0");
            let read = |key: &str| {
                std::fs::read_to_string(Path::new("/proc/sys/net/ipv6/conf").join(key))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            assert_eq!(read("up0/accept_ra"), "1");
            assert!(!sysctl::ipv6_forwarding().expect("read"));

            let changed = sysctl::enable_ipv6_forwarding(&["nh6k2".to_owned()]).expect("enable");
            assert_eq!(changed, vec!["up0"]);
            assert!(sysctl::ipv6_forwarding().expect("read"));
            assert_eq!(read("all/forwarding"), "1");
            assert_eq!(read("up0/accept_ra"), "2");
            assert_eq!(read("up1/accept_ra"), "0");
            assert_eq!(
                read("nh6k2/accept_ra"),
                "1",
                "nethook's bridge takes no RAs"
            );
            assert_eq!(read("nhabcdef/accept_ra"), "1", "nor do its veths");
            assert_eq!(read("lo/accept_ra"), "1");
            assert_eq!(read("default/accept_ra"), "1");

            // Once on, a second call changes nothing.
            sh("sysctl -qw net.ipv6.conf.up1.accept_ra=1");
            assert!(sysctl::enable_ipv6_forwarding(&[])
                .expect("again")
                .is_empty());
            assert_eq!(read("up1/accept_ra"), "1");
        }
    );
}

/// `NETHOOK_LINK6_TIMING=FILE`: the container side's cost, IPv4 only against dual stack
/// against IPv6 only, interleaved, each in a namespace of its own as a container has
/// (median µs per call, entering the namespace and opening the sockets included).
#[test]
fn container_side_timed_by_family() {
    sandbox!("container_side_timed_by_family", {
        let Some(out) = std::env::var_os("NETHOOK_LINK6_TIMING") else {
            return;
        };
        let rtnl = Rtnl::open().expect("open");
        let index = rtnl
            .ensure_bridge(&bridge_spec("nh6k0", true))
            .expect("ensure_bridge");
        let rounds = 100u16;
        let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for i in 0..rounds * 4 {
            let mut c = FakeContainer::start(&format!("k6-t{i}"));
            let netns = plug(&rtnl, index, &c, 10);
            // 3: IPv4 only on a link told beforehand (untimed) to make no link-local: what
            // the kernel's IPv6 work at IFF_UP costs an IPv4-only container today.
            let kind = usize::from(i % 4);
            if kind == 3 {
                c.sh("ip link set eth0 addrgenmode none");
            }
            let v4 = ContainerIp {
                address: Ipv4Addr::new(10, 98, 0, 10),
                prefix: 24,
                gateway: GW4,
            };
            let addrs = ContainerAddrs {
                ipv4: (kind != 2).then_some(v4),
                ipv6: (kind == 1 || kind == 2).then_some(v6(10)),
            };
            let t = std::time::Instant::now();
            link::configure_container(&netns, "eth0", &addrs).expect("configure");
            times[kind].push(t.elapsed().as_secs_f64() * 1e6);
            drop(netns);
            c.stop();
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // The bridge: setup's fast path, and what re-adding the IPv6 gateway every time
        // would cost on top (an EEXIST answer, plus a look-up and a sysctl read here).
        let mut fast = Vec::new();
        let mut readd = Vec::new();
        for _ in 0..2000 {
            let t = std::time::Instant::now();
            rtnl.ensure_bridge(&bridge_spec("nh6k0", true)).unwrap();
            fast.push(t.elapsed().as_secs_f64() * 1e6);
            let t = std::time::Instant::now();
            assert!(rtnl.add_bridge_ipv6("nh6k0", gw6(), 64).unwrap());
            readd.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let text = format!(
            "{:8.1} µs  configure_container IPv4 only\n{:8.1} µs  configure_container dual stack\n{:8.1} µs  configure_container IPv6 only\n{:8.1} µs  configure_container IPv4 only, link already addrgenmode none\n{:8.1} µs  ensure_bridge dual stack, bridge in place\n{:8.1} µs  add_bridge_ipv6, gateway in place\n",
            median(&mut times[0]),
            median(&mut times[1]),
            median(&mut times[2]),
            median(&mut times[3]),
            median(&mut fast),
            median(&mut readd),
        );
        std::fs::write(out, text).expect("write the timings");
    });
}

/// Sends one router advertisement (router lifetime 1800 s) out of DEV to all nodes.
const SEND_RA: &str = r#"
import socket, struct, sys
dev = sys.argv[1]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), ("ff02::1", 0, 0, socket.if_nametoindex(dev)))
"#;

/// The host's own default route learned from a router advertisement survives nethook
/// turning IPv6 forwarding on (turned on plainly, the kernel deletes it at once: h21 §3).
#[test]
fn a_default_route_learned_from_router_adverts_survives_ipv6_forwarding() {
    sandbox!(
        "a_default_route_learned_from_router_adverts_survives_ipv6_forwarding",
        {
            if !needs("python3") {
                return;
            }
            let dir = TempDir::new("link6-ra");
            let script = dir.0.join("ra.py");
            std::fs::write(&script, SEND_RA).unwrap();
            let rtr = FakeContainer::start("k6-rtr");
            sh(&format!(
                "ip link add up0 type veth peer name r0 netns /proc/{}/ns/net",
                rtr.pid()
            ));
            sh("ip link set up0 up");
            rtr.sh("ip link set lo up; ip link set r0 up; ip address add fe80::1/64 dev r0 nodad");
            let learned = || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    rtr.sh(&format!("python3 {} r0", script.display()));
                    let routes = sh("ip -6 route show default");
                    if routes.contains("via fe80::1 dev up0 proto ra") {
                        return routes;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no RA-learned route: {routes}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            };
            learned();
            let changed = sysctl::enable_ipv6_forwarding(&[]).expect("enable");
            let routes = sh("ip -6 route show default");
            assert!(routes.contains("via fe80::1 dev up0 proto ra"), "{routes}");
            assert_eq!(changed, vec!["up0"]);
            // And later advertisements still refresh it.
            sh("ip -6 route del default via fe80::1 dev up0");
            learned();
        }
    );
}
