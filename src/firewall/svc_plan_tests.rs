//! The plans of service operations, their rules against `nft --debug=netlink`
//! (testdata/nft/services.nft → services.rules.txt), and the size of a member change's batch.

use std::net::{Ipv4Addr, Ipv6Addr};

use std::ffi::CString;

use super::*;
use crate::firewall::batch::BatchBuilder;
use crate::firewall::probe::touch_probes;
use crate::firewall::service::{ServicePort, ServicePublish};
use crate::firewall::svc_batch::with_steps;
use crate::firewall::svc_whole::*;
use crate::firewall::tables::Tables;
use crate::firewall::types::TableFamily;
use crate::firewall::units::NLM_F_EXCL;
use crate::firewall::Elements;
use crate::model::ports::Proto;

const EXPECTED: &str = include_str!("../../testdata/nft/services.rules.txt");

fn web(affinity: Option<u32>) -> Service {
    Service {
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
                target_port: 5353,
            },
        ],
        publish: vec![ServicePublish {
            host_ip: None,
            proto: Proto::Tcp,
            host_port: 8088,
            target_port: 8080,
        }],
        affinity,
    }
}

fn slot(k: u32) -> Slot {
    Slot {
        slot: k,
        v4: Some(Ipv4Addr::from(0x0a58_0000 + k)),
        v6: Some(Ipv6Addr::from(0xfd88_u128 << 112 | u128::from(k))),
    }
}

/// The rules of `steps` as libnftnl prints them (one block per rule).
fn rendered(steps: &[Step]) -> Vec<String> {
    let tables = Tables::new();
    with_steps(&tables, steps, |built| {
        built
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Flush(_) | Step::Rule { .. }))
            .zip(built.rules)
            .filter(|(s, _)| matches!(s, Step::Rule { .. }))
            .map(|(_, r)| crate::sys::nft::render_rule(r))
            .collect()
    })
}

fn expected_blocks() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in EXPECTED
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
    {
        if line.starts_with("inet ") {
            out.push(String::new());
        }
        let cur = out.last_mut().expect("a header first");
        cur.push_str(line);
        cur.push('\n');
    }
    out
}

#[test]
fn service_rules_match_nft_but_for_its_transport_match() {
    let steps = restore_steps(&web(Some(600)), &[slot(0), slot(1), slot(2)]);
    let got: Vec<String> = rendered(&steps)
        .iter()
        .map(|r| r.lines().map(|l| format!("{}\n", l.trim_end())).collect())
        .collect();
    let dependency = "  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n";
    let expected: Vec<String> = expected_blocks()
        .into_iter()
        .map(|b| b.replacen(dependency, "", 1))
        .collect();
    assert_eq!(got.len(), expected.len(), "rule count");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "\n--- ours ---\n{g}--- nft ---\n{e}");
    }
}

/// The bytes of a batch holding `steps` (as `send_steps` builds it, probe included).
fn batch_bytes(steps: &[Step]) -> Vec<u8> {
    let tables = Tables::new();
    with_steps(&tables, steps, |built| {
        let mut batch = BatchBuilder::new();
        touch_probes(&mut batch, &tables, &[TableFamily::Inet].into());
        built.append(&mut batch);
        batch.finalize().0
    })
}

fn join(n: u32) -> MemberChange {
    MemberChange {
        service: web(None),
        after: n + 1,
        set: vec![slot(n)],
        unset: vec![],
    }
}

/// Slot 0 of `n` leaves: the last member moves into it.
fn leave(n: u32) -> MemberChange {
    MemberChange {
        service: web(None),
        after: n - 1,
        set: vec![Slot {
            slot: 0,
            ..slot(n - 1)
        }],
        unset: vec![n - 1],
    }
}

#[test]
fn a_member_change_costs_the_same_bytes_at_1_and_1000_members() {
    let at = |c: MemberChange| batch_bytes(&change_steps(&c)).len();
    assert_eq!(
        at(join(1)),
        at(join(999)),
        "join as member 2 and as member 1000"
    );
    assert_eq!(at(leave(3)), at(leave(1000)), "leave of 3 and of 1000");
    // Crossing 0 members moves the VIP keys (4 here: 2 ports, 2 families): more, still flat.
    assert!(at(join(0)) > at(join(1)));
    eprintln!(
        "join {} B (0 -> 1: {} B), leave {} B (1 -> 0: {} B)",
        at(join(999)),
        at(join(0)),
        at(leave(1000)),
        at(leave(1))
    );
    assert!(at(join(999)) < 1536, "{}", at(join(999)));
}

