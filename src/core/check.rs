//! Whether a container's endpoint is whole: its record, its network, the links its
//! driver made, its nftables elements and, given the container's namespace, the address and default route in
//! there. Changes nothing. For `CHECK` of the CNI front end and for people.

use crate::core::elements::firewall_elements;
use crate::driver::{self, DriverKernel};
use crate::firewall::FirewallError;
use crate::kernel::link::LinkError;
use crate::kernel::netns::Netns;
use crate::kernel::seam::{ContainerError, Kernel};
use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// What is missing of `id`'s endpoint, one line each; empty when it is whole. With
/// `netns`, the container's side is read back too.
pub fn check(
    store: &Store,
    k: &dyn Kernel,
    id: &ContainerId,
    netns: Option<&Netns>,
) -> Result<Vec<String>, CheckError> {
    let Some(ep) = store.load_endpoint(id)? else {
        return Ok(vec![format!("container {id} has no endpoint record")]);
    };
    if store.is_deleting(id) {
        return Ok(vec![format!("container {id} is being torn down")]);
    }
    let net = match store.load_network(&ep.network) {
        Ok(net) => net,
        Err(StoreError::UnknownNetwork { .. }) => {
            return Ok(vec![format!(
                "network {} of container {id} is not defined any more",
                ep.network
            )])
        }
        Err(e) => return Err(e.into()),
    };
    let mut missing = driver::for_kind(ep.driver).check(DriverKernel::new(k), &net, &ep)?;
    missing.extend(k.firewall().missing_elements(&firewall_elements(&ep))?);
    if let Some(netns) = netns {
        missing.extend(check_container(k, netns, &ep)?);
    }
    Ok(missing)
}

/// The container's interface, its address and its default route via the gateway.
fn check_container(
    k: &dyn Kernel,
    netns: &Netns,
    ep: &Endpoint,
) -> Result<Vec<String>, CheckError> {
    let id = &ep.id;
    let ifname = &ep.interface;
    let Some(view) = k.links().inspect_container(netns, ifname)? else {
        return Ok(vec![format!(
            "interface {ifname} of container {id} is missing in its namespace"
        )]);
    };
    let mut missing = Vec::new();
    if let Some(v4) = ep.ipv4 {
        let want = (v4.address, v4.prefix, v4.gateway);
        missing.extend(family_problems(
            &view.addresses,
            &view.default_gateways,
            want,
            ep,
        ));
    }
    if let Some(v6) = ep.ipv6 {
        let want = (v6.address, v6.prefix, v6.gateway);
        missing.extend(family_problems(
            &view.ipv6_addresses,
            &view.ipv6_default_gateways,
            want,
            ep,
        ));
    }
    Ok(missing)
}

/// What the container's interface lacks of one family: its address (`want`'s first two) and
/// its default route via the gateway (the third).
fn family_problems<A: PartialEq + std::fmt::Display + Copy>(
    addresses: &[(A, u8)],
    gateways: &[A],
    (address, prefix, gateway): (A, u8, A),
    ep: &Endpoint,
) -> Vec<String> {
    let (id, ifname) = (&ep.id, &ep.interface);
    let mut missing = Vec::new();
    if !addresses.contains(&(address, prefix)) {
        missing.push(format!(
            "address {address}/{prefix} of container {id} is missing on {ifname}"
        ));
    }
    if !gateways.contains(&gateway) {
        missing.push(format!(
            "default route via {gateway} of container {id} is missing on {ifname}"
        ));
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{cid, World};

    #[test]
    fn check_finds_a_whole_endpoint_whole_and_names_what_went_missing() {
        let w = World::new("check");
        assert_eq!(
            check(&w.store, &w.fake, &cid("c1"), None).unwrap(),
            vec!["container c1 has no endpoint record".to_owned()]
        );
        let ep = w.setup("c1", "").unwrap();
        w.fake.clear_calls();
        assert!(check(&w.store, &w.fake, &cid("c1"), None)
            .unwrap()
            .is_empty());
        assert!(w.fake.changes().is_empty(), "check changes nothing");
        w.fake.remove_link(&ep.host_interface);
        let missing = check(&w.store, &w.fake, &cid("c1"), None).unwrap();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains(&ep.host_interface), "{missing:?}");
    }

    #[test]
    fn check_with_the_namespace_reads_back_the_address_and_route() {
        let w = World::new("check-ns");
        w.setup("c1", "").unwrap();
        let netns = Netns::open(w.request("c1", "").netns.as_deref().unwrap()).unwrap();
        let found = check(&w.store, &w.fake, &cid("c1"), Some(&netns)).unwrap();
        assert!(found.is_empty(), "{found:?}");
        assert!(w
            .fake
            .calls()
            .iter()
            .any(|c| c == "link.inspect_container eth0"));
        // A record whose address the container does not have (the fake's is another).
        let mut ep = w.record("c1").unwrap();
        let v4 = ep.ipv4.as_mut().unwrap();
        v4.address = std::net::Ipv4Addr::new(10, 77, 200, 200);
        v4.gateway = std::net::Ipv4Addr::new(10, 77, 0, 254);
        w.store.save_endpoint(&ep).unwrap();
        let found = check(&w.store, &w.fake, &cid("c1"), Some(&netns)).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("address 10.77.200.200/16"), "{found:?}");
        assert!(
            found[1].contains("default route via 10.77.0.254"),
            "{found:?}"
        );
    }

    #[test]
    fn check_with_the_namespace_names_a_missing_ipv6_address_and_route() {
        let w = World::new("check-ns6");
        w.setup("c1", "").unwrap();
        let netns = Netns::open(w.request("c1", "").netns.as_deref().unwrap()).unwrap();
        // A record with an IPv6 part the container was never given (the fake's has none).
        let mut ep = w.record("c1").unwrap();
        ep.ipv6 = Some(crate::model::endpoint::Ipv6Attachment {
            address: "fd00:77::2".parse().unwrap(),
            prefix: 64,
            gateway: "fd00:77::1".parse().unwrap(),
            masquerade: true,
        });
        w.store.save_endpoint(&ep).unwrap();
        let found = check(&w.store, &w.fake, &cid("c1"), Some(&netns)).unwrap();
        assert_eq!(
            found,
            vec![
                "address fd00:77::2/64 of container c1 is missing on eth0".to_owned(),
                "default route via fd00:77::1 of container c1 is missing on eth0".to_owned(),
            ]
        );
    }
}
