//! Kernel pieces for services and names (issue 22) straight against the kernel, each in a
//! sandbox: a bridge port's hairpin flag, routes for a network's service range, a file
//! written into a container's root through its mount namespace, and the conntrack flush
//! of a member's DNAT'd flows.
//!
//! `NETHOOK_KERNEL_TIMING=FILE` appends the measured medians to FILE.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use ipnetwork::IpNetwork;
use nethook::kernel::link::{self, BridgeSpec, ContainerAddrs, ContainerIp, Rtnl, VethSpec};
use nethook::kernel::netns::Netns;
use nethook::model::ids::ContainerId;
use nethook::model::mac::Mac;

const GW: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 1);

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn bridge(rtnl: &Rtnl, name: &str, routes: &[IpNetwork]) -> u32 {
    rtnl.ensure_bridge(&BridgeSpec {
        name,
        mac: Mac([0x02, 0x4e, 0x0a, 0x61, 0, 1]),
        ipv4: Some((GW, 24)),
        ipv6: Some(("fd00:97::1".parse().unwrap(), 64)),
        owner_tag: "nethook-network:svc",
        routes,
    })
    .expect("ensure_bridge")
}

/// A member: a fake container on the bridge at 10.97.0.`last`, its host veth's name.
fn member(rtnl: &Rtnl, index: u32, c: &FakeContainer, last: u8) -> String {
    let netns = Netns::open(&c.netns()).expect("open the container's netns");
    let id = ContainerId::parse(&c.id).unwrap();
    let host = id.host_veth_name();
    rtnl.create_veth(
        &VethSpec {
            host_name: &host,
            bridge_index: index,
            host_mac: None,
            peer_name: "eth0",
            peer_mac: Mac([0x02, 0x4e, 0x0a, 0x61, 0, last]),
            owner_tag: &id.owner_tag(),
        },
        &netns,
    )
    .expect("create_veth");
    let addrs = ContainerAddrs {
        ipv4: Some(ContainerIp {
            address: Ipv4Addr::new(10, 97, 0, last),
            prefix: 24,
            gateway: GW,
        }),
        ipv6: None,
    };
    link::configure_container(&netns, "eth0", &addrs).expect("configure_container");
    host
}

/// Median of `n` runs of `f`, in µs.
fn p50_us(n: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2].as_secs_f64() * 1e6
}

fn record_timing(line: &str) {
    eprintln!("{line}");
    if let Some(out) = std::env::var_os("NETHOOK_KERNEL_TIMING") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("open the timing file");
        writeln!(f, "{line}").expect("write the timing file");
    }
}

#[test]
fn hairpin_reads_back_and_lets_a_member_reach_itself_through_a_dnat_to_its_own_address() {
    sandbox!(
        "hairpin_reads_back_and_lets_a_member_reach_itself_through_a_dnat_to_its_own_address",
        {
            if !needs("nft && command -v ping") {
                return;
            }
            // The bridged-DNAT case needs br_netfilter's hook on (new namespaces have it on
            // once the module is in; this is the sandbox's own setting).
            if !sh_ok("test -e /proc/sys/net/bridge/bridge-nf-call-iptables") {
                eprintln!("SKIP: no br_netfilter, a member reaches itself without hairpin");
                return;
            }
            sh("echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables");
            sh("echo 1 > /proc/sys/net/ipv4/ip_forward");
            let rtnl = Rtnl::open().expect("open");
            let index = bridge(&rtnl, "nhs0", &[]);
            let c = FakeContainer::start("svc-hp");
            let host = member(&rtnl, index, &c, 11);
            // A service address DNAT'd to the member, masqueraded within the subnet as the
            // skeleton does (`ct status dnat`), so the member sees the gateway as source.
            sh("nft -f - <<'X'
table ip svct {
  chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.10 dnat to 10.97.0.11; }
  chain post { type nat hook postrouting priority srcnat; ip saddr 10.97.0.0/24 ct status dnat masquerade; }
}
X");
            let ping = "ping -c1 -W1 10.96.0.10";

            // create_veth turns hairpin on already.
            assert_eq!(rtnl.hairpin(&host).unwrap(), Some(true));
            rtnl.set_hairpin(&host, false).expect("hairpin off");
            assert_eq!(rtnl.hairpin(&host).unwrap(), Some(false));
            assert!(sh(&format!("ip -d link show {host}")).contains("hairpin off"));
            assert!(
                !c.sh_ok(ping),
                "reached itself with hairpin off: the test shows nothing"
            );

            rtnl.set_hairpin(&host, true).expect("hairpin on");
            assert_eq!(rtnl.hairpin(&host).unwrap(), Some(true));
            assert!(sh(&format!("ip -d link show {host}")).contains("hairpin on"));
            assert!(
                c.sh_ok(ping),
                "a member cannot reach itself through the DNAT"
            );

            // Not a bridge port, no such link.
            assert_eq!(rtnl.hairpin("nhs0").unwrap(), None);
            assert_eq!(rtnl.hairpin("nhs-none").unwrap(), None);
            let err = rtnl.set_hairpin("nhs0", true).unwrap_err().to_string();
            assert!(err.contains("not a bridge port"), "{err}");
            assert!(rtnl.set_hairpin("nhs-none", true).is_err());

            let mut on = false;
            let toggle = p50_us(1000, || {
                rtnl.set_hairpin(&host, on).unwrap();
                on = !on;
            });
            let same = p50_us(1000, || rtnl.set_hairpin(&host, true).unwrap());
            let read = p50_us(1000, || {
                rtnl.hairpin(&host).unwrap();
            });
            record_timing(&format!(
                "set_hairpin p50 over 1000: {toggle:.1} µs changing it, {same:.1} µs unchanged; hairpin (read) {read:.1} µs"
            ));
        }
    );
}

