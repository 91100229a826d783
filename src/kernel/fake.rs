//! A kernel that records every call, in order, and keeps just enough state (which links
//! exist, whether the tables and forwarding are there) to answer the core's questions the
//! way the real one would. Any call can be told to fail with an errno. No root needed:
//! the core's apply, rollback and teardown order is unit-tested through it.
//!
//! Calls read as `op arg`: `link.create_veth nh… peer eth0`, `fw.add Elements {…}`,
//! `failpoint veth`. `fail("link.create_veth", EEXIST)` makes the next call whose text is
//! that, or starts with it and a space, fail.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::io;

use ipnetwork::{Ipv4Network, Ipv6Network};
use nix::errno::Errno;

use crate::failpoint::Injected;
use crate::firewall::{Elements, FirewallError};
use crate::kernel::conntrack::ConntrackError;
use crate::kernel::hostports::{Busy, HostPortsError};
use crate::kernel::link::{ContainerAddrs, LinkError};
use crate::kernel::rootfs::Written;
use crate::kernel::seam::{Conntrack, Failpoints, Firewall, HostPorts, Sysctls};
use crate::kernel::sysctl::SysctlError;
use crate::model::ports::Proto;

mod links;
mod macvlan;
mod outside;
#[cfg(test)]
mod tests;

/// One call the core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    pub arg: String,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arg.is_empty() {
            f.write_str(self.op)
        } else {
            write!(f, "{} {}", self.op, self.arg)
        }
    }
}

/// Calls that only look: left out of `changes`.
const QUERIES: &[&str] = &[
    "link.veth_state",
    "link.link_present",
    "link.has_ipv6_address",
    "link.bridge_owner",
    "link.ipv4_routes",
    "link.ipv6_routes",
    "link.inspect_container",
    "link.macvlan_state",
    "link.parent_view",
    "link.ipv4_device_routes",
    "link.hairpin",
    "link.device_routes",
    "fw.missing_skeleton",
    "fw.table_exists",
    "fw.missing_elements",
    "sysctl.ip_forwarding",
    "sysctl.ipv6_forwarding",
    "sysctl.route_localnet_on",
    "ports.busy",
    "failpoint",
];

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    failures: Vec<(String, i32)>,
    links: BTreeSet<String>,
    foreign: BTreeSet<String>,
    skeleton: bool,
    forwarding: bool,
    route_localnet: BTreeSet<String>,
    routes: Vec<Ipv4Network>,
    routes6: Vec<Ipv6Network>,
    /// The interface and addresses of every `configure_container`.
    containers: Vec<(String, ContainerAddrs)>,
    /// (link, address) of the IPv6 gateways `ensure_bridge` gave.
    addresses6: BTreeSet<(String, std::net::Ipv6Addr)>,
    /// Whether the host forwards IPv6.
    forwarding6: bool,
    /// Host interfaces with `accept_ra=1` (what `enable_ipv6_forwarding` changes).
    accept_ra1: Vec<String>,
    macvlan: macvlan::State,
    /// Bridge ports whose hairpin mode was set, and to what.
    hairpin: std::collections::BTreeMap<String, bool>,
    /// (link, destination) of the routes out of a link (`ensure_device_route`).
    device_routes: BTreeSet<(String, ipnetwork::IpNetwork)>,
    /// What `write_container_file` wrote, by `ROOTFS/REL`.
    files: std::collections::BTreeMap<String, Vec<u8>>,
    /// What the next `write_container_file`s find instead of a file to write, by `ROOTFS/REL`.
    file_outcomes: std::collections::BTreeMap<String, Written>,
    /// Whether the fake resolver was started.
    resolver_running: bool,
}

/// The recording fake kernel.
pub struct Fake {
    state: RefCell<State>,
}

impl Default for Fake {
    fn default() -> Self {
        Self::new()
    }
}

impl Fake {
    /// A host with nethook's tables in place and forwarding on (as after a first setup).
    pub fn new() -> Self {
        Fake {
            state: RefCell::new(State {
                skeleton: true,
                forwarding: true,
                forwarding6: true,
                ..State::default()
            }),
        }
    }

