//! The macvlan driver through the core: the macvlan is made in the container's namespace
//! and configured there, nothing on the host and no firewall element; a failure after the
//! create deletes it in there; teardown deletes it only while its namespace lives; gc and
//! a setup under a reused id see a record as live by the macvlan in its namespace.

use super::*;
use crate::core::detach::{teardown, Teardown};
use crate::core::gc::gc;
use crate::kernel::link::ParentView;
use crate::model::network::{DriverKind, Network};

fn lan_world(tag: &str) -> World {
    let w = World::new(tag);
    let mut net = Network::new(
        "lan",
        "192.168.50.0/24",
        Some("192.168.50.1".parse().unwrap()),
        None,
        false,
    )
    .unwrap();
    net.set_driver(DriverKind::Macvlan, Some("lan0"), true, false)
        .unwrap();
    net.set_ip_range("192.168.50.128/26").unwrap();
    w.store.create_network(&net).unwrap();
    w.fake.add_parent(
        "lan0",
        ParentView {
            index: 7,
            ..ParentView::default()
        },
    );
    w
}

fn on_lan(w: &World, id: &str, ports: &str) -> Result<Endpoint, SetupError> {
    let mut req = w.request(id, ports);
    req.options.network = "lan".into();
    setup(&w.store, &w.fake, &req)
}

fn netns(w: &World) -> String {
    w.netns.display().to_string()
}

#[test]
fn setup_makes_the_macvlan_in_the_container_and_nothing_on_the_host() {
    let w = lan_world("mv-setup");
    let ep = on_lan(&w, "c1", "").unwrap();
    assert_eq!(ep.host_interface, "");
    assert_eq!(ep.driver, DriverKind::Macvlan);
    let v4 = ep.ipv4.unwrap();
    assert_eq!(v4.address.to_string(), "192.168.50.128");
    let changes = w.fake.change_calls();
    let links: Vec<&String> = changes.iter().filter(|c| c.starts_with("link.")).collect();
    assert_eq!(
        links,
        vec![
            "link.create_macvlan eth0 of lan0",
            "link.configure_container eth0 192.168.50.128/24 via 192.168.50.1",
        ],
        "{changes:?}"
    );
    assert!(
        !changes.iter().any(|c| c.starts_with("fw.add")),
        "{changes:?}"
    );
    assert!(w.fake.has_macvlan(&netns(&w), "eth0"));
    assert_eq!(w.record("c1"), Some(ep));
}

#[test]
fn a_failure_after_the_create_deletes_the_macvlan_in_the_container_and_forgets_the_address() {
    let w = lan_world("mv-undo");
    w.fake.fail("link.configure_container", libc::EPERM);
    on_lan(&w, "c1", "").unwrap_err();
    let changes = w.fake.change_calls();
    let create = changes
        .iter()
        .position(|c| c == "link.create_macvlan eth0 of lan0");
    let delete = changes.iter().position(|c| c == "link.delete_macvlan eth0");
    assert!(create.is_some() && create < delete, "{changes:?}");
    assert!(!w.fake.has_macvlan(&netns(&w), "eth0"));
    assert_eq!(w.record("c1"), None);
    assert!(w.store.list_allocations("lan").unwrap().is_empty());
}

