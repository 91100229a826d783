//! Issue 21, firewall part: the IPv6 rules bite with real packets. Anti-spoofing and
//! neighbour discovery in the bridge table (frames crafted on a container's eth0 and seen, or
//! not, on a neighbour's), router advertisements from the host, and published ports,
//! masquerade and hairpin over IPv6 next to IPv4 on the same port. Each test runs in its own
//! sandbox namespace.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use common::*;
use nethook::firewall::{self, Elements, PortMapping, PortMapping6, Proto, Source};
use nethook::model::mac::Mac;

/// A container's fixed MAC (`02:4e:00:00:00:0N`) and its EUI-64 link-local.
fn mac(n: u8) -> Mac {
    Mac([0x02, 0x4e, 0, 0, 0, n])
}

fn link_local(n: u8) -> Ipv6Addr {
    // fe80:: + (02^02)4e:00ff:fe00:000N
    format!("fe80::4e:ff:fe00:{n}").parse().unwrap()
}

fn addr6(n: u8) -> Ipv6Addr {
    format!("fd00:1::{n}").parse().unwrap()
}

/// Container `n` on bridge nhbr0: host veth `nh6test{n}`, MAC `mac(n)`, `fd00:1::n/64` without
/// DAD, no link-local (addr_gen_mode none, as nethook sets it), and IPv4 `10.77.0.n/16` when
/// `v4`. Returns its firewall source (own address and EUI-64 link-local).
fn attach(c: &FakeContainer, n: u8, v4: bool) -> Source {
    let veth = format!("nh6test{n}");
    sh(&format!(
        "ip link add {veth} type veth peer name eth0 netns {} && ip link set {veth} master nhbr0 up",
        c.pid()
    ));
    c.sh(&format!(
        "ip link set lo up && ip link set eth0 address {} addrgenmode none && ip addr add {}/64 dev eth0 nodad && ip link set eth0 up && ip -6 route add default via fd00:1::1",
        mac(n),
        addr6(n)
    ));
    if v4 {
        c.sh(&format!(
            "ip addr add 10.77.0.{n}/16 dev eth0 && ip route add default via 10.77.0.1"
        ));
    }
    Source {
        host_interface: veth,
        mac: mac(n),
        ipv4: if v4 {
            vec![Ipv4Addr::new(10, 77, 0, n)]
        } else {
            vec![]
        },
        ipv6: vec![addr6(n), link_local(n)],
    }
}

fn bridge() {
    sh("ip link add nhbr0 type bridge && ip addr add 10.77.0.1/16 dev nhbr0 && ip addr add fd00:1::1/64 dev nhbr0 nodad && ip link set nhbr0 up");
}

/// Sniffs IPv6 frames on `peer`'s eth0 and returns the flow labels from 1 to 99 seen (sorted,
/// each once) by the time the frame with flow label 999 arrived; `send` then runs the sender.
/// (The kernel's own packets carry hashed flow labels, which fall in that range rarely.)
fn labels_seen(peer: &FakeContainer, send: impl FnOnce()) -> Vec<u32> {
    const SNIFF: &str = r#"import socket
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x86dd));s.bind(('eth0',0));s.settimeout(10)
print('ready',flush=True);seen=set()
while True:
    f=s.recv(2000)
    if f[12:14]!=b'\x86\xdd': continue
    label=int.from_bytes(f[15:18],'big')&0xfffff
    if label==999: break
    if 0<label<100: seen.add(label)
print(' '.join(str(l) for l in sorted(seen)),flush=True)"#;
    let mut sniffer = Command::new("sh")
        .args(["-c", &format!("exec {} python3 -c \"$NH_PY\"", ns(peer))])
        .env("NH_PY", SNIFF)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sniffer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    send();
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = sniffer.wait();
    line.split_whitespace()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Sends hand-made IPv6 frames from an interface (`sys.argv[1]`) with the given source MAC
