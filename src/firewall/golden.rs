//! Golden tests: the bytecode of every skeleton rule (as serialized to netlink, parsed back and
//! printed by libnftnl) must equal what `nft --debug=netlink` prints for the same rule written in
//! nft syntax (testdata/nft/skeleton.nft → testdata/nft/regen.sh → skeleton.rules.txt), for both
//! tables.

use super::tables::{build_chains, build_rules, Tables};
use super::*;

const EXPECTED: &str = include_str!("../../testdata/nft/skeleton.rules.txt");

fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("inet ") || line.starts_with("bridge ") || out.is_empty() {
            out.push(String::new());
        }
        let cur = out.last_mut().expect("pushed above");
        cur.push_str(line);
        cur.push('\n');
    }
    out
}

fn rendered() -> Vec<String> {
    let tables = Tables::new();
    let chains = build_chains(&tables);
    let rules = build_rules(&chains);
    assert_eq!(
        rules.len(),
        skeleton::rules().len(),
        "every rule spec names an existing chain"
    );
    rules
        .iter()
        .map(|(_, r)| blocks(&crate::sys::nft::render_rule(r)).concat())
        .collect()
}

#[test]
fn skeleton_rules_match_nft() {
    let expected = blocks(EXPECTED);
    let got = rendered();
    assert_eq!(got.len(), expected.len(), "rule count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g, e,
            "rule {i} differs from nft --debug=netlink\n--- ours ---\n{g}--- nft ---\n{e}"
        );
    }
}

#[test]
fn every_family_is_pinned() {
    let expected = blocks(EXPECTED);
    for header in [
        "inet nethook guard",
        "inet nethook rantispoof",
        "inet nethook forward",
        "inet nethook isolate",
        "bridge nethook prerouting",
        "bridge nethook output",
        "bridge nethook antispoof",
        "bridge nethook antispoof6",
        "bridge nethook nd6",
    ] {
        assert!(
            expected
                .iter()
                .any(|b| b.starts_with(&format!("{header}\n"))),
            "no golden rule for {header}"
        );
    }
}

#[test]
fn comments_fit_and_are_present() {
    for (spec, text) in skeleton::rules().iter().zip(rendered()) {
        assert!(
            spec.comment.to_bytes().len() < 127,
            "comment too long: {:?}",
            spec.comment
        );
        assert!(text.contains("userdata"), "rule without comment:\n{text}");
    }
    for spec in skeleton::all_sets() {
        if let Some(c) = spec.comment {
            assert!(
                encode::udata_set_comment(c).is_some(),
                "set comment too long: {c:?}"
            );
        }
    }
}

// ---- the bytes of every kind of batch, pinned (testdata/nft/batches.txt) ----
//
// Refactoring the firewall must not change a byte that goes to the kernel. Each message of a
// batch is one line (what it is about, then its bytes); the batch begin/end messages and the
// sequence numbers are left out, as they depend on the kernel (ACKed batch ends). Set
// NETHOOK_BLESS=1 to rewrite the file after an intended change, and say why in the commit.

mod wire {
    use std::fmt::Write as _;
    use std::net::Ipv4Addr;

    use super::super::add::add_batch;
    use super::super::batch::BatchBuilder;
    use super::super::delete::delete_batch;
    use super::super::tables::{with_create_batch, TableState, Tables};
    use super::super::types::source;
    use super::super::units::{element_units, guard_units};
    use super::super::{Elements, PortMapping, Proto, Source, TableFamily};

    const EXPECTED: &str = "testdata/nft/batches.txt";

