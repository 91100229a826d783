//! Network definitions: create and remove them, with the checks against the host they
//! need (routes a subnet would shadow, bridges nethook did not make).

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::driver::{self, DriverError};
use crate::kernel::link::LinkError;
use crate::kernel::link::ParentView;
use crate::kernel::seam::Kernel;
use crate::model::network::{DriverKind, Network, NetworkError};
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NetworkOpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("subnet {subnet} overlaps the host route {route}; pick a subnet that does not")]
    RouteOverlap { subnet: String, route: String },
    #[error("a link named {bridge} already exists on this host and nethook did not make it for network {network}; pass another --bridge")]
    BridgeNotOurs { bridge: String, network: String },
    #[error(
        "network {name} is used by {count} endpoint(s) ({users}); stop those containers first"
    )]
    InUse {
        name: String,
        count: usize,
        users: String,
    },
    #[error("{0}")]
    Parent(String),
    #[error("network {name} already has IPv6 ({subnet}); it cannot change while the network exists: remove and recreate the network to change it")]
    HasIpv6 { name: String, subnet: String },
    #[error("network {name} has services ({services}); its service range cannot change under them: remove them first")]
    HasServices { name: String, services: String },
    #[error(transparent)]
    Names(#[from] crate::core::names::NameError),
    #[error("network {name} still has services ({services}); remove them first with `nethook service rm`")]
    HasServicesLeft { name: String, services: String },
    #[error("network {name} is built in and has no bridge to remove")]
    BuiltIn { name: String },
}

/// Records a new definition, refusing one that clashes with another network, with a host
/// route, or with a link nethook did not make under its bridge's name.
pub fn create(store: &Store, k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    driver::of(net).validate(net)?;
    let _lock = store.lock()?;
    net.check_conflicts(&store.list_networks()?)?;
    if net.driver == DriverKind::Macvlan {
        check_parent(k, net)?;
        store.create_network(net)?;
        return Ok(());
    }
    check_host_routes(k, net)?;
    crate::core::network_update::check_ranges_against_routes(k, net)?;
    // A bridge of that name that nethook did not make for this network belongs to
    // someone else: adding the gateway to it and deleting it at `network rm` would take
    // it over.
    if !net.driver.is_bridge() {
        store.create_network(net)?;
        return Ok(());
    }
    if let Some((is_bridge, alias)) = k.links().bridge_owner(&net.bridge)? {
        if !net.owns_bridge(is_bridge, alias.as_deref()) {
            return Err(NetworkOpError::BridgeNotOurs {
                bridge: net.bridge.clone(),
                network: net.name.clone(),
            });
        }
    }
    store.create_network(net)?;
    Ok(())
}

/// A subnet that overlaps a route the host already has would hijack or lose traffic.
fn check_host_routes(k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    if let Some(v4) = net.ipv4 {
        let clash = k
            .links()
            .ipv4_routes()?
            .into_iter()
            .find(|r| r.prefix() > 0 && r.overlaps(v4.subnet));
        if let Some(route) = clash {
            return Err(NetworkOpError::RouteOverlap {
                subnet: v4.subnet.to_string(),
                route: route.to_string(),
            });
        }
    }
    check_host_routes6(k, net)
}

/// The IPv6 part of `check_host_routes`, also for `network update --subnet6`.
fn check_host_routes6(k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    let Some(v6) = net.ipv6 else { return Ok(()) };
    let clash = k
        .links()
        .ipv6_routes()?
        .into_iter()
        .find(|r| r.prefix() > 0 && r.overlaps(v6.subnet));
    match clash {
        Some(route) => Err(NetworkOpError::RouteOverlap {
            subnet: v6.subnet.to_string(),
            route: route.to_string(),
        }),
        None => Ok(()),
    }
}

