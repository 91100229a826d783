//! The bad-input catalogue: every file in testdata/bad/ is one way to call the hook
//! wrongly. Each must exit non-zero with one line naming the problem, and leave links,
//! addresses, routes, the ruleset and nethook's state exactly as they were.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Everything a failed hook must not change, as text: link names and masters, IPv4
/// addresses, routes, the ruleset and nethook's files. Carrier and DAD state are left
/// out: the kernel changes them on its own schedule.
fn snapshot(nh: &Nethook) -> String {
    let mut out = sh(concat!(
        "ip -o link | awk '{m=\"\"; for (i = 1; i <= NF; i++) if ($i == \"master\") m = $(i+1); print $2, m}';",
        "ip -4 -o addr | awk '{print $2, $4}';",
        "ip route | sed 's/ linkdown//'"
    ));
    if sh_ok("command -v nft") {
        out += &sh("nft list ruleset");
    }
    let mut files = BTreeMap::new();
    for dir in [nh.run_dir(), nh.config_dir()] {
        collect_files(&dir, &mut files);
    }
    for (path, content) in files {
        out += &format!("{path}: {content}\n");
    }
    out
}

fn collect_files(dir: &Path, into: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, into);
        } else if p
            .file_name()
            .is_some_and(|n| n != "lock" && n != "netfilter-release")
        {
            // Neither is state: the lock's file, and the socket of the keeper an earlier
            // hook (an occupant's setup) may have left listening for a moment.
            into.insert(
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap_or_default(),
            );
        }
    }
}

fn run_case(name: &str, case: &Value) -> Result<(), String> {
    let nh = Nethook::new(&format!("bad-{name}"));
    let bundle = TempDir::new(&format!("bad-bundle-{name}"));
    let prepare = &case["prepare"];
    for net in prepare["networks"].as_array().into_iter().flatten() {
        let (ok, _, err) = nh.cli(&[
            "network",
            "create",
            net[0].as_str().unwrap(),
            "--subnet",
            net[1].as_str().unwrap(),
        ]);
        assert!(ok, "{name}: network create: {err}");
    }
    let mut occupants = Vec::new();
    for (i, ann) in prepare["occupy"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let c = FakeContainer::start(&format!("occupant-{i}"));
        let pairs: Vec<(&str, &str)> = ann
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        nh.setup(&c, &pairs);
        occupants.push(c);
    }
    if let Some(c) = prepare["corrupt"].as_array() {
        let path = nh.run_dir().join(c[0].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, c[1].as_str().unwrap()).unwrap();
    }
    if let Some(cfg) = case["bundle_config"].as_str() {
        std::fs::write(bundle.0.join("config.json"), cfg).unwrap();
    }

    let container = FakeContainer::start("bad-ctr");
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let stdin = match (&case["stdin"], &case["stdin_repeat"]) {
        (Value::String(s), _) => s
            .replace("$PID", &container.pid().to_string())
            .replace("$SELF", &std::process::id().to_string())
            .replace("$DEAD", &dead.to_string())
            .replace("$BUNDLE", &bundle.0.display().to_string()),
        (_, Value::Object(r)) => r["text"]
            .as_str()
            .unwrap()
            .repeat(r["count"].as_u64().unwrap() as usize),
        _ => panic!("{name}: case needs stdin or stdin_repeat"),
    };

    let before = snapshot(&nh);
    let out = nh.hook(&stdin);
    let after = snapshot(&nh);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let expect = case["expect"].as_str().unwrap();
    if out.status.success() {
        return Err(format!("{name}: exited 0"));
    }
    if !stderr.contains(expect) {
        return Err(format!("{name}: stderr lacks {expect:?}: {stderr}"));
    }
    if stderr.trim_end().lines().count() != 1 {
        return Err(format!("{name}: error is not one line: {stderr}"));
    }
    if before != after {
        return Err(format!(
            "{name}: state changed\n--- before\n{before}\n--- after\n{after}"
        ));
    }
    drop(occupants);
    Ok(())
}

const CASE_ENV: &str = "NETHOOK_BAD_CASE";

/// Each case runs in a sandbox of its own (this test re-executed with the case's name),
/// so one case's containers dying cannot show up as another case's change.
#[test]
fn every_bad_input_in_the_catalogue_is_refused_cleanly() {
    const NAME: &str = "every_bad_input_in_the_catalogue_is_refused_cleanly";
    if let Ok(case_name) = std::env::var(CASE_ENV) {
        sandbox!(NAME, {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/bad")
                .join(format!("{case_name}.json"));
            let case: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            if let Err(e) = run_case(&case_name, &case) {
                panic!("{e}");
            }
        });
        return;
    }
    if let Err(why) = can_sandbox() {
        eprintln!("SKIP {NAME}: {why}");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bad");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 50, "catalogue shrank: {}", names.len());
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for name in &names {
        let out = Command::new("unshare")
            .args(["--net", "--mount", "--"])
            .arg(&exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(SANDBOX_ENV, "1")
            .env(CASE_ENV, name)
            .output()
            .unwrap();
        if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("1 passed") {
            let text = String::from_utf8_lossy(&out.stderr);
            let reason = text
                .lines()
                .skip_while(|l| !l.contains("panicked"))
                .nth(1)
                .unwrap_or("(no panic message)");
            failures.push(format!("{name}: {reason}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}
