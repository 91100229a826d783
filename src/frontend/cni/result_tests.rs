use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::*;
use crate::frontend::cni::version::SUPPORTED;

fn attached() -> Attached {
    Attached {
        host_ifname: "nh0123456789abc".into(),
        ifname: "eth0".into(),
        mac: "02:4e:0a:58:00:05".into(),
        sandbox: "/var/run/netns/cni-1234".into(),
        addresses: vec![(
            Ipv4Addr::new(10, 88, 0, 5).into(),
            24,
            Ipv4Addr::new(10, 88, 0, 1).into(),
        )],
        nameservers: Vec::new(),
        search: Vec::new(),
    }
}

#[test]
fn a_network_with_a_resolver_reports_it_unless_an_earlier_plugin_set_dns() {
    let mut a = attached();
    a.nameservers = vec![Ipv4Addr::new(10, 88, 0, 1).into()];
    a.search = vec!["app".into()];
    let r = render(SUPPORTED[SUPPORTED.len() - 1], &a, None);
    assert_eq!(r["dns"]["nameservers"], serde_json::json!(["10.88.0.1"]));
    assert_eq!(r["dns"]["search"], serde_json::json!(["app"]));
    let prev = serde_json::json!({"dns": {"nameservers": ["192.0.2.53"]}});
    let r = render(SUPPORTED[SUPPORTED.len() - 1], &a, Some(&prev));
    assert_eq!(r["dns"]["nameservers"], serde_json::json!(["192.0.2.53"]));
    let r = render(SUPPORTED[SUPPORTED.len() - 1], &attached(), None);
    assert_eq!(r["dns"], serde_json::json!({}));
}

#[test]
fn a_dual_stack_attachment_reports_both_addresses_and_default_routes() {
    let mut a = attached();
    a.addresses.push((
        "fd00:88::5".parse().unwrap(),
        64,
        "fd00:88::1".parse().unwrap(),
    ));
    let old = render(Version::V040, &a, None);
    assert_eq!(old["ips"][1]["version"], "6");
    assert_eq!(old["ips"][1]["address"], "fd00:88::5/64");
    assert_eq!(old["ips"][1]["interface"], 1);
    let new = render(Version::V100, &a, None);
    assert_eq!(
        new["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0", "gw": "fd00:88::1"}])
    );
}

/// Compares with testdata/cni/NAME; `NETHOOK_UPDATE_GOLDEN=1` rewrites the file instead.
fn golden(name: &str, value: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cni")
        .join(name);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("NETHOOK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(text, want, "{name}");
}

#[test]
fn results_match_the_golden_files_of_each_version() {
    for v in SUPPORTED {
        golden(&format!("result-{v}.json"), &render(v, &attached(), None));
    }
}

#[test]
fn versions_before_1_0_0_put_a_version_in_each_ip_and_later_ones_do_not() {
    let old = render(Version::V040, &attached(), None);
    assert_eq!(old["ips"][0]["version"], "4");
    let new = render(Version::V100, &attached(), None);
    assert!(new["ips"][0].get("version").is_none());
    assert_eq!(new["ips"][0]["interface"], 1);
    assert_eq!(new["interfaces"][1]["sandbox"], "/var/run/netns/cni-1234");
}

#[test]
fn a_prev_result_keeps_its_interfaces_and_ours_index_after_them() {
    let prev: Value = serde_json::from_str(
        r#"{"cniVersion":"1.0.0",
            "interfaces":[{"name":"lo0","sandbox":"/var/run/netns/cni-1234"}],
            "ips":[{"address":"192.168.5.2/24","interface":0}],
            "routes":[{"dst":"192.168.0.0/16"}],
            "dns":{"nameservers":["192.168.5.1"]}}"#,
    )
    .unwrap();
    let out = render(Version::V100, &attached(), Some(&prev));
    golden("result-chained-1.0.0.json", &out);
    assert_eq!(out["interfaces"][0]["name"], "lo0");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["ips"][1]["interface"], 2);
    assert_eq!(out["interfaces"][2]["name"], "eth0");
    assert_eq!(out["dns"]["nameservers"][0], "192.168.5.1");
    assert_eq!(out["routes"].as_array().unwrap().len(), 2);
}

#[test]
fn an_earlier_default_route_is_not_doubled() {
    let prev = serde_json::json!({"routes": [{"dst": "0.0.0.0/0", "gw": "192.168.5.1"}]});
    let out = render(Version::V110, &attached(), Some(&prev));
    assert_eq!(out["routes"].as_array().unwrap().len(), 1);
}
