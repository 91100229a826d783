//! Typed operations on the kernel: links, namespaces, sysctls, conntrack, host sockets.

pub mod conntrack;
pub mod fake;
pub mod hostports;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod seam;
pub mod sysctl;
