//! Two nodes of one cluster (issue 19, "Multi-host"): each node is a network namespace of its
//! own, with its own nethook state directories and its own nftables, running a network for its
//! own subnet of the cluster CIDR 10.244.0.0/16 with `--no-masquerade-to 10.244.0.0/16`. The
//! nodes share a link (192.168.50.0/24, a bridge in the sandbox playing the switch) and route
//! each other's pod subnet, as cloud routes or a routing daemon would. A third namespace on the
//! link is the outside world, which has no route to the pods.
//!
//! Pods on different nodes reach each other with their own addresses, both ways; what they
//! send to the outside world is still masqueraded to their node's address. Once with the
//! nodes running the OCI hook (network made by `network create`), once running the CNI
//! plugin (network defined by the first ADD from the conflist's `subnet` and
//! `noMasqueradeTo`).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

const CLUSTER: &str = "10.244.0.0/16";

/// A node: a network namespace (a sleeping process holds it) and nethook's directories.
/// Which front end the nodes run.
#[derive(Clone, Copy, Debug)]
enum Front {
    Hook,
    Cni,
}

struct Node {
    ns: FakeContainer,
    nethook: Nethook,
    /// Its address on the node link.
    addr: &'static str,
    /// Its pod subnet.
    subnet: &'static str,
}

impl Node {
    fn new(name: &str, addr: &'static str, subnet: &'static str) -> Self {
        Node {
            ns: FakeContainer::start(name),
            nethook: Nethook::new(&format!("multinode-{name}")),
            addr,
            subnet,
        }
    }

    /// The prefix that runs a command in the node's namespace.
    fn prefix(&self) -> String {
        ns(&self.ns)
    }

    /// nethook inside the node's namespace, with the node's directories and an environment
    /// as empty as a runtime gives hooks.
    fn nethook(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let mut child = Command::new(sh("command -v nsenter").trim())
            .arg(format!("--net=/proc/{}/ns/net", self.ns.pid()))
            .arg(env!("CARGO_BIN_EXE_nethook"))
            .args(args)
            .env_clear()
            .env("NETHOOK_RUN_DIR", self.nethook.run_dir())
            .env("NETHOOK_CONFIG_DIR", self.nethook.config_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nethook in the node");
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes());
        let out = child.wait_with_output().expect("wait nethook");
        self.nethook.settle();
        out
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.nethook(args, &[], "");
        assert!(
            out.status.success(),
            "nethook {args:?} on the node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pod network of this node: its subnet, the cluster not masqueraded.
    fn create_network(&self) {
        self.cli(&[
            "network",
            "create",
            "pods",
            "--subnet",
            self.subnet,
            "--no-masquerade-to",
            CLUSTER,
        ]);
    }

    /// The conflist's plugin configuration a kubelet on this node would pass.
    fn cni_conf(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "pods",
            "type": "nethook",
            "subnet": self.subnet,
            "noMasqueradeTo": [CLUSTER],
            "runDir": self.nethook.run_dir(),
            "configDir": self.nethook.config_dir(),
        })
        .to_string()
    }

