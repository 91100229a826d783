//! The CNI plugin among others: CHECK of what went missing, GC beside hook endpoints, a hook
//! container and a CNI attachment on one network, and chaining with other plugins
//! (prevResult, Debian's reference plugins). In sandboxes, as tests/cni.rs.

mod cni_common;
mod common;

use cni_common::*;
use common::*;

use serde_json::json;

#[test]
fn check_reports_a_veth_deleted_by_hand() {
    sandbox!("check_reports_a_veth_deleted_by_hand", {
        let nh = Nethook::new("cni-check");
        let c = FakeContainer::start("c1");
        let ns = c.netns().display().to_string();
        let cfg = conf(&nh, "1.0.0", json!({}));
        let r = plugin("ADD", &env("c1", &ns), &cfg).ok().clone();
        let host = r["interfaces"][0]["name"].as_str().unwrap();
        let with_prev = conf(&nh, "1.0.0", json!({ "prevResult": r }));
        assert_eq!(plugin("CHECK", &env("c1", &ns), &with_prev).code, 0);
        sh(&format!("ip link del {host}"));
        let check = plugin("CHECK", &env("c1", &ns), &with_prev);
        assert!(check.err() >= 100, "{}", check.raw);
        assert!(
            check.out["msg"].as_str().unwrap().contains(host),
            "{}",
            check.raw
        );
        // And DEL still cleans up what is left.
        assert_eq!(plugin("DEL", &env("c1", &ns), &cfg).code, 0);
        nh.settle();
        assert_eq!(nh.records(), 0);
    });
}

#[test]
fn check_reports_a_missing_route_and_address_inside_the_container() {
    sandbox!(
        "check_reports_a_missing_route_and_address_inside_the_container",
        {
            let nh = Nethook::new("cni-check-ns");
            let c = FakeContainer::start("c1");
            let ns = c.netns().display().to_string();
            let cfg = conf(&nh, "1.1.0", json!({}));
            let r = plugin("ADD", &env("c1", &ns), &cfg).ok().clone();
            let addr = r["ips"][0]["address"].as_str().unwrap().to_owned();
            let with_prev = conf(&nh, "1.1.0", json!({ "prevResult": r }));
            c.sh("ip route del default");
            let check = plugin("CHECK", &env("c1", &ns), &with_prev);
            assert!(check.err() >= 100, "{}", check.raw);
            let msg = check.out["msg"].as_str().unwrap();
            assert!(msg.contains("default route via 10.99.0.1"), "{msg}");
            assert!(!msg.contains("address"), "{msg}");
            c.sh(&format!("ip addr del {addr} dev eth0"));
            let check = plugin("CHECK", &env("c1", &ns), &with_prev);
            assert!(check.err() >= 100, "{}", check.raw);
            let msg = check.out["msg"].as_str().unwrap();
            assert!(msg.contains(&format!("address {addr}")), "{msg}");
        }
    );
}

#[test]
fn check_reports_a_missing_nftables_element() {
    sandbox!("check_reports_a_missing_nftables_element", {
        if !needs("nft") {
            return;
        }
        let nh = Nethook::new("cni-check-nft");
        let c = FakeContainer::start("c1");
        let ns = c.netns().display().to_string();
        let cfg = conf(
            &nh,
            "1.0.0",
            json!({"runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
        );
        let r = plugin("ADD", &env("c1", &ns), &cfg).ok().clone();
        let with_prev = conf(&nh, "1.0.0", json!({ "prevResult": r }));
        let check = plugin("CHECK", &env("c1", &ns), &with_prev);
        assert_eq!(check.code, 0, "{}", check.raw);
        sh("nft flush map inet nethook ports4");
        let check = plugin("CHECK", &env("c1", &ns), &with_prev);
        assert!(check.err() >= 100, "{}", check.raw);
        let msg = check.out["msg"].as_str().unwrap();
        assert!(msg.contains("nftables") && msg.contains("ports4"), "{msg}");
    });
}

#[test]
fn gc_removes_only_unlisted_attachments_and_never_hook_endpoints() {
    sandbox!(
        "gc_removes_only_unlisted_attachments_and_never_hook_endpoints",
        {
            let nh = Nethook::new("cni-gc");
            let cfg = conf(&nh, "1.1.0", json!({}));
            let a = FakeContainer::start("a");
            let b = FakeContainer::start("b");
            let h = FakeContainer::start("h");
            for c in [&a, &b] {
                let ns = c.netns().display().to_string();
                plugin("ADD", &env(&c.id, &ns), &cfg).ok();
            }
            nh.setup(&h, &[("nethook.network", "pods")]);
            let gc = plugin(
                "GC",
                &[],
                &conf(
                    &nh,
                    "1.1.0",
                    json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}),
                ),
            );
            assert_eq!(gc.code, 0, "{}", gc.raw);
            nh.settle();
            let ids: Vec<String> = nh
                .endpoints()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids, vec!["a@eth0".to_owned(), "h".to_owned()]);
            assert!(!b.sh_ok("ip link show eth0"));
            assert!(a.sh_ok("ping -c1 -W2 10.99.0.1"));
        }
    );
}