/// (`sys.argv[2]`) to `sys.argv[3]`'s MAC; each frame is `label kind src [target [option MAC]]`
/// on stdin. Checksums are left zero: the sniffer reads frames before any stack checks them,
/// and the bridge's rules never look at them.
const SEND: &str = r#"import socket,sys
ifc,src,dst=sys.argv[1],bytes.fromhex(sys.argv[2].replace(':','')),bytes.fromhex(sys.argv[3].replace(':',''))
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind((ifc,0))
a=lambda t: socket.inet_pton(socket.AF_INET6,t)
m=lambda t: bytes.fromhex(t.replace(':',''))
for line in sys.stdin:
    f=line.split()
    if not f: continue
    label,kind,saddr=int(f[0]),f[1],a(f[2])
    daddr=a('ff02::1');nh=58;hop=255
    if kind=='na':      # neighbour advertisement: flags S|O, target, [TLLA option]
        body=bytes([136,0,0,0,0x60,0,0,0])+a(f[3])+(bytes([2,1])+m(f[4]) if len(f)>4 else b'')
    elif kind=='ns':    # neighbour solicitation: target, SLLA option
        body=bytes([135,0,0,0,0,0,0,0])+a(f[3])+bytes([1,1])+m(f[4])
    elif kind=='ra':    # router advertisement: hop limit 64, lifetime 1800, no options
        body=bytes([134,0,0,0,64,0,0x07,0x08])+b'\0'*8
    elif kind=='redirect':
        body=bytes([137,0,0,0,0,0,0,0])+a(f[3])+a(f[3])
    elif kind=='mld':   # MLDv2 report, no records
        body=bytes([143,0,0,0,0,0,0,0])
    elif kind=='echo':
        body=bytes([128,0,0,0,0,1,0,1])+b'NHMARK';daddr=a(f[3]);hop=64
    elif kind=='dhcp':  # UDP from 547 (a DHCPv6 server's reply)
        body=(547).to_bytes(2,'big')+(546).to_bytes(2,'big')+(12).to_bytes(2,'big')+b'\0\0'+b'NHMK';nh=17
    elif kind=='dhcp2': # UDP to a DHCPv6 client's 546 from any other port
        body=(4000).to_bytes(2,'big')+(546).to_bytes(2,'big')+(12).to_bytes(2,'big')+b'\0\0'+b'NHMK';nh=17
    ip6=((6<<28)|label).to_bytes(4,'big')+len(body).to_bytes(2,'big')+bytes([nh,hop])+saddr+daddr
    s.send(dst+src+b'\x86\xdd'+ip6+body)"#;

fn send_frames(from: &FakeContainer, src_mac: Mac, to_mac: &str, frames: &str) {
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "exec {} python3 -c \"$NH_PY\" eth0 {src_mac} {to_mac}",
                ns(from)
            ),
        ])
        .env("NH_PY", SEND)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), frames.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The bridge table's IPv6 checks, frame by frame: what a container may send (its own
