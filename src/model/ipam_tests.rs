//! Unit tests of `ipam` (a file of their own to keep `ipam.rs` short).

use super::*;

fn id(s: &str) -> ContainerId {
    ContainerId::parse(s).unwrap()
}

fn small() -> Network {
    Network::new("small", "192.168.50.0/29", None, None, true).unwrap()
}

/// Choose and record, as setup does through the store.
pub(crate) fn allocate(
    p: &mut Pool,
    net: &Network,
    owner: &str,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    let lease = choose(&Subnet::of(net).unwrap(), requested, p)?;
    p.record(&lease, &id(owner));
    Ok(lease.address)
}

#[test]
fn first_allocation_skips_network_and_gateway() {
    let mut p = Pool::default();
    let net = Network::builtin_default();
    assert_eq!(
        allocate(&mut p, &net, "a", None).unwrap(),
        Ipv4Addr::new(10, 77, 0, 2)
    );
    assert_eq!(
        allocate(&mut p, &net, "b", None).unwrap(),
        Ipv4Addr::new(10, 77, 0, 3)
    );
}

#[test]
fn freed_address_is_not_reused_until_the_pool_wraps() {
    let mut p = Pool::default();
    let net = small(); // hosts .1-.6, gateway .1 → .2..=.6 usable
    let a = allocate(&mut p, &net, "a", None).unwrap();
    assert!(p.release(a, "a"));
    let b = allocate(&mut p, &net, "b", None).unwrap();
    assert_ne!(a, b);
    for n in ["c", "d", "e"] {
        allocate(&mut p, &net, n, None).unwrap();
    }
    // Only .2 is free now; the scan wraps around to it.
    assert_eq!(allocate(&mut p, &net, "f", None).unwrap(), a);
    assert!(matches!(
        allocate(&mut p, &net, "g", None),
        Err(IpamError::Exhausted { .. })
    ));
}

#[test]
fn a_cursor_outside_the_subnet_restarts_at_the_first_host() {
    let p = Pool {
        last: Some(Ipv4Addr::new(10, 0, 0, 9)),
        ..Pool::default()
    };
    assert_eq!(
        choose(&Subnet::of(&small()).unwrap(), None, &p)
            .unwrap()
            .address,
        Ipv4Addr::new(192, 168, 50, 2)
    );
}

#[test]
fn release_only_frees_the_owners_address() {
    let mut p = Pool::default();
    let net = small();
    let a = allocate(&mut p, &net, "a", None).unwrap();
    assert!(!p.release(a, "intruder"));
    assert_eq!(p.owner(a).unwrap().as_deref(), Some("a"));
}

#[test]
fn requested_addresses_are_checked() {
    let mut p = Pool::default();
    let net = small();
    let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        allocate(&mut p, &net, "a", ip("192.168.50.5")).unwrap(),
        Ipv4Addr::new(192, 168, 50, 5)
    );
    let taken = allocate(&mut p, &net, "b", ip("192.168.50.5")).unwrap_err();
    assert!(
        matches!(&taken, IpamError::Taken { owner, .. } if owner == "a"),
        "{taken:?}"
    );
    assert!(matches!(
        allocate(&mut p, &net, "b", ip("192.168.50.1")),
        Err(IpamError::Reserved {
            what: "gateway",
            ..
        })
    ));
    assert!(matches!(
        allocate(&mut p, &net, "b", ip("192.168.50.0")),
        Err(IpamError::Reserved { .. })
    ));
    assert!(matches!(
        allocate(&mut p, &net, "b", ip("192.168.50.7")),
        Err(IpamError::Reserved { .. })
    ));
    assert!(matches!(
        allocate(&mut p, &net, "b", ip("10.0.0.1")),
        Err(IpamError::OutsideSubnet { .. })
    ));
}

#[test]
fn a_static_address_does_not_move_the_cursor() {
    let p = Pool::default();
    let lease = choose(
        &Subnet::of(&small()).unwrap(),
        Some(Ipv4Addr::new(192, 168, 50, 5)),
        &p,
    )
    .unwrap();
    assert_eq!(
        lease,
        Lease {
            address: Ipv4Addr::new(192, 168, 50, 5),
            advances_cursor: false
        }
    );
    assert!(
        choose(&Subnet::of(&small()).unwrap(), None, &p)
            .unwrap()
            .advances_cursor
    );
}

#[test]
fn pool_reads_the_old_single_file_format() {
    let old = r#"{"allocations": {"10.77.0.2": "a", "10.77.0.3": "b"}, "last": "10.77.0.3"}"#;
    let p: Pool = serde_json::from_str(old).unwrap();
    assert_eq!(p.allocations.len(), 2);
    assert_eq!(
        p.owner(Ipv4Addr::new(10, 77, 0, 2)).unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(p.last, Some(Ipv4Addr::new(10, 77, 0, 3)));
    // Older files had no cursor at all.
    assert_eq!(
        serde_json::from_str::<Pool>(r#"{"allocations": {}}"#).unwrap(),
        Pool::default()
    );
}

#[test]
fn ipv6_is_chosen_the_same_way_skipping_the_subnet_address_and_gateway() {
    let c = crate::model::network::Ipv6Config {
        subnet: "fd00::/126".parse().unwrap(),
        gateway: "fd00::1".parse().unwrap(),
        masquerade: true,
    };
    let subnet = Subnet::v6("v6", &c);
    let mut p = Pool::default();
    let a = choose(&subnet, None, &p).unwrap();
    assert_eq!(a.address, "fd00::2".parse::<Ipv6Addr>().unwrap());
    p.record6(&a, &id("a"));
    let b = choose(&subnet, None, &p).unwrap();
    // No broadcast in IPv6: the subnet's last address is a host's.
    assert_eq!(b.address, "fd00::3".parse::<Ipv6Addr>().unwrap());
    p.record6(&b, &id("b"));
    assert!(matches!(
        choose(&subnet, None, &p),
        Err(IpamError::Exhausted { .. })
    ));
    let taken = choose(&subnet, Some(a.address), &p).unwrap_err();
    assert!(taken.to_string().contains("fd00::2"), "{taken}");
    let anycast = choose(&subnet, Some("fd00::".parse().unwrap()), &p).unwrap_err();
    assert!(
        anycast
            .to_string()
            .contains("subnet-router anycast address of network v6; pick another nethook.ip6"),
        "{anycast}"
    );
}
