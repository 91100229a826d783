//! Privileged tests of the firewall's part of routed networks, on a routed topology built by
//! hand with `ip` in a sandbox (no nethook driver): host veths `nr…` with no address, a /32
//! route per container, inside each container its address as /32, a route to 169.254.1.1 and
//! a default route via it, and a permanent neighbour entry for it (the host veth's MAC).
//! The firewall API adds the skeleton and each container's elements as a setup would
//! (`routed_sources`, `intra4`, `masq4`, a published port), and real packets show what passes.
//!
//! What reached a container is counted inside it (an nft table of its own, input hook), so a
//! spoofed packet is known to be dropped even where a ping would fail anyway (its reply has
//! no way back). Every drop is first shown to pass without nethook's tables, so no check
//! here can pass by accident.

mod common;

use std::net::Ipv4Addr;

use common::*;
use nethook::firewall::{self, Elements, PortMapping, Proto, Source};
use nethook::model::mac::Mac;

/// The host veths' MAC, as the routed driver derives it from 169.254.1.1.
const GW_MAC: &str = "02:4e:a9:fe:01:01";

fn net(s: &str) -> ipnetwork::Ipv4Network {
    s.parse().unwrap()
}

/// A routed "container": its netns, host veth, address and MAC.
struct Routed {
    c: FakeContainer,
    veth: &'static str,
    addr: &'static str,
    mac: [u8; 6],
    subnet: &'static str,
}

impl Routed {
    fn start(veth: &'static str, addr: &'static str, subnet: &'static str) -> Routed {
        let ip: Ipv4Addr = addr.parse().unwrap();
        let [a, b, c, d] = ip.octets();
        let mac = [0x02, 0x4e, a, b, c, d];
        let ctr = FakeContainer::start(veth);
        let mac_s = Mac(mac).to_string();
        sh(&format!(
            "ip link add {veth} address {GW_MAC} type veth peer name eth0 address {mac_s} netns {}",
            ctr.pid()
        ));
        sh(&format!(
            "ip link set {veth} up && ip route add {addr}/32 dev {veth}"
        ));
        ctr.sh(&format!(
            "ip link set lo up && ip addr add {addr}/32 dev eth0 && ip link set eth0 up \
             && ip route add 169.254.1.1 dev eth0 && ip route add default via 169.254.1.1 \
             && ip neigh add 169.254.1.1 lladdr {GW_MAC} dev eth0 nud permanent"
        ));
        // Count what reaches it (see `watch`).
        ctr.sh(
            "nft add table ip t && nft add chain ip t in '{ type filter hook input priority 0; }'",
        );
        Routed {
            c: ctr,
            veth,
            addr,
            mac,
            subnet,
        }
    }

    /// What one setup of this container adds (per-network and own elements).
    fn elements(&self) -> Elements {
        Elements {
            masq4: vec![net(self.subnet)],
            intra4: vec![net(self.subnet)],
            routed_sources: vec![self.source()],
            ..Elements::default()
        }
    }

    fn source(&self) -> Source {
        Source {
            host_interface: self.veth.into(),
            mac: Mac(self.mac),
            ipv4: vec![self.addr.parse().unwrap()],
            ipv6: vec![],
        }
    }

    fn ping(&self, to: &str) -> bool {
        self.c.sh_ok(&format!("ping -c1 -W1 {to}"))
    }

    /// Sends two echo requests from `src` (an address added for this, then removed).
    fn ping_from(&self, src: &str, to: &str) {
        self.c.sh(&format!("ip addr add {src}/32 dev eth0"));
        let _ = self.c.sh_ok(&format!("ping -c2 -W1 -I {src} {to}"));
        self.c.sh(&format!("ip addr del {src}/32 dev eth0"));
    }

    /// Start counting echo requests from `src` that reach this container.
    fn watch(&self, src: &str) {
        self.c.sh(&format!(
            "nft add rule ip t in ip saddr {src} icmp type echo-request counter"
        ));
    }

