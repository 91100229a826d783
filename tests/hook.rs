//! Privileged tests of the hook's main path, each in its own sandbox namespace, with
//! fake containers (processes in their own netns) and real kernel objects.

mod common;

use common::*;

use std::time::Duration;

#[test]
fn two_containers_get_distinct_addresses_and_reach_each_other_and_the_host() {
    sandbox!(
        "two_containers_get_distinct_addresses_and_reach_each_other_and_the_host",
        {
            let nh = Nethook::new("two");
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[]);
            nh.setup(&b, &[]);

            let ea = nh.endpoint("ctr-a");
            let eb = nh.endpoint("ctr-b");
            let (ipa, ipb) = (
                ea["ipv4"].as_str().unwrap().to_owned(),
                eb["ipv4"].as_str().unwrap().to_owned(),
            );
            assert_ne!(ipa, ipb);
            assert!(ipa.starts_with("10.77.") && ipb.starts_with("10.77."));
            assert_eq!(ea["network"], "nethook");
            assert_eq!(ea["interface"], "eth0");
            assert_eq!(ea["ports"], serde_json::json!([]));

            // What the kernel says inside the container matches the record.
            let inside = a.sh("ip -4 -o addr show dev eth0");
            assert!(inside.contains(&format!("{ipa}/16")), "{inside}");
            assert!(a
                .sh("ip route show default")
                .contains("via 10.77.0.1 dev eth0"));
            assert!(a
                .sh("ip -o link show dev eth0")
                .contains(&format!("link/ether {}", ea["mac"].as_str().unwrap())));
            assert!(a.sh("ip -o link show lo").contains("UP"));
            let host_if = ea["host_interface"].as_str().unwrap();
            assert!(sh(&format!("ip -o link show {host_if}")).contains("master nethook0"));
            // The port is up with hairpin mode on (set with the owner alias, in one request) and
            // without IPv6; the bridge does not snoop multicast (it floods it, as it would
            // anyway without a querier).
            let port = sh(&format!("ip -d -o link show {host_if}"));
            assert!(
                port.contains("state UP") && port.contains("hairpin on"),
                "{port}"
            );
            if std::path::Path::new("/proc/sys/net/ipv6").exists() {
                assert_eq!(
                    sh(&format!(
                        "cat /proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"
                    ))
                    .trim(),
                    "1"
                );
                assert_eq!(sh(&format!("ip -6 -o addr show dev {host_if}")).trim(), "");
            }
            assert!(sh("ip -d -o link show nethook0").contains("mcast_snooping 0"));
            // The bridge has a MAC of its own (derived from the gateway), so the gateway's MAC
            // does not change when the container whose port lent it one goes away.
            assert!(sh("ip -o link show nethook0").contains("link/ether 02:4e:0a:4d:00:01"));

            assert!(a.sh_ok(&format!("ping -c1 -W2 {ipb}")), "a cannot ping b");
            assert!(b.sh_ok(&format!("ping -c1 -W2 {ipa}")), "b cannot ping a");
            assert!(
                a.sh_ok("ping -c1 -W2 10.77.0.1"),
                "a cannot ping the gateway"
            );
            assert!(sh_ok(&format!("ping -c1 -W2 {ipa}")), "host cannot ping a");
            assert_eq!(sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
        }
    );
}