#[test]
fn a_missing_parent_and_a_bridge_port_parent_fail_setup_with_one_line_each() {
    let w = World::new("mv-parent");
    let mut net = Network::new("lan", "192.168.50.0/24", None, None, false).unwrap();
    net.set_driver(DriverKind::Macvlan, Some("gone0"), false, false)
        .unwrap();
    w.store.create_network(&net).unwrap();
    let e = on_lan(&w, "c1", "").unwrap_err().to_string();
    assert!(
        e.contains("parent gone0 of network lan does not exist"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    w.fake.add_parent(
        "gone0",
        ParentView {
            index: 3,
            master: Some(2),
            ..ParentView::default()
        },
    );
    let e = on_lan(&w, "c1", "").unwrap_err().to_string();
    assert!(e.contains("is a port of a bridge or bond"), "{e}");
    assert!(w.store.list_allocations("lan").unwrap().is_empty());
}

#[test]
fn published_ports_on_a_macvlan_network_are_refused_before_anything_is_made() {
    let w = lan_world("mv-ports");
    let e = on_lan(&w, "c1", "8080:80").unwrap_err().to_string();
    assert!(e.contains("macvlan network"), "{e}");
    assert!(!w.fake.changes().iter().any(|c| c.starts_with("link.")));
}

fn finish(w: &World, t: Teardown) {
    match t {
        Teardown::Done(_) => {}
        Teardown::Deferred(work) => {
            work.run(&w.fake).unwrap();
        }
    }
}

#[test]
fn teardown_with_the_namespace_alive_deletes_the_macvlan_in_there() {
    let w = lan_world("mv-del");
    on_lan(&w, "c1", "").unwrap();
    w.fake.clear_calls();
    finish(&w, teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert!(
        w.fake
            .change_calls()
            .contains(&"link.delete_macvlan eth0".to_owned()),
        "{:?}",
        w.fake.change_calls()
    );
    assert!(!w.fake.has_macvlan(&netns(&w), "eth0"));
    assert_eq!(w.record("c1"), None);
    assert!(w.store.list_allocations("lan").unwrap().is_empty());
    // Idempotent: a second teardown finds nothing and does nothing.
    finish(&w, teardown(&w.store, &w.fake, &cid("c1")).unwrap());
}

#[test]
fn teardown_with_the_namespace_gone_has_no_link_work() {
    let w = lan_world("mv-gone");
    on_lan(&w, "c1", "").unwrap();
    fs::remove_file(&w.netns).unwrap();
    w.fake.remove_macvlan(&netns(&w), "eth0");
    w.fake.clear_calls();
    finish(&w, teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert!(
        !w.fake.changes().iter().any(|c| c.starts_with("link.")),
        "{:?}",
        w.fake.change_calls()
    );
    assert_eq!(w.record("c1"), None);
}

#[test]
fn gc_keeps_a_macvlan_record_while_its_link_lives_and_drops_it_once_gone() {
    let w = lan_world("mv-gc");
    let ep = on_lan(&w, "c1", "").unwrap();
    gc(&w.store, &w.fake, false).unwrap();
    assert_eq!(w.record("c1"), Some(ep));
    fs::remove_file(&w.netns).unwrap();
    w.fake.remove_macvlan(&netns(&w), "eth0");
    let actions = gc(&w.store, &w.fake, false).unwrap();
    assert!(
        actions[0].starts_with("remove endpoint c1 (lan): macvlan eth0 is gone"),
        "{actions:?}"
    );
    assert_eq!(w.record("c1"), None);
    assert!(w.store.list_allocations("lan").unwrap().is_empty());
}

#[test]
fn a_second_setup_under_a_live_id_is_refused_and_a_dead_ones_record_reclaimed() {
    let w = lan_world("mv-again");
    on_lan(&w, "c1", "").unwrap();
    let e = on_lan(&w, "c1", "").unwrap_err();
    assert!(matches!(e, SetupError::AlreadyExists { .. }), "{e}");
    w.fake.remove_macvlan(&netns(&w), "eth0");
    on_lan(&w, "c1", "").unwrap();
    assert!(w.fake.has_macvlan(&netns(&w), "eth0"));
}

#[test]
fn check_names_a_macvlan_missing_from_the_namespace() {
    let w = lan_world("mv-check");
    on_lan(&w, "c1", "").unwrap();
    let missing = crate::core::check::check(&w.store, &w.fake, &cid("c1"), None).unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    w.fake.remove_macvlan(&netns(&w), "eth0");
    let missing = crate::core::check::check(&w.store, &w.fake, &cid("c1"), None).unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].contains("macvlan eth0 of container c1 is missing"),
        "{missing:?}"
    );
}