    /// Sets a pod up on this node through the hook or the CNI plugin.
    fn attach(&self, front: Front, pod: &FakeContainer) {
        let out = match front {
            Front::Hook => {
                let state = pod.state("creating", &[("nethook.network", "pods")]);
                self.nethook(&["hook"], &[], &state)
            }
            Front::Cni => self.cni("ADD", pod),
        };
        assert!(
            out.status.success(),
            "setup of {} on the node: {}{}",
            pod.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn detach(&self, front: Front, pod: &FakeContainer) {
        let out = match front {
            Front::Hook => self.nethook(&["hook"], &[], &pod.state("stopped", &[])),
            Front::Cni => self.cni("DEL", pod),
        };
        assert!(
            out.status.success(),
            "teardown of {} on the node: {}{}",
            pod.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One CNI call for `pod` (eth0), with only the CNI variables, as runtimes call plugins.
    fn cni(&self, command: &str, pod: &FakeContainer) -> Output {
        self.cni_with(command, pod, &self.cni_conf())
    }

    fn cni_with(&self, command: &str, pod: &FakeContainer, conf: &str) -> Output {
        let netns = pod.netns().display().to_string();
        self.nethook(
            &[],
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &pod.id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
            ],
            conf,
        )
    }

    fn nft(&self, what: &str) -> String {
        sh(&format!("{} nft list {what}", self.prefix()))
    }
}

/// The IPv4 address of a pod's eth0.
fn pod_addr(pod: &FakeContainer) -> String {
    let out = pod.sh("ip -4 -o addr show dev eth0");
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on eth0 of {}: {out}", pod.id))
        .to_owned()
}

/// The node link and the outside world: a bridge in the sandbox joins node1, node2 and
/// `outside` (192.168.50.3, no route to any pod); each node routes the other's pod subnet.
fn wire(nodes: [&Node; 2], outside: &FakeContainer) {
    sh("ip link add lan type bridge && ip link set lan up");
    let ends = [
        (nodes[0].ns.pid(), nodes[0].addr),
        (nodes[1].ns.pid(), nodes[1].addr),
        (outside.pid(), "192.168.50.3"),
    ];
    for (i, (pid, addr)) in ends.into_iter().enumerate() {
        sh(&format!(
            "ip link add lan{i} type veth peer name eth0 netns {pid} && \
             ip link set lan{i} master lan up && \
             nsenter -t {pid} -n sh -c 'ip link set lo up && ip addr add {addr}/24 dev eth0 && ip link set eth0 up'"
        ));
    }
    for (here, there) in [(nodes[0], nodes[1]), (nodes[1], nodes[0])] {
        here.ns
            .sh(&format!("ip route add {} via {}", there.subnet, there.addr));
    }
}

/// What a TCP server in `to` saw as the address of a client in `from`.
fn peer_seen(from: &FakeContainer, to_prefix: &str, to_addr: &str, port: u16) -> String {
    let mut srv = tcp_server(to_prefix, port, 1);
    let answer = tcp_client(&ns(from), to_addr, port);
    let _ = srv.wait();
    answer
}

#[test]
fn pods_on_two_nodes_keep_their_addresses_and_the_outside_sees_the_node() {
    sandbox(
        "pods_on_two_nodes_keep_their_addresses_and_the_outside_sees_the_node",
        || two_nodes(Front::Hook),
    );
}

#[test]
fn pods_on_two_nodes_through_the_cni_plugin() {
    sandbox("pods_on_two_nodes_through_the_cni_plugin", || {
        two_nodes(Front::Cni)
    });
}

fn two_nodes(front: Front) {
    if !needs("python3 && command -v nsenter && command -v nft") {
        return;
    }
    let node1 = Node::new("node1", "192.168.50.1", "10.244.1.0/24");
    let node2 = Node::new("node2", "192.168.50.2", "10.244.2.0/24");
    let outside = FakeContainer::start("outside");
    wire([&node1, &node2], &outside);
    let pod1 = FakeContainer::start("pod1");
    let pod2 = FakeContainer::start("pod2");
    for (node, pod) in [(&node1, &pod1), (&node2, &pod2)] {
        if let Front::Hook = front {
            node.create_network();
        }
        node.attach(front, pod);
        // The hook's network from `network create`, the plugin's from the conflist.
        let inspect = node.cli(&["network", "inspect", "pods"]);
        assert!(inspect.contains(CLUSTER), "{front:?}: {inspect}");
    }
    let (a1, a2) = (pod_addr(&pod1), pod_addr(&pod2));
    assert!(a1.starts_with("10.244.1.") && a2.starts_with("10.244.2."));
    // Each node's own tables hold its own exception.
    let set = node1.nft("set inet nethook nomasq4");
    assert!(set.contains("10.244.1.0/24 . 10.244.0.0/16"), "{set}");
    assert!(!set.contains("10.244.2.0/24"), "{set}");

    // Pod to pod across the nodes, both ways: the receiver sees the sender's own address.
    assert_eq!(
        peer_seen(&pod1, &ns(&pod2), &a2, 7001),
        format!("from {a1}")
    );
    assert_eq!(
        peer_seen(&pod2, &ns(&pod1), &a1, 7002),
        format!("from {a2}")
    );
    // To the outside world: masqueraded to the node's address.
    let out = ns(&outside);
    assert_eq!(
        peer_seen(&pod1, &out, "192.168.50.3", 7003),
        "from 192.168.50.1"
    );
    assert_eq!(
        peer_seen(&pod2, &out, "192.168.50.3", 7004),
        "from 192.168.50.2"
    );
    // The outside world reaches no pod directly, even with a route to one: only the
    // cluster CIDR is let in.
    outside.sh(&format!("ip route add {CLUSTER} via 192.168.50.2"));
    let mut srv = Server(tcp_server(&ns(&pod2), 7005, 1));
    assert!(
        try_tcp(&out, &a2, 7005, 5).is_err(),
        "the outside reached pod2"
    );
    let _ = srv.0.kill();

    // The network's last pod takes the exception with it.
    node1.detach(front, &pod1);
    let set = node1.nft("set inet nethook nomasq4");
    assert!(!set.contains("10.244.1.0/24"), "{set}");
    node2.detach(front, &pod2);
}

/// The conflist's `noMasqueradeTo` defines the network with its first ADD; a later conflist
/// that asks for other exceptions is refused (code 7) rather than changing the network under
/// its pods, as one that asks for another subnet is; a bad CIDR is refused in one line.
#[test]
fn a_conflist_asking_for_other_exceptions_is_refused() {
    sandbox("a_conflist_asking_for_other_exceptions_is_refused", || {
        let node = Node::new("node1", "192.168.50.1", "10.244.1.0/24");
        let pod = FakeContainer::start("pod1");
        node.attach(Front::Cni, &pod);
        let other = FakeContainer::start("pod2");
        for (asked, says) in [
            (
                "10.96.0.0/12",
                "already defined with noMasqueradeTo [10.244.0.0/16]",
            ),
            ("10.244.1.0/16", "did you mean 10.244.0.0/16?"),
        ] {
            let conf = node.cni_conf().replace(CLUSTER, asked);
            let out = node.cni_with("ADD", &other, &conf);
            assert!(!out.status.success());
            let err: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("CNI error JSON");
            let msg = err["msg"].as_str().unwrap_or_default();
            assert_eq!(err["code"], 7, "{err}");
            assert!(msg.contains(says) && !msg.contains('\n'), "{msg}");
        }
        // A conflist without exceptions uses the network as it is, exceptions included.
        let none = node.cni_conf().replace(&format!("\"{CLUSTER}\""), "");
        assert!(none.contains("\"noMasqueradeTo\":[]"), "{none}");
        let out = node.cni_with("ADD", &other, &none);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let set = node.nft("set inet nethook nomasq4");
        assert!(set.contains("10.244.1.0/24 . 10.244.0.0/16"), "{set}");
        node.detach(Front::Cni, &other);
        node.detach(Front::Cni, &pod);
    });
}
