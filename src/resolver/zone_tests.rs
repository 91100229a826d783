use super::*;
use hickory_proto::rr::RecordType;

fn entry(key: &str, names: &[&str], addrs: &[&str]) -> Entry {
    Entry {
        key: key.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fn net1() -> ZoneTable {
    ZoneTable::new(&Zone {
        network: "net1".into(),
        listen: vec!["10.88.0.1".parse().unwrap()],
        clients: vec![],
        entries: vec![
            entry("c1", &["web", "www"], &["10.88.0.10", "fd00:88::10"]),
            entry("c2", &["db"], &["10.88.0.11"]),
        ],
    })
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// The reply, or None when the zone forwards the query.
fn ask(t: &ZoneTable, name: &str, qtype: RecordType) -> Option<Message> {
    match t.answer(&query(name, qtype)) {
        Answer::Forward => None,
        Answer::Local(bytes) => Some(Message::from_vec(&bytes).unwrap()),
    }
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn a_and_aaaa_answer_the_name_alone_and_under_the_network_with_ttl_0() {
    let t = net1();
    for name in ["web", "web.", "web.net1", "web.net1.", "www.net1."] {
        let a = ask(&t, name, RecordType::A).unwrap();
        assert_eq!(a.metadata.id, 4242);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative && a.metadata.recursion_available);
        assert_eq!(data(&a), ["10.88.0.10"], "{name}");
        assert!(a.answers.iter().all(|r| r.ttl == 0));
        let aaaa = ask(&t, name, RecordType::AAAA).unwrap();
        assert_eq!(data(&aaaa), ["fd00:88::10"], "{name}");
    }
}

#[test]
fn names_match_whatever_their_case_and_the_answer_repeats_the_question() {
    let t = net1();
    let a = ask(&t, "WeB.NeT1.", RecordType::A).unwrap();
    assert_eq!(data(&a), ["10.88.0.10"]);
    assert_eq!(a.answers[0].name.to_ascii(), "WeB.NeT1.");
    let upper = ZoneTable::new(&Zone {
        network: "Net2".into(),
        listen: vec![],
        clients: vec![],
        entries: vec![entry("k", &["API"], &["10.1.0.2"])],
    });
    assert_eq!(
        data(&ask(&upper, "api.net2", RecordType::A).unwrap()),
        ["10.1.0.2"]
    );
}

#[test]
fn a_known_name_asked_for_another_type_is_noerror_without_data() {
    let t = net1();
    for qtype in [RecordType::MX, RecordType::TXT, RecordType::HTTPS] {
        let m = ask(&t, "web.net1", qtype).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
    let aaaa = ask(&t, "db", RecordType::AAAA).unwrap();
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
}

#[test]
fn an_unknown_name_under_the_network_is_nxdomain_and_never_forwarded() {
    let t = net1();
    let m = ask(&t, "nobody.net1.", RecordType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let deep = ask(&t, "a.b.net1.", RecordType::AAAA).unwrap();
    assert_eq!(deep.metadata.response_code, ResponseCode::NXDomain);
    let apex = ask(&t, "net1.", RecordType::A).unwrap();
    assert_eq!(apex.metadata.response_code, ResponseCode::NoError);
    assert!(apex.answers.is_empty());
}

#[test]
fn other_names_are_forwarded() {
    let t = net1();
    for name in [
        "example.com.",
        "nobody.",
        "web.net10.",
        "xnet1.",
        "web.other.",
    ] {
        assert_eq!(ask(&t, name, RecordType::A), None, "{name}");
    }
    // Not a plain query: the upstream decides.
    let mut two = query("web.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(t.answer(&two), Answer::Forward);
}

#[test]
fn ptr_answers_the_zones_addresses_with_every_name_under_the_network() {
    let t = net1();
    let m = ask(&t, "10.0.88.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(data(&m), ["web.net1.", "www.net1."]);
    assert_eq!(m.answers[0].ttl, 0);
    let v6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.8.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        data(&ask(&t, v6, RecordType::PTR).unwrap()),
        ["web.net1.", "www.net1."]
    );
    // Addresses that are not the zone's, and partial reverse names, go upstream.
    assert_eq!(ask(&t, "8.8.8.8.in-addr.arpa.", RecordType::PTR), None);
    assert_eq!(ask(&t, "88.10.in-addr.arpa.", RecordType::PTR), None);
}

#[test]
fn upsert_replaces_by_key_and_remove_forgets_names_and_addresses() {
    let mut t = net1();
    t.upsert(entry("c1", &["web2"], &["10.88.0.20"]));
    assert_eq!(ask(&t, "web", RecordType::A), None);
    assert_eq!(
        data(&ask(&t, "web2.net1", RecordType::A).unwrap()),
        ["10.88.0.20"]
    );
    assert_eq!(ask(&t, "10.0.88.10.in-addr.arpa.", RecordType::PTR), None);
    t.remove("c1");
    t.remove("c1");
    assert_eq!(ask(&t, "web2", RecordType::A), None);
    assert_eq!(t.len(), 1);
    t.remove("c2");
    assert_eq!(t.len(), 0);
}

#[test]
fn a_name_two_entries_share_answers_both_addresses_until_one_leaves() {
    let mut t = net1();
    t.upsert(entry("c3", &["web"], &["10.88.0.30"]));
    assert_eq!(
        data(&ask(&t, "web", RecordType::A).unwrap()),
        ["10.88.0.10", "10.88.0.30"]
    );
    t.remove("c1");
    assert_eq!(
        data(&ask(&t, "web", RecordType::A).unwrap()),
        ["10.88.0.30"]
    );
}

#[test]
fn an_answer_too_big_for_the_clients_buffer_is_truncated_without_records() {
    let addrs: Vec<String> = (0..60).map(|i| format!("10.88.1.{i}")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let t = ZoneTable::new(&Zone {
        network: "n".into(),
        listen: vec![],
        clients: vec![],
        entries: vec![entry("k", &["many"], &refs)],
    });
    let m = ask(&t, "many", RecordType::A).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    let mut edns = query("many", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    edns.set_edns(e);
    let Answer::Local(bytes) = t.answer(&edns) else {
        panic!("forwarded")
    };
    let m = Message::from_vec(&bytes).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    assert!(m.edns.is_some());
}

#[test]
fn servfail_keeps_the_id_and_question() {
    let m = Message::from_vec(&servfail(&query("example.com.", RecordType::A))).unwrap();
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.queries.len(), 1);
}

#[test]
fn only_the_networks_subnets_are_admitted_when_it_names_them() {
    let mut zone = Zone {
        network: "n".into(),
        listen: vec![],
        clients: vec![],
        entries: vec![],
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(ZoneTable::new(&zone).admits(ip("192.0.2.1")));
    zone.clients = vec![
        "10.88.0.0/24".parse().unwrap(),
        "fd00:88::/64".parse().unwrap(),
    ];
    let t = ZoneTable::new(&zone);
    assert!(t.admits(ip("10.88.0.10")) && t.admits(ip("fd00:88::10")));
    assert!(!t.admits(ip("10.89.0.10")) && !t.admits(ip("fd00:89::10")));
}

#[test]
fn refused_keeps_the_id_and_question() {
    let m = Message::from_vec(&refused(&query("db.", RecordType::A))).unwrap();
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
}