#[test]
fn teardown_leaves_nothing_and_running_it_again_is_fine() {
    sandbox!("teardown_leaves_nothing_and_running_it_again_is_fine", {
        let nh = Nethook::new("teardown");
        let mut a = FakeContainer::start("ctr-a");
        let b = FakeContainer::start("ctr-b");
        nh.setup(&a, &[]);
        nh.setup(&b, &[]);
        // Teardown with the netns alive (link deleted by us) ...
        nh.teardown(&b);
        // ... and after the container died (link already gone with its netns).
        a.stop();
        nh.teardown(&a);
        nh.teardown(&a);
        // A veth whose namespace is being destroyed goes with it, a moment later.
        wait_until(5, "the veths to vanish", || host_veths().is_empty());
        assert_eq!(nh.records(), 0);
        assert_eq!(nh.allocations("nethook"), 0);
        // An id nethook never saw is not an error either.
        let out =
            nh.hook(r#"{"ociVersion":"1.0.2","id":"never-seen","status":"stopped","bundle":"/b"}"#);
        assert!(out.status.success());
    });
}

/// Container ctr-a set up with host port 8080 published, and the name of its host veth.
fn publishing_container(nh: &Nethook) -> (FakeContainer, String) {
    let a = FakeContainer::start("ctr-a");
    nh.setup(&a, &[("nethook.ports", "8080:80")]);
    let host_if = nh.endpoint("ctr-a")["host_interface"]
        .as_str()
        .unwrap()
        .to_owned();
    (a, host_if)
}

/// Runs the hook on `state` with `NETHOOK_TIMING` on, asserts it succeeded and returns its
/// stderr, where the timing line says which steps the hook itself ran.
fn timed_hook(nh: &Nethook, state: &str) -> String {
    let out = nh.hook_in_env(state, &[], &[("NETHOOK_TIMING", "1")]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn a_teardown_that_would_wait_for_a_dead_containers_namespace_finishes_in_the_background() {
    sandbox!(
        "a_teardown_that_would_wait_for_a_dead_containers_namespace_finishes_in_the_background",
        {
            let nh = Nethook::new("background");
            let (mut a, host_if) = publishing_container(&nh);
            // Something else keeps the namespace alive once the container's process is gone, as
            // runc's own netlink socket in there does for a few ms after a short-lived container.
            let holder = std::fs::File::open(a.netns()).unwrap();
            let state = a.state("stopped", &[]);
            a.stop();

            let err = timed_hook(&nh, &state);
            // The hook's own timing line ends after unpublishing: the rest was not its to wait for.
            assert!(
                err.contains("timing teardown: lock+record") && err.contains("unpublish"),
                "{err}"
            );
            assert!(
                !err.contains("finish"),
                "the hook finished the teardown itself: {err}"
            );
            assert!(
                !sh("nft list table inet nethook").contains("8080"),
                "the published port outlived poststop"
            );

            // Behind the lock (which `hook_in_env` waited for), the child has waited, deleted the
            // veth (its namespace is still held) and dropped the address and the record.
            assert!(!host_veths().contains(&host_if), "left: {:?}", host_veths());
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("nethook"), 0);
            assert_eq!(nh.endpoints().len(), 0);
            drop(holder);
        }
    );
}

#[test]
fn a_teardown_whose_veth_went_with_the_namespace_finishes_in_the_hook_itself() {
    sandbox!(
        "a_teardown_whose_veth_went_with_the_namespace_finishes_in_the_hook_itself",
        {
            let nh = Nethook::new("gone");
            let (mut a, host_if) = publishing_container(&nh);
            let state = a.state("stopped", &[]);
            a.stop();
            wait_until(5, "the veth to go with its namespace", || {
                !host_veths().contains(&host_if)
            });

            let err = timed_hook(&nh, &state);
            // No link work was left, so no child was started to wait for any: the hook's own
            // timing line covers the address and the record.
            assert!(err.contains("unpublish") && err.contains("settle"), "{err}");
            assert!(
                !sh("nft list table inet nethook").contains("8080"),
                "the published port outlived poststop"
            );
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("nethook"), 0);
        }
    );
}

#[test]
fn a_bridge_that_lost_its_gateway_or_went_down_is_repaired_by_the_next_setup() {
    sandbox!(
        "a_bridge_that_lost_its_gateway_or_went_down_is_repaired_by_the_next_setup",
        {
            let nh = Nethook::new("repair");
            let a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[]);
            sh("ip addr flush dev nethook0 && ip link set nethook0 down");
            nh.setup(&b, &[]);
            let bridge = sh("ip -o -4 addr show dev nethook0");
            assert!(bridge.contains("10.77.0.1/16"), "{bridge}");
            assert!(sh("ip -o link show nethook0").contains(",UP"));
            assert!(
                b.sh_ok("ping -c1 -W2 10.77.0.1"),
                "b cannot ping the gateway"
            );
        }
    );
}

