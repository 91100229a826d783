//! What hooks call, under nethook's lock: `deliver` updates to the running resolver, or
//! `start` one with the whole snapshot when none runs.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};

use super::{
    ctl_path, dir, pid_path, Delivery, Request, ResolverError, Snapshot, Update, MAX_CONTROL_BYTES,
    READY, REPLY_ERROR, REPLY_EXITING, REPLY_OK,
};

/// How long the resolver has to apply a request and answer. It takes microseconds to a few
/// milliseconds (a whole zone of 2000 entries: ~7 ms; binding a new address is part of it);
/// a hook has its runtime's timeout (often 2 s, sometimes less) to replace one that hangs.
const ACK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a new resolver has to bind its addresses and say "ready".
const READY_TIMEOUT: Duration = Duration::from_millis(1200);

/// Where systemd runs, and its `systemd-run` (netavark checks the same directory).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";
const SYSTEMD_RUN: [&str; 2] = ["/usr/bin/systemd-run", "/bin/systemd-run"];

/// Sends the updates to the running resolver and waits for its answer.
pub fn deliver(run_dir: &Path, updates: &[Update]) -> Result<Delivery, ResolverError> {
    let ctl = ctl_path(run_dir);
    let request = serde_json::to_vec(&Request {
        updates: updates.to_vec(),
    })
    .map_err(|e| ResolverError::Protocol(e.to_string()))?;
    if request.len() > MAX_CONTROL_BYTES {
        return Err(ResolverError::TooLarge(request.len()));
    }
    let client = ClientSocket::bind(run_dir)?;
    let sock = &client.sock;
    // A datagram must fit the send buffer whole; root may raise it past wmem_max.
    let want = request.len() + (64 << 10);
    if setsockopt(sock, sockopt::SndBufForce, &want).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &want);
    }
    let timeouts = sock
        .set_read_timeout(Some(ACK_TIMEOUT))
        .and_then(|()| sock.set_write_timeout(Some(ACK_TIMEOUT)));
    timeouts.map_err(io("set a timeout on", &client.path))?;
    match sock.send_to(&request, &ctl) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Delivery::NotRunning)
        }
        Err(e) => return Err(io("send to", &ctl)(e)),
    }
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = match sock.recv(&mut buf) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ResolverError::NoAnswer {
                pid: running_pid(run_dir),
                ms: started.elapsed().as_millis(),
            })
        }
        Err(e) => return Err(io("read the answer on", &client.path)(e)),
    };
    let reply = String::from_utf8_lossy(&buf[..n]);
    match reply.as_ref() {
        REPLY_OK => Ok(Delivery::Applied),
        REPLY_EXITING => {
            // Still under the caller's lock: the next hook finds no resolver and starts
            // a fresh one, never this exiting one.
            let _ = std::fs::remove_file(&ctl);
            let _ = std::fs::remove_file(pid_path(run_dir));
            Ok(Delivery::Exited)
        }
        r => match r.strip_prefix(REPLY_ERROR) {
            Some(why) => Err(ResolverError::Refused(why.to_owned())),
            None => Err(ResolverError::Protocol(format!("unexpected answer {r:?}"))),
        },
    }
}

