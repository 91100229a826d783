//! Unit tests of `units.rs`: which set each part of [`Elements`] goes to, in which order, and
//! what is refused before anything is sent.

use std::net::Ipv4Addr;

use super::*;
use crate::firewall::types::{port, sample, source};
use crate::firewall::{PortMapping, PortMapping6, Proto};

fn objects(sets: &[SetUnits]) -> Vec<String> {
    sets.iter()
        .flat_map(|g| g.units.iter().map(|u| u.object.to_string()))
        .collect()
}

#[test]
fn units_name_their_element_per_set_in_a_fixed_order() {
    let mut elems = sample();
    elems.ports4.push(PortMapping {
        host_ip: Some(Ipv4Addr::UNSPECIFIED),
        ..port(8081)
    });
    let sets = element_units(&elems, true).unwrap();
    assert_eq!(
        objects(&sets),
        vec![
            "masq4 element 10.77.0.0/16",
            "nomasq4 element 10.77.0.0/16 . 10.0.0.0/8",
            "nets element for bridge nethook0",
            "intra element for bridge nethook0",
            "ports4 element tcp . 8080",
            // 0.0.0.0 is every address.
            "ports4 element tcp . 8081",
            "macs element for host interface nh0123456789ab",
            "macs element for host interface nh0123456789ac",
            // No IPv4 address: a MAC element only (IPv4 and ARP from it are dropped).
            "addrs4 element for host interface nh0123456789ab",
            "l2open element for host interface nh0123456789ab",
        ]
    );
    assert!(
        sets.iter().all(|g| g.name() != "hports4"),
        "empty sets are left out"
    );
    let flags = |sets: &[SetUnits]| -> Vec<u16> { sets.iter().map(|g| g.add_flags).collect() };
    let c = NLM_F_CREATE;
    assert_eq!(flags(&sets), [c, c, c, c, c | NLM_F_EXCL, c, c, c]);
    let restore = element_units(&elems, false).unwrap();
    assert!(
        flags(&restore).iter().all(|f| *f == c),
        "restore: nothing exclusive"
    );
}

/// A routed endpoint: its source goes to `raddrs4` of the inet table (never to the bridge
/// table's `macs`/`addrs4`), its network's subnet to `intra4` as `subnet . subnet`.
fn routed_sample() -> Elements {
    Elements {
        masq4: vec!["10.88.0.0/24".parse().unwrap()],
        intra4: vec!["10.88.0.7/24".parse().unwrap()],
        routed_sources: vec![
            Source {
                ipv4: vec![Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 9)],
                ..source("nr0123456789ab", 2)
            },
            Source {
                ipv4: vec![],
                ..source("nr0123456789ac", 3)
            },
        ],
        ..Elements::default()
    }
}

#[test]
fn routed_sources_and_subnets_go_to_the_inet_table() {
    let sets = element_units(&routed_sample(), true).unwrap();
    assert_eq!(
        objects(&sets),
        vec![
            "masq4 element 10.88.0.0/24",
            // Host bits cleared, as nft shows it.
            "intra4 element 10.88.0.0/24 . 10.88.0.0/24",
            // The one without an address has no element: its veth sends nothing.
            "raddrs4 element for host interface nr0123456789ab",
        ]
    );
    assert!(sets.iter().all(|g| g.family == TableFamily::Inet));
    assert!(sets.iter().all(|g| g.add_flags == NLM_F_CREATE));
    let raddrs4 = sets.iter().find(|g| g.name() == "raddrs4").unwrap();
    let veth = encode::ifname("nr0123456789ab").unwrap();
    let mac = [0x02, 0x4e, 10, 77, 0, 2];
    assert_eq!(
        raddrs4.units[0]
            .elems
            .iter()
            .map(|e| e.key.clone())
            .collect::<Vec<_>>(),
        vec![
            encode::addrs4_key(&veth, mac, Ipv4Addr::new(10, 88, 0, 2)),
            encode::addrs4_key(&veth, mac, Ipv4Addr::new(10, 88, 0, 9)),
        ]
    );
    let intra4 = sets.iter().find(|g| g.name() == "intra4").unwrap();
    let net = "10.88.0.0/24".parse().unwrap();
    assert_eq!(intra4.units[0].elems.len(), 1, "one concatenated interval");
    assert_eq!(intra4.units[0].elems[0].key, encode::intra4_elem(net).key);
    assert_eq!(
        intra4.units[0].elems[0].key_end,
        encode::intra4_elem(net).key_end
    );
}

