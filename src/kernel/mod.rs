//! Typed operations on the kernel: links, namespaces, sysctls, conntrack, host sockets.

pub mod conntrack;
pub mod hostports;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod sysctl;
pub mod fake;
pub mod seam;
