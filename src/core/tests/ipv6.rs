//! IPv6 through the core: dual-stack leases recorded and freed together, and `network
//! update --subnet6`.

use super::*;
use crate::core::network::{add_ipv6, NetworkOpError};

#[test]
fn the_default_network_gets_ipv6_from_a_file_and_keeps_its_ipv4_part() {
    let w = World::new("v6-update");
    let net = add_ipv6(&w.store, &w.fake, "nethook", "fd00:77::/64", None, true).unwrap();
    assert_eq!(net.bridge, "nethook0");
    let loaded = w.store.load_network("nethook").unwrap();
    assert_eq!(loaded, net);
    assert_eq!(loaded.ipv4.unwrap().subnet.to_string(), "10.77.0.0/16");
    assert_eq!(loaded.ipv6.unwrap().gateway.to_string(), "fd00:77::1");
    assert!(
        w.fake
            .change_calls()
            .contains(&"link.add_bridge_ipv6 nethook0 fd00:77::1/64".to_owned()),
        "the bridge, if up, gets the gateway now: {:?}",
        w.fake.change_calls()
    );
    let again = add_ipv6(&w.store, &w.fake, "nethook", "fd00:78::/64", None, true).unwrap_err();
    assert!(matches!(again, NetworkOpError::HasIpv6 { .. }), "{again}");
    assert!(again.to_string().contains("fd00:77::/64"), "{again}");
}

#[test]
fn an_ipv6_part_that_overlaps_another_network_is_refused_and_nothing_is_written() {
    let w = World::new("v6-overlap");
    add_ipv6(&w.store, &w.fake, "nethook", "fd00:77::/64", None, true).unwrap();
    let mut other =
        crate::model::network::Network::new("b", "10.78.0.0/24", None, None, true).unwrap();
    other.set_ipv6("fd00:78::/64", None, true).unwrap();
    w.store.create_network(&other).unwrap();
    let before = w.store.load_network("b").unwrap();
    let e = add_ipv6(&w.store, &w.fake, "b", "fd00:77::/48", None, true).unwrap_err();
    assert!(matches!(e, NetworkOpError::HasIpv6 { .. }), "{e}");
    let plain = crate::model::network::Network::new("c", "10.79.0.0/24", None, None, true).unwrap();
    w.store.create_network(&plain).unwrap();
    let e = add_ipv6(&w.store, &w.fake, "c", "fd00:77::/48", None, true).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert!(w.store.load_network("c").unwrap().ipv6.is_none());
    assert_eq!(w.store.load_network("b").unwrap(), before);
}

/// A dual-stack network `d6` and a request for container `id` on it.
fn dual_world(tag: &str) -> World {
    let w = World::new(tag);
    let mut net =
        crate::model::network::Network::new("d6", "10.62.0.0/24", None, None, true).unwrap();
    net.set_ipv6("fd00:62::/64", None, true).unwrap();
    w.store.create_network(&net).unwrap();
    w
}

fn dual_request(w: &World, id: &str, ports: &str) -> Request {
    let mut req = w.request(id, ports);
    req.options.network = "d6".into();
    req
}

#[test]
fn a_dual_stack_setup_records_both_addresses_and_configures_both_families() {
    let w = dual_world("v6-setup");
    let ep = setup(&w.store, &w.fake, &dual_request(&w, "c1", "8080:80")).unwrap();
    let v6 = ep.ipv6.unwrap();
    assert_eq!(v6.address.to_string(), "fd00:62::2");
    let held = w.store.list_allocations("d6").unwrap();
    assert_eq!(
        held,
        vec![
            ("10.62.0.2".parse().unwrap(), "c1".to_owned()),
            ("fd00:62::2".parse().unwrap(), "c1".to_owned())
        ]
    );
    let calls = w.fake.change_calls();
    assert!(
        calls.iter().any(|c| c.contains("fd00:62::1/64")),
        "the bridge gets the IPv6 gateway: {calls:?}"
    );
    let fw = calls.iter().find(|c| c.starts_with("fw.add")).unwrap();
    assert!(fw.contains("ports6") && fw.contains("fd00:62::2"), "{fw}");
}