    fn fnv1a64(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The messages of `batch` as they go on the wire, one line each.
    fn wire(title: &str, batch: &BatchBuilder<'_>) -> String {
        let items = batch.items();
        let (bytes, _) = batch.finalize();
        let mut msgs = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let mut m = bytes[at..at + len].to_vec();
            m[8..12].fill(0); // sequence number
            msgs.push(m);
            at += len.next_multiple_of(4);
        }
        assert_eq!(msgs.len(), items.len() + 2, "begin, messages, end");
        let mut out = format!("== {title}\n");
        for (it, m) in items.iter().zip(&msgs[1..msgs.len() - 1]) {
            let _ = write!(out, "{}: ", it.object);
            if m.len() <= 512 {
                m.iter().for_each(|b| {
                    let _ = write!(out, "{b:02x}");
                });
            } else {
                let _ = write!(out, "{} bytes, fnv1a64 {:016x}", m.len(), fnv1a64(m));
            }
            out.push('\n');
        }
        out
    }

    fn port(host_ip: Option<Ipv4Addr>, proto: Proto, host_port: u16) -> PortMapping {
        PortMapping {
            host_ip,
            proto,
            host_port,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: 80,
        }
    }

    fn sample() -> Elements {
        let mut e = Elements {
            masq4: vec![
                "10.77.0.0/16".parse().unwrap(),
                "255.255.255.0/24".parse().unwrap(),
            ],
            nomasq4: vec![
                (
                    "10.77.0.0/16".parse().unwrap(),
                    "10.244.0.0/16".parse().unwrap(),
                ),
                (
                    "10.77.0.0/16".parse().unwrap(),
                    "0.0.0.0/0".parse().unwrap(),
                ),
            ],
            bridges: vec!["nethook0".into(), "nh-blue".into()],
            ports4: vec![
                port(None, Proto::Tcp, 8080),
                port(Some(Ipv4Addr::LOCALHOST), Proto::Udp, 53),
                port(Some(Ipv4Addr::UNSPECIFIED), Proto::Sctp, 9),
            ],
            sources: vec![
                source("nh0123456789ab", 2),
                Source {
                    ipv4: vec![],
                    ..source("nhffffffffffff", 3)
                },
            ],
            any_ethertype: vec!["nhffffffffffff".into()],
            intra4: vec!["10.88.0.0/24".parse().unwrap()],
            routed_sources: vec![
                source("nr0123456789ab", 5),
                Source {
                    ipv4: vec![],
                    ..source("nrffffffffffff", 6)
                },
            ],
            ..Elements::default()
        };
        // Enough ports for two messages of one set.
        e.ports4
            .extend((20000..20300).map(|p| port(None, Proto::Udp, p)));
        e
    }

    fn dual_stack() -> Elements {
        use super::super::PortMapping6;
        let mut src = source("nh0123456789ab", 2);
        src.ipv6 = vec!["fd00:77::2".parse().unwrap()];
        Elements {
            masq6: vec!["fd00:77::/64".parse().unwrap()],
            nomasq6: vec![("fd00:77::/64".parse().unwrap(), "fd00::/8".parse().unwrap())],
            ports6: vec![
                PortMapping6 {
                    host_ip: None,
                    proto: Proto::Tcp,
                    host_port: 8080,
                    container_ip: "fd00:77::2".parse().unwrap(),
                    container_port: 80,
                },
                PortMapping6 {
                    host_ip: Some("2001:db8::1".parse().unwrap()),
                    proto: Proto::Udp,
                    host_port: 53,
                    container_ip: "fd00:77::2".parse().unwrap(),
                    container_port: 53,
                },
            ],
            sources: vec![src],
            ..Elements::default()
        }
    }