    /// The next call whose text is `pattern` (or starts with `pattern` and a space) fails
    /// with `errno` (a failpoint fails with `Injected` whatever the errno).
    pub fn fail(&self, pattern: &str, errno: i32) {
        self.state
            .borrow_mut()
            .failures
            .push((pattern.to_owned(), errno));
    }

    /// Every call so far, as `op arg`.
    pub fn calls(&self) -> Vec<String> {
        self.state
            .borrow()
            .calls
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The ops of the calls that change something, in order.
    pub fn changes(&self) -> Vec<&'static str> {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| !QUERIES.contains(&c.op))
            .map(|c| c.op)
            .collect()
    }

    /// The calls that change something, as `op arg`.
    pub fn change_calls(&self) -> Vec<String> {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| !QUERIES.contains(&c.op))
            .map(ToString::to_string)
            .collect()
    }

    pub fn clear_calls(&self) {
        self.state.borrow_mut().calls.clear();
    }

    /// A link the core made (or could have): a veth or bridge of nethook's.
    pub fn add_link(&self, name: &str) {
        self.state.borrow_mut().links.insert(name.to_owned());
    }

    /// A link of that name that is not the record's (another container's, a planted one).
    pub fn add_foreign_link(&self, name: &str) {
        self.state.borrow_mut().foreign.insert(name.to_owned());
    }

    /// The link is gone, and with it its routes (as the kernel does).
    pub fn remove_link(&self, name: &str) {
        let mut s = self.state.borrow_mut();
        s.links.remove(name);
        s.device_routes.retain(|(dev, _)| dev != name);
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.state.borrow().links.contains(name)
    }

    /// A route the host has (for overlap checks).
    pub fn add_route(&self, route: Ipv4Network) {
        self.state.borrow_mut().routes.push(route);
    }

    /// An IPv6 route the host has (for overlap checks).
    pub fn add_route6(&self, route: Ipv6Network) {
        self.state.borrow_mut().routes6.push(route);
    }

    pub fn set_forwarding(&self, on: bool) {
        self.state.borrow_mut().forwarding = on;
    }

    pub fn set_ipv6_forwarding(&self, on: bool) {
        self.state.borrow_mut().forwarding6 = on;
    }

    /// Host interfaces that take router advertisements (`accept_ra=1`).
    pub fn set_accept_ra_uplinks(&self, names: &[&str]) {
        self.state.borrow_mut().accept_ra1 = names.iter().map(|n| n.to_string()).collect();
    }

    /// Whether nethook's tables exist (false: as after `nft flush ruleset`).
    pub fn set_skeleton(&self, present: bool) {
        self.state.borrow_mut().skeleton = present;
    }

    /// What a container's root holds at `rootfs/rel` for `write_container_file`: a symlink
    /// or a mount point, which it leaves alone.
    pub fn set_container_file(&self, rootfs: &str, rel: &str, found: Written) {
        let key = format!("{rootfs}/{rel}");
        self.state.borrow_mut().file_outcomes.insert(key, found);
    }

    /// What `write_container_file` wrote to `rootfs/rel`, if anything.
    pub fn container_file(&self, rootfs: &str, rel: &str) -> Option<Vec<u8>> {
        let key = format!("{rootfs}/{rel}");
        self.state.borrow().files.get(&key).cloned()
    }

    /// Records the call; the errno it is to fail with, if told so.
    fn call(&self, op: &'static str, arg: String) -> Option<i32> {
        let mut s = self.state.borrow_mut();
        let call = Call { op, arg };
        let text = call.to_string();
        s.calls.push(call);
        let at = s.failures.iter().position(|(pattern, _)| {
            text == *pattern
                || text
                    .strip_prefix(pattern.as_str())
                    .is_some_and(|rest| rest.starts_with(' '))
        })?;
        Some(s.failures.remove(at).1)
    }

    fn link_call(&self, op: &'static str, arg: String) -> Result<(), LinkError> {
        match self.call(op, arg.clone()) {
            Some(errno) => Err(LinkError::Netlink {
                op: format!("{op} {arg} (fake)"),
                source: io::Error::from_raw_os_error(errno),
            }),
            None => Ok(()),
        }
    }

    fn fw_call(&self, op: &'static str, arg: String) -> Result<(), FirewallError> {
        match self.call(op, arg) {
            Some(errno) => Err(fw_error(errno)),
            None => Ok(()),
        }
    }

    fn sysctl_call(&self, op: &'static str, arg: String, value: &str) -> Result<(), SysctlError> {
        match self.call(op, arg.clone()) {
            Some(errno) => Err(SysctlError {
                path: format!("/proc/sys/fake/{op}/{arg}").into(),
                value: value.to_owned(),
                source: io::Error::from_raw_os_error(errno),
            }),
            None => Ok(()),
        }
    }
}