#[test]
fn the_first_ipv6_container_guards_then_turns_ipv6_forwarding_on_and_keeps_ra_routes() {
    let w = dual_world("v6-forwarding");
    w.fake.set_ipv6_forwarding(false);
    w.fake.set_accept_ra_uplinks(&["eth0", "wlan0"]);
    setup(&w.store, &w.fake, &dual_request(&w, "c1", "")).unwrap();
    let changes = w.fake.changes();
    let at = |what: &str| {
        changes
            .iter()
            .position(|c| *c == what)
            .unwrap_or_else(|| panic!("{what}: {changes:?}"))
    };
    assert!(at("fw.guard_forwarding6") < at("sysctl.enable_ipv6_forwarding"));
    let marker =
        std::fs::read_to_string(crate::core::recover::forwarding6_marker(&w.store)).unwrap();
    assert!(
        marker.contains("set accept_ra=2 on eth0, wlan0 first"),
        "{marker}"
    );
    // The bridges nethook owns are no uplinks.
    let calls = w.fake.change_calls();
    let enable = calls
        .iter()
        .find(|c| c.starts_with("sysctl.enable_ipv6_forwarding"))
        .unwrap();
    assert!(
        enable.contains("nh-d6") && enable.contains("nethook0"),
        "{enable}"
    );
}

#[test]
fn an_ipv4_only_network_leaves_ipv6_forwarding_alone() {
    let w = World::new("v4-no-forwarding6");
    w.fake.set_ipv6_forwarding(false);
    w.setup("c1", "").unwrap();
    assert!(!w
        .fake
        .changes()
        .iter()
        .any(|c| c.contains("forwarding6") || c.contains("ipv6_forwarding")));
    assert!(!crate::core::recover::forwarding6_marker(&w.store).exists());
}

#[test]
fn a_failed_dual_stack_setup_frees_both_addresses_and_teardown_frees_both_too() {
    let w = dual_world("v6-rollback");
    w.fake.fail("link.configure_container", libc::EPERM);
    setup(&w.store, &w.fake, &dual_request(&w, "c1", "")).unwrap_err();
    assert!(w.store.list_allocations("d6").unwrap().is_empty());
    let w = dual_world("v6-teardown");
    let ep = setup(&w.store, &w.fake, &dual_request(&w, "c1", "5353:53/udp")).unwrap();
    crate::core::detach::release(&w.store, &w.fake, &ep).unwrap();
    assert!(w.store.list_allocations("d6").unwrap().is_empty());
    assert!(w.record("c1").is_none());
    let calls = w.fake.change_calls();
    let flush = calls.iter().find(|c| c.starts_with("conntrack")).unwrap();
    assert!(
        flush.contains("fd00:62::2") && flush.contains("10.62.0.2"),
        "{flush}"
    );
}

#[test]
fn an_ipv6_subnet_over_a_route_the_host_has_is_refused_at_create_and_update() {
    let w = World::new("v6-route");
    w.fake.add_route6("2001:db8:9::/64".parse().unwrap());
    let mut net =
        crate::model::network::Network::new("d6", "10.62.0.0/24", None, None, true).unwrap();
    net.set_ipv6("2001:db8:9::/64", None, true).unwrap();
    let e = crate::core::network::create(&w.store, &w.fake, &net).unwrap_err();
    assert!(
        e.to_string()
            .contains("subnet 2001:db8:9::/64 overlaps the host route 2001:db8:9::/64"),
        "{e}"
    );
    assert!(w.store.load_network("d6").is_err(), "nothing written");
    let e = add_ipv6(&w.store, &w.fake, "nethook", "2001:db8:9::/56", None, true).unwrap_err();
    assert!(e.to_string().contains("overlaps the host route"), "{e}");
    assert!(w.store.load_network("nethook").unwrap().ipv6.is_none());
}
