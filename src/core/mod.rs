//! The core: turns a request into an endpoint and back. Plans are plain data (`plan`),
//! recorded before the kernel is touched (`attach`), undone from the record (`detach`,
//! `gc`, `recover`). Nothing here knows OCI or CNI.

pub mod attach;
pub mod check;
pub mod detach;
pub mod elements;
pub mod gc;
pub mod list;
pub mod members;
pub mod names;
pub mod network;
pub mod network_update;
pub mod plan;
pub mod recover;
pub mod request;
pub mod services;
#[cfg(test)]
pub(crate) mod tests;