    /// Echo requests from `src` that reached it since `watch(src)`.
    fn seen(&self, src: &str) -> u64 {
        let chain = self.c.sh("nft list chain ip t in");
        let line = chain
            .lines()
            .find(|l| l.contains(&format!("ip saddr {src} ")))
            .unwrap_or_else(|| panic!("not watching {src}:\n{chain}"));
        line.split("packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {line}"))
    }
}

/// The sandbox "host": forwarding on, no reverse-path filter (so only nethook's rules can
/// drop a spoofed source), and an outside namespace on `up0` (192.0.2.1 ↔ 192.0.2.2) that
/// routes the containers' subnets via the host.
fn host_with_outside() -> FakeContainer {
    sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
    let out = FakeContainer::start("outside");
    sh(&format!(
        "ip link add up0 type veth peer name eth0 netns {} && ip addr add 192.0.2.1/24 dev up0 && ip link set up0 up",
        out.pid()
    ));
    out.sh(
        "ip link set lo up && ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up \
         && ip route add 10.88.0.0/15 via 192.0.2.1",
    );
    out
}

/// Before any nethook table: what the checks below expect to be dropped does pass here.
fn without_firewall_everything_passes(c1: &Routed, c2: &Routed, c3: &Routed, out: &FakeContainer) {
    assert!(c1.ping(c2.addr) && c3.ping(c1.addr), "plain routing works");
    c2.watch("10.88.0.9");
    c1.ping_from("10.88.0.9", c2.addr);
    assert!(
        c2.seen("10.88.0.9") > 0,
        "a spoofed source passes plain routing"
    );
    c1.watch("10.88.0.99");
    out.sh("ip addr add 10.88.0.99/32 dev eth0");
    let _ = out.sh_ok(&format!("ping -c1 -W1 -I 10.88.0.99 {}", c1.addr));
    assert!(
        c1.seen("10.88.0.99") > 0,
        "an outside host claiming a source in the subnet passes plain routing"
    );
    // IPv6 between a container and the host.
    sh(&format!(
        "ip -6 addr add fd00:88::1/64 dev {} nodad",
        c1.veth
    ));
    c1.c.sh("ip -6 addr add fd00:88::2/64 dev eth0 nodad");
    assert!(
        c1.c.sh_ok("ping -6 -c1 -W1 fd00:88::1"),
        "IPv6 passes plain routing"
    );
    assert!(!firewall::table_exists().unwrap());
}

