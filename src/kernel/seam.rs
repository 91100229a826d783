//! The seam between the core and the kernel: every operation the core (attach, detach,
//! gc, recover) and the drivers ask of the kernel, behind traits, so their order can be
//! unit-tested without root through a recording fake (`kernel::fake`).
//!
//! `Host` is the real kernel: each method delegates to the typed functions of `link`,
//! `firewall`, `conntrack`, `sysctl` and `hostports`, unchanged. The traits are grouped by
//! what they touch, and `Kernel` hands each group out, so a driver can be given the link
//! operations without the firewall (drivers do not touch nftables).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::failpoint::{self, Injected};
use crate::firewall::{self, Elements, FirewallError};
use crate::kernel::conntrack::ConntrackError;
use crate::kernel::hostports::{Busy, HostPortsError};
use crate::kernel::link::{
    BridgeSpec, ContainerAddrs, ContainerMacvlan, ContainerView, DeviceRoute, HostVeth, LinkError,
    MacvlanSpec, ParentView, VethFate, VethSpec, VethState,
};
use crate::kernel::netns::{Netns, NetnsError};
use crate::kernel::rootfs::{RootfsError, Written};
use crate::kernel::sysctl::SysctlError;
use crate::model::mac::Mac;
use crate::model::ports::Proto;

