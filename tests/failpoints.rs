//! Rollback and crash safety, driven by the test-only failure points (build with
//! `--features failpoints`; without it this file compiles to nothing).
#![cfg(feature = "failpoints")]

mod common;

use common::*;

/// Every step setup can fail after, in order.
const POINTS: &[&str] = &["recorded", "bridge", "veth", "addresses", "firewall"];

fn assert_nothing_left(nh: &Nethook, what: &str) {
    assert!(
        host_veths().is_empty(),
        "{what}: veths left: {:?}",
        host_veths()
    );
    assert_eq!(nh.records(), 0, "{what}: records left");
    assert_eq!(nh.allocations("nethook"), 0, "{what}: allocations left");
}

#[test]
fn a_failure_after_any_setup_step_leaves_nothing() {
    sandbox!("a_failure_after_any_setup_step_leaves_nothing", {
        for point in POINTS {
            let nh = Nethook::new(&format!("fp-{point}"));
            let c = FakeContainer::start(&format!("fp-{point}"));
            let out = nh
                .command()
                .env("NETHOOK_FAILPOINT", point)
                .arg("hook")
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut ch| {
                    use std::io::Write;
                    ch.stdin
                        .take()
                        .unwrap()
                        .write_all(c.state("creating", &[]).as_bytes())?;
                    ch.wait_with_output()
                })
                .unwrap();
            assert!(!out.status.success(), "{point}: setup succeeded");
            assert!(String::from_utf8_lossy(&out.stderr)
                .contains(&format!("failure injected at {point}")));
            assert_nothing_left(&nh, point);
            assert!(
                !c.sh("ip -o link").contains("eth0"),
                "{point}: eth0 left in the container"
            );
            // poststop after the failed createRuntime is fine, and a retry works.
            nh.teardown(&c);
            nh.setup(&c, &[]);
            nh.teardown(&c);
            assert_nothing_left(&nh, point);
        }
    });
}

#[test]
fn a_hook_killed_during_setup_is_cleaned_up_by_gc() {
    sandbox!("a_hook_killed_during_setup_is_cleaned_up_by_gc", {
        for point in POINTS {
            let nh = Nethook::new(&format!("crash-{point}"));
            let mut c = FakeContainer::start(&format!("crash-{point}"));
            let mut child = nh
                .command()
                .env("NETHOOK_FAILPOINT", format!("{point}:crash"))
                .arg("hook")
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(c.state("creating", &[]).as_bytes())
                    .unwrap();
            }
            let status = child.wait().unwrap();
            assert!(!status.success(), "{point}: the hook was not killed");
            // The runtime fails the start and the container's namespace dies with it.
            c.stop();
            wait_until(10, "the dead container's veths to vanish", || {
                host_veths().is_empty()
            });
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "{point}: gc failed: {err}");
            assert_nothing_left(&nh, &format!("{point} (gc said: {out})"));
        }
    });
}