#[test]
fn routed_and_bridge_elements_share_a_batch_in_a_fixed_order() {
    let mut elems = sample();
    elems.extend(routed_sample());
    let names: Vec<_> = element_units(&elems, true)
        .unwrap()
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        names,
        [
            "masq4", "nomasq4", "nets", "intra", "intra4", "ports4", "raddrs4", "macs", "addrs4",
            "l2open"
        ]
    );
    // The per-container part keeps the routed sources, the per-network part the subnet.
    let own = elements_of(&routed_sample().own());
    assert_eq!(own, ["raddrs4"]);
    let shared = elements_of(&routed_sample().shared());
    assert_eq!(shared, ["masq4", "intra4"]);
}

fn elements_of(elems: &Elements) -> Vec<&'static str> {
    element_units(elems, false)
        .unwrap()
        .iter()
        .map(|g| g.name())
        .collect()
}

#[test]
fn error_objects_name_their_set() {
    let sets = element_units(
        &Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            nomasq4: vec![(
                "10.77.0.0/16".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            )],
            bridges: vec!["nethook0".into()],
            ports4: vec![
                port(1),
                PortMapping {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    ..port(2)
                },
            ],
            sources: vec![source("nh0123456789ab", 2)],
            any_ethertype: vec!["nh0123456789ab".into()],
            intra4: vec!["10.88.0.0/24".parse().unwrap()],
            routed_sources: vec![source("nr0123456789ab", 2)],
            ..Elements::default()
        },
        false,
    )
    .unwrap();
    for g in &sets {
        for u in &g.units {
            assert_eq!(set_of(&u.object), Some(g.name()), "{}", u.object);
        }
    }
    assert_eq!(
        set_of(&Object::ForwardGuard { ipv6: false }),
        Some("fwd_guard")
    );
    assert_eq!(set_of(&Object::Batch), None);
}

