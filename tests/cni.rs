//! The CNI plugin, conformance-style: each command as a runtime calls it (`CNI_*`
//! variables, the network configuration on stdin, a minimal environment), against real
//! kernel objects in a sandbox namespace, with fake containers. CHECK, GC, sharing a network
//! with the hook and chaining: tests/cni_chain.rs.

mod cni_common;
mod common;

use cni_common::*;
use common::*;

use serde_json::{json, Value};

#[test]
fn add_check_del_in_every_version_and_del_twice() {
    sandbox!("add_check_del_in_every_version_and_del_twice", {
        let nh = Nethook::new("cni-versions");
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let c = FakeContainer::start("c1");
            let netns = pinned_netns(&c, &nh.dirs.0);
            let e = env("c1", &netns);
            let add = plugin("ADD", &e, &conf(&nh, v, json!({})));
            let r = add.ok();
            assert_eq!(r["cniVersion"], v);
            let ip = &r["ips"][0];
            assert_eq!(ip.get("version").is_some(), v < "1.0.0", "{v}: {r}");
            assert_eq!(ip["interface"], 1);
            assert_eq!(ip["gateway"], "10.99.0.1");
            let addr = ip["address"].as_str().unwrap();
            assert!(addr.starts_with("10.99.0.") && addr.ends_with("/24"), "{r}");
            assert_eq!(r["interfaces"][1]["name"], "eth0");
            assert_eq!(r["interfaces"][1]["sandbox"], netns.as_str());
            let host = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
            assert!(host_veths().contains(&host), "{host}");
            assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
            assert!(c.sh("ip -4 -o addr show dev eth0").contains(addr));
            assert!(
                c.sh_ok("ping -c1 -W2 10.99.0.1"),
                "{v}: gateway unreachable"
            );

            let check = plugin("CHECK", &e, &conf(&nh, v, json!({"prevResult": r})));
            if v < "0.4.0" {
                assert_eq!(check.err(), 1, "{v}: CHECK needs 0.4.0");
            } else {
                assert_eq!(check.code, 0, "{v}: {}", check.raw);
            }

            for round in 0..2 {
                let del = plugin("DEL", &e, &conf(&nh, v, json!({})));
                assert_eq!(del.code, 0, "{v} DEL #{round}: {}", del.raw);
                assert!(del.out.is_null(), "DEL prints nothing: {}", del.raw);
                nh.settle();
            }
            assert_eq!(nh.records(), 0, "{v}");
            assert!(!host_veths().contains(&host), "{v}: {host} left");
            assert_eq!(nh.allocations("pods"), 0, "{v}");
            sh(&format!("umount {netns}"));
        }
    });
}

