//! gc: records whose veth is gone are released; live ones stay.

use super::*;
use crate::core::gc::gc;

#[test]
fn gc_releases_a_record_whose_veth_is_gone_and_keeps_a_live_one() {
    let w = World::new("gc");
    let dead = w.setup("dead", "5353:53/udp").unwrap();
    let live = w.setup("live", "").unwrap();
    w.fake.remove_link(&dead.host_interface);
    w.fake.clear_calls();
    let actions = gc(&w.store, &w.fake, false).unwrap();
    assert!(
        actions[0].starts_with(&format!(
            "remove endpoint dead (nethook): host interface {} is gone",
            dead.host_interface
        )),
        "{actions:?}"
    );
    assert_eq!(w.record("dead"), None);
    assert_eq!(w.record("live"), Some(live.clone()));
    assert_eq!(
        w.addresses(),
        vec![(live.ipv4.unwrap().address.into(), "live".into())]
    );
    // The dead one's elements and its conntrack entries went; the live one's are restored.
    let changes = w.fake.changes();
    assert_eq!(
        &changes[..3],
        &["fw.delete", "link.delete_veth", "conntrack.flush_for"],
        "{changes:?}"
    );
    assert!(changes.contains(&"fw.restore"), "{changes:?}");
    assert!(w.fake.has_link(&live.host_interface));
}

#[test]
fn gc_dry_run_changes_nothing() {
    let w = World::new("gc-dry");
    let dead = w.setup("dead", "").unwrap();
    w.fake.remove_link(&dead.host_interface);
    w.fake.clear_calls();
    let actions = gc(&w.store, &w.fake, true).unwrap();
    assert!(!actions.is_empty());
    let changes = w.fake.change_calls();
    assert!(
        changes
            .iter()
            .all(|c| c.starts_with("fw.prune") && c.ends_with(" dry")),
        "{changes:?}"
    );
    assert!(w.record("dead").is_some());
}

#[test]
fn gc_with_nothing_live_lifts_the_forwarding_guard() {
    let w = World::new("gc-guard");
    let dead = w.setup("dead", "").unwrap();
    w.fake.remove_link(&dead.host_interface);
    w.fake.clear_calls();
    gc(&w.store, &w.fake, false).unwrap();
    assert!(
        w.fake
            .change_calls()
            .contains(&"fw.guard_forwarding off".to_owned()),
        "{:?}",
        w.fake.change_calls()
    );
}

#[test]
fn gc_finishes_a_teardown_whose_process_died_although_its_veth_is_still_there() {
    let w = World::new("gc-abandoned");
    let ep = w.setup("c1", "").unwrap();
    let crate::core::detach::Teardown::Deferred(work) =
        crate::core::detach::teardown_deferring_link(&w.store, &w.fake, &cid("c1")).unwrap()
    else {
        panic!("a live veth's delete should be deferred");
    };
    drop(work);
    assert!(w.fake.has_link(&ep.host_interface));
    let actions = gc(&w.store, &w.fake, false).unwrap();
    assert!(
        actions[0].ends_with("is still there: its teardown was interrupted"),
        "{actions:?}"
    );
    assert!(!w.fake.has_link(&ep.host_interface));
    assert_eq!(w.record("c1"), None);
    assert!(w.addresses().is_empty());
    assert_eq!(
        w.store.deletion(&cid("c1")).unwrap(),
        crate::state::Deletion::None
    );
}
