//! The driver registry and the bridge driver, through the recording fake kernel.

use super::*;
use crate::kernel::fake::Fake;
use crate::model::ids::ContainerId;
use crate::model::network::Network;

#[test]
fn a_bridge_network_is_served_by_the_bridge_driver() {
    assert_eq!(of(&Network::builtin_default()).name(), "bridge");
    assert_eq!(for_kind(DriverKind::Bridge).name(), "bridge");
}

#[test]
fn the_bridge_driver_refuses_a_bridge_name_no_interface_can_have() {
    let mut net = Network::builtin_default();
    net.bridge = "a-name-longer-than-fifteen".into();
    let e = bridge::Bridge.validate(&net).unwrap_err();
    assert!(e.to_string().contains("bridge name"), "{e}");
    assert!(bridge::Bridge.validate(&Network::builtin_default()).is_ok());
}

#[test]
fn ensure_network_makes_the_bridge_with_the_gateway() {
    let fake = Fake::new();
    let net = Network::builtin_default();
    bridge::Bridge
        .ensure_network(DriverKernel::new(&fake), &net)
        .unwrap();
    assert_eq!(
        fake.calls(),
        vec!["link.ensure_bridge nethook0 10.77.0.1/16"]
    );
}

fn endpoint(id: &str) -> Endpoint {
    let id = ContainerId::parse(id).unwrap();
    Endpoint {
        host_interface: id.host_veth_name(),
        id,
        network: "nethook".into(),
        driver: DriverKind::Bridge,
        bridge: "nethook0".into(),
        interface: "eth0".into(),
        mac: "02:00:00:00:00:01".parse().unwrap(),
        ipv4: None,
        ipv6: None,
        ports: Vec::new(),
        masquerade: true,
        no_masquerade_to: Vec::new(),
        any_ethertype: false,
        netns: None,
    }
}

#[test]
fn check_names_a_missing_bridge_and_a_missing_veth() {
    let fake = Fake::new();
    let net = Network::builtin_default();
    let ep = endpoint("c1");
    let missing = bridge::Bridge
        .check(DriverKernel::new(&fake), &net, &ep)
        .unwrap();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].contains("bridge nethook0"), "{missing:?}");
    assert!(missing[1].contains(&ep.host_interface), "{missing:?}");
    fake.add_link("nethook0");
    fake.add_link(&ep.host_interface);
    let missing = bridge::Bridge
        .check(DriverKernel::new(&fake), &net, &ep)
        .unwrap();
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn check_reports_a_veth_name_held_by_another_link() {
    let fake = Fake::new();
    let ep = endpoint("c1");
    fake.add_link("nethook0");
    fake.add_foreign_link(&ep.host_interface);
    let missing = bridge::Bridge
        .check(DriverKernel::new(&fake), &Network::builtin_default(), &ep)
        .unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("left alone"), "{missing:?}");
}
