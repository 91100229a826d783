//! Where [`Elements`] become set elements: for each set of the skeleton, the keys (and map
//! data) of what one container, or every live one, puts in it, each with the [`Object`] an
//! error would name. The bytes of each key are `encode.rs`; sending them is `batch.rs`.
//!
//! Per address family: the IPv4 parts go to `masq4`, `ports4`/`hports4` and `addrs4`. The
//! skeleton has no IPv6 sets yet, so a non-empty IPv6 part is refused here (see
//! [`refuse_ipv6`]) before anything is built or sent: add, restore, delete and prune all pass
//! through [`element_units`].

use std::ffi::CStr;

use ipnetwork::Ipv4Network;

use super::encode;
use super::error::{FirewallError, Object};
use super::skeleton::{
    ADDRS4, FWD_GUARD, HPORTS4, INTRA, L2OPEN, MACS, MASQ4, NETS, NOMASQ4, PORTS4,
};
use super::tables::cstr_static;
use super::types::{Elements, Source, TableFamily};
use crate::sys::nft::ElemSpec;

/// NLM_F_* values as the u16 netlink header field.
pub(super) const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
pub(super) const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;

/// One element, or the start and end of one interval, and what it is about.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) object: Object,
    pub(super) elems: Vec<ElemSpec>,
}

/// The units of one set, and the netlink flags to add them with.
#[derive(Debug, Clone)]
pub(super) struct SetUnits {
    pub(super) family: TableFamily,
    pub(super) set: &'static CStr,
    pub(super) add_flags: u16,
    pub(super) units: Vec<Unit>,
}

