//! attach: the order of apply, and what a failure at each step leaves.

use super::*;
use crate::core::elements::{firewall_elements, network_elements};
use crate::core::recover::forwarding_marker;

#[test]
fn attach_applies_bridge_then_veth_then_container_then_elements() {
    let w = World::new("apply");
    let ep = w.setup("c1", "8080:80").unwrap();
    assert_eq!(
        w.fake.changes(),
        vec![
            "link.ensure_bridge",
            "link.create_veth",
            "sysctl.disable_ipv6",
            "link.configure_container",
            "fw.add",
        ]
    );
    let calls = w.fake.change_calls();
    assert_eq!(calls[0], "link.ensure_bridge nethook0 10.77.0.1/16");
    assert_eq!(
        calls[1],
        format!("link.create_veth {} peer eth0", ep.host_interface)
    );
    assert_eq!(
        calls[2],
        format!("sysctl.disable_ipv6 {}", ep.host_interface)
    );
    assert_eq!(
        calls[3],
        "link.configure_container eth0 10.77.0.2/16 via 10.77.0.1"
    );
    assert_eq!(calls[4], format!("fw.add {:?}", firewall_elements(&ep)));
    // Recorded, with its address held.
    assert_eq!(w.record("c1"), Some(ep));
    assert_eq!(
        w.addresses(),
        vec![("10.77.0.2".parse().unwrap(), "c1".into())]
    );
}

#[test]
fn attach_turns_forwarding_on_after_the_bridge_and_guards_it_first() {
    let w = World::new("forwarding");
    w.fake.set_forwarding(false);
    w.setup("c1", "").unwrap();
    assert_eq!(
        w.fake.changes(),
        vec![
            "link.ensure_bridge",
            "fw.ensure_skeleton",
            "fw.guard_forwarding",
            "sysctl.enable_ip_forwarding",
            "link.create_veth",
            "sysctl.disable_ipv6",
            "link.configure_container",
            "fw.add",
        ]
    );
    assert!(forwarding_marker(&w.store).exists());
}

#[test]
fn attach_publishing_on_loopback_sets_route_localnet_before_the_veth() {
    let w = World::new("localnet");
    w.setup("c1", "127.0.0.1:8080:80").unwrap();
    let calls = w.fake.change_calls();
    assert_eq!(calls[1], "sysctl.route_localnet nethook0 1", "{calls:?}");
    assert!(calls[2].starts_with("link.create_veth"), "{calls:?}");
}

/// Sets up c1 with `pattern` failing, and returns the changes made after nothing else.
fn failed_setup(pattern: &str) -> (World, Vec<String>) {
    let w = World::new("rollback");
    w.fake.fail(pattern, libc::EPERM);
    let e = w.setup("c1", "8080:80").unwrap_err();
    assert!(!matches!(e, SetupError::AlreadyExists { .. }), "{e:?}");
    // Nothing of the attempt stays recorded.
    assert_eq!(w.record("c1"), None, "{pattern}");
    assert!(w.addresses().is_empty(), "{pattern}");
    let calls = w.fake.change_calls();
    (w, calls)
}

/// What the network elements' delete looks like when the failed setup held the network's
/// last address.
fn network_delete(w: &World, ep_id: &str) -> String {
    let ep = plan_for(w, ep_id);
    format!("fw.delete {:?}", network_elements(&ep))
}

/// The endpoint setup would plan for `id` (first address, first name).
fn plan_for(w: &World, id: &str) -> Endpoint {
    let pool = crate::model::ipam::Pool::default();
    crate::core::plan::plan_endpoint(
        &w.request(id, "8080:80"),
        &crate::model::network::Network::builtin_default(),
        &pool,
    )
    .unwrap()
    .0
}

#[test]
fn a_failed_bridge_undoes_nothing_but_the_record_and_address() {
    let (w, calls) = failed_setup("link.ensure_bridge");
    assert_eq!(
        calls,
        vec![
            "link.ensure_bridge nethook0 10.77.0.1/16".to_owned(),
            network_delete(&w, "c1"),
        ]
    );
}

#[test]
fn a_failed_forwarding_step_undoes_nothing_but_the_record_and_address() {
    let (w, calls) = failed_setup("sysctl.ip_forwarding");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].starts_with("link.ensure_bridge"));
    assert_eq!(calls[1], network_delete(&w, "c1"));
}

#[test]
fn a_failed_veth_creation_deletes_no_link() {
    let (w, calls) = failed_setup("link.create_veth");
    let veth = plan_for(&w, "c1").host_interface;
    assert_eq!(
        calls,
        vec![
            "link.ensure_bridge nethook0 10.77.0.1/16".to_owned(),
            format!("link.create_veth {veth} peer eth0"),
            network_delete(&w, "c1"),
        ]
    );
    assert!(!w.fake.has_link(&veth));
}

#[test]
fn a_failure_after_the_veth_deletes_it() {
    for pattern in ["sysctl.disable_ipv6", "link.configure_container", "fw.add"] {
        let (w, calls) = failed_setup(pattern);
        let veth = plan_for(&w, "c1").host_interface;
        let n = calls.len();
        assert!(calls[n - 3].starts_with(pattern), "{pattern}: {calls:?}");
        assert_eq!(calls[n - 2], format!("link.delete {veth}"), "{pattern}");
        assert_eq!(calls[n - 1], network_delete(&w, "c1"), "{pattern}");
        assert!(!calls
            .iter()
            .any(|c| c.starts_with("fw.delete") && c != &calls[n - 1]));
        assert!(!w.fake.has_link(&veth), "{pattern}");
        assert!(
            w.fake.has_link("nethook0"),
            "the bridge is shared and stays"
        );
    }
}