fn elem_steps<'a>(steps: &'a [Step], set: &CStr) -> Vec<&'a Step> {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Elems { set: n, .. } if n.as_c_str() == set))
        .collect()
}

fn adds(steps: &[&Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Elems { add: true, .. }))
        .count()
}

#[test]
fn dispatch_keys_live_in_svc4_with_members_and_in_svcnone4_without() {
    let with = change_steps(&join(0));
    assert_eq!(adds(&elem_steps(&with, SVC4)), 2, "both ports go to svc4");
    assert_eq!(adds(&elem_steps(&with, SVCNONE4)), 0);
    assert_eq!(elem_steps(&with, SVCNONE4).len(), 2, "and leave svcnone4");
    // Published ports do not depend on the members: created once.
    assert!(elem_steps(&with, SVCPORTS).is_empty());
    assert_eq!(adds(&elem_steps(&create_steps(&web(None)), SVCPORTS)), 1);
    // A join to 2 or more leaves the VIP keys where they are, a leave to 1 rewrites them.
    assert!(elem_steps(&change_steps(&join(1)), SVC4).is_empty());
    assert_eq!(adds(&elem_steps(&change_steps(&leave(2)), SVC4)), 2);
    let none = change_steps(&leave(1));
    assert_eq!(adds(&elem_steps(&none, SVCNONE6)), 2);
    assert_eq!(adds(&elem_steps(&none, SVC6)), 0);
    // No members, no rules: the chain is only flushed.
    let rules: Vec<_> = none
        .iter()
        .filter(|s| matches!(s, Step::Rule { .. } | Step::Flush(_)))
        .collect();
    assert_eq!(rules, [&Step::Flush(c"svc-web".into())]);
}

#[test]
fn slots_are_destroyed_before_they_are_written_and_affinity_is_flushed_on_a_leave() {
    let mut c = leave(3);
    c.service.affinity = Some(60);
    let steps = change_steps(&c);
    let m4 = elem_steps(&steps, c"svc-web-m4");
    let Step::Elems {
        add: false,
        destroy: true,
        elems: gone,
        ..
    } = m4[0]
    else {
        panic!("destroy first: {m4:?}");
    };
    let keys: Vec<_> = gone.iter().map(|e| e.key.clone()).collect();
    assert_eq!(
        keys,
        [0u32.to_ne_bytes().to_vec(), 2u32.to_ne_bytes().to_vec()]
    );
    let Step::Elems {
        add: true,
        elems: put,
        ..
    } = m4[1]
    else {
        panic!("then add: {m4:?}");
    };
    assert_eq!(
        put[0].data,
        Some(vec![10, 88, 0, 2]),
        "the old last member moves into slot 0"
    );
    for a in [c"svc-web-a4", c"svc-web-a6"] {
        let flush = elem_steps(&steps, a);
        assert!(
            matches!(flush[..], [Step::Elems { add: false, destroy: false, elems, .. }] if elems.is_empty()),
            "{a:?} flushed: {flush:?}"
        );
    }
    // A join leaves the affinity maps alone.
    let mut j = join(1);
    j.service.affinity = Some(60);
    assert!(elem_steps(&change_steps(&j), c"svc-web-a4").is_empty());
}