/// One routed network A (c1, c2) and another B (c3), with the skeleton and each container's
/// elements added as setups would: traffic within A passes through the host, spoofed sources
/// (address, MAC, IPv6, an outside host claiming an address of A) and other networks do not,
/// masquerade and a published port work, and a container whose elements are deleted (teardown)
/// or pruned (gc) sends nothing.
#[test]
fn routed_containers_reach_their_network_only_from_their_own_address() {
    sandbox!(
        "routed_containers_reach_their_network_only_from_their_own_address",
        {
            if !needs("nft && command -v ping && command -v python3") {
                return;
            }
            let out = host_with_outside();
            let c1 = Routed::start("nr0000000000001", "10.88.0.2", "10.88.0.0/24");
            let c2 = Routed::start("nr0000000000002", "10.88.0.3", "10.88.0.0/24");
            let c3 = Routed::start("nr0000000000003", "10.89.0.2", "10.89.0.0/24");
            without_firewall_everything_passes(&c1, &c2, &c3, &out);

            firewall::ensure_skeleton().unwrap();
            firewall::guard_forwarding(true).unwrap();
            let publish = PortMapping {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8080,
                container_ip: c1.addr.parse().unwrap(),
                container_port: 80,
            };
            let c1_elems = Elements {
                ports4: vec![publish],
                ..c1.elements()
            };
            for e in [&c1_elems, &c2.elements(), &c3.elements()] {
                firewall::add(e).unwrap();
            }
            for e in [&c1_elems, &c2.elements(), &c3.elements()] {
                assert_eq!(firewall::missing_elements(e).unwrap(), Vec::<String>::new());
            }

            // Within network A, through the host (forwarding guard on: routed veths are exempt).
            assert!(c1.ping(c2.addr) && c2.ping(c1.addr), "c1 <-> c2");
            // The host reaches them (output path), they reach the host.
            assert!(sh_ok(&format!("ping -c1 -W1 {}", c3.addr)) && c3.ping("192.0.2.1"));

            // A source address that is not its own: dropped before it reaches c2.
            let before = c2.seen("10.88.0.9");
            c1.ping_from("10.88.0.9", c2.addr);
            assert_eq!(
                c2.seen("10.88.0.9"),
                before,
                "spoofed address from c1 reached c2"
            );
            // Its own address with another MAC: dropped (the MAC change flushes the neighbour).
            c2.watch(c1.addr);
            let seen = c2.seen(c1.addr);
            c1.c.sh(&format!(
            "ip link set eth0 address 02:00:00:00:00:99 && ip neigh replace 169.254.1.1 lladdr {GW_MAC} dev eth0 nud permanent"
        ));
            assert!(!c1.ping(c2.addr), "c1 with another MAC reached c2");
            assert_eq!(c2.seen(c1.addr), seen);
            c1.c.sh(&format!(
            "ip link set eth0 address {} && ip neigh replace 169.254.1.1 lladdr {GW_MAC} dev eth0 nud permanent",
            Mac(c1.mac)
        ));
            // Should the host have asked for c1's MAC meanwhile, it would hold the wrong one.
            sh(&format!("ip neigh flush dev {}", c1.veth));
            assert!(c1.ping(c2.addr), "c1 again with its own MAC");
            // No IPv6 from routed containers.
            assert!(
                !c1.c.sh_ok("ping -6 -c1 -W1 fd00:88::1"),
                "IPv6 from c1 passed"
            );

            // Another routed network: nothing either way.
            c1.watch(c3.addr);
            assert!(
                !c3.ping(c1.addr) && !c1.ping(c3.addr),
                "networks A and B are isolated"
            );
            assert_eq!(c1.seen(c3.addr), 0);
            // An outside host, even one that claims a source in network A, reaches no container
            // address directly.
            let before = c1.seen("10.88.0.99");
            let _ = out.sh_ok(&format!("ping -c1 -W1 -I 10.88.0.99 {}", c1.addr));
            assert_eq!(
                c1.seen("10.88.0.99"),
                before,
                "outside host as 10.88.0.99 reached c1"
            );
            assert!(!out.sh_ok(&format!("ping -c1 -W1 -I 192.0.2.2 {}", c1.addr)));

            // Masquerade to the outside, and a published port from the outside.
            assert!(c1.ping("192.0.2.2") && c3.ping("192.0.2.2"), "masquerade");
            let mut srv = tcp_server(&format!("nsenter -t {} -n", c1.c.pid()), 80, 1);
            let prefix = format!("nsenter -t {} -n", out.pid());
            assert_eq!(tcp_client(&prefix, "192.0.2.1", 8080), "from 192.0.2.2");
            let _ = srv.wait();

            // Teardown of c1: its own elements go, and with them everything it sends.
            firewall::delete(&c1_elems.own()).unwrap();
            let seen = c2.seen(c1.addr);
            assert!(
                !c1.ping(c2.addr) && !c1.ping("192.0.2.1"),
                "c1 sends after teardown"
            );
            assert_eq!(c2.seen(c1.addr), seen);
            assert!(
                c2.ping("192.0.2.1") && c2.ping("192.0.2.2"),
                "c2 keeps its network"
            );
            let missing = firewall::missing_elements(&c1.elements()).unwrap();
            assert_eq!(
                missing,
                vec![format!(
                    "nftables raddrs4 element for host interface {} is missing",
                    c1.veth
                )]
            );

            // Back (restore), then gc prunes it when no live endpoint has it.
            let mut live = c2.elements();
            live.extend(c3.elements());
            let mut all = live.clone();
            all.extend(c1.elements());
            firewall::restore(&all).unwrap();
            assert!(c1.ping(c2.addr), "c1 restored");
            assert_eq!(firewall::prune(&all, false).unwrap(), Vec::<String>::new());
            let report = firewall::prune(&live, true).unwrap();
            assert_eq!(
                report,
                vec![format!(
                    "delete host interface \"{}\" from set raddrs4: no live endpoint has it",
                    c1.veth
                )]
            );
            assert!(c1.ping(c2.addr), "a dry run deletes nothing");
            firewall::prune(&live, false).unwrap();
            assert!(!c1.ping(c2.addr), "c1 sends after gc pruned its element");
            assert!(!c2.ping(c1.addr), "c1 answers after gc pruned its element");
            assert!(c2.ping("192.0.2.2"), "c2 keeps its network");
            let raddrs4 = sh("nft list set inet nethook raddrs4");
            assert!(
                !raddrs4.contains(c1.veth) && raddrs4.contains(c2.veth),
                "{raddrs4}"
            );
            // The per-network element stays while the network has endpoints; the last endpoint
            // of network B takes B's with it (twice: teardown is idempotent).
            firewall::delete(&c3.elements()).unwrap();
            firewall::delete(&c3.elements()).unwrap();
            let intra4 = sh("nft list set inet nethook intra4");
            assert!(
                intra4.contains("10.88.0.0/24 . 10.88.0.0/24") && !intra4.contains("10.89."),
                "{intra4}"
            );
            assert!(!c3.ping("192.0.2.1"), "c3 sends after teardown");
        }
    );
}