fn fw_error(errno: i32) -> FirewallError {
    FirewallError::Netlink {
        op: "fake",
        source: io::Error::from_raw_os_error(errno),
    }
}

impl Failpoints for Fake {
    fn failpoint(&self, name: &'static str) -> Result<(), Injected> {
        match self.call("failpoint", name.to_owned()) {
            Some(_) => Err(Injected(name)),
            None => Ok(()),
        }
    }
}

impl Firewall for Fake {
    fn add(&self, elements: &Elements) -> Result<(), FirewallError> {
        self.fw_call("fw.add", format!("{elements:?}"))?;
        if !self.state.borrow().skeleton {
            return Err(fw_error(libc::ENOENT));
        }
        Ok(())
    }
    fn restore(&self, elements: &Elements) -> Result<(), FirewallError> {
        self.fw_call("fw.restore", format!("{elements:?}"))
    }
    fn delete(&self, elements: &Elements) -> Result<(), FirewallError> {
        self.fw_call("fw.delete", format!("{elements:?}"))
    }
    fn guard_forwarding(&self, on: bool) -> Result<(), FirewallError> {
        self.fw_call("fw.guard_forwarding", if on { "on" } else { "off" }.into())
    }
    fn guard_forwarding6(&self, on: bool) -> Result<(), FirewallError> {
        self.fw_call("fw.guard_forwarding6", if on { "on" } else { "off" }.into())
    }
    fn ensure_skeleton(&self) -> Result<bool, FirewallError> {
        self.fw_call("fw.ensure_skeleton", String::new())?;
        let mut s = self.state.borrow_mut();
        let created = !s.skeleton;
        s.skeleton = true;
        Ok(created)
    }
    fn missing_skeleton(&self) -> Result<Vec<&'static str>, FirewallError> {
        self.fw_call("fw.missing_skeleton", String::new())?;
        Ok(if self.state.borrow().skeleton {
            Vec::new()
        } else {
            vec!["table inet nethook", "table bridge nethook"]
        })
    }
    fn table_exists(&self) -> Result<bool, FirewallError> {
        self.fw_call("fw.table_exists", String::new())?;
        Ok(self.state.borrow().skeleton)
    }
    fn prune(&self, live: &Elements, dry_run: bool) -> Result<Vec<String>, FirewallError> {
        let arg = format!("{live:?}{}", if dry_run { " dry" } else { "" });
        self.fw_call("fw.prune", arg)?;
        Ok(Vec::new())
    }
    /// The fake keeps no elements: all are there while the skeleton is, none without it.
    fn missing_elements(&self, elements: &Elements) -> Result<Vec<String>, FirewallError> {
        self.fw_call("fw.missing_elements", format!("{elements:?}"))?;
        Ok(if self.state.borrow().skeleton || elements.is_empty() {
            Vec::new()
        } else {
            vec!["nftables table inet nethook is missing".to_owned()]
        })
    }
    fn create_service(&self, s: &crate::firewall::Service) -> Result<(), FirewallError> {
        self.fw_call("fw.create_service", s.name.clone())?;
        if !self.state.borrow().skeleton {
            return Err(fw_error(libc::ENOENT));
        }
        Ok(())
    }
    fn delete_service(&self, s: &crate::firewall::Service) -> Result<(), FirewallError> {
        self.fw_call("fw.delete_service", s.name.clone())
    }
    fn restore_services(
        &self,
        all: &[(crate::firewall::Service, Vec<crate::firewall::Slot>)],
    ) -> Result<(), FirewallError> {
        let names: Vec<&str> = all.iter().map(|(s, _)| s.name.as_str()).collect();
        self.fw_call("fw.restore_services", names.join(","))
    }
}

