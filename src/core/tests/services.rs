//! Services and names through the fake: membership rides in the container's own batch,
//! leaves with its teardown, is rolled back with a failed setup; names are claimed once
//! per DNS network and the resolver is started by the first container.

use super::*;
use crate::core::detach::{teardown, Teardown};
use crate::core::services::{create, ServiceRequest};
use crate::model::service::parse_ports as service_ports;

fn with_service(w: &World, name: &str) {
    let req = ServiceRequest {
        name: name.into(),
        network: "nethook".into(),
        ports: service_ports(&["80"]).unwrap(),
        vips: Vec::new(),
        publish: Vec::new(),
        affinity: None,
    };
    let created = create(&w.store, &w.fake, &req).unwrap();
    assert_eq!(
        created.ranges_chosen.len(),
        1,
        "the default network got a service range"
    );
}

fn member(w: &World, id: &str, service: &str) -> Result<Endpoint, SetupError> {
    let mut req = w.request(id, "");
    req.options.services = vec![service.into()];
    setup(&w.store, &w.fake, &req)
}

fn done(t: Teardown) {
    match t {
        Teardown::Done(_) => {}
        Teardown::Deferred(work) => {
            work.run(&Fake::new()).unwrap();
        }
    }
}

#[test]
fn a_member_joins_in_its_own_batch_and_leaves_in_its_teardown() {
    let w = World::new("svc-join");
    with_service(&w, "web");
    let vip = w.store.service("web").unwrap().vip4.unwrap();
    assert!(vip.to_string().starts_with("10.78."), "{vip}");
    member(&w, "m1", "web").unwrap();
    member(&w, "m2", "web").unwrap();
    let adds: Vec<String> = w
        .fake
        .change_calls()
        .into_iter()
        .filter(|c| c.starts_with("fw.add"))
        .collect();
    assert_eq!(adds.len(), 2);
    assert!(
        adds[1].contains("after: 2") && adds[1].contains("slot: 1"),
        "{}",
        adds[1]
    );
    assert_eq!(w.store.members("web").unwrap().0.len(), 2);
    done(teardown(&w.store, &w.fake, &cid("m1")).unwrap());
    let members = w.store.members("web").unwrap();
    assert_eq!(members.0.len(), 1);
    assert_eq!(members.0[0].key, "m2", "m2 moved into the freed slot 0");
    let last = w
        .fake
        .change_calls()
        .into_iter()
        .filter(|c| c.starts_with("fw.delete"))
        .find(|c| c.contains("after: 1"));
    assert!(last.is_some(), "the leave rode in a delete batch");
}

#[test]
fn a_failed_setup_takes_its_membership_back() {
    let w = World::new("svc-rollback");
    with_service(&w, "web");
    member(&w, "m1", "web").unwrap();
    // The batch that would make m2 a member fails: m2's slot is given back, m1's stays.
    w.fake.fail("fw.add", libc::EIO);
    assert!(member(&w, "m2", "web").is_err());
    let members = w.store.members("web").unwrap();
    assert_eq!(members.0.len(), 1);
    assert_eq!(members.0[0].key, "m1");
    assert!(w.record("m2").is_none());
    let undo = w
        .fake
        .change_calls()
        .into_iter()
        .rev()
        .find(|c| c.starts_with("fw.delete"))
        .unwrap();
    assert!(
        undo.contains("after: 1") && undo.contains("unset: [1]"),
        "{undo}"
    );
}

#[test]
fn an_unknown_service_is_refused_before_anything_is_made() {
    let w = World::new("svc-unknown");
    let e = member(&w, "m1", "nosuch").unwrap_err().to_string();
    assert!(e.contains("unknown service \"nosuch\""), "{e}");
    assert!(w.fake.changes().is_empty());
    assert!(w.record("m1").is_none());
}

#[test]
fn on_a_dns_network_a_name_is_one_container_s_and_the_first_starts_the_resolver() {
    let w = World::new("names");
    let mut net = w.store.load_network("nethook").unwrap();
    net.set_dns(true).unwrap();
    w.store.save_network(&net).unwrap();
    let mut req = w.request("c1", "");
    req.options.name = Some("db".into());
    setup(&w.store, &w.fake, &req).unwrap();
    assert!(w
        .fake
        .change_calls()
        .iter()
        .any(|c| c.starts_with("dns.start")));
    let mut req = w.request("c2", "");
    req.options.name = Some("db".into());
    let e = setup(&w.store, &w.fake, &req).unwrap_err().to_string();
    assert!(
        e.contains("name db is taken on network nethook by container c1"),
        "{e}"
    );
    assert!(w.record("c2").is_none());
    done(teardown(&w.store, &w.fake, &cid("c1")).unwrap());
    setup(&w.store, &w.fake, &req).unwrap();
}

#[test]
fn gc_takes_a_member_whose_record_is_gone_out_of_its_service() {
    let w = World::new("svc-gc");
    with_service(&w, "web");
    member(&w, "m1", "web").unwrap();
    member(&w, "m2", "web").unwrap();
    // m1's record vanished without a teardown (removed by hand, say).
    w.store.remove_endpoint(&cid("m1")).unwrap();
    let actions = crate::core::gc::gc(&w.store, &w.fake, false).unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a == "take m1 out of service web: it has no endpoint record"),
        "{actions:?}"
    );
    let members = w.store.members("web").unwrap();
    assert_eq!(members.0.len(), 1);
    assert_eq!(members.0[0].key, "m2");
}

#[test]
fn a_default_name_someone_holds_is_dropped_not_refused() {
    let w = World::new("names-default");
    let mut net = w.store.load_network("nethook").unwrap();
    net.set_dns(true).unwrap();
    w.store.save_network(&net).unwrap();
    with_service(&w, "web");
    // Its id would be its name, but the network's service has it: it starts, unnamed.
    let ep = w.setup("web", "").unwrap();
    assert_eq!(ep.name, None);
    assert_eq!(w.record("web").unwrap().name, None);
    // Two pods of one name (CNI's pod name is a default name): both start.
    let mut a = w.request("pod-a", "");
    a.options.default_name = Some("api".into());
    assert_eq!(
        setup(&w.store, &w.fake, &a).unwrap().name.as_deref(),
        Some("api")
    );
    let mut b = w.request("pod-b", "");
    b.options.default_name = Some("api".into());
    assert_eq!(setup(&w.store, &w.fake, &b).unwrap().name, None);
}

#[test]
fn a_service_cannot_take_a_name_a_container_holds() {
    let w = World::new("names-service");
    let mut net = w.store.load_network("nethook").unwrap();
    net.set_dns(true).unwrap();
    w.store.save_network(&net).unwrap();
    w.setup("db", "").unwrap();
    let req = ServiceRequest {
        name: "db".into(),
        network: "nethook".into(),
        ports: service_ports(&["5432"]).unwrap(),
        vips: Vec::new(),
        publish: Vec::new(),
        affinity: None,
    };
    let e = create(&w.store, &w.fake, &req).unwrap_err().to_string();
    assert!(e.contains("the DNS name of container db"), "{e}");
    assert!(w.store.load_service("db").unwrap().is_none());
    // Nothing of the attempt stays: the network has no service range yet.
    assert!(w
        .store
        .load_network("nethook")
        .unwrap()
        .service_range4
        .is_none());
}
