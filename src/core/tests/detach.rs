//! detach: elements first, then the link, conntrack only for connectionless mappings,
//! then the address and the record; idempotent; deferred when the namespace is dying.

use super::*;
use crate::core::detach::{teardown, teardown_deferring_link, Report, Teardown};
use crate::core::elements::{firewall_elements, network_elements};
use crate::state::Deletion;

fn done(t: Teardown) -> Report {
    match t {
        Teardown::Done(report) => report,
        Teardown::Deferred(_) => panic!("teardown deferred its work"),
    }
}

#[test]
fn detach_removes_elements_then_the_link_then_the_address_and_record() {
    let w = World::new("detach");
    let ep = w.setup("c1", "8080:80").unwrap();
    w.fake.clear_calls();
    let report = done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert_eq!(
        report,
        Report {
            found: true,
            link_deleted: true
        }
    );
    assert_eq!(
        w.fake.change_calls(),
        vec![
            format!("fw.delete {:?}", firewall_elements(&ep).own()),
            format!("link.delete_veth {} grace 0ms", ep.host_interface),
            format!("fw.delete {:?}", network_elements(&ep)),
        ]
    );
    assert_eq!(w.record("c1"), None);
    assert!(w.addresses().is_empty());
}

#[test]
fn detach_flushes_conntrack_only_for_connectionless_mappings() {
    let w = World::new("conntrack");
    let ep = w.setup("c1", "8080:80,5353:53/udp").unwrap();
    w.fake.clear_calls();
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert_eq!(
        w.fake.changes(),
        vec![
            "fw.delete",
            "link.delete_veth",
            "conntrack.flush_for",
            "fw.delete"
        ]
    );
    let flush = &w.fake.change_calls()[2];
    assert_eq!(
        flush,
        &format!(
            "conntrack.flush_for {} [(Udp, 5353)]",
            ep.ipv4.unwrap().address
        )
    );
}

#[test]
fn detach_of_a_tcp_only_endpoint_skips_conntrack() {
    let w = World::new("tcp-only");
    w.setup("c1", "8080:80,8443:443").unwrap();
    w.fake.clear_calls();
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert!(!w.fake.changes().contains(&"conntrack.flush_for"));
}

#[test]
fn detach_keeps_the_network_elements_while_another_endpoint_uses_them() {
    let w = World::new("shared");
    w.setup("c0", "").unwrap();
    w.setup("c1", "").unwrap();
    w.fake.clear_calls();
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert_eq!(w.fake.changes(), vec!["fw.delete", "link.delete_veth"]);
    assert!(w.record("c0").is_some());
}

#[test]
fn a_detach_whose_link_delete_fails_keeps_the_record_and_address_for_gc() {
    let w = World::new("link-fails");
    let ep = w.setup("c1", "5353:53/udp").unwrap();
    w.fake.clear_calls();
    w.fake.fail("link.delete_veth", libc::EBUSY);
    teardown(&w.store, &w.fake, &cid("c1")).err().unwrap();
    assert_eq!(w.fake.changes(), vec!["fw.delete", "link.delete_veth"]);
    assert_eq!(w.record("c1"), Some(ep));
    assert_eq!(w.addresses().len(), 1);
}

#[test]
fn a_detach_whose_element_delete_fails_leaves_the_link_alone() {
    let w = World::new("fw-fails");
    let ep = w.setup("c1", "8080:80").unwrap();
    w.fake.clear_calls();
    w.fake.fail("fw.delete", libc::EPERM);
    teardown(&w.store, &w.fake, &cid("c1")).err().unwrap();
    assert_eq!(w.fake.changes(), vec!["fw.delete"]);
    assert!(w.fake.has_link(&ep.host_interface));
    assert!(w.record("c1").is_some());
}

#[test]
fn detach_is_idempotent() {
    let w = World::new("twice");
    w.setup("c1", "8080:80").unwrap();
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    w.fake.clear_calls();
    let again = done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert_eq!(again, Report::default());
    assert!(w.fake.calls().is_empty(), "{:?}", w.fake.calls());
    // An id never set up is the same no-op.
    assert_eq!(
        done(teardown(&w.store, &w.fake, &cid("never")).unwrap()),
        Report::default()
    );
}

#[test]
fn detach_after_the_veth_went_with_its_namespace_skips_the_link() {
    let w = World::new("veth-gone");
    let ep = w.setup("c1", "").unwrap();
    w.fake.remove_link(&ep.host_interface);
    w.fake.clear_calls();
    let report = done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert_eq!(
        report,
        Report {
            found: true,
            link_deleted: false
        }
    );
    assert_eq!(w.fake.changes(), vec!["fw.delete", "fw.delete"]);
    assert_eq!(w.record("c1"), None);
}