impl Conntrack for Fake {
    fn flush_for(
        &self,
        container_ips: &[std::net::IpAddr],
        mappings: &[(Proto, u16)],
    ) -> Result<usize, ConntrackError> {
        // One IPv4 address reads as before IPv6: "10.77.0.2 [(Udp, 53)]".
        let ips: Vec<String> = container_ips.iter().map(ToString::to_string).collect();
        let arg = format!("{} {mappings:?}", ips.join(","));
        match self.call("conntrack.flush_for", arg) {
            Some(errno) => Err(ConntrackError::Kernel {
                op: "fake flush",
                errno: Errno::from_raw(errno),
            }),
            None => Ok(0),
        }
    }
}

impl Sysctls for Fake {
    fn ip_forwarding(&self) -> Result<bool, SysctlError> {
        self.sysctl_call("sysctl.ip_forwarding", String::new(), "1")?;
        Ok(self.state.borrow().forwarding)
    }
    fn enable_ip_forwarding(&self) -> Result<bool, SysctlError> {
        self.sysctl_call("sysctl.enable_ip_forwarding", String::new(), "1")?;
        let mut s = self.state.borrow_mut();
        Ok(!std::mem::replace(&mut s.forwarding, true))
    }
    fn route_localnet(&self, bridge: &str, on: bool) -> Result<bool, SysctlError> {
        let value = if on { "1" } else { "0" };
        self.sysctl_call("sysctl.route_localnet", format!("{bridge} {value}"), value)?;
        let mut s = self.state.borrow_mut();
        Ok(if on {
            s.route_localnet.insert(bridge.to_owned())
        } else {
            s.route_localnet.remove(bridge)
        })
    }
    fn route_localnet_on(&self, bridge: &str) -> bool {
        self.call("sysctl.route_localnet_on", bridge.to_owned());
        self.state.borrow().route_localnet.contains(bridge)
    }
    fn disable_ipv6(&self, ifname: &str) -> Result<bool, SysctlError> {
        self.sysctl_call("sysctl.disable_ipv6", ifname.to_owned(), "1")?;
        Ok(true)
    }
    fn ipv6_forwarding(&self) -> Result<bool, SysctlError> {
        self.sysctl_call("sysctl.ipv6_forwarding", String::new(), "1")?;
        Ok(self.state.borrow().forwarding6)
    }
    /// As the real one: nothing when forwarding is on, else the `accept_ra=1` uplinks
    /// (`set_accept_ra_uplinks`) become 2 and are returned; `bridges` are recorded.
    fn enable_ipv6_forwarding(&self, bridges: &[String]) -> Result<Vec<String>, SysctlError> {
        self.sysctl_call("sysctl.enable_ipv6_forwarding", bridges.join(","), "1")?;
        let mut s = self.state.borrow_mut();
        if std::mem::replace(&mut s.forwarding6, true) {
            return Ok(Vec::new());
        }
        Ok(std::mem::take(&mut s.accept_ra1))
    }
}

impl HostPorts for Fake {
    fn busy(
        &self,
        proto: Proto,
        host_ip: std::net::IpAddr,
        port: u16,
    ) -> Result<Option<Busy>, HostPortsError> {
        // Every IPv4 address keeps the text it had before IPv6.
        let arg = match host_ip {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("{port}/{proto}"),
            std::net::IpAddr::V4(ip) => format!("{ip}:{port}/{proto}"),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}/{proto}"),
        };
        match self.call("ports.busy", arg) {
            Some(errno) => Err(HostPortsError {
                path: "/proc/self/net/fake".into(),
                source: io::Error::from_raw_os_error(errno),
            }),
            None => Ok(None),
        }
    }
}