/// The pid in the resolver's pid file, for messages.
fn running_pid(run_dir: &Path) -> String {
    std::fs::read_to_string(pid_path(run_dir))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The client's own datagram address, for the answer; removed on drop.
struct ClientSocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl ClientSocket {
    fn bind(run_dir: &Path) -> Result<Self, ResolverError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir(run_dir).join(format!("client.{}.{n}", std::process::id()));
        // A leftover of a process that had our pid and died before removing it.
        let _ = std::fs::remove_file(&path);
        match UnixDatagram::bind(&path) {
            Ok(sock) => Ok(ClientSocket { sock, path }),
            // No directory: no resolver was ever started here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientSocket {
                sock: UnixDatagram::unbound().map_err(io("open a socket for", &path))?,
                path: PathBuf::new(),
            }),
            Err(e) => Err(io("bind", &path)(e)),
        }
    }
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Ends a resolver that did not answer (`ResolverError::NoAnswer`), so that `start` can
/// bind its ports: SIGKILL, once `/proc/PID/comm` says it is one, then a wait (up to 0.3 s)
/// until it has exited, which is when the kernel closes its sockets. Its files go too.
pub fn stop_hung(run_dir: &Path, pid: &str) -> Result<(), ResolverError> {
    // Something holds the control socket (it took the request), so it is not dead; a pid
    // that does not name a resolver cannot be ended safely, and starting another one would
    // only meet its ports.
    let n = pid.trim().parse::<i32>().ok().filter(|n| {
        std::fs::read_to_string(format!("/proc/{n}/comm")).is_ok_and(|c| c.trim() == "nethook-dns")
    });
    let Some(n) = n else {
        return Err(ResolverError::Start(format!(
            "the DNS resolver does not answer and {} does not name it (pid {pid:?}); end the process named nethook-dns (`pkill -x nethook-dns`) and retry",
            pid_path(run_dir).display()
        )));
    };
    let _ = std::fs::remove_file(ctl_path(run_dir));
    let _ = std::fs::remove_file(pid_path(run_dir));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(n),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{n}/status")).unwrap_or_default();
        // Gone, or a zombie: either way its sockets are closed.
        if state.is_empty()
            || state
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(ResolverError::Start(format!(
        "DNS resolver (pid {n}) did not answer and did not exit after SIGKILL; the next container start tries again"
    )))
}

/// Starts a resolver for the snapshot and returns once it has bound every address, or with
/// its one-line error. A snapshot without any entry starts nothing (there is nothing to
/// answer; the resolver would exit at its first update anyway).
pub fn start(run_dir: &Path, snapshot: &Snapshot) -> Result<(), ResolverError> {
    if snapshot.zones.iter().all(|z| z.entries.is_empty()) {
        return Ok(());
    }
    let input = serde_json::to_vec(snapshot).map_err(|e| ResolverError::Protocol(e.to_string()))?;
    // A dead resolver's files: the new one binds the socket again.
    let _ = std::fs::remove_file(ctl_path(run_dir));
    let _ = std::fs::remove_file(pid_path(run_dir));
    if let Some(systemd_run) = systemd_run() {
        // Its own scope, so stopping the container's (or the runtime's) cgroup does not
        // kill it with it. `systemd-run --scope` execs the command in the same process.
        let exe = std::env::current_exe().map_err(io("find", Path::new("/proc/self/exe")))?;
        let unit = format!("nethook-dns-{}-{}", std::process::id(), unix_seconds());
        let mut cmd = Command::new(&systemd_run);
        cmd.args(["--scope", "--quiet", "--collect", "--unit", &unit, "--"])
            .arg(exe);
        match spawn(cmd, run_dir, &input) {
            Ok(pid) => {
                crate::log::notice(&format!(
                    "DNS resolver (pid {pid}) started in scope {unit}.scope"
                ));
                return Ok(());
            }
            // systemd-run itself failed (it says so on stderr; the resolver on stdout).
            Err(Failed::Silent(why)) => {
                crate::log::notice(&format!(
                    "DNS resolver: {why}; starting it without a scope of its own"
                ));
            }
            Err(f) => return Err(f.into()),
        }
    }
    let pid =
        spawn(Command::new("/proc/self/exe"), run_dir, &input).map_err(ResolverError::from)?;
    crate::log::notice(&format!(
        "DNS resolver (pid {pid}) started without a systemd scope (no systemd here): it stays in the cgroup of the process that started it; if that cgroup is killed, the next container start runs it again"
    ));
    Ok(())
}

fn systemd_run() -> Option<PathBuf> {
    if !Path::new(SYSTEMD_RUNNING).is_dir() {
        return None;
    }
    SYSTEMD_RUN.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum Failed {
    /// The resolver said why it could not start (its line on stdout).
    Exited(String),
    /// The child ended (or was ended) without a line: its stderr, or what is known.
    Silent(String),
    /// It did not say it was ready in time (and was ended): no second try, which would
    /// take as long again past a runtime's hook timeout.
    TimedOut(String),
    Io(ResolverError),
}

impl From<Failed> for ResolverError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Exited(line) | Failed::Silent(line) | Failed::TimedOut(line) => {
                ResolverError::Start(line)
            }
            Failed::Io(e) => e,
        }
    }
}

