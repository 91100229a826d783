//! The CNI plugin, conformance-style: each command as a runtime calls it (`CNI_*`
//! variables, the network configuration on stdin, a minimal environment), against real
//! kernel objects in a sandbox namespace, with fake containers.

mod common;

use common::*;

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};

/// What one plugin call gave: exit code, stdout parsed as JSON (Null when empty), stderr.
struct Call {
    code: i32,
    out: Value,
    stdout: String,
    raw: String,
}

impl Call {
    fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "plugin failed: {}", self.raw);
        &self.out
    }

    /// The CNI error code; the message must be one line saying something.
    fn err(&self) -> u64 {
        assert_ne!(self.code, 0, "plugin succeeded: {}", self.raw);
        assert_eq!(self.stdout.trim().lines().count(), 1, "{}", self.raw);
        let msg = self.out["msg"].as_str().unwrap_or_default();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{}", self.raw);
        assert!(self.out["cniVersion"].is_string(), "{}", self.raw);
        self.out["code"].as_u64().expect("code")
    }
}

/// Runs the plugin binary with only the CNI variables (and PATH), as runtimes do.
fn plugin(command: &str, env: &[(&str, &str)], stdin: &str) -> Call {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nethook"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nethook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {raw}"))
    };
    Call {
        code: out.status.code().unwrap_or(-1),
        out: parsed,
        stdout: raw.clone(),
        raw: format!("{raw}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// A network configuration for `nh`'s state directories, with `extra` keys on top.
fn conf(nh: &Nethook, version: &str, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": version,
        "name": "pods",
        "type": "nethook",
        "subnet": "10.99.0.0/24",
        "runDir": nh.run_dir(),
        "configDir": nh.config_dir(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn env<'a>(cid: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", cid),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
    ]
}

/// A bind-mounted namespace file, as kubelet and containerd pass: it outlives the
/// container's process until unmounted.
fn pinned_netns(c: &FakeContainer, dir: &std::path::Path) -> String {
    let path = dir.join(format!("netns-{}", c.id));
    std::fs::write(&path, b"").unwrap();
    sh(&format!(
        "mount --bind {} {}",
        c.netns().display(),
        path.display()
    ));
    path.display().to_string()
}

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