#[test]
fn a_hook_container_and_a_cni_attachment_share_a_network_and_ls() {
    sandbox!(
        "a_hook_container_and_a_cni_attachment_share_a_network_and_ls",
        {
            let nh = Nethook::new("cni-mixed");
            let c = FakeContainer::start("cni1");
            let ns = c.netns().display().to_string();
            let r = plugin(
                "ADD",
                &env("cni1", &ns),
                &conf(
                    &nh,
                    "1.0.0",
                    json!({"runtimeConfig": {"portMappings": [
                        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
                ),
            );
            let cni_ip = r.ok()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned();
            let h = FakeContainer::start("hook1");
            nh.setup(&h, &[("nethook.network", "pods")]);
            let hook_ip = nh.endpoint("hook1")["ipv4"].as_str().unwrap().to_owned();
            assert!(c.sh_ok(&format!("ping -c1 -W2 {hook_ip}")));
            assert!(h.sh_ok(&format!("ping -c1 -W2 {cni_ip}")));
            let cni = nh.endpoint("cni1@eth0");
            assert_eq!(cni["source"], "cni");
            assert_eq!(cni["container"], "cni1");
            assert_eq!(cni["ports"][0]["host_port"], 8080);
            assert_eq!(nh.endpoint("hook1")["source"], "hook");
            let (ok, table, _) = nh.cli(&["ls"]);
            assert!(
                ok && table.contains("cni1@eth0") && table.contains("hook1"),
                "{table}"
            );
        }
    );
}

#[test]
fn a_prev_result_keeps_the_earlier_plugins_interfaces() {
    sandbox!("a_prev_result_keeps_the_earlier_plugins_interfaces", {
        let nh = Nethook::new("cni-prev");
        let c = FakeContainer::start("c1");
        let ns = c.netns().display().to_string();
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "dummy0", "sandbox": ns}],
            "ips": [{"address": "192.168.77.2/24", "interface": 0}],
        });
        let r = plugin(
            "ADD",
            &env("c1", &ns),
            &conf(&nh, "1.0.0", json!({"prevResult": prev})),
        );
        let r = r.ok();
        assert_eq!(r["interfaces"][0]["name"], "dummy0");
        assert_eq!(r["interfaces"][2]["name"], "eth0");
        assert_eq!(r["ips"][0]["address"], "192.168.77.2/24");
        assert_eq!(r["ips"][1]["interface"], 2);
    });
}

/// Debian's containernetworking-plugins, where the package puts them.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

#[test]
fn nethook_chains_between_the_reference_loopback_and_tuning_plugins() {
    sandbox!(
        "nethook_chains_between_the_reference_loopback_and_tuning_plugins",
        {
            let (lo, tuning) = (
                format!("{REFERENCE_PLUGINS}/loopback"),
                format!("{REFERENCE_PLUGINS}/tuning"),
            );
            if !std::path::Path::new(&tuning).exists() || !std::path::Path::new(&lo).exists() {
                eprintln!("SKIP: needs {lo} and {tuning} (containernetworking-plugins)");
                return;
            }
            let nh = Nethook::new("cni-chain");
            let c = FakeContainer::start("c1");
            let ns = c.netns().display().to_string();
            let e = env("c1", &ns);
            let mut e_lo = e.clone();
            e_lo[1] = ("CNI_IFNAME", "lo");
            // As libcni runs a conflist: each plugin gets the one before's result.
            let first = run_plugin(
                &lo,
                "ADD",
                &e_lo,
                &json!({"cniVersion": "1.0.0", "name": "pods", "type": "loopback"}).to_string(),
            );
            let prev = first.ok().clone();
            let ours = plugin(
                "ADD",
                &e,
                &conf(&nh, "1.0.0", json!({ "prevResult": prev })),
            );
            let ours = ours.ok().clone();
            assert_eq!(ours["interfaces"][0]["name"], "lo", "{ours}");
            let tuned = run_plugin(
                &tuning,
                "ADD",
                &e,
                &json!({"cniVersion": "1.0.0", "name": "pods", "type": "tuning",
                        "mtu": 1400, "prevResult": ours})
                .to_string(),
            );
            let tuned = tuned.ok();
            assert_eq!(tuned["ips"], ours["ips"], "{tuned}");
            assert!(c.sh("ip link show eth0").contains("mtu 1400"));
            assert!(c.sh_ok("ping -c1 -W2 10.99.0.1"));
            // DEL in reverse order, as libcni does.
            let del_conf =
                |t: &str| json!({"cniVersion": "1.0.0", "name": "pods", "type": t}).to_string();
            assert_eq!(run_plugin(&tuning, "DEL", &e, &del_conf("tuning")).code, 0);
            assert_eq!(plugin("DEL", &e, &conf(&nh, "1.0.0", json!({}))).code, 0);
            assert_eq!(run_plugin(&lo, "DEL", &e_lo, &del_conf("loopback")).code, 0);
            nh.settle();
            assert_eq!(nh.records(), 0);
        }
    );
}