#[test]
fn failed_setup_leaves_nothing_behind() {
    sandbox!("failed_setup_leaves_nothing_behind", {
        let nh = Nethook::new("rollback");
        let a = FakeContainer::start("ctr-a");
        // The container already has an eth0: the veth create fails after IPAM and record.
        a.sh("ip link add eth0 type veth peer name eth0-peer");
        let out = nh.hook(&a.state("creating", &[]));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("eth0 already exists") && err.contains("nethook.ifname"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(host_veths().is_empty());
        assert_eq!(nh.records(), 0);
        assert_eq!(nh.allocations("nethook"), 0);
        // poststop after a failed createRuntime is fine.
        nh.teardown(&a);
        // And a second try with another name works.
        nh.setup(&a, &[("nethook.ifname", "net0")]);
        assert!(a.sh("ip -o -4 addr show dev net0").contains("10.77."));
    });
}

#[test]
fn a_failed_hook_says_so_in_the_system_log_too_naming_the_container() {
    sandbox!(
        "a_failed_hook_says_so_in_the_system_log_too_naming_the_container",
        {
            // crun throws a hook's stderr away, so the system log is where its users look.
            let nh = Nethook::new("syslog");
            let dir = TempDir::new("syslog");
            let socket_path = dir.0.join("log");
            let log = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
            log.set_nonblocking(true).unwrap();
            let env = [("NETHOOK_SYSLOG_SOCKET", socket_path.to_str().unwrap())];
            let a = FakeContainer::start("ctr-a");

            let bad = nh.hook_in_env(
                &a.state("creating", &[("nethook.ports", "notaport")]),
                &[],
                &env,
            );
            assert_eq!(bad.status.code(), Some(2));
            let err = String::from_utf8_lossy(&bad.stderr);
            let line = err
                .trim()
                .strip_prefix("nethook: ")
                .unwrap_or_else(|| panic!("{err}"));
            let mut buf = [0u8; 2048];
            let n = log
                .recv(&mut buf)
                .expect("a message on the system log socket");
            let msg = String::from_utf8_lossy(&buf[..n]);
            assert!(msg.starts_with("<27>nethook["), "{msg}");
            assert!(
                msg.ends_with(&format!("]: container ctr-a: {line}")),
                "{msg}"
            );

            // Success stays off the system log, but for the notice that nethook turned IPv4
            // forwarding on (the sandbox starts with it off).
            let ok = nh.hook_in_env(&a.state("creating", &[]), &[], &env);
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
            let quiet = loop {
                match log.recv(&mut buf) {
                    Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("<29>nethook[") => {}
                    other => break other,
                }
            };
            assert!(
                quiet.is_err(),
                "a successful setup logged: {}",
                String::from_utf8_lossy(&buf[..quiet.unwrap_or(0)])
            );
            nh.teardown(&a);
        }
    );
}

#[test]
fn the_hooks_own_namespace_is_refused() {
    sandbox!("the_hooks_own_namespace_is_refused", {
        let nh = Nethook::new("own");
        let before = sh("ip -o link");
        let state = format!(
            r#"{{"id":"self","status":"creating","pid":{},"bundle":"/b","annotations":{{}}}}"#,
            std::process::id()
        );
        let out = nh.hook(&state);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("hook's own"));
        assert_eq!(sh("ip -o link"), before);
        assert_eq!(nh.records(), 0);
    });
}

#[test]
fn static_address_mac_and_interface_name_are_honoured() {
    sandbox!("static_address_mac_and_interface_name_are_honoured", {
        let nh = Nethook::new("static");
        let a = FakeContainer::start("ctr-a");
        nh.setup(
            &a,
            &[
                ("nethook.ip", "10.77.9.9"),
                ("nethook.mac", "02:aa:bb:cc:dd:ee"),
                ("nethook.ifname", "net0"),
            ],
        );
        assert!(a.sh("ip -o -4 addr show dev net0").contains("10.77.9.9/16"));
        assert!(a
            .sh("ip -o link show dev net0")
            .contains("link/ether 02:aa:bb:cc:dd:ee"));
        // The same static address for another container is refused and leaves nothing.
        let b = FakeContainer::start("ctr-b");
        let out = nh.hook(&b.state("creating", &[("nethook.ip", "10.77.9.9")]));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("already used by container ctr-a"));
        assert_eq!(nh.records(), 1);
        assert_eq!(host_veths().len(), 1);
    });
}

#[test]
fn disabled_containers_are_left_alone() {
    sandbox!("disabled_containers_are_left_alone", {
        let nh = Nethook::new("disabled");
        let a = FakeContainer::start("ctr-a");
        nh.setup(&a, &[("nethook.disable", "true")]);
        assert_eq!(nh.records(), 0);
        assert!(!a.sh("ip -o link").contains("eth0"));
    });
}

