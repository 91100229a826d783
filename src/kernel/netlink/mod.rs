//! The one netlink layer: a synchronous socket and the messages that travel over it.
//!
//! - `socket`: `NlSocket`, opened in the calling thread's network namespace and bound to it;
//!   send, receive (sized to each datagram), collect acknowledgements, dump. Also the
//!   deferred release of netfilter sockets (`defer_netfilter_release`).
//! - `message`: netlink frames as plain bytes (`MsgBuilder`, `Messages`, `Attrs`), for the
//!   netfilter side: nftables batches (payloads built by libnftnl, see `firewall`) and
//!   ctnetlink (`conntrack`).
//! - `route`: NETLINK_ROUTE with typed `netlink-packet-route` messages, for `link`.
//!
//! No unsafe code here, and no async runtime: see `kernel` for why.

mod message;
pub(crate) mod route;
mod socket;

#[cfg(test)]
pub(crate) use message::Messages;
pub(crate) use message::{Attrs, MsgBuilder};
pub use socket::{defer_netfilter_release, take_deferred};
pub(crate) use socket::{Bus, NlSocket};

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;

/// Attribute type flags that are not part of the type number.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
