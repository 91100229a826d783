//! The OCI hook front end (`nethook hook`): reads the container state on stdin, runs the
//! core, and makes the decisions that depend on being a short-lived process a runtime
//! waits for: a teardown's deferred work goes to a child process, and netfilter sockets
//! are handed to a keeper so that exiting does not wait for the kernel.
//!
//! Exit codes: 0 done, 1 the kernel or state said no, 2 the input was bad.

use std::io;

use crate::core::attach;
use crate::core::detach::{self, Deferred, Teardown, TeardownError};
use crate::firewall;
use crate::frontend::oci::{self, Stage};
use crate::kernel::seam::Host;
use crate::log::{self, describe};
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};
use crate::sys::process::{exit_now, fork_background, set_keeper_dir, Forked};

/// Runs the hook and returns its exit code. The caller exits with it at once
/// (`exit_now`): the process is done.
///
/// Before its work, it lets its netfilter sockets go to a keeper listening in the run
/// directory (see `sys::process::close_after_exit`; without it each hook's child would
/// wait out its own grace period), and defers their release: closing a netfilter socket
/// after a delete waits a grace period. The keeper binds only after the hook took the
/// lock, which checked the directory. A long-lived caller of the core does neither.
pub fn run(store: &Store, stage: Option<Stage>) -> u8 {
    set_keeper_dir(store.run_dir());
    firewall::defer_netfilter_release();
    let code = hook(store, stage);
    firewall::release_deferred_sockets();
    code
}

fn hook(store: &Store, stage: Option<Stage>) -> u8 {
    let input = match oci::read_state(io::stdin().lock(), stage) {
        Ok(i) => i,
        Err(e) => return fail(&e, 2, None),
    };
    let id = Some(input.id.as_str());
    let kernel = Host::new();
    match input.stage {
        Stage::Setup => {
            let req = match input.setup_request() {
                Ok(r) => r,
                Err(e) => return fail(&e, 2, id),
            };
            if req.options.disabled {
                return 0;
            }
            match attach::setup(store, &kernel, &req) {
                Ok(ep) => {
                    let addr = ep
                        .ipv4
                        .map(|a| format!("{}/{}", a.address, a.prefix))
                        .unwrap_or_default();
                    log::line(&format!(
                        "{} on {}: {} {addr} (host {})",
                        ep.id, ep.network, ep.interface, ep.host_interface
                    ));
                    0
                }
                Err(e) => fail(&e, 1, id),
            }
        }
        Stage::Teardown => match detach::teardown(store, &kernel, &input.id) {
            Ok(Teardown::Done(_)) => 0,
            Ok(Teardown::Deferred(work)) => match finish_later(*work) {
                Ok(_) => 0,
                Err(e) => fail(&e, 1, id),
            },
            Err(TeardownError::Store(e))
                if e.unreadable_file() == Some(&store.endpoint_path(&input.id)) =>
            {
                quarantine_record(store, &input.id, &e)
            }
            Err(e) => fail(&e, 1, id),
        },
    }
}

/// The hook's answer to deferred teardown work: a child process does it, holding the
/// store's lock, and the hook returns; the runtime waits for none of it. A fork that fails
/// is not worth failing a teardown for: the work is done here, only later.
fn finish_later(work: Deferred) -> Result<detach::Report, TeardownError> {
    match fork_background() {
        Ok(Forked::Parent) => Ok(work.leave_to_child()),
        Ok(Forked::Child) => finish_in_child(work.without_timing()),
        Err(_) => work.run(&Host::new()),
    }
}

/// The child's side: finishes, lets go of the lock (`Deferred::run` does), exits.
fn finish_in_child(work: Deferred) -> ! {
    // Nobody reads the hook's stderr any more.
    log::to_syslog();
    let id = work.endpoint().id.clone();
    // A route socket of its own (`Host::new` opens one on first use): one shared with the
    // parent across the fork could hand either process the other's replies.
    let result = work.run(&Host::new());
    if let Err(e) = &result {
        log::line(&format!(
            "{id}: teardown left unfinished, `nethook gc` will retry it: {}",
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

/// poststop of a container whose record cannot be read: nothing says what to undo, so the
/// record is moved aside (or it would fail every later reader and this container's id for
/// good) and the hook fails with one line saying so. Exit 1, not 0: the runtime should show
/// it, as the container's address stays held until `nethook gc` (its veth goes with its
/// namespace, but its published ports' elements are not known any more).
fn quarantine_record(store: &Store, id: &ContainerId, e: &StoreError) -> u8 {
    let path = store.endpoint_path(id);
    let moved = store
        .lock()
        .and_then(|_lock| match store.load_endpoint(id) {
            // Still unreadable under the lock (not replaced by a new setup meanwhile).
            Err(again) if again.unreadable_file() == Some(&path) => {
                store.quarantine(&path).map(Some)
            }
            _ => Ok(None),
        });
    let line = match moved {
        Ok(Some(to)) => format!(
            "cannot tear down: endpoint record {} is unreadable ({}); moved it to {}; run `nethook gc` to free the container's address",
            path.display(),
            e.reason(),
            to.display()
        ),
        // Gone, or readable now: a setup with this id replaced it meanwhile, and that is a
        // new container's record, not this poststop's to undo.
        Ok(None) => return 0,
        Err(qe) => format!(
            "cannot tear down: {}; moving it aside failed too: {}",
            describe(e),
            describe(&qe)
        ),
    };
    log::failure(&line, Some(id.as_str()));
    1
}

/// One line: the error and its causes, joined.
fn fail(e: &dyn std::error::Error, code: u8, container: Option<&str>) -> u8 {
    log::failure(&describe(e), container);
    code
}
