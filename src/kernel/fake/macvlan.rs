//! The fake's macvlan part: container macvlans by (namespace path, name), the host
//! interfaces that can be parents, and the host's routes with their devices.

use std::collections::BTreeSet;
use std::io;

use ipnetwork::Ipv4Network;

use super::Fake;
use crate::kernel::link::{
    ContainerMacvlan, DeviceRoute, LinkError, MacvlanSpec, ParentView, VethFate, VethState,
};
use crate::kernel::netns::Netns;

#[derive(Default)]
pub(super) struct State {
    /// (namespace path, name) of every macvlan made in a container.
    links: BTreeSet<(String, String)>,
    /// Host interfaces a macvlan network may name as its parent.
    parents: Vec<(String, ParentView)>,
    routes: Vec<DeviceRoute>,
}

impl Fake {
    /// A host interface that can be a macvlan parent.
    pub fn add_parent(&self, name: &str, view: ParentView) {
        self.state
            .borrow_mut()
            .macvlan
            .parents
            .push((name.to_owned(), view));
    }

    /// A route the host has, leaving by the device with index `oif`.
    pub fn add_device_route(&self, route: Ipv4Network, oif: Option<u32>) {
        self.state.borrow_mut().macvlan.routes.push((route, oif));
    }

    /// Whether a container macvlan `name` exists in the namespace at `netns`.
    pub fn has_macvlan(&self, netns: &str, name: &str) -> bool {
        let key = (netns.to_owned(), name.to_owned());
        self.state.borrow().macvlan.links.contains(&key)
    }

    /// As when the container's namespace goes, taking its macvlan along.
    pub fn remove_macvlan(&self, netns: &str, name: &str) {
        let key = (netns.to_owned(), name.to_owned());
        self.state.borrow_mut().macvlan.links.remove(&key);
    }

    pub(super) fn mv_create(&self, spec: &MacvlanSpec<'_>, netns: &Netns) -> Result<(), LinkError> {
        let arg = format!("{} of {}", spec.name, spec.parent);
        self.link_call("link.create_macvlan", arg.clone())?;
        let mut s = self.state.borrow_mut();
        let errno = if !s.macvlan.parents.iter().any(|(n, _)| n == spec.parent) {
            Some(libc::ENODEV)
        } else if s
            .macvlan
            .parents
            .iter()
            .any(|(n, v)| n == spec.parent && v.master.is_some())
        {
            Some(libc::EBUSY)
        } else {
            let key = (netns.path().display().to_string(), spec.name.to_owned());
            (!s.macvlan.links.insert(key)).then_some(libc::EEXIST)
        };
        match errno {
            Some(errno) => Err(LinkError::Netlink {
                op: format!("create macvlan {arg} (fake)"),
                source: io::Error::from_raw_os_error(errno),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn mv_state(&self, c: &ContainerMacvlan<'_>) -> Result<VethState, LinkError> {
        self.link_call("link.macvlan_state", c.name.to_owned())?;
        let key = (c.netns.display().to_string(), c.name.to_owned());
        Ok(if self.state.borrow().macvlan.links.contains(&key) {
            VethState::Ours
        } else {
            VethState::Gone
        })
    }

    pub(super) fn mv_delete(&self, c: &ContainerMacvlan<'_>) -> Result<VethFate, LinkError> {
        self.link_call("link.delete_macvlan", c.name.to_owned())?;
        let key = (c.netns.display().to_string(), c.name.to_owned());
        Ok(if self.state.borrow_mut().macvlan.links.remove(&key) {
            VethFate::Deleted
        } else {
            VethFate::Gone
        })
    }

    pub(super) fn mv_parent(&self, name: &str) -> Result<Option<ParentView>, LinkError> {
        self.link_call("link.parent_view", name.to_owned())?;
        let s = self.state.borrow();
        Ok(s.macvlan
            .parents
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()))
    }

    pub(super) fn mv_routes(&self) -> Result<Vec<DeviceRoute>, LinkError> {
        self.link_call("link.ipv4_device_routes", String::new())?;
        Ok(self.state.borrow().macvlan.routes.clone())
    }
}