    fn all_batches() -> String {
        let tables = Tables::new();
        let mut out = String::new();
        for (title, exclusive) in [("add", true), ("restore", false)] {
            let sets = element_units(&sample(), exclusive).unwrap();
            out.push_str(&wire(title, &add_batch(&tables, &sets)));
        }
        for (title, destroy) in [("destroy", true), ("delete", false)] {
            let sets = element_units(&sample(), false).unwrap();
            out.push_str(&wire(title, &delete_batch(&tables, &sets, destroy)));
        }
        out.push_str(&wire("guard on", &add_batch(&tables, &guard_units(false))));
        out.push_str(&wire(
            "guard off",
            &delete_batch(&tables, &guard_units(false), true),
        ));
        out.push_str(&wire("guard6 on", &add_batch(&tables, &guard_units(true))));
        let dual = super::super::units::element_units(&dual_stack(), true).unwrap();
        out.push_str(&wire("add dual stack", &add_batch(&tables, &dual)));
        let missing = [
            (TableFamily::Inet, TableState::Missing),
            (TableFamily::Bridge, TableState::Missing),
        ];
        out.push_str(&with_create_batch(&missing, |batch| {
            wire("create both", &batch)
        }));
        let old = [(TableFamily::Bridge, TableState::Old)];
        out.push_str(&with_create_batch(&old, |batch| {
            wire("re-create bridge", &batch)
        }));
        // What a host upgraded to routed networks gets: the inet table deleted and made anew.
        let old = [(TableFamily::Inet, TableState::Old)];
        out.push_str(&with_create_batch(&old, |batch| {
            wire("re-create inet", &batch)
        }));
        out.push_str(&service_batches());
        out
    }

    /// Service "web" (a port of each protocol, both families, one published port, affinity).
    fn service_batches() -> String {
        use super::super::service::{MemberChange, Service, ServicePort, ServicePublish, Slot};
        use super::super::svc_batch::with_steps;
        use super::super::svc_plan::*;
        use super::super::svc_whole::*;
        let svc = Service {
            name: "web".into(),
            vip4: Some(Ipv4Addr::new(10, 89, 0, 10)),
            vip6: Some("fd89::10".parse().unwrap()),
            ports: vec![
                ServicePort {
                    proto: Proto::Tcp,
                    port: 80,
                    target_port: 8080,
                },
                ServicePort {
                    proto: Proto::Udp,
                    port: 53,
                    target_port: 53,
                },
            ],
            publish: vec![ServicePublish {
                host_ip: Some("192.168.1.2".parse().unwrap()),
                proto: Proto::Tcp,
                host_port: 8088,
                target_port: 8080,
            }],
            affinity: Some(10800),
        };
        let slot = |k: u8| Slot {
            slot: u32::from(k),
            v4: Some(Ipv4Addr::new(10, 88, 0, 10 + k)),
            v6: Some(format!("fd88::{}", 10 + k).parse().unwrap()),
        };
        let change = |after, set, unset| MemberChange {
            service: svc.clone(),
            after,
            set,
            unset,
        };
        let tables = Tables::new();
        // The steps alone (the real batches add the inet probe, pinned above).
        let batch = |title: &str, steps: &[Step]| {
            with_steps(&tables, steps, |built| {
                let mut b = BatchBuilder::new();
                built.append(&mut b);
                wire(title, &b)
            })
        };
        let present = Present {
            chain: true,
            rec: true,
            sets: ["m4", "m6", "p", "a4", "a6"]
                .iter()
                .map(|x| std::ffi::CString::new(format!("svc-web-{x}")).unwrap())
                .collect(),
        };
        let mut out = String::new();
        out.push_str(&batch("service create", &create_steps(&svc)));
        out.push_str(&batch(
            "service join 0 -> 1",
            &change_steps(&change(1, vec![slot(0)], vec![])),
        ));
        out.push_str(&batch(
            "service join 2 -> 3",
            &change_steps(&change(3, vec![slot(2)], vec![])),
        ));
        let leave = change(2, vec![Slot { slot: 0, ..slot(2) }], vec![2]);
        out.push_str(&batch("service leave slot 0 of 3", &change_steps(&leave)));
        out.push_str(&batch(
            "service restore",
            &restore_steps(&svc, &[slot(0), slot(1)]),
        ));
        out.push_str(&batch("service delete", &delete_steps(&svc, &present)));
        out
    }

    #[test]
    fn batches_match_the_pinned_bytes() {
        let got = all_batches();
        let path = format!("{}/{EXPECTED}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("NETHOOK_BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "line {} of {EXPECTED} differs", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            expected.lines().count(),
            "{EXPECTED}: line count"
        );
    }
}
