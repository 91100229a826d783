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
        "inet nethook forward",
        "inet nethook isolate",
        "bridge nethook prerouting",
        "bridge nethook antispoof",
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
    for spec in &skeleton::SETS {
        if let Some(c) = spec.comment {
            assert!(
                encode::udata_set_comment(c).is_some(),
                "set comment too long: {c:?}"
            );
        }
    }
}
