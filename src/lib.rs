//! nethook: gives containers a network, from an OCI hook (and, later, as a CNI plugin).
//!
//! The folders are the layers, each using only the ones below it:
//!
//! - `frontend`: what the outside speaks (OCI state JSON, hooks.d files, bundles) turned
//!   into one `core::request::Request`; process-lifetime decisions live here.
//! - `core`: plan (pure) → record (write-ahead) → apply → undo: `attach`, `detach`, `gc`,
//!   `list`, `recover`.
//! - `driver`: how an endpoint's link is made for a kind of network (bridge today).
//! - `firewall`: the nftables skeleton and per-endpoint elements, one batch per operation.
//! - `state`: network definitions, endpoint records, IPAM files, port claims, the lock.
//! - `kernel`: typed operations on links, namespaces, sysctls and conntrack.
//! - `resolver`: the DNS resolver process (`nethook dns`) and what hooks call to feed it.
//! - `model`: the plain data every layer shares (networks, endpoints, ports, ids, MACs).
//! - `sys`: the only place with `unsafe`.
#![deny(unsafe_code)]
// Every `unsafe` block (all in `sys`) says why it is sound; `-D warnings` makes this an error.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod core;
pub mod driver;
pub mod failpoint;
pub mod firewall;
pub mod frontend;
pub mod kernel;
pub mod log;
pub mod model;
pub mod resolver;
pub mod state;
#[allow(unsafe_code)]
mod sys;
pub mod timing;

pub use log::describe;
pub use sys::process::exit_now;