#[test]
fn version_lists_every_supported_version_and_others_are_refused_with_code_1() {
    sandbox!(
        "version_lists_every_supported_version_and_others_are_refused_with_code_1",
        {
            let nh = Nethook::new("cni-version");
            let all = json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
            for (stdin, speaks) in [
                (r#"{"cniVersion":"1.0.0"}"#, "1.0.0"),
                (r#"{"cniVersion":"0.3.1"}"#, "0.3.1"),
                (r#"{"cniVersion":"9.9.9"}"#, "1.1.0"),
                ("", "1.1.0"),
            ] {
                let out = plugin("VERSION", &[], stdin);
                assert_eq!(out.ok()["supportedVersions"], all, "{stdin}");
                assert_eq!(out.out["cniVersion"], speaks, "{stdin}");
            }
            let c = FakeContainer::start("c1");
            let ns = c.netns().display().to_string();
            let add = plugin("ADD", &env("c1", &ns), &conf(&nh, "0.2.0", json!({})));
            assert_eq!(add.err(), 1);
            assert!(
                add.out["msg"].as_str().unwrap().contains("1.1.0"),
                "{}",
                add.raw
            );
            let gc = plugin("GC", &[], &conf(&nh, "1.0.0", json!({})));
            assert_eq!(gc.err(), 1, "GC needs 1.1.0");
            let status = plugin("STATUS", &[], &conf(&nh, "1.0.0", json!({})));
            assert_eq!(status.err(), 1, "STATUS needs 1.1.0");
            let status = plugin("STATUS", &[], &conf(&nh, "1.1.0", json!({})));
            assert_eq!(status.code, 0, "{}", status.raw);
            let unknown = plugin("FROB", &[], &conf(&nh, "1.1.0", json!({})));
            assert_eq!(unknown.err(), 4);
        }
    );
}

#[test]
fn del_succeeds_without_a_netns_and_after_the_netns_is_gone() {
    sandbox!(
        "del_succeeds_without_a_netns_and_after_the_netns_is_gone",
        {
            let nh = Nethook::new("cni-del");
            let cfg = conf(&nh, "1.0.0", json!({}));
            // Never added: nothing to do, still success.
            let del = plugin(
                "DEL",
                &[("CNI_CONTAINERID", "x"), ("CNI_IFNAME", "eth0")],
                &cfg,
            );
            assert_eq!(del.code, 0, "{}", del.raw);

            let mut a = FakeContainer::start("a");
            let ns_a = a.netns().display().to_string();
            plugin("ADD", &env("a", &ns_a), &cfg).ok();
            a.stop();
            let del = plugin("DEL", &env("a", &ns_a), &cfg);
            assert_eq!(del.code, 0, "netns gone: {}", del.raw);
            nh.settle();

            let b = FakeContainer::start("b");
            let ns_b = b.netns().display().to_string();
            let host = plugin("ADD", &env("b", &ns_b), &cfg).ok()["interfaces"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned();
            // No CNI_NETNS at all (allowed for DEL), container alive: the veth goes too.
            let del = plugin(
                "DEL",
                &[("CNI_CONTAINERID", "b"), ("CNI_IFNAME", "eth0")],
                &cfg,
            );
            assert_eq!(del.code, 0, "no netns: {}", del.raw);
            nh.settle();
            assert!(!host_veths().contains(&host));
            assert!(
                !b.sh_ok("ip link show eth0"),
                "the container end went with the pair"
            );
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("pods"), 0);
        }
    );
}

#[test]
fn bad_configs_get_the_specs_codes() {
    sandbox!("bad_configs_get_the_specs_codes", {
        let nh = Nethook::new("cni-bad");
        let c = FakeContainer::start("c1");
        let ns = c.netns().display().to_string();
        let e = env("c1", &ns);
        assert_eq!(plugin("ADD", &e, "{\"cniVersion\": ").err(), 6);
        let no_version = conf(&nh, "1.0.0", json!({})).replace("\"cniVersion\":\"1.0.0\",", "");
        assert_eq!(plugin("ADD", &e, &no_version).err(), 7);
        let bad = plugin(
            "ADD",
            &e,
            &conf(&nh, "1.0.0", json!({"subnet": "10.99.0.1/33"})),
        );
        assert_eq!(bad.err(), 7);
        // A network defined elsewhere with a subnet that overlaps.
        let (ok, _, err) = nh.cli(&["network", "create", "other", "--subnet", "10.98.0.0/16"]);
        assert!(ok, "{err}");
        let clash = plugin(
            "ADD",
            &e,
            &conf(&nh, "1.0.0", json!({"subnet": "10.98.1.0/24"})),
        );
        assert_eq!(clash.err(), 7);
        assert!(
            clash.out["msg"].as_str().unwrap().contains("other"),
            "{}",
            clash.raw
        );
        // The same network asked for with another subnet than it has.
        let diff = plugin(
            "ADD",
            &e,
            &conf(
                &nh,
                "1.0.0",
                json!({"network": "other", "subnet": "10.97.0.0/24"}),
            ),
        );
        assert_eq!(diff.err(), 7);
        assert!(
            diff.out["msg"].as_str().unwrap().contains("10.98.0.0/16"),
            "{}",
            diff.raw
        );
        // Undefined network and no subnet.
        let undefined = conf(&nh, "1.0.0", json!({"network": "nowhere"}))
            .replace("\"subnet\":\"10.99.0.0/24\",", "");
        assert_eq!(plugin("ADD", &e, &undefined).err(), 7);
        // Missing environment.
        let no_netns = [("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")];
        assert_eq!(
            plugin("ADD", &no_netns, &conf(&nh, "1.0.0", json!({}))).err(),
            4
        );
        assert_eq!(nh.records(), 0, "nothing of a failed ADD stays");
    });
}

#[test]
fn a_command_line_with_arguments_is_the_cli_even_with_cni_command_set() {
    let nh = Nethook::new("cni-cli");
    let out = nh
        .command()
        .env("CNI_COMMAND", "ADD")
        .args(["network", "ls", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(nets.is_array(), "{nets}");
}

#[test]
fn an_add_right_after_a_del_gets_the_same_key_and_address_and_ls_never_shows_it_half_gone() {
    sandbox!(
        "an_add_right_after_a_del_gets_the_same_key_and_address_and_ls_never_shows_it_half_gone",
        {
            let nh = Nethook::new("cni-del-add");
            let c = FakeContainer::start("c1");
            let netns = pinned_netns(&c, &nh.dirs.0);
            let pinned = json!({"runtimeConfig": {"ips": ["10.99.0.50/24"]}});
            let del = |cid: &str| {
                let d = plugin("DEL", &env(cid, &netns), &conf(&nh, "1.0.0", json!({})));
                assert_eq!(d.code, 0, "DEL {cid}: {}", d.raw);
            };
            let add = |cid: &str| {
                plugin(
                    "ADD",
                    &env(cid, &netns),
                    &conf(&nh, "1.0.0", pinned.clone()),
                )
                .ok()
                .clone()
            };
            let first = add("c1");
            let old_host = first["interfaces"][0]["name"].as_str().unwrap().to_owned();
            // DEL returns while a child of it still deletes the veth (the namespace is
            // alive, as under kubelet): `ls` waits for that rather than show it.
            del("c1");
            let (ok, ls, err) = nh.cli(&["ls", "--json"]);
            assert!(ok, "{err}");
            assert_eq!(ls.trim(), "[]", "ls right after DEL");
            // The same key into the same namespace (eth0 again) with the same address,
            // straight after DEL: the ADD waits for the old veth and gets both.
            del("c1");
            let again = add("c1");
            assert_eq!(again["ips"][0]["address"], "10.99.0.50/24", "{again}");
            assert!(c.sh_ok("ping -c1 -W2 10.99.0.1"), "gateway unreachable");
            // Another container asking for the address the DEL is freeing gets it too.
            del("c1");
            let other = add("c2");
            assert_eq!(other["ips"][0]["address"], "10.99.0.50/24", "{other}");
            assert!(c.sh_ok("ping -c1 -W2 10.99.0.1"), "gateway unreachable");
            del("c2");
            nh.settle();
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("pods"), 0);
            assert!(!host_veths().contains(&old_host));
            assert!(std::fs::read_dir(nh.run_dir().join("deleting"))
                .unwrap()
                .next()
                .is_none());
            sh(&format!("umount {netns}"));
        }
    );
}

#[test]
fn a_conflist_can_define_a_routed_network_and_the_result_shows_the_slash_32() {
    sandbox!(
        "a_conflist_can_define_a_routed_network_and_the_result_shows_the_slash_32",
        {
            let nh = Nethook::new("cni-routed");
            // The host's own address for the container to reach (a routed host needs one).
            sh("ip addr add 192.0.2.250/32 dev lo");
            let c = FakeContainer::start("r1");
            let netns = pinned_netns(&c, &nh.dirs.0);
            let routed = json!({"driver": "routed", "subnet": "10.98.0.0/24", "name": "flat"});
            let r = plugin(
                "ADD",
                &env("r1", &netns),
                &conf(&nh, "1.0.0", routed.clone()),
            )
            .ok()
            .clone();
            assert_eq!(r["ips"][0]["address"], "10.98.0.1/32", "{r}");
            assert_eq!(r["ips"][0]["gateway"], "169.254.1.1", "{r}");
            let host = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
            assert!(host.starts_with("nr"), "{host}");
            assert!(c.sh("ip -o -4 addr show dev eth0").contains("10.98.0.1/32"));
            assert!(
                c.sh_ok("ping -c1 -W2 192.0.2.250"),
                "the host is unreachable"
            );
            // The same network asked for with another driver is refused, not changed.
            let bridge = json!({"driver": "bridge", "subnet": "10.98.0.0/24", "name": "flat"});
            let other = FakeContainer::start("r2");
            let netns2 = pinned_netns(&other, &nh.dirs.0);
            let refused = plugin("ADD", &env("r2", &netns2), &conf(&nh, "1.0.0", bridge));
            assert_eq!(refused.err(), 7, "{}", refused.raw);
            assert!(
                refused.raw.contains("uses the routed driver"),
                "{}",
                refused.raw
            );
            let del = plugin("DEL", &env("r1", &netns), &conf(&nh, "1.0.0", routed));
            assert_eq!(del.code, 0, "{}", del.raw);
            nh.settle();
            assert!(!host_veths().contains(&host));
            assert_eq!(nh.records(), 0);
            sh(&format!("umount {netns} {netns2}"));
        }
    );
}