/// A macvlan network joins a LAN the host is already on, so the host-route check turns
/// around: the parent must exist, be able to carry macvlans (not loopback, not a bridge or
/// bond port, whose frames that master takes first), and have a route covering the subnet
/// (the LAN's connected route: it says the subnet is that LAN's); no route on another
/// device may overlap it; the gateway (the LAN's router) must not be the host itself,
/// which its macvlan containers cannot reach; and no address of the host's on the parent
/// may be one nethook hands out.
fn check_parent(k: &dyn Kernel, net: &Network) -> Result<(), NetworkOpError> {
    let (Some(parent), Some(v4)) = (net.parent.as_deref(), net.ipv4) else {
        return Ok(());
    };
    let refuse = |why: String| Err(NetworkOpError::Parent(why));
    let Some(ParentView {
        index,
        master,
        loopback,
        addresses,
    }) = k.links().parent_view(parent)?
    else {
        return refuse(format!(
            "parent {parent} does not exist on this host; name an existing interface on the LAN with --parent"
        ));
    };
    if loopback {
        return refuse(format!(
            "parent {parent} is the loopback device, which has no LAN; name the host's LAN interface with --parent"
        ));
    }
    if master.is_some() {
        return refuse(format!(
            "parent {parent} is a port of a bridge or bond, which takes its frames before a macvlan could; name the bridge itself or another interface with --parent"
        ));
    }
    let subnet = v4.subnet;
    let routes = k.links().ipv4_device_routes()?;
    let covered = routes.iter().any(|(r, oif)| {
        *oif == Some(index)
            && r.prefix() > 0
            && r.prefix() <= subnet.prefix()
            && r.contains(subnet.network())
    });
    if !covered {
        return refuse(format!(
            "no route on parent {parent} covers {subnet}, so it is not that LAN's subnet; give the LAN's subnet with --subnet (the host needs an address on {parent} in it)"
        ));
    }
    if let Some((route, _)) = routes
        .iter()
        .find(|(r, oif)| *oif != Some(index) && r.prefix() > 0 && r.overlaps(subnet))
    {
        return Err(NetworkOpError::RouteOverlap {
            subnet: subnet.to_string(),
            route: format!("{route} (on another interface than parent {parent})"),
        });
    }
    if addresses.contains(&v4.gateway) {
        return refuse(format!(
            "gateway {} is this host's own address on {parent}, which macvlan containers cannot reach through it; give the LAN's router with --gateway",
            v4.gateway
        ));
    }
    let pool = v4.range.unwrap_or(subnet);
    if let Some(own) = addresses.iter().find(|a| pool.contains(**a)) {
        return refuse(format!(
            "{own} is this host's address on {parent} and inside {pool}, which nethook would hand to containers; pass --ip-range CIDR, a part of {subnet} that holds no host of the LAN"
        ));
    }
    Ok(())
}

/// Gives a defined network (the default one included, whose built-in definition a file
/// then replaces) an IPv6 part: containers started from now on get an address of each
/// family, running ones keep what they have; its bridge, when it exists, gets the IPv6
/// gateway now. An IPv6 part is never changed or removed here: containers may hold its
/// addresses.
pub fn add_ipv6(
    store: &Store,
    k: &dyn Kernel,
    name: &str,
    subnet6: &str,
    gateway6: Option<Ipv6Addr>,
    masquerade6: bool,
) -> Result<Network, NetworkOpError> {
    let _lock = store.lock()?;
    let mut net = store.load_network(name)?;
    if let Some(v6) = net.ipv6 {
        return Err(NetworkOpError::HasIpv6 {
            name: name.to_owned(),
            subnet: v6.subnet.to_string(),
        });
    }
    if !net.driver.is_bridge() {
        return Err(NetworkError::DriverOption {
            option: "--subnet6",
            driver: net.driver,
            reason: "IPv6 is built for bridge networks only so far",
        }
        .into());
    }
    net.set_ipv6(subnet6, gateway6, masquerade6)?;
    net.check_conflicts(&store.list_networks()?)?;
    check_host_routes6(k, &net)?;
    // A bridge that is up already keeps it: setup's cheap checks would not notice that it
    // lacks the IPv6 gateway (no bridge yet: the first setup makes it with the gateway).
    // Before the definition is saved, so a failure leaves the network as it was and the
    // command can be run again.
    if let Some(v6) = net.ipv6 {
        k.links()
            .add_bridge_ipv6(&net.bridge, v6.gateway, v6.subnet.prefix())?;
    }
    store.save_network(&net)?;
    Ok(net)
}

