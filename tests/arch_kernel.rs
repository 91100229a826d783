//! The link operations straight against the kernel, over the synchronous route netlink
//! socket (no hook around them): what each one leaves in the kernel, and what its errors
//! say. Privileged, each in a sandbox.
//!
//! `NETHOOK_KERNEL_TIMING=FILE` also times the lookups that are ioctls against their netlink
//! counterparts and writes the numbers to FILE (see /work/notes/h18-kernel.md).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use nethook::kernel::link::{self, BridgeSpec, HostVeth, Rtnl, VethFate, VethSpec, VethState};
use nethook::kernel::netns::Netns;
use nethook::model::ids::ContainerId;
use nethook::model::mac::Mac;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fn bridge(rtnl: &Rtnl) -> u32 {
    rtnl.ensure_bridge(&BridgeSpec {
        name: "nhk0",
        mac: Mac([0x02, 0x4e, 0x0a, 0x63, 0, 1]),
        ipv4: Some((GATEWAY, 24)),
        ipv6: None,
        owner_tag: "nethook:net-k",
        routes: &[],
    })
    .expect("ensure_bridge")
}

#[test]
fn every_link_operation_leaves_the_kernel_as_described() {
    sandbox!("every_link_operation_leaves_the_kernel_as_described", {
        let rtnl = Rtnl::open().expect("open");
        assert_eq!(rtnl.bridge_owner("nhk0").expect("bridge_owner"), None);

        let index = bridge(&rtnl);
        let shown = sh("ip -d address show nhk0");
        assert!(shown.contains("02:4e:0a:63:00:01"), "{shown}");
        assert!(shown.contains("alias nethook:net-k"), "{shown}");
        assert!(shown.contains("mcast_snooping 0"), "{shown}");
        assert!(
            shown.contains("inet 10.99.0.1/24 brd 10.99.0.255"),
            "{shown}"
        );
        assert!(shown.contains(",UP"), "{shown}");
        // Once there, the same call only looks.
        assert_eq!(bridge(&rtnl), index);
        assert_eq!(
            rtnl.bridge_owner("nhk0").expect("bridge_owner"),
            Some((true, Some("nethook:net-k".to_owned())))
        );
        let routes = rtnl.ipv4_routes().expect("ipv4_routes");
        assert!(
            routes.contains(&"10.99.0.0/24".parse().unwrap()),
            "{routes:?}"
        );

        let c = FakeContainer::start("k");
        let netns = Netns::open(&c.netns()).expect("open the container's netns");
        let id = ContainerId::parse("k").unwrap();
        let host = id.host_veth_name();
        let tag = id.owner_tag();
        let spec = VethSpec {
            host_name: &host,
            bridge_index: index,
            host_mac: None,
            peer_name: "eth0",
            peer_mac: Mac([0x02, 0x4e, 0x0a, 0x63, 0, 2]),
            owner_tag: &tag,
        };
        rtnl.create_veth(&spec, &netns).expect("create_veth");
        let shown = sh(&format!("ip -d link show {host}"));
        assert!(shown.contains("master nhk0"), "{shown}");
        assert!(shown.contains(&format!("alias {tag}")), "{shown}");
        assert!(shown.contains("hairpin on"), "{shown}");
        assert!(shown.contains("numtxqueues 1 numrxqueues 1"), "{shown}");
        assert!(
            shown.contains("<NO-CARRIER,BROADCAST,MULTICAST,UP>"),
            "{shown}"
        );
        let peer = c.sh("ip -d link show eth0");
        assert!(peer.contains("02:4e:0a:63:00:02"), "{peer}");
        assert!(peer.contains("numtxqueues 1 numrxqueues 1"), "{peer}");
        assert!(rtnl.exists(&host).expect("exists"));

        // A second pair under the same name: the kernel's EEXIST, with the operation named.
        let err = rtnl.create_veth(&spec, &netns).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EEXIST));
        let msg = format!("{err}");
        assert!(
            msg.contains(&format!("create veth {host} (peer eth0 in")),
            "{msg}"
        );

        let veth = HostVeth {
            name: &host,
            bridge: "nhk0",
            owner: &id,
        };
        assert_eq!(rtnl.veth_state(&veth).expect("veth_state"), VethState::Ours);
        let other = ContainerId::parse("other").unwrap();
        let theirs = HostVeth {
            owner: &other,
            ..veth
        };
        assert!(matches!(
            rtnl.veth_state(&theirs).expect("veth_state"),
            VethState::NotOurs(_)
        ));
        // Not theirs to delete; ours, with the namespace alive, is deleted at once.
        assert!(matches!(
            rtnl.delete_veth(&theirs, Duration::ZERO),
            Ok(VethFate::NotOurs(_))
        ));
        assert_eq!(
            rtnl.delete_veth(&veth, Duration::ZERO)
                .expect("delete_veth"),
            VethFate::Deleted
        );
        assert!(!rtnl.exists(&host).expect("exists"));
        assert!(
            !c.sh_ok("ip link show eth0"),
            "the peer went with the host end"
        );
        assert_eq!(rtnl.veth_state(&veth).expect("veth_state"), VethState::Gone);
        assert_eq!(
            rtnl.delete_veth(&veth, Duration::ZERO)
                .expect("delete_veth"),
            VethFate::Gone
        );

        assert!(rtnl.delete("nhk0").expect("delete"));
        assert!(!rtnl.delete("nhk0").expect("delete"));
        assert!(!link::link_present("nhk0").expect("link_present"));
    });
}

