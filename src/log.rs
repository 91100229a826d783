//! Where nethook's one-line messages go: stderr, which the runtime shows, or the system log
//! once a teardown goes on in the background (`teardown::teardown`), where nobody reads the
//! hook's stderr any more. A hook's failure goes to both: some runtimes (crun) throw a
//! hook's stderr away and report only its exit code.

use std::error::Error;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The system log's socket, `/dev/log` unless this names another (tests listen on their own).
pub const SYSLOG_SOCKET_ENV: &str = "NETHOOK_SYSLOG_SOCKET";

/// Sends every later message to the system log.
pub(crate) fn to_syslog() {
    TO_SYSLOG.store(true, Ordering::Relaxed);
}

/// Writes `nethook: <line>` (the line ends there; it should hold no newline).
pub fn line(line: &str) {
    if TO_SYSLOG.load(Ordering::Relaxed) {
        syslog(line);
    } else {
        // One write: the runtime reads the hook's stderr from a pipe, and `eprintln!` would
        // write every piece of the line separately, each a wakeup of the runtime's reader.
        let _ = std::io::stderr().write_all(format!("nethook: {line}\n").as_bytes());
    }
}

/// A hook's failure: the line for the runtime to show, and in the system log as well, with
/// the container it was about when that is known (the log has no other context).
pub fn failure(line: &str, container: Option<&str>) {
    self::line(line);
    if !TO_SYSLOG.load(Ordering::Relaxed) {
        match container {
            Some(id) => syslog(&format!("container {id}: {line}")),
            None => syslog(line),
        }
    }
}

/// A notice for the system log only (severity notice): something an administrator should
/// be able to find later, that is no failure and must not add a line to a hook's stderr.
pub fn notice(line: &str) {
    send_syslog(29, line);
}

fn syslog(line: &str) {
    send_syslog(27, line);
}

fn send_syslog(priority: u8, line: &str) {
    // <27>: facility daemon, severity error; <29>: daemon, notice. Best effort: without a system log the message
    // has nowhere to go (and a background teardown's record stays for `nethook gc`).
    let socket = std::env::var_os(SYSLOG_SOCKET_ENV).unwrap_or_else(|| "/dev/log".into());
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(
            format!("<{priority}>nethook[{}]: {line}", std::process::id()).as_bytes(),
            socket,
        );
    }
}

/// An error and its causes on one line, each cause once (many errors already quote theirs).
pub fn describe(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer quoting: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn causes_join_on_one_line_without_repeating_what_the_message_quotes() {
        let io = || std::io::Error::other("no\nway");
        assert_eq!(describe(&Outer(io())), "outer: no way");
        assert_eq!(describe(&Quoting(io())), "outer quoting: no way");
    }
}
