//! The one input every front end (OCI hook now, CNI later) produces for the core: which
//! container, its network namespace, and what it asks for (`Options`). How a front end
//! reads the options (annotations, CNI config) is its own business.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::model::ids::ContainerId;
use crate::model::mac::Mac;
pub use crate::model::network::DEFAULT_NETWORK;
use crate::model::ports::PortSpec;

pub const DEFAULT_IFNAME: &str = "eth0";

#[derive(Debug, Clone)]
pub struct Request {
    pub id: ContainerId,
    /// The container's network namespace (e.g. `/proc/<pid>/ns/net`); setup needs it,
    /// teardown does not.
    pub netns: Option<PathBuf>,
    pub options: Options,
}

/// What a container asks of nethook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub network: String,
    pub ports: Vec<PortSpec>,
    pub ip: Option<Ipv4Addr>,
    /// A static IPv6 address (`nethook.ip6`, CNI `ips`), on a network with IPv6.
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    pub ifname: String,
    pub disabled: bool,
    /// Its DNS name (`nethook.name`, the CNI pod name); `None`: its id when that is a DNS
    /// label. Validated and lower case.
    pub name: Option<String>,
    /// A name it has unless it asks for one (the CNI pod name): dropped, not refused, when
    /// another holds it.
    pub default_name: Option<String>,
    /// More names (`nethook.aliases`).
    pub aliases: Vec<String>,
    /// Services it joins (`nethook.service=NAME[,NAME]`).
    pub services: Vec<String>,
    /// Write `/etc/resolv.conf` naming the network's resolver into its root
    /// (`nethook.resolv`, OCI hook only).
    pub write_resolv_conf: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            network: DEFAULT_NETWORK.to_owned(),
            ports: Vec::new(),
            ip: None,
            ip6: None,
            mac: None,
            ifname: DEFAULT_IFNAME.to_owned(),
            disabled: false,
            name: None,
            default_name: None,
            aliases: Vec::new(),
            services: Vec::new(),
            write_resolv_conf: false,
        }
    }
}
