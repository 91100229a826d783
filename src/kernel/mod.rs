//! Typed operations on the kernel: links, namespaces, sysctls, conntrack, host sockets.
//!
//! # The ways into the kernel, and why each
//!
//! Every netlink message goes over one synchronous socket type, `netlink::NlSocket`,
//! opened in the calling thread's namespace. A hook is a short-lived process that makes a
//! handful of requests one after the other: an async runtime only costs it (the `rtnetlink`
//! crate needed tokio, a connection task and channels, built anew by every hook).
//!
//! - Route netlink (links, addresses, routes; `link`, and `conntrack`'s look at the local
//!   addresses): typed messages from the rust-netlink crates, `netlink-packet-route` built
//!   and parsed by `netlink-packet-core`, sent and received through `netlink::route`
//!   (request → ack, lookup → one answer, dump). The crates know every rtnetlink message
//!   and attribute; we add only the socket.
//! - nftables (`firewall`): libnftnl builds the messages, so rules and sets are encoded as
//!   `nft` itself encodes them; a batch goes over an `NlSocket` (`Bus::Netfilter`), whose
//!   release can be deferred past the hook's exit (`netlink::defer_netfilter_release`).
//! - ctnetlink (`conntrack`): a dump and deletes of a few attributes, built and read with
//!   the byte-level `netlink::MsgBuilder` and `netlink::Attrs`.
//! - A container's files (`rootfs`): `/proc/PID/root` and `openat2(RESOLVE_IN_ROOT)`, which
//!   reach the container's mount namespace without entering it (14 µs against 53 µs for a
//!   thread that enters).
//! - Socket ioctls on an AF_INET datagram socket (`sys::ifconf`), where they were measured
//!   to be faster or to spare the kernel work later:
//!   - `link::link_present` (poststop: is there any link work?): one `SIOCGIFINDEX`, 6 µs,
//!     against 23 µs for opening a route socket and asking `RTM_GETLINK`;
//!   - `link::Rtnl::ensure_bridge` with the bridge in place: four `SIOCGIF*` ioctls, 9 µs,
//!     against 15 µs for the `RTM_GETLINK` alone on an open socket (the link message is
//!     ~1.5 KiB; through the `rtnetlink` crate the check took 0.25 ms, ioctls 0.05 ms);
//!   - `link::configure_container` (inside the container's namespace), for IPv4: one
//!     AF_INET socket and ioctls. A container with IPv6 opens a route netlink socket in
//!     there as well (no ioctl adds an IPv6 address without DAD) and sends its four IPv6
//!     requests in one datagram. A netlink socket holds its namespace about one RCU grace
//!     period after close; measured, that is within the noise of a namespace's own
//!     teardown (20–60 ms), and the deferred teardown handles a namespace alive at
//!     poststop whatever the socket (h21 §1c). The old 16 ms came from the veth delete
//!     waiting inside the hook, which deferring removed.
//!
//! The µs are medians of 2000 calls in a release build (`tests/arch_kernel.rs` with
//! `NETHOOK_KERNEL_TIMING=FILE`, 2026-12-03, 2-CPU VM).

pub mod conntrack;
pub mod fake;
pub mod host;
pub mod hostports;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod rootfs;
pub mod seam;
pub mod sysctl;