#[test]
fn a_failure_after_the_elements_deletes_them_then_the_links() {
    let (w, calls) = failed_setup("failpoint firewall");
    let ep = plan_for(&w, "c1");
    assert_eq!(
        calls,
        vec![
            "link.ensure_bridge nethook0 10.77.0.1/16".to_owned(),
            format!("link.create_veth {} peer eth0", ep.host_interface),
            format!("sysctl.disable_ipv6 {}", ep.host_interface),
            "link.configure_container eth0 10.77.0.2/16 via 10.77.0.1".to_owned(),
            format!("fw.add {:?}", firewall_elements(&ep)),
            format!("fw.delete {:?}", firewall_elements(&ep).own()),
            format!("link.delete {}", ep.host_interface),
            network_delete(&w, "c1"),
        ]
    );
}

#[test]
fn a_failed_setup_keeps_the_network_elements_other_endpoints_share() {
    let w = World::new("shared");
    w.setup("c0", "").unwrap();
    w.fake.clear_calls();
    w.fake.fail("link.configure_container", libc::EPERM);
    w.setup("c1", "").unwrap_err();
    assert!(
        !w.fake.changes().contains(&"fw.delete"),
        "{:?}",
        w.fake.change_calls()
    );
    assert!(w.record("c0").is_some());
    assert_eq!(w.addresses().len(), 1);
}

#[test]
fn rollback_deletes_elements_first_then_links_in_reverse() {
    let w = World::new("undo");
    let ep = plan_for(&w, "c1");
    let undo = crate::core::attach::Undo {
        links: vec!["first".into(), "second".into()],
        elements: Some(firewall_elements(&ep)),
    };
    w.fake.add_link("first");
    w.fake.add_link("second");
    undo.run(&w.fake);
    assert_eq!(
        w.fake.change_calls(),
        vec![
            format!("fw.delete {:?}", firewall_elements(&ep).own()),
            "link.delete second".to_owned(),
            "link.delete first".to_owned(),
        ]
    );
}

#[test]
fn a_host_veth_name_held_by_another_link_makes_the_container_take_its_second_name() {
    let w = World::new("second-name");
    let first = cid("c1").host_veth_name();
    let second = cid("c1").alt_host_veth_name();
    w.fake.add_foreign_link(&first);
    let ep = w.setup("c1", "").unwrap();
    assert_eq!(ep.host_interface, second);
    assert_eq!(w.record("c1").unwrap().host_interface, second);
    let creates: Vec<String> = w
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("link.create_veth") || c.starts_with("link.veth_state"))
        .collect();
    assert_eq!(
        creates,
        vec![
            format!("link.create_veth {first} peer eth0"),
            format!("link.veth_state {first}"),
            format!("link.create_veth {second} peer eth0"),
        ]
    );
}

#[test]
fn a_flushed_ruleset_is_rebuilt_with_the_other_endpoints_before_the_new_elements() {
    let w = World::new("flushed");
    let c0 = w.setup("c0", "8080:80").unwrap();
    w.fake.set_skeleton(false);
    w.fake.clear_calls();
    let c1 = w.setup("c1", "9090:90").unwrap();
    let calls = w.fake.change_calls();
    let fw: Vec<&String> = calls.iter().filter(|c| c.starts_with("fw.")).collect();
    assert_eq!(
        fw,
        vec![
            &format!("fw.add {:?}", firewall_elements(&c1)),
            &"fw.ensure_skeleton".to_owned(),
            &format!(
                "fw.restore {:?}",
                crate::core::recover::merged_elements(&[c0])
            ),
            &"fw.guard_forwarding off".to_owned(),
            &format!("fw.add {:?}", firewall_elements(&c1)),
        ]
    );
}

#[test]
fn a_second_attach_for_a_live_container_is_refused_and_changes_nothing() {
    let w = World::new("twice");
    w.setup("c1", "").unwrap();
    w.fake.clear_calls();
    let e = w.setup("c1", "").unwrap_err();
    assert!(matches!(e, SetupError::AlreadyExists { .. }), "{e:?}");
    assert!(w.fake.changes().is_empty(), "{:?}", w.fake.change_calls());
    assert!(w.record("c1").is_some());
}

#[test]
fn an_attach_over_a_dead_record_of_the_same_id_releases_it_first() {
    let w = World::new("reclaim");
    let old = w.setup("c1", "").unwrap();
    w.fake.remove_link(&old.host_interface);
    w.fake.clear_calls();
    let new = w.setup("c1", "").unwrap();
    let changes = w.fake.changes();
    assert_eq!(changes[0], "fw.delete", "{changes:?}");
    assert_eq!(changes[1], "link.delete_veth", "{changes:?}");
    assert!(changes[2..].contains(&"link.create_veth"));
    assert_eq!(
        w.addresses(),
        vec![(new.ipv4.unwrap().address.into(), "c1".into())]
    );
}
