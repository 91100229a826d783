//! What a front end that runs as a short-lived process (the OCI hook, the CNI plugin) does
//! so that its caller waits for none of the kernel's slow parts: deferred teardown work goes
//! to a child process, and netfilter sockets go to a keeper instead of being released at
//! exit. A long-lived caller of the core does neither.

use crate::core::detach::{Deferred, Report, TeardownError};
use crate::firewall;
use crate::kernel::seam::Host;
use crate::log::{self, describe};
use crate::state::Store;
use crate::sys::process::{exit_now, fork_background, set_keeper_dir, Forked};

/// Runs `work` with this process's netfilter sockets handed to a keeper listening in the
/// run directory (see `sys::process::close_after_exit`; without it each child would wait
/// out its own grace period) and their release deferred: closing a netfilter socket after
/// a delete waits a grace period. The keeper binds only after the work took the lock, which
/// checked the directory.
pub(crate) fn with_socket_keeper<T>(store: &Store, work: impl FnOnce() -> T) -> T {
    set_keeper_dir(store.run_dir());
    firewall::defer_netfilter_release();
    let out = work();
    firewall::release_deferred_sockets();
    out
}

/// Deferred teardown work goes to a child process, which holds the store's lock until it
/// is done; this process returns at once (its stdio is the child's no more: the child reads
/// and writes /dev/null). A fork that fails is not worth failing a teardown for: the work
/// is done here, only later. `what` names the operation in the child's log line.
pub(crate) fn finish_later(work: Deferred, what: &str) -> Result<Report, TeardownError> {
    match fork_background() {
        Ok(Forked::Parent) => Ok(work.leave_to_child()),
        Ok(Forked::Child) => finish_in_child(work.without_timing(), what),
        Err(_) => work.run(&Host::new()),
    }
}

/// The child's side: finishes, lets go of the lock (`Deferred::run` does), exits.
fn finish_in_child(work: Deferred, what: &str) -> ! {
    // Nobody reads the caller's stderr any more.
    log::to_syslog();
    let id = work.endpoint().id.clone();
    // A route socket of its own (`Host::new` opens one on first use): one shared with the
    // parent across the fork could hand either process the other's replies.
    let result = work.run(&Host::new());
    if let Err(e) = &result {
        log::line(&format!(
            "{id}: {what} left unfinished, `nethook gc` will retry it: {}",
            describe(e)
        ));
    }
    // This copy holds duplicates of the parent's netfilter sockets, and its own if the
    // work deleted elements. Outliving the keeper the parent handed its copies to, its exit
    // would be their last release and stall other nftables commits (see
    // `close_after_exit`).
    firewall::release_deferred_sockets();
    exit_now(u8::from(result.is_err()))
}