#[test]
fn annotations_come_from_the_bundle_when_the_state_has_none() {
    sandbox!(
        "annotations_come_from_the_bundle_when_the_state_has_none",
        {
            let nh = Nethook::new("bundle");
            let bundle = TempDir::new("bundle-cfg");
            std::fs::write(
            bundle.0.join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{"nethook.ip":"10.77.3.3"}}"#,
        )
        .unwrap();
            let a = FakeContainer::start("ctr-a");
            let state = format!(
                r#"{{"ociVersion":"1.0.2","id":"ctr-a","status":"creating","pid":{},"bundle":"{}"}}"#,
                a.pid(),
                bundle.0.display()
            );
            let out = nh.hook(&state);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(nh.endpoint("ctr-a")["ipv4"], "10.77.3.3");
        }
    );
}

#[test]
fn a_second_create_for_the_same_id_is_refused() {
    sandbox!("a_second_create_for_the_same_id_is_refused", {
        let nh = Nethook::new("dup");
        let a = FakeContainer::start("ctr-a");
        nh.setup(&a, &[]);
        let out = nh.hook(&a.state("creating", &[]));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("already has an endpoint"));
        // The first endpoint is untouched.
        assert_eq!(nh.records(), 1);
        assert_eq!(nh.allocations("nethook"), 1);
        assert!(a.sh("ip -o -4 addr show dev eth0").contains("10.77.0.2"));
    });
}

#[test]
fn gc_removes_endpoints_whose_container_died_without_poststop() {
    sandbox!(
        "gc_removes_endpoints_whose_container_died_without_poststop",
        {
            let nh = Nethook::new("gc");
            let mut a = FakeContainer::start("ctr-a");
            let b = FakeContainer::start("ctr-b");
            nh.setup(&a, &[]);
            nh.setup(&b, &[]);
            let host_if = nh.endpoint("ctr-a")["host_interface"]
                .as_str()
                .unwrap()
                .to_owned();
            a.stop();
            wait_until(10, "the dead container's veth to vanish", || {
                !host_veths().contains(&host_if)
            });
            let (ok, out, _) = nh.cli(&["gc", "--dry-run"]);
            assert!(ok && out.contains("would remove endpoint ctr-a"), "{out}");
            assert_eq!(nh.records(), 2);
            let (ok, out, _) = nh.cli(&["gc"]);
            assert!(
                ok && out.contains("remove endpoint ctr-a") && !out.contains("ctr-b"),
                "{out}"
            );
            assert_eq!(nh.records(), 1);
            assert_eq!(nh.allocations("nethook"), 1);
        }
    );
}

#[test]
fn a_create_for_an_id_whose_old_container_died_without_poststop_reclaims_it() {
    sandbox!(
        "a_create_for_an_id_whose_old_container_died_without_poststop_reclaims_it",
        {
            let nh = Nethook::new("reclaim");
            let mut old = FakeContainer::start("ctr-a");
            nh.setup(&old, &[("nethook.ports", "8080:80")]);
            let old_host_if = nh.endpoint("ctr-a")["host_interface"]
                .as_str()
                .unwrap()
                .to_owned();
            old.stop();
            wait_until(10, "the dead container's veth to vanish", || {
                !host_veths().contains(&old_host_if)
            });
            // The runtime never ran poststop; the same id starts again.
            let new = FakeContainer::start("ctr-a");
            nh.setup(&new, &[("nethook.ports", "8080:80")]);
            assert_eq!(nh.records(), 1);
            assert_eq!(nh.allocations("nethook"), 1);
            assert!(new
                .sh("ip -o -4 addr show dev eth0")
                .contains(nh.endpoint("ctr-a")["ipv4"].as_str().unwrap()));
        }
    );
}

