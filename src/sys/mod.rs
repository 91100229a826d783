//! Every `unsafe` block of the crate, behind small safe functions. The rest of the crate is
//! `#![deny(unsafe_code)]`.
//!
//! - `nft`: the parts of libnftnl the `nftnl` crate does not wrap.
//! - `ifconf`: IPv4 address, flags and route ioctls for a container's interfaces.
//! - `dir`: looking for one entry of a directory without reading all of it.
//! - `fsstat`: whether an open file is a mount point (`statx`), for writes into a
//!   container's root.
//! - `process`: handing sockets, or the end of a teardown, to a child that outlives the hook.
//! - `keeper`: the one such child that holds a burst of hooks' netfilter sockets.
//!
//! The libmnl functions libnftnl calls are the `mnl-sys` crate (crates/mnl-sys), named here so
//! that rustc links it into every binary that has libnftnl: nftnl-sys depends on it but never
//! names it in code, and rustc leaves out crates nobody names.

extern crate mnl_sys;

pub(crate) mod dir;
pub(crate) mod fsstat;
pub(crate) mod ifconf;
mod keeper;
pub(crate) mod nft;
pub(crate) mod process;