#[test]
fn create_claims_each_vip_port_and_host_port_exclusively_in_a_message_of_its_own() {
    let steps = create_steps(&web(None));
    let claims: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Elems {
                flags,
                object: Object::ServiceKey { what, .. },
                elems,
                add: true,
                ..
            } if *flags & NLM_F_EXCL != 0 => {
                assert_eq!(elems.len(), 1);
                Some(what.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        claims,
        [
            "VIP 10.89.0.10 port 80/tcp", // svc4
            "VIP 10.89.0.10 port 80/tcp", // svcnone4
            "VIP fd89::10 port 80/tcp",
            "VIP fd89::10 port 80/tcp",
            "VIP 10.89.0.10 port 53/udp",
            "VIP 10.89.0.10 port 53/udp",
            "VIP fd89::10 port 53/udp",
            "VIP fd89::10 port 53/udp",
            "host port 8088/tcp",
        ]
    );
    // It ends as a service without members: keys in svcnone, an empty chain.
    assert_eq!(steps.last(), Some(&Step::Flush(c"svc-web".into())));
}

#[test]
fn delete_removes_only_what_is_there() {
    let s = web(Some(60));
    let none = Present {
        chain: false,
        rec: false,
        sets: vec![],
    };
    let steps = delete_steps(&s, &none);
    assert!(steps
        .iter()
        .all(|s| matches!(s, Step::Elems { destroy: true, .. })));
    let all = Present {
        chain: true,
        rec: true,
        sets: ["m4", "m6", "p", "a4", "a6"]
            .iter()
            .map(|x| CString::new(format!("svc-web-{x}")).unwrap())
            .collect(),
    };
    let steps = delete_steps(&s, &all);
    let tail: Vec<_> = steps
        .iter()
        .filter(|s| !matches!(s, Step::Elems { .. }))
        .collect();
    assert_eq!(
        tail.len(),
        2 * 2 + 5,
        "flush+delete both chains, delete five maps: {tail:?}"
    );
    assert_eq!(
        tail[0],
        &Step::Flush(c"svc-web".into()),
        "rules go before the maps they use"
    );
}

#[test]
fn names_of_two_services_never_collide() {
    // Chains start svc- or svcaff-, maps end in -m4/-m6/-p/-a4/-a6: distinct for distinct labels.
    let all = |name: &str| {
        let n = names(&Service {
            name: name.into(),
            ..web(None)
        });
        (vec![n.chain, n.rec], vec![n.m4, n.m6, n.p, n.a4, n.a6])
    };
    let tricky = [
        "web", "web-r", "aff-web", "web-m4", "web-p", "web-a4", "m4", "a",
    ];
    for a in tricky {
        for b in tricky.iter().filter(|b| **b != a) {
            let (ca, ma) = all(a);
            let (cb, mb) = all(b);
            assert!(ca.iter().all(|c| !cb.contains(c)), "chains of {a} and {b}");
            assert!(ma.iter().all(|m| !mb.contains(m)), "maps of {a} and {b}");
        }
    }
    for skeleton in [
        "services",
        "svcnone",
        "svcreject",
        "svcpre",
        "svcout",
        "svcaff",
        "svcaffwd",
        "svcaffout",
    ] {
        assert!(!skeleton.starts_with("svc-") && !skeleton.starts_with("svcaff-"));
    }
}

#[test]
fn service_checks_refuse_what_no_batch_can_say() {
    use super::super::service::{check, check_change, valid_name};
    for good in ["web", "a", "web-1", &"a".repeat(63)] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["", "Web", "-web", "web-", "w.b", "w_b", &"a".repeat(64)] {
        assert!(!valid_name(bad), "{bad}");
    }
    assert!(check(&web(None)).is_ok());
    let mut same = web(None);
    same.publish[0].host_port = 80; // same target: fine
    assert!(check(&same).is_ok());
    same.publish[0].target_port = 81;
    assert!(check(&same)
        .unwrap_err()
        .to_string()
        .contains("leads to target port 8080 and to 81"));
    assert!(check_change(&join(0)).is_ok());
    let mut beyond = join(0);
    beyond.after = 0;
    assert!(check_change(&beyond).is_err());
}

#[test]
fn extend_never_merges_member_changes() {
    let mut all = Elements::default();
    let one = Elements {
        services: vec![join(0)],
        ..Elements::default()
    };
    assert!(!one.is_empty());
    assert!(
        one.own().services.is_empty(),
        "a rollback sets its inverse change itself"
    );
    assert!(one.shared().services.is_empty());
    all.extend(one.clone());
    all.extend(one);
    assert!(all.services.is_empty(), "restore uses restore_services");
}