/// A host upgraded while containers run: its inet table predates routed networks, so the first
/// element batch fails with ENOENT, `ensure_skeleton` re-creates the table with the routed
/// objects, and a restore brings back every endpoint's elements, bridge and routed alike.
#[test]
fn an_inet_table_from_before_routed_networks_is_recreated_with_them() {
    sandbox!(
        "an_inet_table_from_before_routed_networks_is_recreated_with_them",
        {
            if !needs("nft && command -v ping") {
                return;
            }
            sh(&format!(
                "nft -f {}/testdata/nft/skeleton-previous.nft",
                env!("CARGO_MANIFEST_DIR")
            ));
            sh("nft add element inet nethook masq4 '{ 10.77.0.0/16 }'");
            // The previous release's tables predate IPv6: both are re-created.
            assert_eq!(
                firewall::missing_skeleton().unwrap(),
                vec![
                    "an older version of table inet nethook",
                    "an older version of table bridge nethook"
                ]
            );
            sh("sysctl -qw net.ipv4.ip_forward=1");
            let c1 = Routed::start("nr0000000000001", "10.88.0.2", "10.88.0.0/24");
            let c2 = Routed::start("nr0000000000002", "10.88.0.3", "10.88.0.0/24");
            let err = firewall::add(&c1.elements()).unwrap_err();
            assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT), "{err}");
            assert!(firewall::ensure_skeleton().unwrap(), "re-created");
            assert!(firewall::missing_skeleton().unwrap().is_empty());
            let mut all = Elements {
                masq4: vec![net("10.77.0.0/16")],
                ..Elements::default()
            };
            all.extend(c1.elements());
            all.extend(c2.elements());
            firewall::restore(&all).unwrap();
            assert!(c1.ping(c2.addr) && c2.ping(c1.addr));
            let inet = sh("nft list table inet nethook");
            for needle in [
                "iifname \"nr*\" jump rantispoof",
                "10.88.0.0/24 . 10.88.0.0/24",
                "\"nr0000000000002\" . 02:4e:0a:58:00:03 . 10.88.0.3",
                "10.77.0.0/16",
            ] {
                assert!(inet.contains(needle), "no {needle:?} in\n{inet}");
            }
            assert!(sh("nft list set inet nethook probe_svc").contains("elements = { 0 }"));
            assert!(!firewall::ensure_skeleton().unwrap());
        }
    );
}
