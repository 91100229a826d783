//! Deleting a record's host veth: only when it is the record's (see `owner`), and not
//! when its container's namespace is about to take it anyway.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::owner::{self, Foreign, HostVeth};
use super::{inet_socket, is_errno, msg, LinkError, Rtnl};
use crate::sys::ifconf;

/// Whether the namespace of a veth's peer is being destroyed, from the peer's namespace
/// id as the host sees it (`IFLA_LINK_NETNSID`; absent when the peer is in the host's own
/// namespace).
///
/// The kernel reports a dying namespace in one of two ways. Once its cleanup has started,
/// its ids are gone while its devices are still there for a grace period or more, and the
/// id reads as -1 (a live peer namespace always gets an id assigned when the link is read).
/// Before that, the id is still there but can no longer be looked up (`lookup_dying`).
fn peer_namespace_dying(
    peer_nsid: Option<i32>,
    lookup_dying: impl FnOnce(i32) -> Result<bool, LinkError>,
) -> Result<bool, LinkError> {
    match peer_nsid {
        None => Ok(false),
        Some(id) if id < 0 => Ok(true),
        Some(id) => lookup_dying(id),
    }
}

/// How often `delete_veth` looks again while it waits for a namespace to die: a look is
/// two small netlink requests.
const DYING_POLL_INTERVAL: Duration = Duration::from_micros(500);

/// What became of a host veth at teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VethFate {
    /// Already gone (its namespace was destroyed before).
    Gone,
    /// Deleted now.
    Deleted,
    /// Its peer's namespace is being destroyed, which removes it in a moment.
    GoesWithNetns,
    /// A link has the name but is not this record's veth; it was left alone, and the
    /// record's link is gone.
    NotOurs(Foreign),
}

/// Whose the link under a record's host veth name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VethState {
    /// No link has the name.
    Gone,
    /// The record's own veth.
    Ours,
    /// Another link has the name.
    NotOurs(Foreign),
}

impl Rtnl {
    /// Deletes a veth's host end, unless its peer's namespace is being destroyed: the
    /// kernel then removes both ends itself, and deleting it ourselves would only wait for
    /// the kernel's RCU barrier (12–20 ms) on the way (runc runs poststop in that window).
    ///
    /// `grace` is how long to wait for the namespace to start being destroyed before
    /// deleting anyway. Under runc the namespace of a container whose process is gone often
    /// lives a few ms into poststop (most likely the runtime's netlink socket in there,
    /// which the kernel frees a grace period after it is closed), and waiting for that is
    /// cheaper than the delete. Zero when the namespace may well live on.
    ///
    /// A link with the name that is not `veth` (see `owner`) is left alone: `NotOurs`.
    /// The check reads the link message the namespace check fetches anyway, plus one ioctl
    /// for the bridge's index; the delete goes by the index checked, so a link that takes
    /// the name meanwhile is not the one deleted.
    pub fn delete_veth(&self, veth: &HostVeth<'_>, grace: Duration) -> Result<VethFate, LinkError> {
        let deadline = Instant::now() + grace;
        let mut bridge_index = None;
        let mut checked = None;
        loop {
            let Some(link) = self.link(veth.name)? else {
                return Ok(VethFate::Gone);
            };
            if checked != Some(link.header.index) {
                let bridge = match bridge_index {
                    Some(index) => index,
                    None => *bridge_index.insert(self.bridge_index(veth.bridge)?),
                };
                if let Err(foreign) = owner::check(&link, veth, bridge) {
                    return Ok(VethFate::NotOurs(foreign));
                }
                checked = Some(link.header.index);
            }
            if self.veth_dying(&link)? {
                return Ok(VethFate::GoesWithNetns);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(DYING_POLL_INTERVAL);
        }
        let index = checked.expect("the loop checks the link before it leaves");
        Ok(if self.delete_index(index, veth.name)? {
            VethFate::Deleted
        } else {
            VethFate::Gone
        })
    }

    /// Whether the link named as in `veth` is there and is `veth`: one link request and
    /// one ioctl. For `gc` and for a setup that finds its host name taken.
    pub fn veth_state(&self, veth: &HostVeth<'_>) -> Result<VethState, LinkError> {
        let Some(link) = self.link(veth.name)? else {
            return Ok(VethState::Gone);
        };
        Ok(
            match owner::check(&link, veth, self.bridge_index(veth.bridge)?) {
                Ok(()) => VethState::Ours,
                Err(foreign) => VethState::NotOurs(foreign),
            },
        )
    }

    /// The index of bridge `name`, `None` when there is none.
    fn bridge_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        if name.is_empty() {
            return Ok(None);
        }
        let sock = inet_socket()?;
        ifconf::index_if_present(sock.as_fd(), name).map_err(|source| LinkError::Netlink {
            op: format!("look up bridge {name}"),
            source,
        })
    }

    /// Whether the namespace of the veth `link`'s peer is being destroyed.
    fn veth_dying(&self, link: &LinkMessage) -> Result<bool, LinkError> {
        let peer_nsid = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(id) => Some(*id),
            _ => None,
        });
        peer_namespace_dying(peer_nsid, |nsid| self.netns_dying(nsid))
    }

    /// A namespace whose last reference is gone keeps its id until the kernel's cleanup
    /// runs, but can no longer be looked up by it: the kernel answers EINVAL.
    fn netns_dying(&self, nsid: i32) -> Result<bool, LinkError> {
        // The answer (the loopback link's message) is not read: that it came is enough.
        let get = RouteNetlinkMessage::GetLink(msg::loopback_in(nsid));
        match self.sock.get(get, |_| Ok(())) {
            Ok(()) => Ok(false),
            Err(e) if is_errno(&e, libc::EINVAL) => Ok(true),
            Err(source) => Err(LinkError::Netlink {
                op: format!("look up network namespace id {nsid}"),
                source,
            }),
        }
    }

    /// Deletes the link with `index` (`name` is for the message); `Ok(false)` when it is
    /// already gone.
    fn delete_index(&self, index: u32, name: &str) -> Result<bool, LinkError> {
        self.delete_link(msg::by_index(index), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: i32) -> Result<bool, LinkError> {
        panic!("a namespace id that needs no lookup was looked up")
    }

    #[test]
    fn a_peer_without_a_namespace_id_is_dying() {
        assert!(peer_namespace_dying(Some(-1), never).unwrap());
    }

    #[test]
    fn a_peer_in_our_own_namespace_is_not_dying() {
        assert!(!peer_namespace_dying(None, never).unwrap());
    }

    #[test]
    fn a_peer_with_an_id_is_dying_only_when_the_lookup_says_so() {
        assert!(peer_namespace_dying(Some(3), |id| Ok(id == 3)).unwrap());
        assert!(!peer_namespace_dying(Some(3), |_| Ok(false)).unwrap());
    }
}
