//! `Host`: the real kernel behind the seam's traits (see `seam`), each method delegating to
//! the module that does the work.

use std::cell::OnceCell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::firewall::{self, Elements, FirewallError};
use crate::kernel::conntrack::{self, ConntrackError};
use crate::kernel::hostports::{self, Busy, HostPortsError};
use crate::kernel::link::{
    self, BridgeSpec, ContainerAddrs, ContainerMacvlan, ContainerView, DeviceRoute, HostVeth,
    LinkError, MacvlanSpec, ParentView, Rtnl, VethFate, VethSpec, VethState,
};
use crate::kernel::netns::Netns;
use crate::kernel::rootfs::{self, RootfsError, Written};
use crate::kernel::sysctl::{self, SysctlError};
use crate::model::mac::Mac;
use crate::model::ports::Proto;

use super::seam::{
    Conntrack, ContainerError, ContainerFiles, Failpoints, Firewall, HostPorts, Links, Resolver,
    Sysctls,
};

/// The real kernel, in the namespace of the thread that uses it. The route netlink
/// connection is opened on first use: a poststop whose veth is gone
/// never needs it. Not to be shared across a fork: a child opens its own (`Host::new`).
#[derive(Default)]
pub struct Host {
    rtnl: OnceCell<Rtnl>,
}

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    fn rtnl(&self) -> Result<&Rtnl, LinkError> {
        if let Some(rtnl) = self.rtnl.get() {
            return Ok(rtnl);
        }
        let opened = Rtnl::open()?;
        Ok(self.rtnl.get_or_init(|| opened))
    }
}

impl Failpoints for Host {}

impl Links for Host {
    fn ensure_bridge(&self, spec: &BridgeSpec<'_>) -> Result<u32, LinkError> {
        self.rtnl()?.ensure_bridge(spec)
    }

    fn add_bridge_ipv6(
        &self,
        name: &str,
        gateway: Ipv6Addr,
        prefix: u8,
    ) -> Result<bool, LinkError> {
        self.rtnl()?.add_bridge_ipv6(name, gateway, prefix)
    }

    fn create_veth(&self, spec: &VethSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        self.rtnl()?.create_veth(spec, netns)
    }

    fn veth_state(&self, veth: &HostVeth<'_>) -> Result<VethState, LinkError> {
        self.rtnl()?.veth_state(veth)
    }

    fn delete_veth(&self, veth: &HostVeth<'_>, grace: Duration) -> Result<VethFate, LinkError> {
        self.rtnl()?.delete_veth(veth, grace)
    }

    fn delete(&self, name: &str) -> Result<bool, LinkError> {
        self.rtnl()?.delete(name)
    }

    fn link_present(&self, name: &str) -> Result<bool, LinkError> {
        link::link_present(name)
    }

    fn has_ipv6_address(&self, name: &str, address: Ipv6Addr) -> Result<bool, LinkError> {
        self.rtnl()?.has_ipv6_address(name, address)
    }

    fn bridge_owner(&self, name: &str) -> Result<Option<(bool, Option<String>)>, LinkError> {
        self.rtnl()?.bridge_owner(name)
    }

    fn ipv4_routes(&self) -> Result<Vec<Ipv4Network>, LinkError> {
        self.rtnl()?.ipv4_routes()
    }
    fn ipv6_routes(&self) -> Result<Vec<Ipv6Network>, LinkError> {
        self.rtnl()?.ipv6_routes()
    }

    fn configure_container(
        &self,
        netns: &Netns,
        ifname: &str,
        addrs: &ContainerAddrs,
    ) -> Result<(), ContainerError> {
        link::configure_container(netns, ifname, addrs)
    }

    fn configure_routed_container(
        &self,
        netns: &Netns,
        ifname: &str,
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        gateway_mac: Mac,
    ) -> Result<(), ContainerError> {
        link::configure_routed_container(netns, ifname, address, gateway, gateway_mac)
    }

    fn add_host_route(&self, ifname: &str, dst: Ipv4Addr) -> Result<(), LinkError> {
        self.rtnl()?.add_host_route(ifname, dst)
    }

    fn inspect_container(
        &self,
        netns: &Netns,
        ifname: &str,
    ) -> Result<Option<ContainerView>, ContainerError> {
        link::inspect_container(netns, ifname)
    }

    fn create_macvlan(&self, spec: &MacvlanSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        self.rtnl()?.create_macvlan(spec, netns)
    }

    fn macvlan_state(&self, c: &ContainerMacvlan<'_>) -> Result<VethState, LinkError> {
        link::macvlan_state(c)
    }

    fn delete_macvlan(&self, c: &ContainerMacvlan<'_>) -> Result<VethFate, LinkError> {
        link::delete_macvlan(c)
    }

    fn parent_view(&self, name: &str) -> Result<Option<ParentView>, LinkError> {
        self.rtnl()?.parent_view(name)
    }

    fn ipv4_device_routes(&self) -> Result<Vec<DeviceRoute>, LinkError> {
        self.rtnl()?.ipv4_device_routes()
    }

    fn set_hairpin(&self, ifname: &str, on: bool) -> Result<(), LinkError> {
        self.rtnl()?.set_hairpin(ifname, on)
    }

