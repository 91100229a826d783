//! Issue 17, defect 7 (links): teardown deletes only the veth its record is about, and two
//! containers whose host veth names collide both work. Privileged, each in a sandbox.

mod common;

use common::*;

/// Writes a record as a forger (or an older, crashed container) would: `base`'s record
/// under another id, naming `host_interface`, with an address nobody holds.
fn forge_record(nh: &Nethook, base: &str, id: &str, host_interface: &str) {
    let dir = nh.run_dir().join("endpoints");
    let text =
        std::fs::read_to_string(dir.join(format!("{base}.json"))).expect("read the base record");
    let mut rec: serde_json::Value = serde_json::from_str(&text).expect("a record is JSON");
    rec["id"] = id.into();
    rec["host_interface"] = host_interface.into();
    rec["ipv4"]["address"] = "10.77.0.250".into();
    rec.as_object_mut().unwrap().remove("netns");
    std::fs::write(dir.join(format!("{id}.json")), rec.to_string())
        .expect("write the forged record");
}

fn link_exists(name: &str) -> bool {
    sh_ok(&format!("ip link show {name} >/dev/null 2>&1"))
}

fn host_if(nh: &Nethook, id: &str) -> String {
    nh.endpoint(id)["host_interface"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn ipv4(nh: &Nethook, id: &str) -> String {
    nh.endpoint(id)["ipv4"].as_str().unwrap().to_owned()
}

#[test]
fn a_host_veth_carries_its_containers_id_in_its_alias() {
    sandbox!("a_host_veth_carries_its_containers_id_in_its_alias", {
        let nh = Nethook::new("alias");
        let id = format!("c{}", "0123456789abcdef".repeat(7));
        let a = FakeContainer::start(&id);
        nh.setup(&a, &[]);
        let name = host_if(&nh, &id);
        assert_eq!(
            name.len(),
            15,
            "the name uses the whole IFNAMSIZ budget: {name}"
        );
        assert!(name.starts_with("nh"));
        let link = sh(&format!("ip -d link show {name}"));
        assert!(link.contains(&format!("alias nethook:{id}")), "{link}");
        assert!(
            link.contains("hairpin on") && link.contains("master nethook0"),
            "{link}"
        );
    });
}

#[test]
fn teardown_and_gc_leave_alone_a_link_that_a_record_names_but_is_not_its_veth() {
    sandbox!(
        "teardown_and_gc_leave_alone_a_link_that_a_record_names_but_is_not_its_veth",
        {
            let nh = Nethook::new("forged");
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[]);
            nh.setup(&b, &[]);
            let b_if = host_if(&nh, "ctr-b");
            // Some other veth on nethook's own bridge, and one elsewhere.
            assert!(sh_ok(
                "ip link add victim0 master nethook0 type veth peer name victim1"
            ));
            assert!(sh_ok("ip link add other0 type veth peer name other1"));

            for (forged, target) in [
                ("forged-1", "victim0"),
                ("forged-2", "other0"),
                ("forged-3", b_if.as_str()),
            ] {
                forge_record(&nh, "ctr-a", forged, target);
                let f = FakeContainer::start(forged);
                let out = nh.hook(&f.state("stopped", &[]));
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{forged}: {err}");
                assert!(
                    link_exists(target),
                    "the teardown of {forged} deleted {target}"
                );
                assert!(
                    err.contains(&format!(
                        "host interface {target} is not container {forged}'s"
                    )) && err.contains("left alone"),
                    "{err}"
                );
                assert!(
                    nh.endpoints().iter().all(|e| e["id"] != forged),
                    "the record of {forged} is kept"
                );
            }
            // The other container's link was not touched: it still works.
            let ipb = ipv4(&nh, "ctr-b");
            assert!(a.sh_ok(&format!("ping -c1 -W2 {ipb}")), "a cannot ping b");

            // gc does not delete it either, whether the record names a live link or not.
            forge_record(&nh, "ctr-a", "forged-4", "victim0");
            let (ok, _, err) = nh.cli(&["gc"]);
            assert!(ok, "gc: {err}");
            assert!(link_exists("victim0") && link_exists(&b_if));
        }
    );
}

#[test]
fn the_untagged_veth_of_an_older_nethook_is_still_torn_down() {
    sandbox!(
        "the_untagged_veth_of_an_older_nethook_is_still_torn_down",
        {
            let nh = Nethook::new("legacy");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            // What an older version left: a veth named after the id in 12 hex digits, no alias.
            let old = FakeContainer::start("old-ctr");
            let legacy = nethook::model::ids::ContainerId::parse("old-ctr")
                .unwrap()
                .legacy_host_veth_name();
            assert!(sh_ok(&format!(
                "ip link add {legacy} master nethook0 type veth peer name eth0 netns {}",
                old.pid()
            )));
            forge_record(&nh, "ctr-a", "old-ctr", &legacy);
            nh.teardown(&old);
            assert!(
                !link_exists(&legacy),
                "the older version's veth was left behind"
            );
            assert!(nh.endpoints().iter().all(|e| e["id"] != "old-ctr"));
        }
    );
}

/// Both containers' first name is forced to one (a test build's hook): the second one
/// finds the first's veth there and takes its id's second name.
#[cfg(feature = "failpoints")]
#[test]
fn two_containers_whose_host_names_collide_both_work_and_keep_their_veths() {
    sandbox!(
        "two_containers_whose_host_names_collide_both_work_and_keep_their_veths",
        {
            const FORCE: (&str, &str) = ("NETHOOK_TEST_HOST_VETH_NAME", "nhcollide");
            let nh = Nethook::new("collide");
            let a = FakeContainer::start("ctr-a");
            let mut b = FakeContainer::start("ctr-b");
            for c in [&a, &b] {
                let out = nh.hook_in_env(&c.state("creating", &[]), &[], &[FORCE]);
                assert!(
                    out.status.success(),
                    "setup of {}: {}",
                    c.id,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let b_id = nethook::model::ids::ContainerId::parse("ctr-b").unwrap();
            assert_eq!(host_if(&nh, "ctr-a"), "nhcollide");
            assert_eq!(host_if(&nh, "ctr-b"), b_id.alt_host_veth_name());
            assert!(
                sh(&format!("ip -d link show {}", b_id.alt_host_veth_name()))
                    .contains("alias nethook:ctr-b")
            );
            let (ipa, ipb) = (ipv4(&nh, "ctr-a"), ipv4(&nh, "ctr-b"));
            assert!(a.sh_ok(&format!("ping -c1 -W2 {ipb}")), "a cannot ping b");
            assert!(b.sh_ok(&format!("ping -c1 -W2 {ipa}")), "b cannot ping a");

            // A stale record of b under its first name (a crash before the fallback was saved,
            // or an older layout) must not take a's veth with it.
            let b_record =
                std::fs::read_to_string(nh.run_dir().join("endpoints/ctr-b.json")).unwrap();
            let mut stale: serde_json::Value = serde_json::from_str(&b_record).unwrap();
            stale["host_interface"] = "nhcollide".into();
            std::fs::write(nh.run_dir().join("endpoints/ctr-b.json"), stale.to_string()).unwrap();
            b.stop();
            nh.teardown(&b);
            assert!(link_exists("nhcollide"), "b's poststop deleted a's veth");
            assert!(
                sh_ok(&format!("ping -c1 -W2 {ipa}")),
                "host cannot reach a any more"
            );

            // b again, and its real poststop: only its own veth goes.
            let b = FakeContainer::start("ctr-b");
            let out = nh.hook_in_env(&b.state("creating", &[]), &[], &[FORCE]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            nh.teardown(&b);
            assert!(!link_exists(&b_id.alt_host_veth_name()));
            assert!(link_exists("nhcollide"));
            assert!(
                sh_ok(&format!("ping -c1 -W2 {ipa}")),
                "host cannot reach a any more"
            );

            // A third id whose second name is held by someone else too gets a clear error and
            // leaves nothing behind.
            let c_id = nethook::model::ids::ContainerId::parse("ctr-c").unwrap();
            let c_alt = c_id.alt_host_veth_name();
            assert!(sh_ok(&format!(
                "ip link add {c_alt} type veth peer name squat1"
            )));
            let c = FakeContainer::start("ctr-c");
            let out = nh.hook_in_env(&c.state("creating", &[]), &[], &[FORCE]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(
                err.contains("nhcollide")
                    && err.contains(&c_alt)
                    && err.contains("both held by other links"),
                "{err}"
            );
            assert!(link_exists(&c_alt) && link_exists("nhcollide"));
            assert!(nh.endpoints().iter().all(|e| e["id"] != "ctr-c"));
            assert_eq!(nh.allocations("nethook"), 1);
            nh.teardown(&a);
            assert!(!link_exists("nhcollide"));
        }
    );
}

#[test]
fn a_container_whose_host_name_another_containers_link_holds_takes_its_second_name() {
    sandbox!(
        "a_container_whose_host_name_another_containers_link_holds_takes_its_second_name",
        {
            let nh = Nethook::new("squat");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            // Another container's veth on the bridge under b's first name.
            let b_id = nethook::model::ids::ContainerId::parse("ctr-b").unwrap();
            let first = b_id.host_veth_name();
            assert!(sh_ok(&format!(
                "ip link add {first} master nethook0 type veth peer name squat1"
            )));
            assert!(sh_ok(&format!(
                "ip link set {first} alias nethook:someone-else"
            )));
            let b = FakeContainer::start("ctr-b");
            nh.setup(&b, &[]);
            let b_if = host_if(&nh, "ctr-b");
            assert_ne!(b_if, first);
            let ipa = ipv4(&nh, "ctr-a");
            assert!(b.sh_ok(&format!("ping -c1 -W2 {ipa}")), "b cannot ping a");
            nh.teardown(&b);
            assert!(
                link_exists(&first),
                "b's poststop deleted the other container's veth"
            );
            assert!(!link_exists(&b_if));
        }
    );
}
