//! Support for privileged tests: a sandbox network namespace per test, fake containers
//! (processes in their own netns), and a driver for the `nethook` binary.
//!
//! A test calls `sandbox!(body)`: outside the sandbox it re-executes its own test binary
//! for just this test under `unshare --net --mount`, so the scenario runs in a throwaway
//! namespace and the test runner's threads never change namespace.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod services;

pub const SANDBOX_ENV: &str = "NETHOOK_TEST_SANDBOX";

/// Runs `$body` inside a fresh sandbox namespace, or skips when the machine cannot.
#[macro_export]
macro_rules! sandbox {
    ($name:expr, $body:block) => {{
        if std::env::var_os($crate::common::SANDBOX_ENV).is_some() {
            $crate::common::sandbox_init();
            $body
        } else {
            $crate::common::run_in_sandbox($name);
        }
    }};
}

pub fn can_sandbox() -> Result<(), String> {
    if !nix_is_root() {
        return Err("not root".into());
    }
    let ok = Command::new("unshare")
        .args(["--net", "--mount", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err("unshare --net --mount does not work here".into());
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

pub fn run_in_sandbox(test_name: &str) {
    if let Err(why) = can_sandbox() {
        eprintln!("SKIP {test_name}: privileged test needs root and network namespaces ({why})");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(SANDBOX_ENV, "1")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "sandboxed run of {test_name} failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// Inside the sandbox: private mounts and loopback up.
pub fn sandbox_init() {
    sh("mount --make-rprivate / 2>/dev/null || true; ip link set lo up");
}

/// Runs a shell command in the sandbox; panics with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command and reports only whether it succeeded.
pub fn sh_ok(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when every tool named in `tools` (shell syntax: `a && command -v b`) is there;
/// otherwise says which test preconditions are missing, for a test to skip.
pub fn needs(tools: &str) -> bool {
    let ok = sh_ok(&format!("command -v {tools}"));
    if !ok {
        eprintln!("SKIP: needs {tools}");
    }
    ok
}

/// The command prefix that runs a host command inside `c`'s network namespace.
pub fn ns(c: &FakeContainer) -> String {
    format!("nsenter -t {} -n", c.pid())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nethook-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake container: a process sleeping in its own network namespace.
pub struct FakeContainer {
    pub id: String,
    child: Child,
}

impl FakeContainer {
    pub fn start(id: &str) -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("spawn unshare");
        let me = FakeContainer {
            id: id.to_owned(),
            child,
        };
        // Wait until unshare has exec'd sleep in its new namespace.
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(me.netns())
            .map(|l| l == own)
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "fake container did not get its netns"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Runs a shell command inside the container's netns.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!(
            "nsenter -t {} -n sh -c '{}'",
            self.pid(),
            cmd.replace('\'', "'\\''")
        ))
    }

    pub fn sh_ok(&self, cmd: &str) -> bool {
        sh_ok(&format!(
            "nsenter -t {} -n sh -c '{}'",
            self.pid(),
            cmd.replace('\'', "'\\''")
        ))
    }

    /// Kills the process; its netns (and the veth peer in it) goes with it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn state(&self, status: &str, annotations: &[(&str, &str)]) -> String {
        let ann: HashMap<&str, &str> = annotations.iter().copied().collect();
        serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status,
            "pid": self.pid(),
            "bundle": "/nonexistent-bundle",
            "annotations": ann,
        })
        .to_string()
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Drives the nethook binary with its own config and run directories, with an
/// environment as empty as a runtime gives hooks.
pub struct Nethook {
    pub dirs: TempDir,
}

impl Nethook {
    pub fn new(tag: &str) -> Self {
        Nethook {
            dirs: TempDir::new(tag),
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dirs.0.join("run")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dirs.0.join("etc")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nethook"));
        c.env_clear()
            .env("NETHOOK_RUN_DIR", self.run_dir())
            .env("NETHOOK_CONFIG_DIR", self.config_dir());
        c
    }

    /// Runs `nethook hook` with `state` on stdin.
    pub fn hook(&self, state: &str) -> Output {
        self.hook_with(state, &[])
    }

    pub fn hook_with(&self, state: &str, args: &[&str]) -> Output {
        self.hook_in_env(state, args, &[])
    }

    /// `hook_with`, with `env` added to the hook's environment.
    pub fn hook_in_env(&self, state: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self
            .spawn_hook_in_env(state, args, env)
            .wait_with_output()
            .expect("wait nethook");
        self.settle();
        out
    }

    /// Starts `nethook hook` with `state` on stdin (closed after it) and returns at once,
    /// for tests that run hooks side by side or watch one that might hang.
    pub fn spawn_hook(&self, state: &str) -> Child {
        self.spawn_hook_in_env(state, &[], &[])
    }

    fn spawn_hook_in_env(&self, state: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut child = self
            .command()
            .envs(env.iter().copied())
            .arg("hook")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nethook");
        // A failure to write means nethook exited without reading: that shows in its status.
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(state.as_bytes());
        child
    }

    /// Waits until no nethook process holds the store's lock. A poststop whose container
    /// has just died leaves the end of its teardown to a background child, which holds the
    /// lock until it is done: the state behind the lock is what a test checks.
    /// Waits for every nethook process at work on this store: one holding the store's
    /// lock, then every teardown finishing in a background child (which holds its mark in
    /// `deleting/` locked until the attachment's record is gone).
    pub fn settle(&self) {
        let Ok(file) = std::fs::File::open(self.run_dir().join("lock")) else {
            return;
        };
        let mut lock = fd_lock::RwLock::new(file);
        drop(lock.write().expect("take the store lock"));
        let Ok(marks) = std::fs::read_dir(self.run_dir().join("deleting")) else {
            return;
        };
        for mark in marks.flatten() {
            // Opened, not created: a mark that went meanwhile is no teardown to wait for.
            if let Ok(file) = std::fs::File::open(mark.path()) {
                file.lock_shared().expect("wait for a teardown's mark");
            }
        }
    }

    pub fn setup(&self, c: &FakeContainer, annotations: &[(&str, &str)]) {
        let out = self.hook(&c.state("creating", annotations));
        assert!(
            out.status.success(),
            "setup of {} failed: {}",
            c.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn teardown(&self, c: &FakeContainer) {
        let out = self.hook(&c.state("stopped", &[]));
        assert!(
            out.status.success(),
            "teardown of {} failed: {}",
            c.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a CLI command, returning (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command().args(args).output().expect("run nethook");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn endpoints(&self) -> Vec<serde_json::Value> {
        let (ok, out, err) = self.cli(&["ls", "--json"]);
        assert!(ok, "nethook ls failed: {err}");
        serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("ls --json is a JSON array")
    }

    pub fn endpoint(&self, id: &str) -> serde_json::Value {
        self.endpoints()
            .into_iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no endpoint {id}"))
    }

    /// Addresses allocated on `network`: the files named by an address in its IPAM
    /// directory (`last`, the round-robin cursor, is not one).
    pub fn allocations(&self, network: &str) -> usize {
        std::fs::read_dir(self.run_dir().join("ipam").join(network))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn records(&self) -> usize {
        std::fs::read_dir(self.run_dir().join("endpoints"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Host-side veth names (`nh…`) present in the sandbox.
pub fn host_veths() -> Vec<String> {
    sh("ip -o link show type veth")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("nh") || n.starts_with("nr"))
        .collect()
}

pub fn path_exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// Polls `cond` until it holds or `secs` pass; the kernel frees a dead netns's links
/// asynchronously, so "the container died" and "its veth is gone" are not one instant.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Function form of `sandbox!`: runs `body` in a fresh sandbox namespace.
pub fn sandbox(name: &str, body: impl FnOnce()) {
    if std::env::var_os(SANDBOX_ENV).is_some() {
        sandbox_init();
        body();
    } else {
        run_in_sandbox(name);
    }
}

/// Runs a shell command, returning (success, stdout+stderr).
pub fn try_sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

// ---- real traffic: tiny python servers and clients run in a namespace via a prefix
// such as `nsenter -t PID -n` (empty: the sandbox host). They answer
// "<tag>from <peer address>", so a test sees both who answered and whom it saw.

const TCP_SERVER: &str = r#"import socket,sys
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind((sys.argv[4] if len(sys.argv)>4 else '0.0.0.0',int(sys.argv[1])));s.listen(64);s.settimeout(60)
for _ in range(int(sys.argv[2])):
    c,a=s.accept();c.sendall(('%sfrom %s\n'%(sys.argv[3],a[0])).encode());c.close()"#;

const TCP_CLIENT: &str = r#"import socket,sys,time
err=None
for i in range(int(sys.argv[3])):
    try:
        c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1)
        print(c.recv(100).decode().strip());sys.exit(0)
    except OSError as e:
        err=e;time.sleep(0.1)
sys.exit('connect failed: %s'%err)"#;

const UDP_SERVER: &str = r#"import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])))
while True:
    d,a=s.recvfrom(100);s.sendto(('%sfrom %s'%(sys.argv[2],a[0])).encode(),a)"#;

const UDP_CLIENT: &str = r#"import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',int(sys.argv[3])));s.settimeout(0.2)
for i in range(int(sys.argv[4])):
    s.sendto(b'ping',(sys.argv[1],int(sys.argv[2])))
    try:
        print(s.recvfrom(100)[0].decode());sys.exit(0)
    except socket.timeout:
        pass
sys.exit('no answer')"#;

fn python(prefix: &str, script: &str, args: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", &format!("exec {prefix} python3 -c \"$NH_PY\" {args}")])
        .env("NH_PY", script);
    c
}

/// A process killed on drop (servers that would otherwise outlive a failed test).
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP server answering `conns` connections on `port` (all addresses).
pub fn tcp_server(prefix: &str, port: u16, conns: u32) -> Child {
    tagged_tcp_server(prefix, port, conns, "")
}

pub fn tagged_tcp_server(prefix: &str, port: u16, conns: u32, tag: &str) -> Child {
    python(prefix, TCP_SERVER, &format!("{port} {conns} '{tag}'"))
        .spawn()
        .expect("spawn tcp server")
}

/// TCP server bound to one address only (e.g. the host's 127.0.0.1).
pub fn tcp_server_on(prefix: &str, addr: &str, port: u16, conns: u32, tag: &str) -> Server {
    Server(
        python(
            prefix,
            TCP_SERVER,
            &format!("{port} {conns} '{tag}' {addr}"),
        )
        .spawn()
        .expect("spawn tcp server"),
    )
}

/// Connects (retrying for ~2 s while a server starts) and returns the answer; panics
/// with diagnostics when it cannot.
pub fn tcp_client(prefix: &str, addr: &str, port: u16) -> String {
    try_tcp(prefix, addr, port, 20).unwrap_or_else(|e| {
        let (_, diag) = try_sh("conntrack -L; nft list ruleset; ip -br addr; ip route");
        panic!("client {prefix} -> {addr}:{port}: {e}\n{diag}")
    })
}

/// One quick attempt set: `tries` connects 0.1 s apart.
pub fn try_tcp(prefix: &str, addr: &str, port: u16, tries: u32) -> Result<String, String> {
    let out = python(prefix, TCP_CLIENT, &format!("{addr} {port} {tries}"))
        .output()
        .expect("run tcp client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

pub fn udp_server(prefix: &str, port: u16, tag: &str) -> Server {
    Server(
        python(prefix, UDP_SERVER, &format!("{port} '{tag}'"))
            .spawn()
            .expect("spawn udp server"),
    )
}

/// Sends from a fixed source port (so a conntrack entry carries over between calls),
/// up to `tries` times 0.2 s apart.
pub fn try_udp(
    prefix: &str,
    addr: &str,
    port: u16,
    src_port: u16,
    tries: u32,
) -> Result<String, String> {
    let out = python(
        prefix,
        UDP_CLIENT,
        &format!("{addr} {port} {src_port} {tries}"),
    )
    .output()
    .expect("run udp client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