    fn hairpin(&self, ifname: &str) -> Result<Option<bool>, LinkError> {
        self.rtnl()?.hairpin(ifname)
    }

    fn ensure_device_route(&self, dev: &str, dst: IpNetwork) -> Result<(), LinkError> {
        self.rtnl()?.ensure_device_route(dev, dst)
    }

    fn delete_device_route(&self, dev: &str, dst: IpNetwork) -> Result<bool, LinkError> {
        self.rtnl()?.delete_device_route(dev, dst)
    }

    fn device_routes(&self, dev: &str) -> Result<Vec<IpNetwork>, LinkError> {
        self.rtnl()?.device_routes(dev)
    }
}

impl Firewall for Host {
    fn add(&self, elements: &Elements) -> Result<(), FirewallError> {
        firewall::add(elements)
    }
    fn restore(&self, elements: &Elements) -> Result<(), FirewallError> {
        firewall::restore(elements)
    }
    fn delete(&self, elements: &Elements) -> Result<(), FirewallError> {
        firewall::delete(elements)
    }
    fn guard_forwarding(&self, on: bool) -> Result<(), FirewallError> {
        firewall::guard_forwarding(on)
    }
    fn guard_forwarding6(&self, on: bool) -> Result<(), FirewallError> {
        firewall::guard_forwarding6(on)
    }
    fn ensure_skeleton(&self) -> Result<bool, FirewallError> {
        firewall::ensure_skeleton()
    }
    fn missing_skeleton(&self) -> Result<Vec<&'static str>, FirewallError> {
        firewall::missing_skeleton()
    }
    fn table_exists(&self) -> Result<bool, FirewallError> {
        firewall::table_exists()
    }
    fn prune(&self, live: &Elements, dry_run: bool) -> Result<Vec<String>, FirewallError> {
        firewall::prune(live, dry_run)
    }
    fn missing_elements(&self, elements: &Elements) -> Result<Vec<String>, FirewallError> {
        firewall::missing_elements(elements)
    }
    fn create_service(&self, s: &firewall::Service) -> Result<(), FirewallError> {
        firewall::create_service(s)
    }
    fn delete_service(&self, s: &firewall::Service) -> Result<(), FirewallError> {
        firewall::delete_service(s)
    }
    fn restore_services(
        &self,
        all: &[(firewall::Service, Vec<firewall::Slot>)],
    ) -> Result<(), FirewallError> {
        firewall::restore_services(all)
    }
}

impl Conntrack for Host {
    fn flush_for(
        &self,
        container_ips: &[std::net::IpAddr],
        mappings: &[(Proto, u16)],
    ) -> Result<usize, ConntrackError> {
        conntrack::flush_for(container_ips, mappings)
    }
}

impl Sysctls for Host {
    fn ip_forwarding(&self) -> Result<bool, SysctlError> {
        sysctl::ip_forwarding()
    }
    fn enable_ip_forwarding(&self) -> Result<bool, SysctlError> {
        sysctl::enable_ip_forwarding()
    }
    fn route_localnet(&self, bridge: &str, on: bool) -> Result<bool, SysctlError> {
        sysctl::route_localnet(bridge, on)
    }
    fn route_localnet_on(&self, bridge: &str) -> bool {
        sysctl::route_localnet_on(bridge)
    }
    fn disable_ipv6(&self, ifname: &str) -> Result<bool, SysctlError> {
        sysctl::disable_ipv6(ifname)
    }
    fn ipv6_forwarding(&self) -> Result<bool, SysctlError> {
        sysctl::ipv6_forwarding()
    }
    fn enable_ipv6_forwarding(&self, bridges: &[String]) -> Result<Vec<String>, SysctlError> {
        sysctl::enable_ipv6_forwarding(bridges)
    }
}

impl HostPorts for Host {
    fn busy(
        &self,
        proto: Proto,
        host_ip: std::net::IpAddr,
        port: u16,
    ) -> Result<Option<Busy>, HostPortsError> {
        hostports::busy(proto, host_ip, port)
    }
}

impl Resolver for Host {
    fn deliver(
        &self,
        run_dir: &std::path::Path,
        updates: &[crate::resolver::Update],
    ) -> Result<crate::resolver::Delivery, crate::resolver::ResolverError> {
        crate::resolver::deliver(run_dir, updates)
    }
    fn stop_hung(
        &self,
        run_dir: &std::path::Path,
        pid: &str,
    ) -> Result<(), crate::resolver::ResolverError> {
        crate::resolver::stop_hung(run_dir, pid)
    }
    fn start(
        &self,
        run_dir: &std::path::Path,
        snapshot: &crate::resolver::Snapshot,
    ) -> Result<(), crate::resolver::ResolverError> {
        crate::resolver::start(run_dir, snapshot)
    }
}

impl ContainerFiles for Host {
    fn write_container_file(
        &self,
        pid: i32,
        rootfs: &std::path::Path,
        rel: &std::path::Path,
        contents: &[u8],
    ) -> Result<Written, RootfsError> {
        rootfs::write_container_file(pid, rootfs, rel, contents)
    }
}