/// addresses, ND about itself with its own MAC) reaches its neighbour, the rest does not.
/// The NA-target and option-MAC rules look up `addrs6` and `macs` with keys loaded from the
/// ICMPv6 payload (nft 1.0.6 cannot write that lookup): the pass/drop pairs below pin that
/// the kernel compares the bytes.
#[test]
fn ipv6_antispoofing_and_neighbour_discovery_bite() {
    sandbox!("ipv6_antispoofing_and_neighbour_discovery_bite", {
        if !needs("python3 && command -v ping") {
            return;
        }
        bridge();
        let c1 = FakeContainer::start("c1");
        let c2 = FakeContainer::start("c2");
        let c3 = FakeContainer::start("c3");
        let sources = vec![
            attach(&c1, 2, false),
            attach(&c2, 3, false),
            attach(&c3, 4, false),
        ];
        firewall::ensure_skeleton().unwrap();
        firewall::add(&Elements {
            bridges: vec!["nhbr0".into()],
            sources,
            ..Elements::default()
        })
        .unwrap();

        // Own addresses: containers and the gateway reach each other (ND included).
        assert!(c1.sh_ok("ping -6 -c1 -W3 fd00:1::3"), "c1 -> c2");
        assert!(c1.sh_ok("ping -6 -c1 -W3 fd00:1::1"), "c1 -> gateway");
        // A second address that is not its own: dropped.
        c1.sh("ip addr add fd00:1::99/64 dev eth0 nodad");
        assert!(
            !c1.sh_ok("ping -6 -c1 -W2 -I fd00:1::99 fd00:1::3"),
            "spoofed IPv6 source passed"
        );
        // c2 knows c1's MAC now.
        let c1_mac = mac(2).to_string();
        assert!(c2.sh("ip -6 neigh show fd00:1::2").contains(&c1_mac));

        let other = "02:4e:00:00:00:99";
        let (ll4, own4) = (link_local(4), addr6(4));
        let c3_mac = mac(4).to_string();
        let frames = format!(
            "1 na {own4} fd00:1::2 {c3_mac}\n\
             2 na {own4} {own4} {other}\n\
             3 na {own4} {own4} {c3_mac}\n\
             4 na {own4} {own4}\n\
             5 ns {own4} fd00:1::3 {c3_mac}\n\
             6 ns {own4} fd00:1::3 {other}\n\
             7 ra {ll4}\n\
             8 redirect {ll4} fd00:1::2\n\
             9 mld {ll4}\n\
             10 echo fd00:1::99 fd00:1::3\n\
             11 echo {ll4} fd00:1::3\n\
             12 echo :: fd00:1::3\n\
             13 dhcp {own4}\n\
             15 dhcp2 {own4}\n\
             14 echo {own4} fd00:1::3\n\
             999 echo {own4} fd00:1::3\n"
        );
        let seen = labels_seen(&c2, || {
            send_frames(&c3, mac(4), &mac(3).to_string(), &frames)
        });
        // 1: NA about c1's address; 2: NA with another MAC in its option; 6: NS likewise;
        // 7-9: RA, redirect, MLD; 10: foreign source; 12: unspecified source (DAD, MLD);
        // 13, 15: DHCPv6 server reply, from port 547 or another. 3, 4 (no option: a reply to a unicast probe), 5, and
        // traffic from its own global and link-local addresses pass.
        assert_eq!(seen, vec![3, 4, 5, 11, 14], "labels that reached c2");
        // The forged NA did not move c2's entry for c1.
        assert!(
            c2.sh("ip -6 neigh show fd00:1::2").contains(&c1_mac),
            "{}",
            c2.sh("ip -6 neigh")
        );

        // A container on an IPv4-only network (no addrs6 element) sends no IPv6 at all,
        // whatever its ethertype opt-out says.
        let c4 = FakeContainer::start("c4");
        let mut v4only = attach(&c4, 5, true);
        v4only.ipv6.clear();
        firewall::add(&Elements {
            sources: vec![v4only],
            any_ethertype: vec!["nh6test5".into()],
            ..Elements::default()
        })
        .unwrap();
        assert!(c4.sh_ok("ping -4 -c1 -W3 10.77.0.1"), "its IPv4 passes");
        let own5 = addr6(5);
        let seen = labels_seen(&c2, || {
            send_frames(
                &c4,
                mac(5),
                &mac(3).to_string(),
                &format!("1 echo {own5} fd00:1::3\n"),
            );
            send_frames(
                &c3,
                mac(4),
                &mac(3).to_string(),
                &format!("999 echo {own4} fd00:1::3\n"),
            );
        });
        assert!(
            seen.is_empty(),
            "IPv6 of an IPv4-only endpoint passed: {seen:?}"
        );
    });
}

