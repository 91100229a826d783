//! The resolver (`nethook dns`): answers containers' DNS queries for the names of the other
//! endpoints on their network and forwards everything else to the host's upstream servers.
//!
//! One long-lived process per host, started by the first hook that needs it (`start`) and
//! fed by later hooks over a unix datagram socket (`deliver`), both under nethook's lock.
//! It listens only on the gateway addresses it is given (UDP and TCP port 53, never a
//! wildcard) and answers a query from the zone of the address it arrived on, so one
//! network never sees another's names. Local answers have TTL 0 (a container's address
//! changes with it); forwarded answers are the upstream's bytes, unchanged.
//!
//! - `client`: `deliver` and `start`, what the hooks call.
//! - `daemon`: the process itself: the control loop and the zones' state.
//! - `zone`: one network's names and the answer to one query (pure).
//! - `listen`: the sockets on port 53, their threads, and who holds a port we could not get.
//! - `upstream`: the servers from resolv.conf and forwarding to them.

mod client;
mod daemon;
mod holder;
mod listen;
mod upstream;
mod zone;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use client::{command, deliver, start, stop_hung};
pub use daemon::run;

/// Everything the resolver serves, given once at its start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub zones: Vec<Zone>,
}

/// One network: the names of its endpoints, answered on its gateway addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// The network's name, also the DNS domain of its endpoints (`web.NETWORK`).
    pub network: String,
    /// The gateway addresses the resolver listens on for this network (port 53).
    pub listen: Vec<IpAddr>,
    /// The network's subnets: only their hosts are answered (others get REFUSED), so a
    /// container that routes to another network's gateway learns nothing there, and the
    /// resolver is no open resolver for whatever else reaches the address. Empty: anyone.
    #[serde(default)]
    pub clients: Vec<ipnetwork::IpNetwork>,
    pub entries: Vec<Entry>,
}

/// The key prefix of a service's entry: a zone with only those has no container, and the
/// resolver exits when no zone has one.
pub const SERVICE_KEY_PREFIX: &str = "svc:";

/// One endpoint (or service) and the names it answers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The endpoint's key, or `svc:NAME`: what `Update::Remove` names.
    pub key: String,
    /// The name and the aliases, each answered alone and as `NAME.NETWORK`.
    pub names: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// A change to what the resolver serves, applied in order with the others of a `deliver`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// Adds the entry to the network's zone, or replaces the one with the same key.
    Upsert { network: String, entry: Entry },
    /// Removes the entry with this key (no error when there is none).
    Remove { network: String, key: String },
    /// Adds a network, or replaces it whole: its listen addresses *and* its entries are
    /// the ones given (entries of the old zone not in it are gone).
    Zone(Zone),
    /// Removes a network: its names and its listen sockets.
    DropZone { network: String },
}

/// What `deliver` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The resolver applied the updates.
    Applied,
    /// The resolver applied them, found no entry left in any zone and exited; `deliver`
    /// removed its control socket and pid file, so the next `deliver` says `NotRunning`.
    Exited,
    /// No resolver runs: call `start` with the whole snapshot.
    NotRunning,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("DNS resolver: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The resolver refused the updates (one line from it, e.g. a port held by another).
    #[error("{0}")]
    Refused(String),
    #[error("DNS resolver (pid {pid}) did not answer within {ms} ms: kill it (the next container start runs a new one)")]
    NoAnswer { pid: String, ms: u128 },
    /// The resolver could not start (its own line, e.g. a port held by another server).
    #[error("{0}")]
    Start(String),
    #[error("DNS resolver: the updates are {0} bytes, more than a control message can carry (4 MiB): send fewer at once")]
    TooLarge(usize),
    #[error("DNS resolver: bad message: {0}")]
    Protocol(String),
}

/// The resolver's directory under the run dir: its control socket and pid file.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("dns")
}

fn ctl_path(run_dir: &Path) -> PathBuf {
    dir(run_dir).join("ctl")
}

/// Whether a resolver may be running: its control socket is there (a dead one's is
/// removed by the next `deliver`, `start` or `stop_hung`).
pub fn runs(run_dir: &Path) -> bool {
    ctl_path(run_dir).exists()
}

fn pid_path(run_dir: &Path) -> PathBuf {
    dir(run_dir).join("pid")
}

/// The largest control datagram: a zone of a few thousand entries is a few hundred KiB.
const MAX_CONTROL_BYTES: usize = 4 << 20;

/// The control protocol: a request is `{"updates": [...]}` (JSON); the reply one line.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    updates: Vec<Update>,
}

const REPLY_OK: &str = "ok";
const REPLY_EXITING: &str = "exiting";
/// Prefix of a refusal; the rest of the line says why.
const REPLY_ERROR: &str = "error ";
/// What the child writes on its stdout once every address is bound.
const READY: &str = "ready";
