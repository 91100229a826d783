//! Privileged tests of the network commands (they read host routes and create bridges).

mod common;

use common::*;

use std::process::Command;

#[test]
fn networks_are_created_listed_inspected_and_removed() {
    sandbox!("networks_are_created_listed_inspected_and_removed", {
        let nh = Nethook::new("netcli");
        let (ok, _, err) = nh.cli(&["network", "create", "blue", "--subnet", "10.90.0.0/24"]);
        assert!(ok, "{err}");
        let (ok, out, _) = nh.cli(&["network", "ls"]);
        assert!(
            ok && out.contains("blue") && out.contains("nh-blue") && out.contains("nethook0"),
            "{out}"
        );
        let (ok, out, _) = nh.cli(&["network", "inspect", "blue"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(
            ok && v["ipv4"]["gateway"] == "10.90.0.1" && v["bridge"] == "nh-blue",
            "{out}"
        );

        // Refusals: same name, overlapping another network, overlapping a host route.
        let (ok, _, err) = nh.cli(&["network", "create", "blue", "--subnet", "10.91.0.0/24"]);
        assert!(!ok && err.contains("already exists"), "{err}");
        let (ok, _, err) = nh.cli(&["network", "create", "green", "--subnet", "10.90.0.128/25"]);
        assert!(!ok && err.contains("overlaps"), "{err}");
        sh("ip link add hv0 type veth peer name hv1 && ip addr add 192.0.2.1/24 dev hv0 && ip link set hv0 up");
        let (ok, _, err) = nh.cli(&["network", "create", "green", "--subnet", "192.0.2.0/25"]);
        assert!(!ok && err.contains("host route"), "{err}");

        // A container on it, then rm is refused until it is gone.
        let c = FakeContainer::start("ctr-blue");
        nh.setup(&c, &[("nethook.network", "blue")]);
        assert!(c.sh("ip -o -4 addr show dev eth0").contains("10.90.0.2/24"));
        let (ok, _, err) = nh.cli(&["network", "rm", "blue"]);
        assert!(!ok && err.contains("ctr-blue"), "{err}");
        nh.teardown(&c);
        let (ok, _, err) = nh.cli(&["network", "rm", "blue"]);
        assert!(ok, "{err}");
        assert!(!sh_ok("ip link show nh-blue"));
        assert!(
            !nh.run_dir().join("ipam").join("blue").exists(),
            "the network's address directory is left"
        );

        // An unknown network names the fix.
        let d = FakeContainer::start("ctr-x");
        let out = nh.hook(&d.state("creating", &[("nethook.network", "nope")]));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nethook network create nope"));
    });
}

#[test]
fn ls_by_a_user_who_may_read_the_records_but_not_take_the_lock_lists_them() {
    sandbox!(
        "ls_by_a_user_who_may_read_the_records_but_not_take_the_lock_lists_them",
        {
            if !needs("setpriv") {
                return;
            }
            let nh = Nethook::new("lsuser");
            let c = FakeContainer::start("ctr-seen");
            nh.setup(&c, &[]);
            // An admin opened the records to reading; the lock stays root's (0600).
            let run = nh.run_dir();
            sh(&format!(
                "chmod o+rx {0} {0}/endpoints && chmod o+r {0}/endpoints/*.json",
                run.display()
            ));
            let out = Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    env!("CARGO_BIN_EXE_nethook"),
                    "ls",
                    "--json",
                ])
                .env_clear()
                .env("NETHOOK_RUN_DIR", &run)
                .env("NETHOOK_CONFIG_DIR", nh.config_dir())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("ctr-seen"), "{text}");
        }
    );
}

#[test]
fn driver_options_that_do_not_fit_are_refused_with_one_line_each() {
    sandbox!(
        "driver_options_that_do_not_fit_are_refused_with_one_line_each",
        {
            let nh = Nethook::new("drivers");
            let refused = |args: &[&str], says: &str| {
                let mut all = vec!["network", "create", "x", "--subnet", "10.93.0.0/24"];
                all.extend_from_slice(args);
                let (ok, _, err) = nh.cli(&all);
                assert!(!ok, "{args:?} was accepted");
                assert!(err.contains(says), "{args:?}: {err}");
                assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
            };
            refused(
                &["--driver", "routed", "--gateway", "10.93.0.1"],
                "169.254.1.1",
            );
            refused(&["--driver", "routed", "--bridge", "br-x"], "no bridge");
            refused(
                &["--driver", "routed", "--parent", "eth0"],
                "--parent is for --driver macvlan",
            );
            refused(&["--parent", "eth0"], "--parent is for --driver macvlan");
            refused(&["--driver", "macvlan"], "needs --parent");
            // A value clap cannot parse gets clap's usage error (and its help hint).
            let (ok, _, err) = nh.cli(&[
                "network",
                "create",
                "x",
                "--subnet",
                "10.93.0.0/24",
                "--driver",
                "vxlan",
            ]);
            assert!(
                !ok && err.contains("use bridge, routed or macvlan"),
                "{err}"
            );
            let (ok, _, err) = nh.cli(&[
                "network",
                "create",
                "flat",
                "--subnet",
                "10.93.0.0/24",
                "--driver",
                "routed",
            ]);
            assert!(ok, "{err}");
            let (_, out, _) = nh.cli(&["network", "ls"]);
            assert!(
                out.lines()
                    .any(|l| l.starts_with("flat") && l.contains("routed")),
                "{out}"
            );
            let (_, out, _) = nh.cli(&["network", "inspect", "flat"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["driver"], "routed");
            assert_eq!(v["ipv4"]["gateway"], "169.254.1.1");
            let (_, out, _) = nh.cli(&["network", "inspect", "nethook"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                v["driver"], "bridge",
                "inspect shows the driver of a bridge too"
            );
        }
    );
}