/// Router advertisements the host sends (a radvd on every link, say) do not reach
/// containers: the bridge table's output chain drops them on nh* ports; other IPv6 from the
/// host does.
#[test]
fn router_advertisements_from_the_host_do_not_reach_containers() {
    sandbox!(
        "router_advertisements_from_the_host_do_not_reach_containers",
        {
            if !needs("python3") {
                return;
            }
            bridge();
            let c1 = FakeContainer::start("c1");
            let src = attach(&c1, 2, false);
            firewall::ensure_skeleton().unwrap();
            firewall::add(&Elements {
                bridges: vec!["nhbr0".into()],
                sources: vec![src],
                ..Elements::default()
            })
            .unwrap();
            let br_mac = sh("ip -o link show nhbr0 | sed 's|.*link/ether \\([^ ]*\\).*|\\1|'")
                .trim()
                .to_owned();
            let seen = labels_seen(&c1, || {
                let mut child = Command::new("python3")
                    .args(["-c", SEND, "nhbr0", &br_mac, &mac(2).to_string()])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(
                    &mut child.stdin.take().unwrap(),
                    b"1 ra fe80::1\n2 echo fd00:1::1 fd00:1::2\n999 echo fd00:1::1 fd00:1::2\n",
                )
                .unwrap();
                assert!(child.wait().unwrap().success());
            });
            assert_eq!(seen, vec![2], "labels that reached c1");
            assert!(
                !c1.sh("ip -6 route").contains("proto ra"),
                "{}",
                c1.sh("ip -6 route")
            );
        }
    );
}

/// TCP server on `::` (dual stack) in `prefix`'s namespace answering `conns` connections
/// with "from <peer>".
fn server6(prefix: &str, port: u16, conns: u32) -> Server {
    const SRV: &str = r#"import socket,sys
s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)
s.bind(('::',int(sys.argv[1])));s.listen(64);s.settimeout(60)
for _ in range(int(sys.argv[2])):
    c,a=s.accept();c.sendall(('from %s\n'%a[0]).encode());c.close()"#;
    Server(
        Command::new("sh")
            .args([
                "-c",
                &format!("exec {prefix} python3 -c \"$NH_PY\" {port} {conns}"),
            ])
            .env("NH_PY", SRV)
            .spawn()
            .unwrap(),
    )
}

