//! The OCI hook front end (`nethook hook`): reads the container state on stdin, runs the
//! core, and makes the decisions that depend on being a short-lived process a runtime
//! waits for: a teardown's deferred work goes to a child process, and netfilter sockets
//! are handed to a keeper so that exiting does not wait for the kernel.
//!
//! Exit codes: 0 done, 1 the kernel or state said no, 2 the input was bad.

use std::io;

use crate::core::attach;
use crate::core::detach::{self, Teardown, TeardownError};
use crate::frontend::oci::{self, Stage};
use crate::frontend::process::{finish_later, with_socket_keeper};
use crate::kernel::seam::Host;
use crate::log::{self, describe};
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};

/// Runs the hook and returns its exit code. The caller exits with it at once
/// (`exit_now`): the process is done. Its netfilter sockets go to a keeper
/// (`process::with_socket_keeper`).
pub fn run(store: &Store, stage: Option<Stage>) -> u8 {
    with_socket_keeper(store, || hook(store, stage))
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
            if req.options.write_resolv_conf {
                if let Err(e) = crate::frontend::resolv::check(store, &req) {
                    return fail(&e, 2, id);
                }
            }
            match attach::setup(store, &kernel, &req) {
                Ok(ep) => {
                    if req.options.write_resolv_conf {
                        if let Err(e) = crate::frontend::resolv::write(store, &kernel, &input, &ep)
                        {
                            undo_setup(store, &kernel, &input.id);
                            return fail(&e, 1, id);
                        }
                    }
                    let v4 = ep
                        .ipv4
                        .zip(ep.container_prefix())
                        .map(|(a, prefix)| format!("{}/{prefix}", a.address));
                    let v6 = ep.ipv6.map(|a| format!("{}/{}", a.address, a.prefix));
                    let addr = [v4, v6].into_iter().flatten().collect::<Vec<_>>().join(" ");
                    // A macvlan endpoint has no host interface.
                    let host = match ep.host_interface.as_str() {
                        "" => String::new(),
                        h => format!(" (host {h})"),
                    };
                    log::line(&format!(
                        "{} on {}: {} {addr}{host}",
                        ep.id, ep.network, ep.interface
                    ));
                    0
                }
                Err(e) => fail(&e, 1, id),
            }
        }
        Stage::Teardown => match detach::teardown(store, &kernel, &input.id) {
            Ok(Teardown::Done(_)) => 0,
            Ok(Teardown::Deferred(work)) => match finish_later(*work, "teardown") {
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

/// Takes back a setup the hook cannot finish (its resolv.conf could not be written).
fn undo_setup(store: &Store, kernel: &Host, id: &ContainerId) {
    match detach::teardown(store, kernel, id) {
        Ok(Teardown::Done(_)) => {}
        Ok(Teardown::Deferred(work)) => {
            if let Err(e) = finish_later(*work, "teardown") {
                log::line(&format!(
                    "{id}: could not finish undoing its setup: {}",
                    describe(&e)
                ));
            }
        }
        Err(e) => log::line(&format!(
            "{id}: could not undo its setup: {}; run `nethook gc`",
            describe(&e)
        )),
    }
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
