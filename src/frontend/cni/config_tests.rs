use super::*;
use crate::model::ports::Proto;

fn cfg(text: &str) -> Result<Config, CniError> {
    parse(&parse_json(text.as_bytes())?)
}

#[test]
fn the_network_defaults_to_the_conflist_name() {
    let c = cfg(r#"{"cniVersion":"1.0.0","name":"pods","type":"nethook"}"#).unwrap();
    assert_eq!(c.version, Version::V100);
    assert_eq!(c.network, "pods");
    assert!(c.ports.is_empty() && c.ip.is_none() && c.mac.is_none());
    let c = cfg(
        r#"{"cniVersion":"0.4.0","name":"pods","network":"web","subnet":"10.9.0.0/24",
        "runDir":"/tmp/r","configDir":"/tmp/c","bridge":"br-web"}"#,
    )
    .unwrap();
    assert_eq!(c.network, "web");
    assert_eq!(c.subnet.as_deref(), Some("10.9.0.0/24"));
    assert_eq!(c.run_dir, Some(PathBuf::from("/tmp/r")));
    assert_eq!(c.config_dir, Some(PathBuf::from("/tmp/c")));
    assert_eq!(c.bridge.as_deref(), Some("br-web"));
}

#[test]
fn runtime_capabilities_become_the_hooks_options() {
    let c = cfg(r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{
        "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                        {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                        {"hostPort":9000,"containerPort":9000,"hostIP":""}],
        "ips":["10.88.0.7/24","fd00:88::7/64"],"mac":"02:00:00:00:00:07"}}"#)
    .unwrap();
    assert_eq!(
        c.ports,
        parse_ports("8080:80/tcp,127.0.0.1:5353:53/udp,9000:9000").unwrap()
    );
    assert_eq!(c.ports[1].proto, Proto::Udp);
    assert_eq!(c.ip, Some(Ipv4Addr::new(10, 88, 0, 7)));
    assert_eq!(c.ip6, Some("fd00:88::7".parse().unwrap()));
    assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:07");
}

#[test]
fn gc_reads_the_valid_attachments() {
    let c = cfg(
        r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[
        {"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"net1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.valid_attachments.unwrap(),
        vec![("a".into(), "eth0".into()), ("b".into(), "net1".into())]
    );
}

#[test]
fn prev_result_is_kept_as_given() {
    let c = cfg(r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"interfaces":[{"name":"x"}]}}"#)
        .unwrap();
    assert_eq!(c.prev_result.unwrap()["interfaces"][0]["name"], "x");
}

#[test]
fn bad_configs_get_the_specs_codes_and_one_line() {
    let cases = [
        ("{not json", Code::Decode),
        (r#"{"name":"n"}"#, Code::InvalidConfig),
        (
            r#"{"cniVersion":"0.2.0","name":"n"}"#,
            Code::IncompatibleVersion,
        ),
        (r#"{"cniVersion":"1.0.0"}"#, Code::InvalidConfig),
        (
            r#"{"cniVersion":"1.0.0","name":"n","subnet":7}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::1"}]}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["fd00::5/64","fd00::6"]}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["web"]}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["10.0.0.5","10.0.0.6"]}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"mac":"zz"}}"#,
            Code::InvalidConfig,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","noMasqueradeTo":["10.244.0.0/33"]}"#,
            Code::InvalidConfig,
        ),
    ];
    for (text, code) in cases {
        let e = cfg(text).unwrap_err();
        assert_eq!(e.code, code, "{text}: {e}");
        assert!(!e.msg.contains('\n') && !e.msg.is_empty(), "{text}: {e}");
    }
}