/// Published ports over IPv6 on every host address (`ports6`) and on one (`hports6`),
/// the same port over IPv4 from one dual-stack publish (the `meta nfproto` guards), from the
/// host, hairpin, and masquerade to the outside.
#[test]
fn ipv6_published_ports_masquerade_and_hairpin() {
    sandbox!("ipv6_published_ports_masquerade_and_hairpin", {
        if !needs("python3") {
            return;
        }
        bridge();
        let out = FakeContainer::start("out");
        sh(&format!(
            "ip link add up0 type veth peer name eth0 netns {}",
            out.pid()
        ));
        sh("ip addr add 192.0.2.1/24 dev up0 && ip addr add 2001:db8:9::1/64 dev up0 nodad && ip link set up0 up");
        // The outside has no route back to the containers' subnets: only masquerade answers.
        out.sh("ip link set lo up && ip addr add 192.0.2.2/24 dev eth0 && ip addr add 2001:db8:9::2/64 dev eth0 nodad && ip link set eth0 up");
        sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
        let c1 = FakeContainer::start("c1");
        let c2 = FakeContainer::start("c2");
        let s1 = attach(&c1, 2, true);
        let s2 = attach(&c2, 3, true);
        let port = |host_ip, host_port| PortMapping6 {
            host_ip,
            proto: Proto::Tcp,
            host_port,
            container_ip: addr6(2),
            container_port: 80,
        };
        firewall::ensure_skeleton().unwrap();
        firewall::add(&Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            masq6: vec!["fd00:1::/64".parse().unwrap()],
            bridges: vec!["nhbr0".into()],
            ports4: vec![PortMapping {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8080,
                container_ip: Ipv4Addr::new(10, 77, 0, 2),
                container_port: 80,
            }],
            ports6: vec![
                port(None, 8080),
                port(Some("2001:db8:9::1".parse().unwrap()), 8081),
            ],
            sources: vec![s1, s2],
            ..Elements::default()
        })
        .unwrap();
        let _srv = server6(&ns(&c1), 80, 100);
        // From outside, over both families to the same published port.
        assert_eq!(
            tcp_client(&ns(&out), "2001:db8:9::1", 8080),
            "from 2001:db8:9::2"
        );
        assert_eq!(
            tcp_client(&ns(&out), "192.0.2.1", 8080),
            "from ::ffff:192.0.2.2"
        );
        // On one host address only.
        assert_eq!(
            tcp_client(&ns(&out), "2001:db8:9::1", 8081),
            "from 2001:db8:9::2"
        );
        assert!(
            try_tcp(&ns(&out), "192.0.2.1", 8081, 3).is_err(),
            "8081 is published over IPv6 only"
        );
        // From the host (output hook) and hairpin (c2 through the host's address).
        assert_eq!(tcp_client("", "2001:db8:9::1", 8080), "from 2001:db8:9::1");
        assert_eq!(
            tcp_client(&ns(&c2), "2001:db8:9::1", 8080),
            "from fd00:1::1",
            "hairpin is masqueraded to the bridge address"
        );
        // ::1 is never published on: nothing answers there.
        assert!(try_tcp("", "::1", 8080, 3).is_err());
        // Masquerade: the outside sees the host's address.
        let _out_srv = server6(&ns(&out), 7000, 10);
        assert_eq!(
            tcp_client(&ns(&c1), "2001:db8:9::2", 7000),
            "from 2001:db8:9::1"
        );

        // The IPv6 forwarding guard: an element of its own next to IPv4's.
        firewall::guard_forwarding6(true).unwrap();
        firewall::guard_forwarding6(true).unwrap();
        let guard = sh("nft list set inet nethook fwd_guard");
        assert!(guard.contains("elements = { ipv6 }"), "{guard}");
        firewall::guard_forwarding6(false).unwrap();
        let guard = sh("nft list set inet nethook fwd_guard");
        assert!(!guard.contains("elements"), "{guard}");

        // Teardown leaves nothing of the container's IPv6 elements; check finds them missing.
        let own = Elements {
            ports6: vec![port(None, 8080)],
            ..Elements::default()
        };
        assert!(firewall::missing_elements(&own).unwrap().is_empty());
        firewall::delete(&own).unwrap();
        assert_eq!(firewall::missing_elements(&own).unwrap().len(), 1);
        assert!(try_tcp(&ns(&out), "2001:db8:9::1", 8080, 3).is_err());
    });
}