#[test]
fn bad_interface_names_are_refused_before_the_kernel() {
    for (elems, what) in [
        (
            Elements {
                bridges: vec!["a-bridge-name-too-long".into()],
                ..Elements::default()
            },
            "bridge",
        ),
        (
            Elements {
                sources: vec![source("", 2)],
                ..Elements::default()
            },
            "host interface",
        ),
        (
            Elements {
                any_ethertype: vec!["x".repeat(16)],
                ..Elements::default()
            },
            "host interface",
        ),
        (
            // Even one without an address: its name is checked first.
            Elements {
                routed_sources: vec![Source {
                    ipv4: vec![],
                    ..source("nr-name-too-long", 2)
                }],
                ..Elements::default()
            },
            "host interface",
        ),
    ] {
        match element_units(&elems, true) {
            Err(e @ FirewallError::InterfaceName { .. }) => {
                assert!(e.to_string().contains(what), "{e}");
                assert_eq!(e.errno(), None);
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted {elems:?}"),
        }
    }
}

fn dual_stack() -> Elements {
    let port6 = |host_ip: Option<&str>, host_port| PortMapping6 {
        host_ip: host_ip.map(|t| t.parse().unwrap()),
        proto: Proto::Udp,
        host_port,
        container_ip: "fd00:77::2".parse().unwrap(),
        container_port: 5353,
    };
    let mut src = source("nh0123456789ab", 2);
    src.ipv6 = vec![
        "fd00:77::2".parse().unwrap(),
        "fe80::4e:aff:fe4d:2".parse().unwrap(),
    ];
    Elements {
        masq4: vec!["10.77.0.0/16".parse().unwrap()],
        masq6: vec!["fd00:77::9/64".parse().unwrap()],
        nomasq6: vec![("fd00:77::/64".parse().unwrap(), "fd00::/8".parse().unwrap())],
        ports4: vec![port(53)],
        ports6: vec![
            port6(None, 53),
            port6(Some("2001:db8::1"), 54),
            // `::` is every address, as 0.0.0.0 is.
            port6(Some("::"), 55),
        ],
        sources: vec![src],
        ..Elements::default()
    }
}

#[test]
fn ipv6_parts_go_to_the_ipv6_sets() {
    let sets = element_units(&dual_stack(), true).unwrap();
    assert_eq!(
        objects(&sets),
        vec![
            "masq4 element 10.77.0.0/16",
            // Host bits cleared, as nft shows it.
            "masq6 element fd00:77::/64",
            "nomasq6 element fd00:77::/64 . fd00::/8",
            "ports4 element tcp . 53",
            "ports6 element udp . 53",
            "ports6 element udp . 55",
            "hports6 element 2001:db8::1 . udp . 54",
            "macs element for host interface nh0123456789ab",
            "addrs4 element for host interface nh0123456789ab",
            "addrs6 element for host interface nh0123456789ab",
        ]
    );
    for g in &sets {
        for u in &g.units {
            assert_eq!(set_of(&u.object), Some(g.name()), "{}", u.object);
        }
    }
    let set = |name| sets.iter().find(|g| g.name() == name).unwrap();
    assert_eq!(set("ports6").add_flags, NLM_F_CREATE | NLM_F_EXCL);
    assert_eq!(set("hports6").add_flags, NLM_F_CREATE | NLM_F_EXCL);
    assert_eq!(set("addrs6").family, TableFamily::Bridge);
    let c6: std::net::Ipv6Addr = "fd00:77::2".parse().unwrap();
    assert_eq!(
        set("ports6").units[0].elems[0].data,
        Some(encode::dnat6_data(c6, 5353))
    );
    assert_eq!(
        set("hports6").units[0].elems[0].key,
        encode::hports6_key("2001:db8::1".parse().unwrap(), Proto::Udp, 54)
    );
    // One element per address: the global one and the link-local.
    let veth = encode::ifname("nh0123456789ab").unwrap();
    let keys: Vec<_> = set("addrs6").units[0]
        .elems
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0],
        encode::addrs6_key(&veth, [0x02, 0x4e, 10, 77, 0, 2], c6)
    );
    assert_eq!(set("masq6").units[0].elems.len(), 2, "start and end");
    // Per network / per container, as for IPv4.
    assert_eq!(
        elements_of(&dual_stack().shared()),
        ["masq4", "masq6", "nomasq6"]
    );
    assert_eq!(
        elements_of(&dual_stack().own()),
        ["ports4", "ports6", "hports6", "macs", "addrs4", "addrs6"]
    );
}

#[test]
fn the_forwarding_guard_has_an_element_per_family() {
    let v4 = guard_units(false);
    let v6 = guard_units(true);
    assert_eq!(v4[0].units[0].elems[0].key, vec![2]);
    assert_eq!(v6[0].units[0].elems[0].key, vec![10]);
    assert_eq!(v6[0].units[0].object.to_string(), "fwd_guard element ipv6");
    assert_eq!(set_of(&v6[0].units[0].object), Some("fwd_guard"));
}

#[test]
fn a_routed_source_with_ipv6_is_refused_not_dropped() {
    let mut src = source("nr0123456789ab", 2);
    src.ipv6 = vec!["fd00:77::2".parse().unwrap()];
    let elems = Elements {
        routed_sources: vec![src],
        ..Elements::default()
    };
    for exclusive in [true, false] {
        match element_units(&elems, exclusive) {
            Err(e @ FirewallError::RoutedIpv6 { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("nr0123456789ab has IPv6 address fd00:77::2"),
                    "{text}"
                );
                assert_eq!(e.errno(), None);
            }
            other => panic!("not refused: {other:?}"),
        }
    }
}