#[test]
fn allocations_of_an_older_version_are_converted_and_orphans_freed_by_gc() {
    sandbox!(
        "allocations_of_an_older_version_are_converted_and_orphans_freed_by_gc",
        {
            let nh = Nethook::new("upgrade");
            // State an older nethook left: one file per network, here holding an address for
            // a container that has no record (its poststop never ran).
            let ipam = nh.run_dir().join("ipam");
            std::fs::create_dir_all(&ipam).unwrap();
            std::fs::write(
                ipam.join("nethook.json"),
                r#"{"allocations": {"10.77.0.2": "ghost"}, "last": "10.77.0.2"}"#,
            )
            .unwrap();
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            assert!(
                !ipam.join("nethook.json").exists(),
                "the old file is converted at the first setup"
            );
            assert_eq!(
                nh.endpoint("ctr-a")["ipv4"],
                "10.77.0.3",
                "allocation resumes after the old cursor"
            );
            assert_eq!(
                std::fs::read_to_string(ipam.join("nethook/10.77.0.2")).unwrap(),
                "ghost"
            );
            assert_eq!(nh.allocations("nethook"), 2);
            // A setup killed between creating an address file and writing its owner.
            std::fs::write(ipam.join("nethook/10.77.0.9"), "").unwrap();
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "gc: {err}");
            assert!(
                out.contains(
                    "free address 10.77.0.2 on nethook: container ghost has no endpoint record"
                ),
                "{out}"
            );
            assert!(out.contains("free address 10.77.0.9"), "{out}");
            assert!(!out.contains("ctr-a"), "{out}");
            assert_eq!(nh.allocations("nethook"), 1);
            nh.teardown(&a);
            assert_eq!(nh.allocations("nethook"), 0);
        }
    );
}

#[test]
fn a_veth_whose_peer_namespace_is_being_destroyed_is_left_to_the_kernel() {
    sandbox!(
        "a_veth_whose_peer_namespace_is_being_destroyed_is_left_to_the_kernel",
        {
            use nethook::kernel::link::{HostVeth, Rtnl, VethFate};
            let rtnl = Rtnl::open().expect("route netlink socket");
            // Teardown deletes only a veth tagged as the container's and on its bridge.
            let id = nethook::model::ids::ContainerId::parse("dying").unwrap();
            let veth = HostVeth {
                name: "nhdying",
                bridge: "nhtestbr",
                owner: &id,
            };
            assert!(sh_ok("ip link add nhtestbr type bridge"));
            // A dead container's namespace keeps its veth pair for a few ms while the kernel
            // destroys it, and poststop usually lands in that window: first the peer's namespace
            // id can no longer be looked up, then it reads -1. Deleting the veth there would only
            // wait on the kernel's RCU barrier. Which of the two a round sees is up to the
            // kernel's timing, so there are many rounds; none may delete.
            let mut left = 0;
            for round in 0..40 {
                let mut c = FakeContainer::start(&format!("dying-{round}"));
                assert!(sh_ok(&format!(
                    "ip link add nhdying master nhtestbr type veth peer name eth0 netns {}",
                    c.pid()
                )));
                assert!(sh_ok("ip link set nhdying alias nethook:dying"));
                // Reading the link assigns the peer's namespace an id, as a running container's has.
                assert!(rtnl.exists("nhdying").expect("look up nhdying"));
                c.stop();
                // Ask at once in even rounds and a little later in odd ones, to meet both ways the
                // kernel reports a dying namespace.
                std::thread::sleep(Duration::from_micros(if round % 2 == 0 { 0 } else { 2500 }));
                let fate = rtnl
                    .delete_veth(&veth, Duration::ZERO)
                    .expect("delete_veth");
                assert_ne!(
                    fate,
                    VethFate::Deleted,
                    "round {round}: deleted a veth its dying namespace was taking"
                );
                if fate == VethFate::GoesWithNetns {
                    left += 1;
                }
                wait_until(5, "the veth to go with its namespace", || {
                    !sh_ok("ip link show nhdying >/dev/null 2>&1")
                });
            }
            assert!(
                left > 0,
                "no round reached the veth before the kernel removed it"
            );
        }
    );
}

#[test]
fn entering_a_container_namespace_briefly_returns_the_thread_to_its_own() {
    sandbox!(
        "entering_a_container_namespace_briefly_returns_the_thread_to_its_own",
        {
            use nethook::kernel::netns::Netns;
            let c = FakeContainer::start("brief");
            let netns = Netns::open(&c.netns()).expect("open netns");
            let here = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
            let before = here();
            let inside = netns.enter_briefly(here).expect("enter");
            assert_eq!(
                inside,
                std::fs::read_link(c.netns()).unwrap(),
                "the work did not run in the container's namespace"
            );
            assert_eq!(
                here(),
                before,
                "the thread was left in the container's namespace"
            );
            // Unwinding out of the work returns the thread too.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                netns.enter_briefly(|| panic!("work failed"))
            }));
            assert!(caught.is_err());
            assert_eq!(
                here(),
                before,
                "a panicking work left the thread in the container's namespace"
            );
        }
    );
}

