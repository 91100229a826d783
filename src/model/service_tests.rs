use super::*;

#[test]
fn ports_default_to_tcp_and_their_own_target() {
    let p = parse_ports(&["80", "53/udp:5353,443/tcp"]).unwrap();
    assert_eq!(
        p,
        vec![
            ServicePort {
                proto: Proto::Tcp,
                port: 80,
                target: 80
            },
            ServicePort {
                proto: Proto::Udp,
                port: 53,
                target: 5353
            },
            ServicePort {
                proto: Proto::Tcp,
                port: 443,
                target: 443
            },
        ]
    );
}

#[test]
fn a_port_given_twice_or_out_of_range_is_refused_naming_the_entry() {
    let e = parse_ports(&["80/tcp,80"]).unwrap_err().to_string();
    assert!(e.contains("80/tcp is given twice"), "{e}");
    let e = parse_ports(&["0/tcp"]).unwrap_err().to_string();
    assert!(e.contains("\"0/tcp\"") && e.contains("1 to 65535"), "{e}");
    let e = parse_ports(&["80/icmp"]).unwrap_err().to_string();
    assert!(e.contains("unknown protocol"), "{e}");
    assert_eq!(parse_ports::<&str>(&[]).unwrap_err(), ServiceError::NoPorts);
}

#[test]
fn udp_and_tcp_on_one_number_are_two_ports() {
    let p = parse_ports(&["53/udp,53/tcp"]).unwrap();
    assert_eq!(p.len(), 2);
}

#[test]
fn publish_of_a_one_port_service_needs_only_the_host_port() {
    let ports = parse_ports(&["80:8080"]).unwrap();
    let p = parse_publish("9000", &ports).unwrap();
    assert_eq!(
        p,
        ServicePublish {
            host_ip: None,
            host_port: 9000,
            proto: Proto::Tcp,
            port: 80
        }
    );
}

#[test]
fn publish_names_the_port_when_there_are_several_and_takes_a_host_address() {
    let ports = parse_ports(&["80,53/udp"]).unwrap();
    let e = parse_publish("9000", &ports).unwrap_err().to_string();
    assert!(e.contains("several ports"), "{e}");
    let p = parse_publish("127.0.0.1:9053:53/udp", &ports).unwrap();
    assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!((p.host_port, p.proto, p.port), (9053, Proto::Udp, 53));
    let p = parse_publish("[2001:db8::1]:9080:80", &ports).unwrap();
    assert_eq!(p.host_ip, Some("2001:db8::1".parse().unwrap()));
    let e = parse_publish("9000:81", &ports).unwrap_err().to_string();
    assert!(e.contains("names no port"), "{e}");
}

#[test]
fn labels_follow_rfc_1123() {
    assert!(validate_label("web-1").is_ok());
    assert!(validate_label("-web").is_err());
    assert!(validate_label("web_1").is_err());
    assert!(validate_label("a.b").is_err());
    assert!(validate_label(&"a".repeat(64)).is_err());
    assert_eq!(validate_service_name("Web").unwrap(), "web");
}

#[test]
fn affinity_is_client_ip_or_none() {
    assert_eq!(
        parse_affinity("client-ip").unwrap(),
        Some(AFFINITY_TIMEOUT_S)
    );
    assert_eq!(parse_affinity("none").unwrap(), None);
    assert!(parse_affinity("cookie").is_err());
}

#[test]
fn a_definition_round_trips_through_json() {
    let s = Service {
        name: "web".into(),
        network: "nethook".into(),
        ports: parse_ports(&["80"]).unwrap(),
        vip4: Some("10.96.0.10".parse().unwrap()),
        vip6: None,
        publish: vec![],
        affinity: None,
    };
    let text = serde_json::to_string(&s).unwrap();
    assert!(
        !text.contains("vip6") && !text.contains("publish"),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Service>(&text).unwrap(), s);
}
