//! The routed driver through the core: no bridge, a /32 host route, the container side
//! with a permanent neighbour, and elements in the routed sets instead of the bridge's.

use super::*;
use crate::core::detach::{teardown, Teardown};
use crate::core::elements::firewall_elements;
use crate::model::network::{DriverKind, Network};

fn routed_world(tag: &str) -> World {
    let w = World::new(tag);
    let mut net = Network::new("r1", "10.60.0.0/24", None, None, true).unwrap();
    net.set_driver(DriverKind::Routed, None, false, false)
        .unwrap();
    w.store.create_network(&net).unwrap();
    w
}

fn routed_setup(w: &World, id: &str, ports: &str) -> Result<Endpoint, SetupError> {
    let mut req = w.request(id, ports);
    req.options.network = "r1".into();
    crate::core::attach::setup(&w.store, &w.fake, &req)
}

#[test]
fn routed_attach_makes_a_veth_without_bridge_then_the_route_then_the_container() {
    let w = routed_world("routed-apply");
    let ep = routed_setup(&w, "c1", "127.0.0.1:8080:80").unwrap();
    assert!(ep.host_interface.starts_with("nr"), "{}", ep.host_interface);
    assert_eq!(ep.bridge, "");
    let v4 = ep.ipv4.unwrap();
    // The record keeps the subnet's prefix (the firewall's subnet); the container gets /32.
    assert_eq!(
        (v4.address.to_string(), v4.prefix),
        ("10.60.0.1".into(), 24)
    );
    assert_eq!(v4.gateway.to_string(), "169.254.1.1");
    let calls = w.fake.change_calls();
    assert_eq!(
        calls,
        vec![
            format!("link.create_veth {} peer eth0", ep.host_interface),
            format!("sysctl.disable_ipv6 {}", ep.host_interface),
            format!("link.add_host_route 10.60.0.1/32 dev {}", ep.host_interface),
            format!("sysctl.route_localnet {} 1", ep.host_interface),
            "link.configure_routed_container eth0 10.60.0.1/32 via 169.254.1.1 at 02:4e:a9:fe:01:01"
                .to_owned(),
            format!("fw.add {:?}", firewall_elements(&ep)),
        ]
    );
    let e = firewall_elements(&ep);
    assert!(e.sources.is_empty() && e.bridges.is_empty(), "{e:?}");
    assert_eq!(e.routed_sources.len(), 1);
    assert_eq!(e.routed_sources[0].host_interface, ep.host_interface);
    assert_eq!(e.intra4, vec!["10.60.0.0/24".parse().unwrap()]);
    assert_eq!(e.masq4, vec!["10.60.0.0/24".parse().unwrap()]);
}

#[test]
fn a_failed_routed_container_side_deletes_the_veth_and_with_it_the_route() {
    let w = routed_world("routed-rollback");
    w.fake.fail("link.configure_routed_container", libc::EPERM);
    routed_setup(&w, "c1", "").unwrap_err();
    let calls = w.fake.change_calls();
    let veth = cid("c1").host_veth_name().replacen("nh", "nr", 1);
    assert!(
        calls.contains(&format!("link.delete {veth}")),
        "the veth (and its route) must go: {calls:?}"
    );
    assert_eq!(w.record("c1"), None);
    assert!(w.addresses().is_empty());
}

#[test]
fn routed_teardown_deletes_the_veth_and_touches_no_bridge_switch() {
    let w = routed_world("routed-detach");
    routed_setup(&w, "c1", "127.0.0.1:8080:80").unwrap();
    w.fake.clear_calls();
    let Teardown::Done(report) = teardown(&w.store, &w.fake, &cid("c1")).unwrap() else {
        panic!("a live container's teardown runs at once");
    };
    assert!(report.link_deleted);
    let changes = w.fake.changes();
    assert_eq!(changes, vec!["fw.delete", "link.delete_veth", "fw.delete"]);
    assert_eq!(w.record("c1"), None);
}