/// gc's prune finds the IPv6 elements no live endpoint has (ports6, hports6, addrs6) and
/// deletes them, keeping a live endpoint's; after `nft flush ruleset` the skeleton comes back
/// with the IPv6 sets, and a restore puts their elements back.
#[test]
fn prune_and_restore_cover_the_ipv6_sets() {
    sandbox!("prune_and_restore_cover_the_ipv6_sets", {
        let endpoint = |n: u8, port: u16| Elements {
            masq6: vec!["fd00:1::/64".parse().unwrap()],
            ports6: vec![
                PortMapping6 {
                    host_ip: None,
                    proto: Proto::Udp,
                    host_port: port,
                    container_ip: addr6(n),
                    container_port: 53,
                },
                PortMapping6 {
                    host_ip: Some("2001:db8::1".parse().unwrap()),
                    proto: Proto::Tcp,
                    host_port: port,
                    container_ip: addr6(n),
                    container_port: 80,
                },
            ],
            sources: vec![Source {
                host_interface: format!("nh6test{n}"),
                mac: mac(n),
                ipv4: vec![],
                ipv6: vec![addr6(n), link_local(n)],
            }],
            ..Elements::default()
        };
        firewall::ensure_skeleton().unwrap();
        firewall::add(&endpoint(2, 5000)).unwrap();
        firewall::add(&endpoint(3, 6000)).unwrap();
        let live = endpoint(2, 5000);
        let report = firewall::prune(&live, true).unwrap();
        let text = report.join("\n");
        for needle in [
            "udp 6000 -> [fd00:1::3]:53 from set ports6",
            "2001:db8::1 tcp 6000 -> [fd00:1::3]:80 from set hports6",
            "host interface \"nh6test3\" from set addrs6",
        ] {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
        assert!(
            !text.contains("nh6test2") && !text.contains("5000"),
            "{text}"
        );
        firewall::prune(&live, false).unwrap();
        assert!(firewall::prune(&live, true).unwrap().is_empty());
        assert!(firewall::missing_elements(&live).unwrap().is_empty());
        assert_eq!(
            firewall::missing_elements(&endpoint(3, 6000))
                .unwrap()
                .len(),
            4
        );

        sh("nft flush ruleset");
        let missing = firewall::missing_elements(&live).unwrap();
        assert_eq!(missing.len(), 5, "{missing:?}");
        assert!(firewall::ensure_skeleton().unwrap());
        firewall::restore(&live).unwrap();
        assert!(firewall::missing_elements(&live).unwrap().is_empty());
        let addrs6 = sh("nft list set bridge nethook addrs6");
        assert!(addrs6.contains("fe80::4e:ff:fe00:2"), "{addrs6}");
    });
}

/// The host-port check per family: a publish over IPv6 (every IPv6 address, or one) is
/// refused a port an IPv6 socket holds, named with its holder, and not one only an IPv4
/// socket holds (the test socket is IPV6_V6ONLY), and the other way round.
#[test]
fn host_port_checks_look_at_the_family_a_publish_captures() {
    sandbox!("host_port_checks_look_at_the_family_a_publish_captures", {
        use nethook::kernel::hostports::busy;
        use std::net::{IpAddr, TcpListener};
        sh("ip link add nhv0 type veth peer name nhv1 && ip addr add 2001:db8::1/64 dev nhv0 nodad && ip link set nhv1 up && ip link set nhv0 up");
        let every4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let every6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let one6: IpAddr = "2001:db8::1".parse().unwrap();
        let l6 = TcpListener::bind("[2001:db8::1]:0").unwrap();
        let p6 = l6.local_addr().unwrap().port();
        let held = busy(Proto::Tcp, every6, p6)
            .unwrap()
            .expect("taken over IPv6");
        assert_eq!(held.address, "2001:db8::1");
        assert!(held.holder.contains("pid"), "{}", held.holder);
        assert!(busy(Proto::Tcp, one6, p6).unwrap().is_some());
        assert!(
            busy(Proto::Tcp, every4, p6).unwrap().is_none(),
            "IPv4 is free"
        );
        // A port of its own: the kernel may hand 127.0.0.1 the port [2001:db8::1] has.
        let l4 = std::iter::repeat_with(|| TcpListener::bind("127.0.0.1:0").unwrap())
            .find(|l| l.local_addr().unwrap().port() != p6)
            .unwrap();
        let p4 = l4.local_addr().unwrap().port();
        assert!(busy(Proto::Tcp, every4, p4).unwrap().is_some());
        assert!(
            busy(Proto::Tcp, every6, p4).unwrap().is_none(),
            "IPv6 is free"
        );
        assert!(busy(Proto::Tcp, one6, p4).unwrap().is_none());
        // UDP on ::1 is in the way of a publish on every IPv6 address (the user meant the port
        // to be theirs), not of one on another address.
        let u6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let pu = u6.local_addr().unwrap().port();
        assert!(busy(Proto::Udp, every6, pu).unwrap().is_some());
        assert!(busy(Proto::Udp, one6, pu).unwrap().is_none());
    });
}
