//! Many hooks at once on one network: the lock must serialise IPAM and records without
//! deadlock, lost updates or torn files.

mod common;

use common::*;

const N: usize = 64;

#[test]
fn sixty_four_simultaneous_setups_and_teardowns_leave_consistent_state() {
    sandbox!(
        "sixty_four_simultaneous_setups_and_teardowns_leave_consistent_state",
        {
            let nh = Nethook::new("concurrent");
            let containers: Vec<FakeContainer> = (0..N)
                .map(|i| FakeContainer::start(&format!("par-{i}")))
                .collect();

            let run_all = |status: &str| {
                let children: Vec<_> = containers
                    .iter()
                    .map(|c| nh.spawn_hook(&c.state(status, &[])))
                    .collect();
                for (c, child) in containers.iter().zip(children) {
                    let out = child.wait_with_output().unwrap();
                    assert!(
                        out.status.success(),
                        "{status} of {} failed: {}",
                        c.id,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            };

            run_all("creating");
            let eps = nh.endpoints();
            assert_eq!(eps.len(), N);
            let mut ips: Vec<String> = eps
                .iter()
                .map(|e| e["ipv4"].as_str().unwrap().to_owned())
                .collect();
            ips.sort();
            ips.dedup();
            assert_eq!(ips.len(), N, "addresses are not distinct");
            assert_eq!(nh.allocations("nethook"), N);
            assert_eq!(host_veths().len(), N);
            // Every container really has its address.
            for c in &containers {
                let ep = nh.endpoint(&c.id);
                assert!(c
                    .sh("ip -o -4 addr show dev eth0")
                    .contains(ep["ipv4"].as_str().unwrap()));
            }

            run_all("stopped");
            nh.settle();
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("nethook"), 0);
            assert!(host_veths().is_empty(), "left: {:?}", host_veths());
        }
    );
}

/// The abstract unix socket of the process holding a burst's netfilter sockets, as
/// /proc/net/unix lists it for this (the sandbox's) network namespace.
fn keeper_listening() -> bool {
    std::fs::read_to_string("/proc/net/unix")
        .map(|t| t.contains("/netfilter-release"))
        .unwrap_or(false)
}

/// nethook processes in this network namespace (other tests run theirs in their own).
fn nethook_processes() -> usize {
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            std::fs::read_to_string(p.join("comm"))
                .map(|c| c.trim_end() == "nethook")
                .unwrap_or(false)
        })
        .filter(|p| {
            std::fs::read_link(p.join("ns/net"))
                .map(|l| l == own)
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn a_burst_of_poststops_leaves_its_netfilter_sockets_to_one_keeper_that_then_goes() {
    sandbox!(
        "a_burst_of_poststops_leaves_its_netfilter_sockets_to_one_keeper_that_then_goes",
        {
            let nh = Nethook::new("burst");
            let mut containers: Vec<FakeContainer> = (0..12)
                .map(|i| FakeContainer::start(&format!("burst-{i}")))
                .collect();
            for (i, c) in containers.iter().enumerate() {
                nh.setup(c, &[("nethook.ports", &format!("{}:80", 18000 + i))]);
            }
            // Stopped first, then the poststops back to back, as when many containers stop at once.
            let veths = host_veths();
            for c in &mut containers {
                c.stop();
            }
            wait_until(30, "the stopped containers' veths to go", || {
                host_veths().iter().all(|v| !veths.contains(v))
            });

            let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let watcher = {
                let watching = watching.clone();
                std::thread::spawn(move || {
                    let mut seen = false;
                    while watching.load(std::sync::atomic::Ordering::Relaxed) && !seen {
                        seen = keeper_listening();
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    seen
                })
            };
            for c in &containers {
                nh.teardown(c);
            }
            watching.store(false, std::sync::atomic::Ordering::Relaxed);
            assert!(
                watcher.join().unwrap(),
                "no keeper took the hooks' netfilter sockets"
            );

            nh.settle();
            assert_eq!(nh.records(), 0);
            assert_eq!(nh.allocations("nethook"), 0);
            // The keeper stops listening once no hook has come for a moment, then exits.
            wait_until(20, "the keeper to go", || {
                !keeper_listening() && nethook_processes() == 0
            });
            // The sockets it released are gone for good: nftables still takes commits.
            let c = FakeContainer::start("after-burst");
            nh.setup(&c, &[("nethook.ports", "18100:80")]);
            assert!(sh("nft list table inet nethook").contains("18100"));
            nh.teardown(&c);
        }
    );
}