/// What `remove` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The bridge's name when a link has it that nethook did not make for this network:
    /// it was left alone.
    pub foreign_bridge: Option<String>,
}

/// Deletes a network that no endpoint uses: its definition and address directory, and
/// its bridge when nethook made it.
pub fn remove(store: &Store, k: &dyn Kernel, name: &str) -> Result<Removed, NetworkOpError> {
    // Endpoints being torn down still use it until their records go.
    let _lock = store.lock_settled(Duration::from_secs(5))?;
    let net = store.load_network(name)?;
    let users: Vec<String> = store
        .list_endpoints()?
        .into_iter()
        .filter(|e| e.network == name)
        .map(|e| e.id.to_string())
        .collect();
    if !users.is_empty() {
        return Err(NetworkOpError::InUse {
            name: name.to_owned(),
            count: users.len(),
            users: users.join(", "),
        });
    }
    let services = store.services_of(name)?;
    if !services.is_empty() {
        return Err(NetworkOpError::HasServicesLeft {
            name: name.to_owned(),
            services: services.join(", "),
        });
    }
    let had_file = store.remove_network(name)?;
    let mut removed = Removed::default();
    if !net.driver.is_bridge() {
        return Ok(removed);
    }
    let had_bridge = match k.links().bridge_owner(&net.bridge)? {
        None => false,
        Some((is_bridge, alias)) if net.owns_bridge(is_bridge, alias.as_deref()) => {
            k.links().delete(&net.bridge)?
        }
        Some(_) => {
            removed.foreign_bridge = Some(net.bridge.clone());
            false
        }
    };
    if !had_file && !had_bridge {
        return Err(NetworkOpError::BuiltIn {
            name: name.to_owned(),
        });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::World;

    #[test]
    fn create_refuses_a_subnet_over_a_host_route_and_a_foreign_bridge() {
        let w = World::new("net-create");
        w.fake.add_route("10.88.0.0/16".parse().unwrap());
        let net = Network::new("blue", "10.88.1.0/24", None, None, true).unwrap();
        let e = create(&w.store, &w.fake, &net).unwrap_err();
        assert!(matches!(e, NetworkOpError::RouteOverlap { .. }), "{e}");
        let net = Network::new("green", "10.89.0.0/24", None, Some("br0"), true).unwrap();
        w.fake.add_foreign_link("br0");
        let e = create(&w.store, &w.fake, &net).unwrap_err();
        assert!(matches!(e, NetworkOpError::BridgeNotOurs { .. }), "{e}");
        let net = Network::new("red", "10.90.0.0/24", None, None, true).unwrap();
        create(&w.store, &w.fake, &net).unwrap();
        assert_eq!(w.store.load_network("red").unwrap(), net);
    }

    fn macvlan(subnet: &str, parent: &str, range: Option<&str>) -> Network {
        let mut net = Network::new("lan", subnet, None, None, false).unwrap();
        net.set_driver(DriverKind::Macvlan, Some(parent), false, false)
            .unwrap();
        if let Some(r) = range {
            net.set_ip_range(r).unwrap();
        }
        net
    }

    /// A host on 192.168.50.0/24 through lan0 (index 7, address .10), a default route via
    /// eth0 (index 2), and 10.1.0.0/16 on eth0.
    fn lan_host(w: &World) {
        let view = |index, master| ParentView {
            index,
            master,
            loopback: false,
            addresses: vec!["192.168.50.10".parse().unwrap()],
        };
        w.fake.add_parent("lan0", view(7, None));
        w.fake.add_parent("port0", view(8, Some(9)));
        w.fake.add_parent(
            "lo",
            ParentView {
                index: 1,
                loopback: true,
                ..ParentView::default()
            },
        );
        for (route, oif) in [
            ("0.0.0.0/0", 2),
            ("10.1.0.0/16", 2),
            ("192.168.50.0/24", 7),
            ("192.168.50.10/32", 7),
        ] {
            w.fake.add_device_route(route.parse().unwrap(), Some(oif));
        }
    }

    fn refusal(w: &World, net: &Network) -> String {
        let e = create(&w.store, &w.fake, net).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            w.store.load_network(&net.name).is_err(),
            "refused, yet recorded"
        );
        e
    }

    #[test]
    fn a_macvlan_network_needs_an_existing_parent_that_can_carry_macvlans() {
        let w = World::new("mv-create-parent");
        lan_host(&w);
        let e = refusal(
            &w,
            &macvlan("192.168.50.0/24", "nope0", Some("192.168.50.128/26")),
        );
        assert!(e.contains("parent nope0 does not exist"), "{e}");
        let e = refusal(
            &w,
            &macvlan("192.168.50.0/24", "port0", Some("192.168.50.128/26")),
        );
        assert!(e.contains("port of a bridge or bond"), "{e}");
        let e = refusal(
            &w,
            &macvlan("192.168.50.0/24", "lo", Some("192.168.50.128/26")),
        );
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn a_macvlan_subnet_must_be_the_parents_lan_and_overlap_no_other_route() {
        let w = World::new("mv-create-routes");
        lan_host(&w);
        let e = refusal(&w, &macvlan("192.168.60.0/24", "lan0", None));
        assert!(
            e.contains("no route on parent lan0 covers 192.168.60.0/24"),
            "{e}"
        );
        w.fake
            .add_device_route("10.1.2.0/24".parse().unwrap(), Some(7));
        let e = refusal(&w, &macvlan("10.1.2.0/24", "lan0", None));
        assert!(
            e.contains("overlaps the host route 10.1.0.0/16 (on another interface"),
            "{e}"
        );
    }

    #[test]
    fn a_macvlan_network_never_hands_out_the_hosts_own_address_nor_routes_via_it() {
        let w = World::new("mv-create-own");
        lan_host(&w);
        let e = refusal(&w, &macvlan("192.168.50.0/24", "lan0", None));
        assert!(
            e.contains("192.168.50.10 is this host's address on lan0"),
            "{e}"
        );
        assert!(e.contains("--ip-range"), "{e}");
        let e = refusal(
            &w,
            &macvlan("192.168.50.0/24", "lan0", Some("192.168.50.0/28")),
        );
        assert!(e.contains("192.168.50.10 is this host's address"), "{e}");
        let mut net = macvlan("192.168.50.0/24", "lan0", Some("192.168.50.128/26"));
        net.ipv4.as_mut().unwrap().gateway = "192.168.50.10".parse().unwrap();
        let e = refusal(&w, &net);
        assert!(
            e.contains("gateway 192.168.50.10 is this host's own address"),
            "{e}"
        );
        let net = macvlan("192.168.50.0/24", "lan0", Some("192.168.50.128/26"));
        create(&w.store, &w.fake, &net).unwrap();
        assert_eq!(w.store.load_network("lan").unwrap(), net);
    }

    #[test]
    fn remove_deletes_only_a_bridge_nethook_made_and_refuses_a_network_in_use() {
        let w = World::new("net-rm");
        let net = Network::new("red", "10.90.0.0/24", None, None, true).unwrap();
        create(&w.store, &w.fake, &net).unwrap();
        w.fake.add_link("nh-red");
        assert_eq!(
            remove(&w.store, &w.fake, "red").unwrap(),
            Removed::default()
        );
        assert!(!w.fake.has_link("nh-red"));
        w.setup("c1", "").unwrap();
        let e = remove(&w.store, &w.fake, "nethook").unwrap_err();
        assert!(matches!(e, NetworkOpError::InUse { count: 1, .. }), "{e}");
    }
}