#[test]
fn detach_of_a_container_whose_process_died_defers_the_link_work_to_the_caller() {
    let w = World::new("deferred");
    let mut ep = w.setup("c1", "5353:53/udp").unwrap();
    // The process setup took the namespace from is gone.
    ep.netns = Some(
        w.store
            .run_dir()
            .join("no-such-process")
            .display()
            .to_string(),
    );
    w.store.save_endpoint(&ep).unwrap();
    w.fake.clear_calls();
    let Teardown::Deferred(work) = teardown(&w.store, &w.fake, &cid("c1")).unwrap() else {
        panic!("a dying namespace's teardown should be deferred");
    };
    // Published ports are gone at once; the rest waits.
    assert_eq!(w.fake.changes(), vec!["fw.delete"]);
    assert!(w.record("c1").is_some());
    assert_eq!(work.endpoint().id, cid("c1"));
    let report = work.run(&w.fake).unwrap();
    assert!(report.link_deleted);
    assert_eq!(
        w.fake.changes(),
        vec![
            "fw.delete",
            "link.delete_veth",
            "conntrack.flush_for",
            "fw.delete"
        ]
    );
    assert!(w.fake.change_calls()[1].ends_with("grace 20ms"));
    assert_eq!(w.record("c1"), None);
    assert!(w.addresses().is_empty());
    // The lock went with the work: the store can be locked again.
    drop(w.store.lock().unwrap());
}

#[test]
fn detach_of_an_endpoint_whose_address_moved_on_leaves_its_ports_and_address_alone() {
    let w = World::new("moved-on");
    let ep = w.setup("c1", "5353:53/udp").unwrap();
    let address = ep.ipv4.unwrap().address;
    // gc freed it meanwhile and a newer container holds it now.
    let ipam = w.store.ipam("nethook").unwrap();
    assert!(ipam.release(address, "c1").unwrap());
    let lease = crate::model::ipam::Lease {
        address,
        advances_cursor: false,
    };
    ipam.record(&lease, &cid("c2")).unwrap();
    w.fake.clear_calls();
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    let without_ports = Endpoint {
        ports: Vec::new(),
        ..ep.clone()
    };
    assert_eq!(
        w.fake.change_calls(),
        vec![
            format!("fw.delete {:?}", firewall_elements(&without_ports).own()),
            format!("link.delete_veth {} grace 0ms", ep.host_interface),
        ]
    );
    assert_eq!(w.addresses(), vec![(address.into(), "c2".into())]);
    assert_eq!(w.record("c1"), None);
}

#[test]
fn a_deferred_teardown_frees_the_store_lock_and_marks_the_attachment_until_its_record_is_gone() {
    let w = World::new("mark");
    w.setup("c1", "").unwrap();
    w.fake.clear_calls();
    let Teardown::Deferred(work) = teardown_deferring_link(&w.store, &w.fake, &cid("c1")).unwrap()
    else {
        panic!("a live veth's delete should be deferred");
    };
    // Other setups and teardowns need not wait for the veth delete...
    drop(w.store.lock().unwrap());
    // ...while the attachment is visibly being torn down, its record and address kept.
    assert_eq!(w.store.deletion(&cid("c1")).unwrap(), Deletion::Running);
    assert!(w.record("c1").is_some());
    assert_eq!(w.addresses().len(), 1);
    // A second teardown (DEL twice, poststop twice) leaves it to the first.
    w.fake.clear_calls();
    let Teardown::Done(again) = teardown(&w.store, &w.fake, &cid("c1")).unwrap() else {
        panic!("a second teardown should not defer anything");
    };
    assert!(again.found);
    assert!(w.fake.changes().is_empty(), "{:?}", w.fake.changes());
    work.run(&w.fake).unwrap();
    assert_eq!(w.store.deletion(&cid("c1")).unwrap(), Deletion::None);
    assert_eq!(w.record("c1"), None);
    assert!(w.addresses().is_empty());
}

#[test]
fn an_abandoned_teardown_is_finished_by_the_next_one_and_its_elements_are_not_restored() {
    let w = World::new("abandoned");
    w.setup("c1", "8080:80").unwrap();
    w.setup("c2", "9090:90").unwrap();
    let Teardown::Deferred(work) = teardown_deferring_link(&w.store, &w.fake, &cid("c1")).unwrap()
    else {
        panic!("a live veth's delete should be deferred");
    };
    // The process finishing it died.
    drop(work);
    assert_eq!(w.store.deletion(&cid("c1")).unwrap(), Deletion::Abandoned);
    // A firewall reload meanwhile must not bring its published port back.
    w.fake.set_skeleton(false);
    w.fake.clear_calls();
    crate::core::recover::ensure_skeleton(&w.store, &w.fake, None).unwrap();
    let restored: Vec<String> = w
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("fw.restore"))
        .collect();
    assert!(restored.iter().any(|c| c.contains("9090")), "{restored:?}");
    assert!(!restored.iter().any(|c| c.contains("8080")), "{restored:?}");
    w.fake.clear_calls();
    let report = done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    assert!(report.found);
    assert!(
        w.fake.changes().contains(&"link.delete_veth"),
        "{:?}",
        w.fake.changes()
    );
    assert_eq!(w.store.deletion(&cid("c1")).unwrap(), Deletion::None);
    assert_eq!(w.record("c1"), None);
}
