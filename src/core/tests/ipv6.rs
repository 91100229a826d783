//! IPv6 through the core: dual-stack leases recorded and freed together, and `network
//! update --subnet6`.

use super::*;
use crate::core::network::{add_ipv6, NetworkOpError};

#[test]
fn the_default_network_gets_ipv6_from_a_file_and_keeps_its_ipv4_part() {
    let w = World::new("v6-update");
    let net = add_ipv6(&w.store, "nethook", "fd00:77::/64", None, true).unwrap();
    assert_eq!(net.bridge, "nethook0");
    let loaded = w.store.load_network("nethook").unwrap();
    assert_eq!(loaded, net);
    assert_eq!(loaded.ipv4.unwrap().subnet.to_string(), "10.77.0.0/16");
    assert_eq!(loaded.ipv6.unwrap().gateway.to_string(), "fd00:77::1");
    let again = add_ipv6(&w.store, "nethook", "fd00:78::/64", None, true).unwrap_err();
    assert!(matches!(again, NetworkOpError::HasIpv6 { .. }), "{again}");
    assert!(again.to_string().contains("fd00:77::/64"), "{again}");
}

#[test]
fn an_ipv6_part_that_overlaps_another_network_is_refused_and_nothing_is_written() {
    let w = World::new("v6-overlap");
    add_ipv6(&w.store, "nethook", "fd00:77::/64", None, true).unwrap();
    let mut other =
        crate::model::network::Network::new("b", "10.78.0.0/24", None, None, true).unwrap();
    other.set_ipv6("fd00:78::/64", None, true).unwrap();
    w.store.create_network(&other).unwrap();
    let before = w.store.load_network("b").unwrap();
    let e = add_ipv6(&w.store, "b", "fd00:77::/48", None, true).unwrap_err();
    assert!(matches!(e, NetworkOpError::HasIpv6 { .. }), "{e}");
    let plain = crate::model::network::Network::new("c", "10.79.0.0/24", None, None, true).unwrap();
    w.store.create_network(&plain).unwrap();
    let e = add_ipv6(&w.store, "c", "fd00:77::/48", None, true).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert!(w.store.load_network("c").unwrap().ipv6.is_none());
    assert_eq!(w.store.load_network("b").unwrap(), before);
}
