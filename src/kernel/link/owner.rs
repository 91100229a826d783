//! Whose a host veth is. An endpoint record names its host veth, and a record can be
//! stale (the name reused since), planted by whoever could write the run directory, or
//! share its name with another container's veth through a hash collision; deleting the
//! link a record names without looking would delete someone else's interface. So a link
//! is this record's only when it is a veth, a port of the record's bridge, and carries the
//! container's owner tag (`ContainerId::owner_tag`) in its alias.

use std::fmt;

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};

use crate::model::endpoint::Endpoint;
use crate::model::ids::{ContainerId, OWNER_TAG_PREFIX};

/// A host veth as an endpoint record describes it.
#[derive(Debug, Clone, Copy)]
pub struct HostVeth<'a> {
    pub name: &'a str,
    /// The bridge the veth is a port of; empty for a routed network's veth, which is none.
    pub bridge: &'a str,
    pub owner: &'a ContainerId,
}

impl<'a> HostVeth<'a> {
    pub fn of(ep: &'a Endpoint) -> Self {
        HostVeth {
            name: &ep.host_interface,
            bridge: &ep.bridge,
            owner: &ep.id,
        }
    }
}

/// A link that has the name a record gives but is not that record's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub name: String,
    pub owner: String,
    /// What gave it away.
    pub why: String,
    /// Another nethook container's id, when the alias names one.
    pub other_owner: Option<String>,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host interface {} is not container {}'s ({}): left alone",
            self.name, self.owner, self.why
        )
    }
}

/// Whether `link` (looked up by `veth.name`) is the veth `veth` describes. `bridge_index`
/// is the index of `veth.bridge`, `None` when there is no such bridge.
pub(crate) fn check(
    link: &LinkMessage,
    veth: &HostVeth<'_>,
    bridge_index: Option<u32>,
) -> Result<(), Foreign> {
    let foreign = |why: String, other_owner: Option<String>| Foreign {
        name: veth.name.to_owned(),
        owner: veth.owner.to_string(),
        why,
        other_owner,
    };
    let Facts {
        kind,
        master,
        alias,
    } = facts(link);
    let tag = veth.owner.owner_tag();
    // An alias that names another container says most; check it first.
    if let Some(alias) = alias.filter(|a| *a != tag) {
        let other = alias.strip_prefix(OWNER_TAG_PREFIX).map(str::to_owned);
        return Err(foreign(format!("its alias is {alias:?}"), other));
    }
    match kind {
        Some(InfoKind::Veth) => {}
        Some(other) => return Err(foreign(format!("it is a {other} link, not a veth"), None)),
        None => return Err(foreign("it is not a veth".into(), None)),
    }
    if veth.bridge.is_empty() {
        // A routed veth: a port of any bridge is not one nethook made for it.
        if master.is_some() {
            return Err(foreign(
                "it is a port of a bridge, and a routed network's veth is not".into(),
                None,
            ));
        }
    } else if master.is_none() || master != bridge_index {
        return Err(foreign(
            format!("it is not a port of bridge {}", veth.bridge),
            None,
        ));
    }
    // A veth without an alias is ours only under a name derived from this container's id:
    // nethook versions before the owner tag set none (so their containers can still be torn
    // down after an upgrade), and a setup killed between creating the veth and tagging it
    // leaves one. A record cannot make root delete another veth this way: a planted record
    // names links under its own id's names only, and current veths all carry a tag.
    if alias.is_none() && !veth.owner.host_veth_names().iter().any(|n| n == veth.name) {
        return Err(foreign(
            "it has no nethook owner alias and its name is not derived from the container id"
                .into(),
            None,
        ));
    }
    Ok(())
}

/// What decides whose a link is: its kind, the bridge it is a port of, its alias.
struct Facts<'a> {
    kind: Option<&'a InfoKind>,
    master: Option<u32>,
    alias: Option<&'a str>,
}

fn facts(link: &LinkMessage) -> Facts<'_> {
    let mut f = Facts {
        kind: None,
        master: None,
        alias: None,
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::LinkInfo(infos) => {
                f.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k),
                    _ => None,
                })
            }
            LinkAttribute::Controller(index) => f.master = Some(*index),
            LinkAttribute::IfAlias(a) => f.alias = Some(a.as_str()),
            _ => {}
        }
    }
    f
}

