//! nethook: gives OCI containers a network from an OCI hook.
//!
//! Data flows parse (`oci`, `options`) → plan (`plan`, `ipam`) → record (`store`) →
//! apply (`link`, `netns`, `sysctl`, `firewall`), and back out through `teardown`, `conntrack`
//! and `gc`. All unsafe code lives in `sys`.
#![deny(unsafe_code)]

pub mod claims;
pub mod conntrack;
pub mod endpoint;
pub mod failpoint;
pub mod firewall;
pub mod gc;
pub mod hostports;
pub mod ids;
pub mod install;
pub mod ipam;
pub mod link;
pub mod log;
pub mod mac;
pub mod netns;
pub mod network;
pub mod oci;
pub mod options;
pub mod plan;
pub mod ports;
pub mod recover;
pub mod request;
pub mod setup;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod sysctl;

pub use log::describe;
pub use sys::process::exit_now;
pub mod teardown;
pub mod timing;
pub mod view;
