//! Front ends: turn what a runtime hands over into a `core::request::Request`, and write
//! the files that make runtimes call nethook.

pub mod annotations;
pub mod cni;
pub mod hook;
pub mod install;
pub mod network_cli;
pub mod oci;
mod process;
pub mod resolv;
pub mod service_cli;