#[test]
fn a_dead_containers_namespace_gets_a_moment_to_die_before_its_veth_is_deleted() {
    sandbox!(
        "a_dead_containers_namespace_gets_a_moment_to_die_before_its_veth_is_deleted",
        {
            use nethook::kernel::link::{HostVeth, Rtnl, VethFate};
            let rtnl = Rtnl::open().expect("route netlink socket");
            // Teardown deletes only a veth tagged as the container's and on its bridge.
            let (held, kept) = (
                nethook::model::ids::ContainerId::parse("held").unwrap(),
                nethook::model::ids::ContainerId::parse("kept").unwrap(),
            );
            assert!(sh_ok("ip link add nhtestbr type bridge"));
            // Something else holds the namespace of a container that is gone (here an open
            // handle, in runc the loopback netlink socket the kernel frees a grace period later).
            let mut c = FakeContainer::start("held");
            assert!(sh_ok(&format!(
                "ip link add nhheld master nhtestbr type veth peer name eth0 netns {}",
                c.pid()
            )));
            assert!(sh_ok("ip link set nhheld alias nethook:held"));
            let handle = std::fs::File::open(c.netns()).expect("open netns");
            c.stop();
            let release = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                drop(handle);
            });
            let veth = HostVeth {
                name: "nhheld",
                bridge: "nhtestbr",
                owner: &held,
            };
            let fate = rtnl
                .delete_veth(&veth, Duration::from_secs(2))
                .expect("delete_veth");
            release.join().unwrap();
            assert!(
                matches!(fate, VethFate::GoesWithNetns | VethFate::Gone),
                "the veth was {fate:?} instead of being left to its namespace's end"
            );
            wait_until(5, "the veth to go with its namespace", || {
                !sh_ok("ip link show nhheld >/dev/null 2>&1")
            });

            // A namespace that lives on past the wait gets its veth deleted after it.
            let mut c = FakeContainer::start("kept");
            assert!(sh_ok(&format!(
                "ip link add nhkept master nhtestbr type veth peer name eth0 netns {}",
                c.pid()
            )));
            assert!(sh_ok("ip link set nhkept alias nethook:kept"));
            let handle = std::fs::File::open(c.netns()).expect("open netns");
            c.stop();
            let veth = HostVeth {
                name: "nhkept",
                bridge: "nhtestbr",
                owner: &kept,
            };
            let fate = rtnl
                .delete_veth(&veth, Duration::from_millis(30))
                .expect("delete_veth");
            assert_eq!(fate, VethFate::Deleted);
            assert!(!sh_ok("ip link show nhkept >/dev/null 2>&1"));
            drop(handle);
        }
    );
}

#[test]
fn a_container_beyond_the_bridges_port_limit_gets_a_clear_error_and_leaves_nothing() {
    sandbox!(
        "a_container_beyond_the_bridges_port_limit_gets_a_clear_error_and_leaves_nothing",
        {
            let nh = Nethook::new("full");
            let a = FakeContainer::start("ctr-a");
            nh.setup(&a, &[]);
            // Fill the bridge's other 1022 ports with bare veths: cheaper than 1022 containers,
            // and the kernel counts ports alike.
            let batch: String = (1..1023)
                .map(|i| format!("link add fill{i} master nethook0 type veth peer name fillp{i}\n"))
                .collect();
            let tmp = TempDir::new("full-batch");
            let file = tmp.0.join("batch");
            std::fs::write(&file, batch).unwrap();
            assert!(
                sh_ok(&format!("ip -batch {}", file.display())),
                "could not fill the bridge"
            );

            let b = FakeContainer::start("ctr-b");
            let out = nh.hook(&b.state("creating", &[]));
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("network nethook is full")
                    && err.contains("1023 ports")
                    && err.contains("network create"),
                "{err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert_eq!(
                host_veths().len(),
                1,
                "only ctr-a's veth: {:?}",
                host_veths()
            );
            assert_eq!(nh.records(), 1);
            assert_eq!(nh.allocations("nethook"), 1);

            // A freed port makes room again.
            assert!(sh_ok("ip link del fill1"));
            nh.setup(&b, &[]);
            assert_eq!(host_veths().len(), 2);
        }
    );
}