/// Runs `cmd dns serve --run-dir RUN`, writes the snapshot to its stdin and waits for its
/// first line. Returns its pid once it is ready; it keeps running on its own.
fn spawn(mut cmd: Command, run_dir: &Path, input: &[u8]) -> Result<u32, Failed> {
    cmd.args(["dns", "serve", "--run-dir"])
        .arg(run_dir)
        // glibc's malloc would give each forwarding thread an arena of its own and, after
        // a large update is freed, raise its trim threshold and keep the memory: a
        // long-lived process with bursts of threads stays smaller with two arenas and a
        // fixed threshold.
        .env("MALLOC_ARENA_MAX", "2")
        .env("MALLOC_TRIM_THRESHOLD_", "131072")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Failed::Io(io("start the DNS resolver", Path::new("/proc/self/exe"))(e)))?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A child that died early closes its end; its stdout then says why.
        let _ = stdin.write_all(input);
    }
    match first_line(&mut child) {
        Some(line) if line == READY => Ok(pid),
        line => {
            // Ours to reap: it exited, or it is ended here for not answering in time.
            let _ = child.kill();
            let status = child.wait().ok();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let err = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            if let Some(l) = line.as_ref().filter(|l| !l.is_empty()) {
                return Err(Failed::Exited(l.clone()));
            }
            let why = match line {
                _ if !err.is_empty() => err.to_owned(),
                Some(_) => format!(
                    "DNS resolver exited before it was ready ({})",
                    status.map(|s| s.to_string()).unwrap_or_default()
                ),
                None => {
                    return Err(Failed::TimedOut(format!(
                        "DNS resolver (pid {pid}) did not say it was ready within {} ms; ended it",
                        READY_TIMEOUT.as_millis()
                    )))
                }
            };
            Err(Failed::Silent(why))
        }
    }
}

/// The child's first line on stdout ("" at EOF), `None` if none came in time. Reads on to
/// the end of the pipe: the resolver closes its copy right after "ready", so when this
/// returns it holds nothing of the starter's (a runtime waits for its hook's pipes).
fn first_line(child: &mut Child) -> Option<String> {
    let out = child.stdout.as_mut()?;
    let mut deadline = Instant::now() + READY_TIMEOUT;
    let mut line = Vec::new();
    let mut byte = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if line.contains(&b'\n') => break,
            Ok(0) => return None,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        match out.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => {
                if !line.contains(&b'\n') && byte[..n].contains(&b'\n') {
                    // The line is there; the end of the pipe should follow at once.
                    deadline = deadline.min(Instant::now() + Duration::from_millis(200));
                }
                if line.len() < 64 << 10 {
                    line.extend_from_slice(&byte[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&line);
    Some(text.lines().next().unwrap_or("").trim().to_owned())
}

pub(super) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ResolverError + 'a {
    move |source| ResolverError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// `nethook dns ACTION` (hidden): `serve` is the resolver itself (what `start` runs);
/// `start` (a snapshot on stdin) and `deliver` (a JSON list of updates on stdin, prints
/// applied/exited/not-running) call the functions above from the real binary, for tests
/// and for looking at a running resolver by hand.
pub fn command(run_dir: &Path, action: &str) -> u8 {
    if action == "serve" {
        return super::run(run_dir);
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        crate::log::line(&format!("reading stdin: {e}"));
        return 1;
    }
    let result = match action {
        "start" => serde_json::from_slice::<Snapshot>(&input)
            .map_err(|e| ResolverError::Protocol(e.to_string()))
            .and_then(|s| start(run_dir, &s))
            .map(|()| "started"),
        "deliver" => serde_json::from_slice::<Vec<Update>>(&input)
            .map_err(|e| ResolverError::Protocol(e.to_string()))
            .and_then(|u| deliver(run_dir, &u))
            .map(|d| match d {
                Delivery::Applied => "applied",
                Delivery::Exited => "exited",
                Delivery::NotRunning => "not-running",
            }),
        other => {
            crate::log::line(&format!(
                "dns: unknown action {other:?} (serve, start, deliver)"
            ));
            return 2;
        }
    };
    match result {
        Ok(word) => {
            println!("{word}");
            0
        }
        Err(e) => {
            crate::log::line(&crate::describe(&e));
            1
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