/// `ip route` lines of the main table out of `dev`, both families.
fn shown_routes(dev: &str) -> String {
    sh(&format!(
        "ip -4 route show dev {dev}; ip -6 route show dev {dev}"
    ))
}

#[test]
fn service_range_routes_come_and_go_idempotently_and_come_back_with_a_repaired_bridge() {
    sandbox!(
        "service_range_routes_come_and_go_idempotently_and_come_back_with_a_repaired_bridge",
        {
            let rtnl = Rtnl::open().expect("open");
            let (v4, v6) = (net("10.89.0.0/24"), net("fd89::/64"));
            bridge(&rtnl, "nhs1", &[]);
            assert!(!shown_routes("nhs1").contains("10.89.0.0/24"));

            for dst in [v4, v6] {
                rtnl.ensure_device_route("nhs1", dst).expect("add");
                // Idempotent, also when named with host bits.
                rtnl.ensure_device_route("nhs1", dst).expect("add again");
                let with_host_bits = IpNetwork::new(
                    match dst.network() {
                        std::net::IpAddr::V4(a) => std::net::IpAddr::V4((u32::from(a) | 7).into()),
                        std::net::IpAddr::V6(a) => std::net::IpAddr::V6((u128::from(a) | 7).into()),
                    },
                    dst.prefix(),
                )
                .unwrap();
                rtnl.ensure_device_route("nhs1", with_host_bits)
                    .expect("add with host bits");
            }
            let shown = shown_routes("nhs1");
            assert!(
                shown.contains("10.89.0.0/24 proto static scope link"),
                "{shown}"
            );
            assert!(shown.contains("fd89::/64 proto static"), "{shown}");
            let listed = rtnl.device_routes("nhs1").unwrap();
            assert!(listed.contains(&v4) && listed.contains(&v6), "{listed:?}");
            // The subnet's own route is listed too; another link's are not.
            assert!(listed.contains(&net("10.97.0.0/24")), "{listed:?}");
            assert!(rtnl.device_routes("lo").unwrap().iter().all(|d| *d != v4));
            assert_eq!(rtnl.device_routes("nhs-none").unwrap(), vec![]);

            // The host reaches a service address by the bridge, from its gateway.
            let got = sh("ip -4 route get 10.89.0.7");
            assert!(got.contains("dev nhs1 src 10.97.0.1"), "{got}");

            // Another link's route to the same range is not taken over.
            bridge_plain("nhs2");
            let err = rtnl
                .ensure_device_route("nhs2", v4)
                .unwrap_err()
                .to_string();
            assert!(err.contains("already leaves by nhs1"), "{err}");
            assert!(!rtnl.delete_device_route("nhs2", v4).unwrap());
            assert!(shown_routes("nhs1").contains("10.89.0.0/24"));

            // A route added by hand (proto boot) is not nethook's to delete.
            sh("ip route add 10.90.0.0/24 dev nhs1");
            assert!(!rtnl
                .delete_device_route("nhs1", net("10.90.0.0/24"))
                .unwrap());
            assert!(shown_routes("nhs1").contains("10.90.0.0/24"));

            for dst in [v4, v6] {
                assert!(rtnl.delete_device_route("nhs1", dst).expect("delete"));
                assert!(!rtnl.delete_device_route("nhs1", dst).expect("delete again"));
            }
            let shown = shown_routes("nhs1");
            assert!(
                !shown.contains("10.89.0.0") && !shown.contains("fd89::"),
                "{shown}"
            );
            assert!(!rtnl.delete_device_route("nhs-none", v4).unwrap());

            // A bridge that is down has no routes and takes none: the error says so.
            rtnl.ensure_device_route("nhs1", v4).unwrap();
            sh("ip link set nhs1 down");
            assert!(!shown_routes("nhs1").contains("10.89.0.0/24"));
            let err = rtnl.ensure_device_route("nhs1", v4).unwrap_err();
            assert_eq!(err.errno(), Some(libc::ENETDOWN));
            assert!(err.to_string().contains("nhs1 is down"), "{err}");
            // ensure_bridge repairs it, routes included; the cheap path leaves them be.
            bridge(&rtnl, "nhs1", &[v4, v6]);
            let shown = shown_routes("nhs1");
            assert!(
                shown.contains("10.89.0.0/24") && shown.contains("fd89::/64"),
                "{shown}"
            );
            // A new bridge gets them at once.
            bridge(&rtnl, "nhs3", &[net("10.91.0.0/24")]);
            assert!(shown_routes("nhs3").contains("10.91.0.0/24"));

            let there = p50_us(1000, || rtnl.ensure_device_route("nhs1", v4).unwrap());
            let dst = net("10.92.0.0/24");
            let mut times = Vec::with_capacity(1000);
            for _ in 0..1000 {
                let t = Instant::now();
                rtnl.ensure_device_route("nhs1", dst).unwrap();
                times.push(t.elapsed());
                assert!(rtnl.delete_device_route("nhs1", dst).unwrap());
            }
            times.sort();
            let new = times[500].as_secs_f64() * 1e6;
            record_timing(&format!(
                "ensure_device_route p50 over 1000: {new:.1} µs adding it, {there:.1} µs when it is there (EEXIST + a dump)"
            ));
        }
    );
}

