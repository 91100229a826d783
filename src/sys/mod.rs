//! Every `unsafe` block of the crate, behind small safe functions. The rest of the crate is
//! `#![deny(unsafe_code)]`.
//!
//! - `nft`: the parts of libnftnl the `nftnl` crate does not wrap.
//! - `ifconf`: IPv4 address, flags and route ioctls for a container's interfaces.
//! - `dir`: looking for one entry of a directory without reading all of it.
//! - `process`: handing sockets, or the end of a teardown, to a child that outlives the hook.
//! - `keeper`: the one such child that holds a burst of hooks' netfilter sockets.

pub(crate) mod dir;
pub(crate) mod ifconf;
mod keeper;
mod mnl;
pub(crate) mod nft;
pub(crate) mod process;