impl SetUnits {
    fn new(family: TableFamily, set: &'static CStr, add_flags: u16) -> Self {
        SetUnits {
            family,
            set,
            add_flags,
            units: Vec::new(),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        cstr_static(self.set)
    }
}

fn ifname_of(what: &'static str, name: &str) -> Result<[u8; encode::IFNAME_LEN], FirewallError> {
    encode::ifname(name).ok_or_else(|| FirewallError::InterfaceName {
        what,
        name: name.to_owned(),
    })
}

pub(super) fn one(key: Vec<u8>) -> Vec<ElemSpec> {
    vec![ElemSpec {
        key,
        ..Default::default()
    }]
}

/// The units of `elems`, grouped by set (in a fixed order), empty sets left out.
/// `exclusive_ports`: a port already mapped fails with EEXIST.
pub(super) fn element_units(
    elems: &Elements,
    exclusive_ports: bool,
) -> Result<Vec<SetUnits>, FirewallError> {
    refuse_ipv6(elems)?;
    use TableFamily::{Bridge, Inet};
    // Per-network elements and sources are never exclusive: the containers of a network share
    // the former, and the latter are keyed by the host veth, named after the container id, so
    // re-adding a live endpoint's own elements (restore) is fine.
    let mut masq4 = SetUnits::new(Inet, MASQ4, NLM_F_CREATE);
    let mut nomasq4 = SetUnits::new(Inet, NOMASQ4, NLM_F_CREATE);
    let mut nets = SetUnits::new(Inet, NETS, NLM_F_CREATE);
    let mut intra = SetUnits::new(Inet, INTRA, NLM_F_CREATE);
    let port_flags = if exclusive_ports {
        NLM_F_CREATE | NLM_F_EXCL
    } else {
        NLM_F_CREATE
    };
    let mut ports4 = SetUnits::new(Inet, PORTS4, port_flags);
    let mut hports4 = SetUnits::new(Inet, HPORTS4, port_flags);
    let mut macs = SetUnits::new(Bridge, MACS, NLM_F_CREATE);
    let mut addrs4 = SetUnits::new(Bridge, ADDRS4, NLM_F_CREATE);
    let mut l2open = SetUnits::new(Bridge, L2OPEN, NLM_F_CREATE);

    masq4.units = elems.masq4.iter().map(|net| masq4_unit(*net)).collect();
    nomasq4.units = elems
        .nomasq4
        .iter()
        .map(|(subnet, to)| nomasq4_unit(*subnet, *to))
        .collect();
    for name in &elems.bridges {
        let br = ifname_of("bridge", name)?;
        for (g, key) in [
            (&mut nets, encode::nets_key(&br)),
            (&mut intra, encode::intra_key(&br)),
        ] {
            g.units.push(Unit {
                object: Object::Bridge {
                    set: cstr_static(g.set),
                    bridge: name.clone(),
                },
                elems: one(key),
            });
        }
    }
    for m in &elems.ports4 {
        let host_ip = m.host_ip();
        let (g, key) = match host_ip {
            Some(ip) => (&mut hports4, encode::hports4_key(ip, m.proto, m.host_port)),
            None => (&mut ports4, encode::ports4_key(m.proto, m.host_port)),
        };
        g.units.push(Unit {
            object: Object::Port {
                proto: m.proto,
                host_ip,
                host_port: m.host_port,
            },
            elems: vec![ElemSpec {
                key,
                data: Some(encode::dnat4_data(m.container_ip, m.container_port)),
                ..Default::default()
            }],
        });
    }
    for src in &elems.sources {
        let veth = ifname_of("host interface", &src.host_interface)?;
        macs.units.push(Unit {
            object: source_object(MACS, src),
            elems: one(encode::macs_key(&veth, src.mac.0)),
        });
        if !src.ipv4.is_empty() {
            addrs4.units.push(Unit {
                object: source_object(ADDRS4, src),
                elems: src
                    .ipv4
                    .iter()
                    .map(|ip| ElemSpec {
                        key: encode::addrs4_key(&veth, src.mac.0, *ip),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
    }
    for name in &elems.any_ethertype {
        let veth = ifname_of("host interface", name)?;
        l2open.units.push(Unit {
            object: Object::Source {
                set: cstr_static(L2OPEN),
                host_interface: name.clone(),
            },
            elems: one(veth.to_vec()),
        });
    }
    Ok([
        masq4, nomasq4, nets, intra, ports4, hports4, macs, addrs4, l2open,
    ]
    .into_iter()
    .filter(|g| !g.units.is_empty())
    .collect())
}

/// IPv6 parts have no sets to go to yet: refuse them, naming the first, rather than drop
/// them. IPv6 support replaces this with their units (masq6, ports6/hports6, addrs6).
fn refuse_ipv6(elems: &Elements) -> Result<(), FirewallError> {
    let first = elems
        .masq6
        .first()
        .map(|n| format!("masquerade subnet {n}"))
        .or_else(|| {
            elems
                .nomasq6
                .first()
                .map(|(n, to)| format!("masquerade exception {n} to {to}"))
        })
        .or_else(|| {
            elems.ports6.first().map(|m| {
                format!(
                    "published port {}/{} to [{}]:{}",
                    m.host_port, m.proto, m.container_ip, m.container_port
                )
            })
        })
        .or_else(|| {
            elems.sources.iter().find_map(|s| {
                let ip = s.ipv6.first()?;
                Some(format!(
                    "address {ip} of host interface {}",
                    s.host_interface
                ))
            })
        });
    match first {
        None => Ok(()),
        Some(what) => Err(FirewallError::Ipv6Unsupported { what }),
    }
}

/// One subnet in `masq4`: an interval (start, end marker).
fn masq4_unit(net: Ipv4Network) -> Unit {
    // Normalise host bits so the object names the element as nft shows it.
    let net = Ipv4Network::new(net.network(), net.prefix()).unwrap_or(net);
    Unit {
        object: Object::Masq4(net),
        elems: encode::interval_elems(net),
    }
}

/// One masquerade exception in `nomasq4`: an interval of a concatenation (key, key end).
fn nomasq4_unit(subnet: Ipv4Network, to: Ipv4Network) -> Unit {
    let norm = |n: Ipv4Network| Ipv4Network::new(n.network(), n.prefix()).unwrap_or(n);
    let (subnet, destination) = (norm(subnet), norm(to));
    Unit {
        object: Object::NoMasq4 {
            subnet,
            destination,
        },
        elems: vec![encode::nomasq4_elem(subnet, destination)],
    }
}

fn source_object(set: &'static CStr, src: &Source) -> Object {
    Object::Source {
        set: cstr_static(set),
        host_interface: src.host_interface.clone(),
    }
}

/// The forwarding guard's element (set `fwd_guard`).
pub(super) fn guard_units() -> Vec<SetUnits> {
    let mut g = SetUnits::new(TableFamily::Inet, FWD_GUARD, NLM_F_CREATE);
    g.units.push(Unit {
        object: Object::ForwardGuard,
        elems: one(vec![encode::NFPROTO_IPV4]),
    });
    vec![g]
}

/// The set an error's object names, for the element objects of this module.
pub(super) fn set_of(object: &Object) -> Option<&'static str> {
    match object {
        Object::Set(s) | Object::Elements { set: s, .. } => Some(s),
        Object::Bridge { set, .. } | Object::Source { set, .. } => Some(set),
        Object::Masq4(_) => Some(cstr_static(MASQ4)),
        Object::NoMasq4 { .. } => Some(cstr_static(NOMASQ4)),
        Object::Port {
            host_ip: Some(_), ..
        } => Some(cstr_static(HPORTS4)),
        Object::Port { host_ip: None, .. } => Some(cstr_static(PORTS4)),
        Object::ForwardGuard => Some(cstr_static(FWD_GUARD)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::firewall::types::{port, sample, source};
    use crate::firewall::{PortMapping, PortMapping6, Proto};

    fn objects(sets: &[SetUnits]) -> Vec<String> {
        sets.iter()
            .flat_map(|g| g.units.iter().map(|u| u.object.to_string()))
            .collect()
    }

    #[test]
    fn units_name_their_element_per_set_in_a_fixed_order() {
        let mut elems = sample();
        elems.ports4.push(PortMapping {
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            ..port(8081)
        });
        let sets = element_units(&elems, true).unwrap();
        assert_eq!(
            objects(&sets),
            vec![
                "masq4 element 10.77.0.0/16",
                "nomasq4 element 10.77.0.0/16 . 10.0.0.0/8",
                "nets element for bridge nethook0",
                "intra element for bridge nethook0",
                "ports4 element tcp . 8080",
                // 0.0.0.0 is every address.
                "ports4 element tcp . 8081",
                "macs element for host interface nh0123456789ab",
                "macs element for host interface nh0123456789ac",
                // No IPv4 address: a MAC element only (IPv4 and ARP from it are dropped).
                "addrs4 element for host interface nh0123456789ab",
                "l2open element for host interface nh0123456789ab",
            ]
        );
        assert!(
            sets.iter().all(|g| g.name() != "hports4"),
            "empty sets are left out"
        );
        let flags = |sets: &[SetUnits]| -> Vec<u16> { sets.iter().map(|g| g.add_flags).collect() };
        let c = NLM_F_CREATE;
        assert_eq!(flags(&sets), [c, c, c, c, c | NLM_F_EXCL, c, c, c]);
        let restore = element_units(&elems, false).unwrap();
        assert!(
            flags(&restore).iter().all(|f| *f == c),
            "restore: nothing exclusive"
        );
    }

    #[test]
    fn error_objects_name_their_set() {
        let sets = element_units(
            &Elements {
                masq4: vec!["10.77.0.0/16".parse().unwrap()],
                nomasq4: vec![(
                    "10.77.0.0/16".parse().unwrap(),
                    "10.0.0.0/8".parse().unwrap(),
                )],
                bridges: vec!["nethook0".into()],
                ports4: vec![
                    port(1),
                    PortMapping {
                        host_ip: Some(Ipv4Addr::LOCALHOST),
                        ..port(2)
                    },
                ],
                sources: vec![source("nh0123456789ab", 2)],
                any_ethertype: vec!["nh0123456789ab".into()],
                ..Elements::default()
            },
            false,
        )
        .unwrap();
        for g in &sets {
            for u in &g.units {
                assert_eq!(set_of(&u.object), Some(g.name()), "{}", u.object);
            }
        }
        assert_eq!(set_of(&Object::ForwardGuard), Some("fwd_guard"));
        assert_eq!(set_of(&Object::Batch), None);
    }

    #[test]
    fn bad_interface_names_are_refused_before_the_kernel() {
        for (elems, what) in [
            (
                Elements {
                    bridges: vec!["a-bridge-name-too-long".into()],
                    ..Elements::default()
                },
                "bridge",
            ),
            (
                Elements {
                    sources: vec![source("", 2)],
                    ..Elements::default()
                },
                "host interface",
            ),
            (
                Elements {
                    any_ethertype: vec!["x".repeat(16)],
                    ..Elements::default()
                },
                "host interface",
            ),
        ] {
            match element_units(&elems, true) {
                Err(e @ FirewallError::InterfaceName { .. }) => {
                    assert!(e.to_string().contains(what), "{e}");
                    assert_eq!(e.errno(), None);
                }
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("accepted {elems:?}"),
            }
        }
    }

    #[test]
    fn ipv6_parts_are_refused_not_dropped() {
        let v4 = Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            ports4: vec![port(80)],
            sources: vec![source("nh0123456789ab", 2)],
            ..Elements::default()
        };
        let port6 = PortMapping6 {
            host_ip: None,
            proto: Proto::Udp,
            host_port: 53,
            container_ip: "fd00:77::2".parse().unwrap(),
            container_port: 5353,
        };
        let mut src6 = source("nh0123456789ab", 2);
        src6.ipv6 = vec!["fd00:77::2".parse().unwrap()];
        for (elems, named) in [
            (
                Elements {
                    masq6: vec!["fd00:77::/64".parse().unwrap()],
                    ..v4.clone()
                },
                "masquerade subnet fd00:77::/64",
            ),
            (
                Elements {
                    nomasq6: vec![("fd00:77::/64".parse().unwrap(), "fd00::/8".parse().unwrap())],
                    ..v4.clone()
                },
                "masquerade exception fd00:77::/64 to fd00::/8",
            ),
            (
                Elements {
                    ports6: vec![port6],
                    ..v4.clone()
                },
                "published port 53/udp to [fd00:77::2]:5353",
            ),
            (
                Elements {
                    sources: vec![src6],
                    ..v4.clone()
                },
                "address fd00:77::2 of host interface nh0123456789ab",
            ),
        ] {
            for exclusive in [true, false] {
                match element_units(&elems, exclusive) {
                    Err(e @ FirewallError::Ipv6Unsupported { .. }) => {
                        let text = e.to_string();
                        assert!(text.contains(named), "{text}");
                        assert!(
                            text.contains("IPv6 is not supported on this network yet"),
                            "{text}"
                        );
                        assert_eq!(e.errno(), None);
                    }
                    other => panic!("IPv6 part of {elems:?} not refused: {other:?}"),
                }
            }
        }
        assert!(element_units(&v4, true).is_ok(), "IPv4 alone is fine");
    }
}
