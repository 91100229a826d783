//! Privileged tests of the core as a library, the way a CNI plugin or a long-lived caller
//! uses it: with the real kernel (`Host`) and no hook front end, so no child process and
//! no socket keeper. Plus the one-line refusal of IPv6 definitions through the CLI.

mod common;

use common::*;

use nethook::core::attach;
use nethook::core::detach::{self, Teardown};
use nethook::core::request::Options;
use nethook::core::request::Request;
use nethook::kernel::seam::Host;
use nethook::model::ids::ContainerId;
use nethook::model::ports::parse_ports;
use nethook::state::Store;

#[test]
fn a_caller_without_the_hook_runs_deferred_teardown_work_itself() {
    sandbox!(
        "a_caller_without_the_hook_runs_deferred_teardown_work_itself",
        {
            let t = TempDir::new("arch-core-deferred");
            let store = Store::new(t.0.join("etc"), t.0.join("run"));
            let kernel = Host::new();
            let mut c = FakeContainer::start("arch-1");
            let id = ContainerId::parse("arch-1").unwrap();
            let req = Request {
                id: id.clone(),
                netns: Some(c.netns()),
                options: Options {
                    ports: parse_ports("8080:80").unwrap(),
                    ..Options::default()
                },
            };
            let ep = attach::setup(&store, &kernel, &req).unwrap();
            assert!(sh("ip -o link show").contains(&ep.host_interface));
            assert!(sh("nft list table inet nethook").contains("8080"));

            // The container's process is gone but something holds its namespace: the veth
            // will not go by itself, and the core leaves that part to its caller.
            let holder = std::fs::File::open(c.netns()).unwrap();
            c.stop();
            let Teardown::Deferred(work) = detach::teardown(&store, &kernel, &id).unwrap() else {
                panic!("a dead container's teardown should defer the link work");
            };
            assert!(
                !sh("nft list table inet nethook").contains("8080"),
                "published ports go before the work is handed back"
            );
            assert!(store.load_endpoint(&id).unwrap().is_some());

            let report = work.run(&kernel).unwrap();
            assert!(report.link_deleted, "{report:?}");
            assert!(!sh("ip -o link show").contains(&ep.host_interface));
            assert!(store.load_endpoint(&id).unwrap().is_none());
            assert!(store.list_allocations("nethook").unwrap().is_empty());
            // The lock went with the work.
            drop(store.lock().unwrap());
            drop(holder);
        }
    );
}

#[test]
fn a_network_definition_with_a_bad_ipv6_part_is_refused_with_one_line() {
    sandbox!(
        "a_network_definition_with_a_bad_ipv6_part_is_refused_with_one_line",
        {
            let nh = Nethook::new("arch-core-ipv6");
            let dir = nh.config_dir().join("networks");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
            dir.join("v6.json"),
            r#"{"name":"v6","bridge":"nh-v6","ipv4":{"subnet":"10.91.0.0/24","gateway":"10.91.0.1"},"ipv6":{"subnet":"fe80::/64","gateway":"fe80::1"},"masquerade":true}"#,
        )
        .unwrap();
            let (ok, _, err) = nh.cli(&["network", "inspect", "v6"]);
            assert!(!ok);
            assert!(err.contains("link-local"), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");

            let c = FakeContainer::start("arch-v6");
            let out = nh.hook(&c.state("creating", &[("nethook.network", "v6")]));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains("link-local"), "{err}");
            assert_eq!(nh.records(), 0);
        }
    );
}
