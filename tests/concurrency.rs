//! Many hooks at once on one network: the lock must serialise IPAM and records without
//! deadlock, lost updates or torn files.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

const N: usize = 64;

#[test]
fn sixty_four_simultaneous_setups_and_teardowns_leave_consistent_state() {
    sandbox!("sixty_four_simultaneous_setups_and_teardowns_leave_consistent_state", {
        let nh = Nethook::new("concurrent");
        let containers: Vec<FakeContainer> = (0..N).map(|i| FakeContainer::start(&format!("par-{i}"))).collect();

        let run_all = |status: &str| {
            let children: Vec<_> = containers
                .iter()
                .map(|c| {
                    let mut child = nh
                        .command()
                        .arg("hook")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    child.stdin.take().unwrap().write_all(c.state(status, &[]).as_bytes()).unwrap();
                    child
                })
                .collect();
            for (c, child) in containers.iter().zip(children) {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{status} of {} failed: {}", c.id, String::from_utf8_lossy(&out.stderr));
            }
        };

        run_all("creating");
        let eps = nh.endpoints();
        assert_eq!(eps.len(), N);
        let mut ips: Vec<String> = eps.iter().map(|e| e["ipv4"].as_str().unwrap().to_owned()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), N, "addresses are not distinct");
        assert_eq!(nh.allocations("nethook"), N);
        assert_eq!(host_veths().len(), N);
        // Every container really has its address.
        for c in &containers {
            let ep = nh.endpoint(&c.id);
            assert!(c.sh("ip -o -4 addr show dev eth0").contains(ep["ipv4"].as_str().unwrap()));
        }

        run_all("stopped");
        nh.settle();
        assert_eq!(nh.records(), 0);
        assert_eq!(nh.allocations("nethook"), 0);
        assert!(host_veths().is_empty(), "left: {:?}", host_veths());
    });
}
