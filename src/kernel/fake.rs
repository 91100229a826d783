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
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use nix::errno::Errno;

use crate::failpoint::Injected;
use crate::firewall::{Elements, FirewallError};
use crate::kernel::conntrack::ConntrackError;
use crate::kernel::hostports::{Busy, HostPortsError};
use crate::kernel::link::{
    ContainerMacvlan, ContainerView, DeviceRoute, Foreign, HostVeth, LinkError, MacvlanSpec,
    ParentView, VethFate, VethSpec, VethState,
};
use crate::kernel::netns::Netns;
use crate::kernel::seam::{
    Conntrack, ContainerError, Failpoints, Firewall, HostPorts, Links, Sysctls,
};
use crate::kernel::sysctl::SysctlError;
use crate::model::mac::Mac;
use crate::model::ports::Proto;

mod macvlan;

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
    "link.bridge_owner",
    "link.ipv4_routes",
    "link.inspect_container",
    "link.macvlan_state",
    "link.parent_view",
    "link.ipv4_device_routes",
    "fw.missing_skeleton",
    "fw.table_exists",
    "fw.missing_elements",
    "sysctl.ip_forwarding",
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
    /// (ifname, address, prefix, gateway) of every `configure_container`.
    containers: Vec<(String, Ipv4Addr, u8, Ipv4Addr)>,
    macvlan: macvlan::State,
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

    pub fn remove_link(&self, name: &str) {
        self.state.borrow_mut().links.remove(name);
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.state.borrow().links.contains(name)
    }

    /// A route the host has (for overlap checks).
    pub fn add_route(&self, route: Ipv4Network) {
        self.state.borrow_mut().routes.push(route);
    }

    pub fn set_forwarding(&self, on: bool) {
        self.state.borrow_mut().forwarding = on;
    }

    /// Whether nethook's tables exist (false: as after `nft flush ruleset`).
    pub fn set_skeleton(&self, present: bool) {
        self.state.borrow_mut().skeleton = present;
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

impl Links for Fake {
    fn ensure_bridge(
        &self,
        name: &str,
        _mac: Mac,
        gateway: Ipv4Addr,
        prefix: u8,
        _owner_tag: &str,
    ) -> Result<u32, LinkError> {
        self.link_call("link.ensure_bridge", format!("{name} {gateway}/{prefix}"))?;
        self.add_link(name);
        Ok(1)
    }

    fn create_veth(&self, spec: &VethSpec<'_>, _netns: &Netns) -> Result<(), LinkError> {
        let arg = format!("{} peer {}", spec.host_name, spec.peer_name);
        self.link_call("link.create_veth", arg.clone())?;
        let mut s = self.state.borrow_mut();
        if s.links.contains(spec.host_name) || s.foreign.contains(spec.host_name) {
            return Err(LinkError::Netlink {
                op: format!("create veth {arg} (fake)"),
                source: io::Error::from_raw_os_error(libc::EEXIST),
            });
        }
        s.links.insert(spec.host_name.to_owned());
        Ok(())
    }

    fn veth_state(&self, veth: &HostVeth<'_>) -> Result<VethState, LinkError> {
        self.link_call("link.veth_state", veth.name.to_owned())?;
        let s = self.state.borrow();
        Ok(if s.links.contains(veth.name) {
            VethState::Ours
        } else if s.foreign.contains(veth.name) {
            VethState::NotOurs(foreign(veth))
        } else {
            VethState::Gone
        })
    }

    fn delete_veth(&self, veth: &HostVeth<'_>, grace: Duration) -> Result<VethFate, LinkError> {
        let arg = format!("{} grace {}ms", veth.name, grace.as_millis());
        self.link_call("link.delete_veth", arg)?;
        let mut s = self.state.borrow_mut();
        Ok(if s.links.remove(veth.name) {
            VethFate::Deleted
        } else if s.foreign.contains(veth.name) {
            VethFate::NotOurs(foreign(veth))
        } else {
            VethFate::Gone
        })
    }

    fn delete(&self, name: &str) -> Result<bool, LinkError> {
        self.link_call("link.delete", name.to_owned())?;
        Ok(self.state.borrow_mut().links.remove(name))
    }

    fn link_present(&self, name: &str) -> Result<bool, LinkError> {
        self.link_call("link.link_present", name.to_owned())?;
        let s = self.state.borrow();
        Ok(s.links.contains(name) || s.foreign.contains(name))
    }

    fn bridge_owner(&self, name: &str) -> Result<Option<(bool, Option<String>)>, LinkError> {
        self.link_call("link.bridge_owner", name.to_owned())?;
        let s = self.state.borrow();
        Ok(if s.links.contains(name) {
            Some((true, None))
        } else if s.foreign.contains(name) {
            Some((false, Some("not nethook's (fake)".into())))
        } else {
            None
        })
    }

    fn ipv4_routes(&self) -> Result<Vec<Ipv4Network>, LinkError> {
        self.link_call("link.ipv4_routes", String::new())?;
        Ok(self.state.borrow().routes.clone())
    }

    fn configure_container(
        &self,
        _netns: &Netns,
        ifname: &str,
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), ContainerError> {
        let arg = format!("{ifname} {address}/{prefix} via {gateway}");
        self.link_call("link.configure_container", arg)?;
        self.state
            .borrow_mut()
            .containers
            .push((ifname.to_owned(), address, prefix, gateway));
        Ok(())
    }

    fn configure_routed_container(
        &self,
        _netns: &Netns,
        ifname: &str,
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        gateway_mac: Mac,
    ) -> Result<(), ContainerError> {
        let arg = format!("{ifname} {address}/32 via {gateway} at {gateway_mac}");
        self.link_call("link.configure_routed_container", arg)?;
        self.state
            .borrow_mut()
            .containers
            .push((ifname.to_owned(), address, 32, gateway));
        Ok(())
    }

    fn add_host_route(&self, ifname: &str, dst: Ipv4Addr) -> Result<(), LinkError> {
        self.link_call("link.add_host_route", format!("{dst}/32 dev {ifname}"))
    }

    /// What `configure_container` gave an interface of that name (the namespace is not
    /// told apart: fake tests give each container its own address).
    fn inspect_container(
        &self,
        _netns: &Netns,
        ifname: &str,
    ) -> Result<Option<ContainerView>, ContainerError> {
        self.link_call("link.inspect_container", ifname.to_owned())?;
        let s = self.state.borrow();
        let mine: Vec<_> = s.containers.iter().filter(|c| c.0 == ifname).collect();
        if mine.is_empty() {
            return Ok(None);
        }
        Ok(Some(ContainerView {
            addresses: mine.iter().map(|c| (c.1, c.2)).collect(),
            default_gateways: mine.iter().map(|c| c.3).collect(),
        }))
    }

    fn create_macvlan(&self, spec: &MacvlanSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        self.mv_create(spec, netns)
    }

    fn macvlan_state(&self, c: &ContainerMacvlan<'_>) -> Result<VethState, LinkError> {
        self.mv_state(c)
    }

    fn delete_macvlan(&self, c: &ContainerMacvlan<'_>) -> Result<VethFate, LinkError> {
        self.mv_delete(c)
    }

    fn parent_view(&self, name: &str) -> Result<Option<ParentView>, LinkError> {
        self.mv_parent(name)
    }

    fn ipv4_device_routes(&self) -> Result<Vec<DeviceRoute>, LinkError> {
        self.mv_routes()
    }
}

fn foreign(veth: &HostVeth<'_>) -> Foreign {
    Foreign {
        name: veth.name.to_owned(),
        owner: veth.owner.to_string(),
        why: "another link has its name (fake)".into(),
        other_owner: None,
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
