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
        name: None,
        aliases: Vec::new(),
        services: Vec::new(),
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

fn dual_stack() -> Network {
    let mut net = Network::builtin_default();
    net.ipv6 = Some(crate::model::network::Ipv6Config {
        subnet: "fd00:77::/64".parse().unwrap(),
        gateway: "fd00:77::1".parse().unwrap(),
        masquerade: true,
    });
    net
}

fn ipv6_only() -> Network {
    let mut net = dual_stack();
    net.name = "v6".into();
    net.bridge = "nh-v6".into();
    net.ipv4 = None;
    net
}

#[test]
fn the_bridge_of_a_network_with_ipv6_gets_both_gateways_or_the_ipv6_one_alone() {
    let fake = Fake::new();
    let k = DriverKernel::new(&fake);
    bridge::Bridge.ensure_network(k, &dual_stack()).unwrap();
    bridge::Bridge.ensure_network(k, &ipv6_only()).unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            "link.ensure_bridge nethook0 10.77.0.1/16 fd00:77::1/64",
            "link.ensure_bridge nh-v6 fd00:77::1/64",
        ]
    );
    // The MAC of an IPv6-only bridge comes from the IPv6 gateway's last 32 bits.
    assert_eq!(
        bridge::bridge_mac(&ipv6_only()).unwrap().to_string(),
        "02:4e:00:00:00:01"
    );
    assert_eq!(
        bridge::bridge_mac(&dual_stack()).unwrap(),
        crate::model::mac::Mac::from_ipv4("10.77.0.1".parse().unwrap())
    );
    let mut none = ipv6_only();
    none.ipv6 = None;
    assert!(bridge::Bridge.ensure_network(k, &none).is_err());
}

/// Attaches `ep` to `net` through the bridge driver and returns the container-side call.
fn attach_call(net: &Network, ep: &mut Endpoint) -> String {
    let fake = Fake::new();
    let netns = Netns::open(std::path::Path::new("/proc/self/ns/net")).unwrap();
    let mut created = Vec::new();
    let mut steps = crate::timing::Steps::from_env();
    let record = |_: &Endpoint| Ok(());
    let mut cx = AttachContext {
        kernel: DriverKernel::new(&fake),
        netns: &netns,
        record: &record,
        created: &mut created,
        steps: &mut steps,
    };
    bridge::Bridge
        .attach(&mut cx, net, NetworkLink { index: 1 }, ep)
        .unwrap();
    fake.calls()
        .into_iter()
        .find(|c| c.starts_with("link.configure_container"))
        .unwrap()
}

#[test]
fn the_container_side_gets_each_family_its_endpoint_has() {
    use crate::model::endpoint::{Ipv4Attachment, Ipv6Attachment};
    let v4 = Ipv4Attachment {
        address: "10.77.0.2".parse().unwrap(),
        prefix: 16,
        gateway: "10.77.0.1".parse().unwrap(),
    };
    let v6 = Ipv6Attachment {
        address: "fd00:77::2".parse().unwrap(),
        prefix: 64,
        gateway: "fd00:77::1".parse().unwrap(),
        masquerade: true,
    };
    let mut ep = endpoint("c1");
    ep.ipv4 = Some(v4);
    ep.ipv6 = Some(v6);
    assert_eq!(
        attach_call(&dual_stack(), &mut ep),
        "link.configure_container eth0 10.77.0.2/16 via 10.77.0.1 fd00:77::2/64 via fd00:77::1"
    );
    ep.ipv4 = None;
    assert_eq!(
        attach_call(&ipv6_only(), &mut ep),
        "link.configure_container eth0 fd00:77::2/64 via fd00:77::1"
    );
    ep.ipv6 = None;
    ep.ipv4 = Some(v4);
    assert_eq!(
        attach_call(&Network::builtin_default(), &mut ep),
        "link.configure_container eth0 10.77.0.2/16 via 10.77.0.1"
    );
}

#[test]
fn check_names_a_bridges_missing_ipv6_gateway_and_how_to_put_it_back() {
    let fake = Fake::new();
    let k = DriverKernel::new(&fake);
    let net = dual_stack();
    bridge::Bridge.ensure_network(k, &net).unwrap();
    let mut ep = endpoint("c1");
    fake.add_link(&ep.host_interface);
    ep.bridge = net.bridge.clone();
    assert!(bridge::Bridge.check(k, &net, &ep).unwrap().is_empty());
    fake.remove_ipv6_address("nethook0", "fd00:77::1".parse().unwrap());
    assert_eq!(
        bridge::Bridge.check(k, &net, &ep).unwrap(),
        vec!["IPv6 gateway fd00:77::1/64 of network nethook is missing on bridge nethook0; add it back with `ip -6 address add fd00:77::1/64 dev nethook0 nodad`"]
    );
    // A network without IPv6 asks nothing about it.
    fake.clear_calls();
    bridge::Bridge
        .check(k, &Network::builtin_default(), &ep)
        .unwrap();
    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.starts_with("link.has_ipv6_address")));
}