/// Whether a link is a bridge, and its alias.
pub(super) fn bridge_facts(link: &LinkMessage) -> (bool, Option<String>) {
    let f = facts(link);
    (
        f.kind == Some(&InfoKind::Bridge),
        f.alias.map(str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoKind;

    fn link(kind: Option<InfoKind>, master: Option<u32>, alias: Option<&str>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        if let Some(kind) = kind {
            msg.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        }
        if let Some(master) = master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        if let Some(alias) = alias {
            msg.attributes.push(LinkAttribute::IfAlias(alias.into()));
        }
        msg
    }

    fn id(raw: &str) -> ContainerId {
        ContainerId::parse(raw).unwrap()
    }

    #[test]
    fn a_tagged_veth_on_the_bridge_is_ours() {
        let owner = id("web");
        let name = owner.host_veth_name();
        let veth = HostVeth {
            name: &name,
            bridge: "nethook0",
            owner: &owner,
        };
        assert_eq!(
            check(
                &link(Some(InfoKind::Veth), Some(7), Some("nethook:web")),
                &veth,
                Some(7)
            ),
            Ok(())
        );
        // The tag, not the name, decides for a tagged veth: the fallback name is ours too.
        let alt = owner.alt_host_veth_name();
        let veth = HostVeth { name: &alt, ..veth };
        assert_eq!(
            check(
                &link(Some(InfoKind::Veth), Some(7), Some("nethook:web")),
                &veth,
                Some(7)
            ),
            Ok(())
        );
    }

    #[test]
    fn another_containers_veth_is_not_ours_and_says_whose_it_is() {
        let owner = id("web");
        let name = owner.host_veth_name();
        let veth = HostVeth {
            name: &name,
            bridge: "nethook0",
            owner: &owner,
        };
        let err = check(
            &link(Some(InfoKind::Veth), Some(7), Some("nethook:db")),
            &veth,
            Some(7),
        )
        .unwrap_err();
        assert_eq!(err.other_owner.as_deref(), Some("db"));
        let msg = err.to_string();
        assert!(
            msg.contains(&name) && msg.contains("\"nethook:db\"") && msg.contains("left alone"),
            "{msg}"
        );
    }

    #[test]
    fn a_link_that_is_no_veth_or_on_another_bridge_is_not_ours() {
        let owner = id("web");
        let name = owner.host_veth_name();
        let veth = HostVeth {
            name: &name,
            bridge: "nethook0",
            owner: &owner,
        };
        let tag = Some("nethook:web");
        let err = check(&link(Some(InfoKind::Dummy), Some(7), tag), &veth, Some(7)).unwrap_err();
        assert!(err.why.contains("dummy link, not a veth"), "{err}");
        assert!(check(&link(None, Some(7), tag), &veth, Some(7)).is_err());
        let err = check(&link(Some(InfoKind::Veth), Some(8), tag), &veth, Some(7)).unwrap_err();
        assert!(err.why.contains("not a port of bridge nethook0"), "{err}");
        assert!(check(&link(Some(InfoKind::Veth), None, tag), &veth, Some(7)).is_err());
        assert!(check(&link(Some(InfoKind::Veth), Some(7), tag), &veth, None).is_err());
        assert_eq!(
            check(&link(Some(InfoKind::Veth), Some(7), tag), &veth, Some(7)),
            Ok(())
        );
    }

    #[test]
    fn an_untagged_veth_is_ours_only_under_a_name_derived_from_the_id() {
        let owner = id("web");
        let untagged = link(Some(InfoKind::Veth), Some(7), None);
        for name in owner.host_veth_names() {
            let veth = HostVeth {
                name: &name,
                bridge: "nethook0",
                owner: &owner,
            };
            assert_eq!(check(&untagged, &veth, Some(7)), Ok(()), "{name}");
        }
        // A planted record naming some other veth on the bridge (e.g. another tool's).
        let veth = HostVeth {
            name: "veth1234",
            bridge: "nethook0",
            owner: &owner,
        };
        let err = check(&untagged, &veth, Some(7)).unwrap_err();
        assert!(err.why.contains("no nethook owner alias"), "{err}");
    }
}