/// Median time of `f` over `n` runs, in µs.
fn median_us(n: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

#[test]
fn ioctl_lookups_timed_against_netlink() {
    sandbox!("ioctl_lookups_timed_against_netlink", {
        let Some(out) = std::env::var_os("NETHOOK_KERNEL_TIMING") else {
            return;
        };
        let rtnl = Rtnl::open().expect("open");
        bridge(&rtnl);
        // A bridge with ports, as the hook sees it: its link message carries their count.
        let c = FakeContainer::start("t");
        let netns = Netns::open(&c.netns()).expect("open the container's netns");
        let index = bridge(&rtnl);
        for i in 0..8u8 {
            let host = format!("nhkt{i}");
            let peer = format!("eth{i}");
            let spec = VethSpec {
                host_name: &host,
                bridge_index: index,
                host_mac: None,
                peer_name: &peer,
                peer_mac: Mac([0x02, 0x4e, 0, 0, 1, i]),
                owner_tag: "nethook:t",
            };
            rtnl.create_veth(&spec, &netns).expect("create_veth");
        }
        let n = 2000;
        let lines = [
            (
                "link_present (socket + SIOCGIFINDEX)",
                median_us(n, || assert!(link::link_present("nhkt0").unwrap())),
            ),
            (
                "Rtnl::open + exists (socket + RTM_GETLINK)",
                median_us(n, || {
                    assert!(Rtnl::open().unwrap().exists("nhkt0").unwrap())
                }),
            ),
            (
                "exists on an open Rtnl (RTM_GETLINK, veth)",
                median_us(n, || assert!(rtnl.exists("nhkt0").unwrap())),
            ),
            (
                "ensure_bridge, bridge in place (socket + 4 ioctls)",
                median_us(n, || {
                    bridge(&rtnl);
                }),
            ),
            (
                "bridge_owner on an open Rtnl (RTM_GETLINK, bridge)",
                median_us(n, || {
                    rtnl.bridge_owner("nhk0").unwrap();
                }),
            ),
            (
                "Rtnl::open",
                median_us(n, || {
                    Rtnl::open().unwrap();
                }),
            ),
        ];
        let text: String = lines
            .iter()
            .map(|(what, us)| format!("{us:8.1} µs  {what}\n"))
            .collect();
        std::fs::write(out, text).expect("write the timings");
    });
}