/// Why the container side could not be configured: entering its namespace, or the
/// configuration itself.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Links on the host and in a container's namespace.
pub trait Links {
    /// See `Rtnl::ensure_bridge`: the bridge exists, carries the gateways, is up; its index.
    fn ensure_bridge(&self, spec: &BridgeSpec<'_>) -> Result<u32, LinkError>;
    /// See `Rtnl::add_bridge_ipv6`: the IPv6 gateway on an existing bridge, for a network
    /// that just gained IPv6; false when there is no such bridge yet.
    fn add_bridge_ipv6(&self, name: &str, gateway: Ipv6Addr, prefix: u8)
        -> Result<bool, LinkError>;
    /// See `Rtnl::create_veth`: on error nothing of the pair is left.
    fn create_veth(&self, spec: &VethSpec<'_>, netns: &Netns) -> Result<(), LinkError>;
    fn veth_state(&self, veth: &HostVeth<'_>) -> Result<VethState, LinkError>;
    fn delete_veth(&self, veth: &HostVeth<'_>, grace: Duration) -> Result<VethFate, LinkError>;
    /// Deletes a link this process made (rollback); false when it was gone.
    fn delete(&self, name: &str) -> Result<bool, LinkError>;
    /// One ioctl: is there a link of that name in the hook's namespace?
    fn link_present(&self, name: &str) -> Result<bool, LinkError>;
    /// Whether the host's link `name` has the IPv6 address `address` (CHECK of a bridge's
    /// IPv6 gateway; a dump, false when there is no such link).
    fn has_ipv6_address(&self, name: &str, address: Ipv6Addr) -> Result<bool, LinkError>;
    /// See `Rtnl::bridge_owner`: `None` when no link has the name, else whether it is a
    /// bridge and its alias.
    fn bridge_owner(&self, name: &str) -> Result<Option<(bool, Option<String>)>, LinkError>;
    /// Destinations of the host's IPv4 routes, for overlap checks.
    fn ipv4_routes(&self) -> Result<Vec<Ipv4Network>, LinkError>;
    /// Destinations of the host's IPv6 routes, for overlap checks.
    fn ipv6_routes(&self) -> Result<Vec<Ipv6Network>, LinkError>;
    /// Inside `netns`: loopback up, the addresses on `ifname`, `ifname` up, the default
    /// routes; with IPv6, no link-local address and no DAD (see `link::configure_container`).
    fn configure_container(
        &self,
        netns: &Netns,
        ifname: &str,
        addrs: &ContainerAddrs,
    ) -> Result<(), ContainerError>;
    /// Inside `netns`, for a routed network: the address as a /32, a default route via
    /// `gateway` and a permanent neighbour entry for it at `gateway_mac`.
    fn configure_routed_container(
        &self,
        netns: &Netns,
        ifname: &str,
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        gateway_mac: Mac,
    ) -> Result<(), ContainerError>;
    /// The host's route to `dst`/32 out of the link `ifname` (routed networks).
    fn add_host_route(&self, ifname: &str, dst: Ipv4Addr) -> Result<(), LinkError>;
    /// What the container's `ifname` has (addresses, default routes); `None` when there is
    /// no such link. For CHECK: it makes a netlink socket inside the namespace.
    fn inspect_container(
        &self,
        netns: &Netns,
        ifname: &str,
    ) -> Result<Option<ContainerView>, ContainerError>;
    /// See `Rtnl::create_macvlan`: the container's interface, a macvlan of the parent.
    fn create_macvlan(&self, spec: &MacvlanSpec<'_>, netns: &Netns) -> Result<(), LinkError>;
    /// See `link::macvlan_state`: whose the link the record names in its namespace is.
    fn macvlan_state(&self, c: &ContainerMacvlan<'_>) -> Result<VethState, LinkError>;
    /// See `link::delete_macvlan`: deletes it inside its namespace when it is the record's.
    fn delete_macvlan(&self, c: &ContainerMacvlan<'_>) -> Result<VethFate, LinkError>;
    /// See `Rtnl::parent_view`: a would-be macvlan parent; `None` when there is none.
    fn parent_view(&self, name: &str) -> Result<Option<ParentView>, LinkError>;
    /// The host's IPv4 routes with the device each leaves by (macvlan overlap checks).
    fn ipv4_device_routes(&self) -> Result<Vec<DeviceRoute>, LinkError>;
    /// See `Rtnl::set_hairpin`: hairpin mode of a bridge port on or off (service members).
    fn set_hairpin(&self, ifname: &str, on: bool) -> Result<(), LinkError>;
    /// See `Rtnl::hairpin`: whether a bridge port has hairpin on; `None` when there is no
    /// such link or it is no bridge port (CHECK).
    fn hairpin(&self, ifname: &str) -> Result<Option<bool>, LinkError>;
    /// See `Rtnl::ensure_device_route`: the host routes `dst` out of `dev` (a network's
    /// service range via its bridge); an equal route there already is fine.
    fn ensure_device_route(&self, dev: &str, dst: IpNetwork) -> Result<(), LinkError>;
    /// See `Rtnl::delete_device_route`: false when there was no such route.
    fn delete_device_route(&self, dev: &str, dst: IpNetwork) -> Result<bool, LinkError>;
    /// See `Rtnl::device_routes`: destinations of the main table's routes out of `dev`,
    /// both families (CHECK).
    fn device_routes(&self, dev: &str) -> Result<Vec<IpNetwork>, LinkError>;
}

/// nftables elements and the skeleton they live in (see `firewall`).
pub trait Firewall {
    fn add(&self, elements: &Elements) -> Result<(), FirewallError>;
    fn restore(&self, elements: &Elements) -> Result<(), FirewallError>;
    fn delete(&self, elements: &Elements) -> Result<(), FirewallError>;
    fn guard_forwarding(&self, on: bool) -> Result<(), FirewallError>;
    /// The IPv6 forwarding guard: turn it on before turning IPv6 forwarding on, and again
    /// after `ensure_skeleton` returned true (as for IPv4's).
    fn guard_forwarding6(&self, on: bool) -> Result<(), FirewallError>;
    /// True when anything had to be (re)created.
    fn ensure_skeleton(&self) -> Result<bool, FirewallError>;
    fn missing_skeleton(&self) -> Result<Vec<&'static str>, FirewallError>;
    fn table_exists(&self) -> Result<bool, FirewallError>;
    fn prune(&self, live: &Elements, dry_run: bool) -> Result<Vec<String>, FirewallError>;
    /// One line per element of `elements` the kernel's sets do not hold (CHECK).
    fn missing_elements(&self, elements: &Elements) -> Result<Vec<String>, FirewallError>;
    /// See `firewall::create_service`: a new service's chain, maps and dispatch, one batch.
    fn create_service(&self, s: &firewall::Service) -> Result<(), FirewallError>;
    /// See `firewall::delete_service`: idempotent, one batch.
    fn delete_service(&self, s: &firewall::Service) -> Result<(), FirewallError>;
    /// See `firewall::restore_services`: every service with its members, one batch.
    fn restore_services(
        &self,
        all: &[(firewall::Service, Vec<firewall::Slot>)],
    ) -> Result<(), FirewallError>;
}

pub trait Conntrack {
    /// Drops the entries of a container's addresses (one per family it has: IPv4, IPv6) and
    /// of its connectionless mappings, in those families.
    fn flush_for(
        &self,
        container_ips: &[std::net::IpAddr],
        mappings: &[(Proto, u16)],
    ) -> Result<usize, ConntrackError>;
}

/// The kernel settings the core reads and changes.
pub trait Sysctls {
    fn ip_forwarding(&self) -> Result<bool, SysctlError>;
    fn enable_ip_forwarding(&self) -> Result<bool, SysctlError>;
    fn route_localnet(&self, bridge: &str, on: bool) -> Result<bool, SysctlError>;
    fn route_localnet_on(&self, bridge: &str) -> bool;
    fn disable_ipv6(&self, ifname: &str) -> Result<bool, SysctlError>;
    /// Whether the host forwards IPv6 (`net.ipv6.conf.all.forwarding`).
    fn ipv6_forwarding(&self) -> Result<bool, SysctlError>;
    /// See `sysctl::enable_ipv6_forwarding`: `accept_ra` 1 → 2 on the host's interfaces
    /// (not on `bridges`, nethook's), then forwarding on; the interfaces changed.
    fn enable_ipv6_forwarding(&self, bridges: &[String]) -> Result<Vec<String>, SysctlError>;
}

/// Host sockets that a publish would take a port from.
pub trait HostPorts {
    /// `host_ip` unspecified: every host address of its family (`0.0.0.0`, `::`).
    fn busy(
        &self,
        proto: Proto,
        host_ip: std::net::IpAddr,
        port: u16,
    ) -> Result<Option<Busy>, HostPortsError>;
}

/// Files in a container's root, as the container sees them.
pub trait ContainerFiles {
    /// See `rootfs::write_container_file`: `contents` into `rel` under `rootfs` in the
    /// mount namespace of `pid` (at createRuntime); a symlink or a mount point there is
    /// left alone and reported.
    fn write_container_file(
        &self,
        pid: i32,
        rootfs: &std::path::Path,
        rel: &std::path::Path,
        contents: &[u8],
    ) -> Result<Written, RootfsError>;
}

/// The names process (`nethook dns`): the one long-lived process a hook talks to, and
/// starts when it is not running (see `resolver`).
pub trait Resolver {
    /// See `resolver::deliver`.
    fn deliver(
        &self,
        run_dir: &std::path::Path,
        updates: &[crate::resolver::Update],
    ) -> Result<crate::resolver::Delivery, crate::resolver::ResolverError>;
    /// See `resolver::stop_hung`.
    fn stop_hung(
        &self,
        run_dir: &std::path::Path,
        pid: &str,
    ) -> Result<(), crate::resolver::ResolverError>;
    /// See `resolver::start`.
    fn start(
        &self,
        run_dir: &std::path::Path,
        snapshot: &crate::resolver::Snapshot,
    ) -> Result<(), crate::resolver::ResolverError>;
}

/// The whole kernel as the core sees it.
pub trait Kernel {
    fn links(&self) -> &dyn Links;
    fn firewall(&self) -> &dyn Firewall;
    fn conntrack(&self) -> &dyn Conntrack;
    fn sysctls(&self) -> &dyn Sysctls;
    fn host_ports(&self) -> &dyn HostPorts;
    fn files(&self) -> &dyn ContainerFiles;
    fn resolver(&self) -> &dyn Resolver;
    fn failpoints(&self) -> &dyn Failpoints;
    /// A point between two steps where a test may make the step fail (`failpoint`).
    fn failpoint(&self, name: &'static str) -> Result<(), Injected> {
        self.failpoints().failpoint(name)
    }
}

/// Points between two steps where a test may make the step fail: the failpoints feature's
/// environment variable for the real kernel, a recorded call for the fake.
pub trait Failpoints {
    fn failpoint(&self, name: &'static str) -> Result<(), Injected> {
        failpoint::hit(name)
    }
}

/// Whatever implements every group is a kernel, handing itself out as each.
impl<
        T: Links + Firewall + Conntrack + Sysctls + HostPorts + ContainerFiles + Resolver + Failpoints,
    > Kernel for T
{
    fn links(&self) -> &dyn Links {
        self
    }
    fn firewall(&self) -> &dyn Firewall {
        self
    }
    fn conntrack(&self) -> &dyn Conntrack {
        self
    }
    fn sysctls(&self) -> &dyn Sysctls {
        self
    }
    fn host_ports(&self) -> &dyn HostPorts {
        self
    }
    fn files(&self) -> &dyn ContainerFiles {
        self
    }
    fn resolver(&self) -> &dyn Resolver {
        self
    }
    fn failpoints(&self) -> &dyn Failpoints {
        self
    }
}

pub use super::host::Host;