/// A bridge up with no address.
fn bridge_plain(name: &str) {
    sh(&format!(
        "ip link add {name} type bridge && ip link set {name} up"
    ));
}

/// A process in a mount namespace of its own with a tmpfs on `rootfs` (empty in the
/// sandbox's view), as a container at createRuntime: its mounts made, not yet switched into
/// its root. `setup` runs in there before it is ready. Killed on drop.
struct MountNsProcess(std::process::Child);

impl MountNsProcess {
    fn start(rootfs: &std::path::Path, ready: &std::path::Path, setup: &str) -> Self {
        let script = format!(
            "mount -t tmpfs nhroot {root} && mkdir -p {root}/etc {root}/tmp && {setup} && touch {ready} && exec sleep 600",
            root = rootfs.display(),
            ready = ready.display()
        );
        let child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .expect("spawn unshare --mount");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "the mount namespace never got ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        MountNsProcess(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// A shell command in its mount namespace.
    fn sh(&self, cmd: &str) -> String {
        sh(&format!(
            "nsenter -t {} -m sh -c '{}'",
            self.pid(),
            cmd.replace('\'', "'\\''")
        ))
    }
}

impl MountNsProcess {
    fn sh_ok(&self, cmd: &str) -> bool {
        sh_ok(&format!(
            "nsenter -t {} -m sh -c '{}'",
            self.pid(),
            cmd.replace('\'', "'\\''")
        ))
    }
}

impl Drop for MountNsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The other way in, for the measurement: a thread that unshares its `fs`, enters the
/// mount namespace, and writes through an ordinary path (`openat2` in the root as well).
fn write_by_entering(pid: i32, rootfs: &std::path::Path, rel: &str, contents: &[u8]) {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sched::{setns, unshare, CloneFlags};
    use std::io::Write;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).unwrap();
    let rootfs = rootfs.to_owned();
    let rel = rel.to_owned();
    let contents = contents.to_vec();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_FS).expect("unshare(CLONE_FS)");
        setns(&ns, CloneFlags::CLONE_NEWNS).expect("setns(mnt)");
        let root = std::fs::File::open(&rootfs).unwrap();
        let fd = openat2(
            &root,
            rel.as_str(),
            OpenHow::new()
                .flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .mode(nix::sys::stat::Mode::from_bits_truncate(0o644))
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
        .unwrap();
        let mut f = std::fs::File::from(fd);
        f.set_len(0).unwrap();
        f.write_all(&contents).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn a_file_written_into_a_container_root_lands_in_its_view_only_and_never_outside_it() {
    sandbox!(
        "a_file_written_into_a_container_root_lands_in_its_view_only_and_never_outside_it",
        {
            use nethook::kernel::rootfs::{write_container_file, RootfsError, Written};
            use std::path::Path;

            let dir = TempDir::new("rootfs");
            let rootfs = dir.0.join("rootfs");
            std::fs::create_dir(&rootfs).unwrap();
            let me = std::process::id();
            // Host files a symlink in the image would name if it were followed.
            let escape = format!("/tmp/nethook-escape-{me}");
            // Removed on drop, also when an assertion fails.
            let escape_tmp = TempDir::new("escape-dir");
            let escape_dir = escape_tmp.0.display().to_string();
            let root = rootfs.display();
            let c = MountNsProcess::start(
                &rootfs,
                &dir.0.join("ready"),
                &format!(
                    "ln -s ../../../../../../..{escape} {root}/etc/resolv.conf \
                     && ln -s {escape} {root}/etc/abs-link \
                     && ln -s ../../../../../../..{escape_dir} {root}/etcdir \
                     && mkdir -p {root}{escape_dir} \
                     && echo runtime > {dir}/runtime-hosts && touch {root}/etc/hosts \
                     && mount --bind {dir}/runtime-hosts {root}/etc/hosts \
                     && echo ro > {dir}/runtime-ro && touch {root}/etc/ro \
                     && mount --bind {dir}/runtime-ro {root}/etc/ro \
                     && mount -o remount,bind,ro {root}/etc/ro",
                    dir = dir.0.display()
                ),
            );
            let pid = c.pid();
            let write = |rel: &str, contents: &[u8]| {
                write_container_file(pid, &rootfs, Path::new(rel), contents)
            };

            // A symlink at the last component is not followed, whatever its target.
            assert_eq!(write("etc/resolv.conf", b"x").unwrap(), Written::Symlink);
            assert_eq!(write("etc/abs-link", b"x").unwrap(), Written::Symlink);
            assert!(
                !Path::new(&escape).exists(),
                "wrote through the symlink to the host"
            );
            assert!(c.sh_ok(&format!("test ! -e {root}/{escape}")));

            // A new file: in the container's view, not in the host's.
            let conf = b"nameserver 10.97.0.1\n";
            assert_eq!(write("etc/resolv2.conf", conf).unwrap(), Written::Wrote);
            assert_eq!(
                c.sh(&format!("cat {root}/etc/resolv2.conf")).as_bytes(),
                conf
            );
            assert!(
                !rootfs.join("etc").exists(),
                "the write landed in the host's view"
            );
            // Rewritten shorter: truncated, in place.
            assert_eq!(
                write("/etc/resolv2.conf", b"short\n").unwrap(),
                Written::Wrote
            );
            assert_eq!(c.sh(&format!("cat {root}/etc/resolv2.conf")), "short\n");

            // A symlinked directory on the way resolves inside the root.
            assert_eq!(write("etcdir/probe", b"in").unwrap(), Written::Wrote);
            assert_eq!(c.sh(&format!("cat {root}{escape_dir}/probe")), "in");
            assert!(
                !Path::new(&escape_dir).join("probe").exists(),
                "escaped by a directory link"
            );
            assert_eq!(
                write("../../../../etc/probe2", b"in").unwrap(),
                Written::Wrote
            );
            assert_eq!(c.sh(&format!("cat {root}/etc/probe2")), "in");

            // A file the runtime bind-mounted is its own: reported, left alone, rw or ro.
            assert_eq!(write("etc/hosts", b"ours").unwrap(), Written::MountPoint);
            assert_eq!(
                std::fs::read_to_string(dir.0.join("runtime-hosts")).unwrap(),
                "runtime\n"
            );
            assert_eq!(write("etc/ro", b"ours").unwrap(), Written::MountPoint);
            assert_eq!(
                std::fs::read_to_string(dir.0.join("runtime-ro")).unwrap(),
                "ro\n"
            );

            // Errors that say what is wrong.
            let err = write("nodir/file", b"x").unwrap_err();
            assert!(matches!(err, RootfsError::Io { .. }), "{err}");
            let err = write("etc", b"x").unwrap_err();
            assert!(matches!(err, RootfsError::NotAFile { .. }), "{err}");
            let err =
                write_container_file(pid, Path::new("/nonexistent-root"), Path::new("etc/x"), b"")
                    .unwrap_err();
            assert!(matches!(err, RootfsError::Root { .. }), "{err}");
            assert!(err.to_string().contains("createRuntime"), "{err}");
            let err = write_container_file(i32::MAX, &rootfs, Path::new("etc/x"), b"").unwrap_err();
            assert!(matches!(err, RootfsError::Process { .. }), "{err}");

            // The two ways in, on the same file.
            let by_proc = p50_us(1000, || {
                assert_eq!(write("etc/resolv2.conf", conf).unwrap(), Written::Wrote);
            });
            let by_setns = p50_us(1000, || {
                write_by_entering(pid, &rootfs, "etc/resolv2.conf", conf)
            });
            assert_eq!(
                c.sh(&format!("cat {root}/etc/resolv2.conf")).as_bytes(),
                conf
            );
            record_timing(&format!(
                "write_container_file p50 over 1000: {by_proc:.1} µs through /proc/PID/root; {by_setns:.1} µs by thread + unshare(CLONE_FS) + setns(mnt)"
            ));
        }
    );
}

/// `conntrack -L` lines that mention `needle`.
fn ct_lines(needle: &str) -> Vec<String> {
    sh("conntrack -L -p udp 2>/dev/null")
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_udp_flow_dnatted_to_a_member_goes_with_a_flush_for_the_member_and_others_stay() {
    sandbox!(
        "a_udp_flow_dnatted_to_a_member_goes_with_a_flush_for_the_member_and_others_stay",
        {
            use nethook::kernel::conntrack;
            if !needs("nft && command -v conntrack && command -v bash") {
                return;
            }
            sh("echo 1 > /proc/sys/net/ipv4/ip_forward");
            let rtnl = Rtnl::open().expect("open");
            let index = bridge(&rtnl, "nhs4", &[]);
            let m1 = FakeContainer::start("svc-m1");
            let m2 = FakeContainer::start("svc-m2");
            let client = FakeContainer::start("svc-cl");
            member(&rtnl, index, &m1, 11);
            member(&rtnl, index, &m2, 12);
            member(&rtnl, index, &client, 20);
            // Two services, one member each, masqueraded within the subnet as the skeleton
            // does: reply source = the member, reply destination = the gateway.
            sh("nft -f - <<'X'
table ip svct {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr 10.96.0.10 udp dport 53 dnat to 10.97.0.11:5300
    ip daddr 10.96.0.11 udp dport 53 dnat to 10.97.0.12:5300
  }
  chain post { type nat hook postrouting priority srcnat; ip saddr 10.97.0.0/24 ct status dnat masquerade; }
}
X");
            for vip in ["10.96.0.10", "10.96.0.11"] {
                client.sh(&format!("bash -c 'echo q > /dev/udp/{vip}/53'"));
            }
            let to_m1 = ct_lines("dst=10.96.0.10");
            assert_eq!(to_m1.len(), 1, "{to_m1:?}");
            assert!(
                to_m1[0].contains("src=10.97.0.20")
                    && to_m1[0].contains("src=10.97.0.11 dst=10.97.0.1"),
                "{to_m1:?}"
            );
            assert_eq!(ct_lines("dst=10.96.0.11").len(), 1);

            let n = conntrack::flush_for(&[Ipv4Addr::new(10, 97, 0, 11).into()], &[]).unwrap();
            assert_eq!(n, 1);
            assert_eq!(ct_lines("dst=10.96.0.10"), Vec::<String>::new());
            // The other member's flow stays.
            assert_eq!(ct_lines("dst=10.96.0.11").len(), 1);
        }
    );
}
