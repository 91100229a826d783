//! The fake's link operations: bridges and veths by name, what each container's interface
//! was given, and the macvlan calls (see `macvlan`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::Fake;
use crate::kernel::link::{
    BridgeSpec, ContainerAddrs, ContainerMacvlan, ContainerView, DeviceRoute, Foreign, HostVeth,
    LinkError, MacvlanSpec, ParentView, VethFate, VethSpec, VethState,
};
use crate::kernel::netns::Netns;
use crate::kernel::seam::{ContainerError, Links};
use crate::model::mac::Mac;

impl Fake {
    /// Someone removed the IPv6 address `address` from the host's link `name`.
    pub fn remove_ipv6_address(&self, name: &str, address: Ipv6Addr) {
        let mut s = self.state.borrow_mut();
        s.addresses6.remove(&(name.to_owned(), address));
    }
}

impl Links for Fake {
    /// Recorded as `NAME [GW4/P] [GW6/P]`.
    fn ensure_bridge(&self, spec: &BridgeSpec<'_>) -> Result<u32, LinkError> {
        let mut arg = spec.name.to_owned();
        if let Some((gateway, prefix)) = spec.ipv4 {
            arg.push_str(&format!(" {gateway}/{prefix}"));
        }
        if let Some((gateway, prefix)) = spec.ipv6 {
            arg.push_str(&format!(" {gateway}/{prefix}"));
        }
        if !spec.routes.is_empty() {
            let routes: Vec<_> = spec.routes.iter().map(ToString::to_string).collect();
            arg.push_str(&format!(" routes {}", routes.join(",")));
        }
        self.link_call("link.ensure_bridge", arg)?;
        self.add_link(spec.name);
        let mut s = self.state.borrow_mut();
        if let Some((gateway, _)) = spec.ipv6 {
            s.addresses6.insert((spec.name.to_owned(), gateway));
        }
        for dst in spec.routes {
            s.device_routes.insert((spec.name.to_owned(), *dst));
        }
        Ok(1)
    }

    /// Recorded as `NAME GW6/P`.
    fn add_bridge_ipv6(
        &self,
        name: &str,
        gateway: Ipv6Addr,
        prefix: u8,
    ) -> Result<bool, LinkError> {
        self.link_call("link.add_bridge_ipv6", format!("{name} {gateway}/{prefix}"))?;
        let mut s = self.state.borrow_mut();
        if !s.links.contains(name) {
            return Ok(false);
        }
        s.addresses6.insert((name.to_owned(), gateway));
        Ok(true)
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
        let mut s = self.state.borrow_mut();
        s.device_routes.retain(|(dev, _)| dev != name);
        Ok(s.links.remove(name))
    }

    fn link_present(&self, name: &str) -> Result<bool, LinkError> {
        self.link_call("link.link_present", name.to_owned())?;
        let s = self.state.borrow();
        Ok(s.links.contains(name) || s.foreign.contains(name))
    }

    fn has_ipv6_address(&self, name: &str, address: Ipv6Addr) -> Result<bool, LinkError> {
        self.link_call("link.has_ipv6_address", format!("{name} {address}"))?;
        let s = self.state.borrow();
        Ok(s.addresses6.contains(&(name.to_owned(), address)))
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

    fn ipv6_routes(&self) -> Result<Vec<Ipv6Network>, LinkError> {
        self.link_call("link.ipv6_routes", String::new())?;
        Ok(self.state.borrow().routes6.clone())
    }

    /// Recorded as `IFNAME [A4/P via GW4] [A6/P via GW6]`.
    fn configure_container(
        &self,
        _netns: &Netns,
        ifname: &str,
        addrs: &ContainerAddrs,
    ) -> Result<(), ContainerError> {
        let mut arg = ifname.to_owned();
        if let Some(v4) = addrs.ipv4 {
            arg.push_str(&format!(" {}/{} via {}", v4.address, v4.prefix, v4.gateway));
        }
        if let Some(v6) = addrs.ipv6 {
            arg.push_str(&format!(" {}/{} via {}", v6.address, v6.prefix, v6.gateway));
        }
        self.link_call("link.configure_container", arg)?;
        self.state
            .borrow_mut()
            .containers
            .push((ifname.to_owned(), *addrs));
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
        self.state.borrow_mut().containers.push((
            ifname.to_owned(),
            ContainerAddrs::ipv4(address, 32, gateway),
        ));
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
        let v4 = || mine.iter().filter_map(|c| c.1.ipv4);
        let v6 = || mine.iter().filter_map(|c| c.1.ipv6);
        Ok(Some(ContainerView {
            addresses: v4().map(|a| (a.address, a.prefix)).collect(),
            default_gateways: v4().map(|a| a.gateway).collect(),
            ipv6_addresses: v6().map(|a| (a.address, a.prefix)).collect(),
            ipv6_default_gateways: v6().map(|a| a.gateway).collect(),
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

    /// Recorded as `IFNAME on|off`; a link the fake does not have is ENODEV.
    fn set_hairpin(&self, ifname: &str, on: bool) -> Result<(), LinkError> {
        let arg = format!("{ifname} {}", if on { "on" } else { "off" });
        self.link_call("link.set_hairpin", arg.clone())?;
        let mut s = self.state.borrow_mut();
        if !s.links.contains(ifname) {
            return Err(LinkError::Netlink {
                op: format!("link.set_hairpin {arg} (fake)"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        s.hairpin.insert(ifname.to_owned(), on);
        Ok(())
    }

    /// A link of the fake's reads as a port with hairpin on (`create_veth` sets it) unless
    /// `set_hairpin` said otherwise.
    fn hairpin(&self, ifname: &str) -> Result<Option<bool>, LinkError> {
        self.link_call("link.hairpin", ifname.to_owned())?;
        let s = self.state.borrow();
        Ok(s.links
            .contains(ifname)
            .then(|| s.hairpin.get(ifname).copied().unwrap_or(true)))
    }

    /// Recorded as `DST dev DEV`; a link the fake does not have is ENODEV.
    fn ensure_device_route(&self, dev: &str, dst: IpNetwork) -> Result<(), LinkError> {
        let arg = format!("{dst} dev {dev}");
        self.link_call("link.ensure_device_route", arg.clone())?;
        let mut s = self.state.borrow_mut();
        if !s.links.contains(dev) {
            return Err(LinkError::Netlink {
                op: format!("link.ensure_device_route {arg} (fake)"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        s.device_routes.insert((dev.to_owned(), dst));
        Ok(())
    }

    fn delete_device_route(&self, dev: &str, dst: IpNetwork) -> Result<bool, LinkError> {
        self.link_call("link.delete_device_route", format!("{dst} dev {dev}"))?;
        let mut s = self.state.borrow_mut();
        Ok(s.device_routes.remove(&(dev.to_owned(), dst)))
    }

    fn device_routes(&self, dev: &str) -> Result<Vec<IpNetwork>, LinkError> {
        self.link_call("link.device_routes", dev.to_owned())?;
        let s = self.state.borrow();
        Ok(s.device_routes
            .iter()
            .filter(|(d, _)| d == dev)
            .map(|(_, dst)| *dst)
            .collect())
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
