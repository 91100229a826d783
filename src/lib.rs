//! nethook: gives OCI containers a network from an OCI hook.
//!
//! Data flows parse (`oci`, `options`) → plan (`plan`, `ipam`) → record (`store`) →
//! apply (`link`, `netns`, `sysctl`), and back out through `teardown` and `gc`.

pub mod endpoint;
pub mod failpoint;
pub mod gc;
pub mod ids;
pub mod install;
pub mod ipam;
pub mod link;
pub mod mac;
pub mod netns;
pub mod network;
pub mod oci;
pub mod options;
pub mod plan;
pub mod ports;
pub mod request;
pub mod setup;
pub mod store;
pub mod sysctl;
pub mod teardown;
pub mod view;
