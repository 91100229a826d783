//! Where [`Elements`] become set elements: for each set of the skeleton, the keys (and map
//! data) of what one container, or every live one, puts in it, each with the [`Object`] an
//! error would name. The bytes of each key are `encode.rs`; sending them is `batch.rs`.
//!
//! Per address family: the IPv4 parts go to `masq4`, `nomasq4`, `ports4`/`hports4`,
//! `addrs4`, and for routed networks `intra4` and `raddrs4`; the IPv6 parts to `masq6`,
//! `nomasq6`, `ports6`/`hports6` and `addrs6`. Routed endpoints are IPv4-only (their IPv6 is
//! dropped whole in `rantispoof`), so a routed source with IPv6 addresses is refused rather
//! than silently left without them. Add, restore, delete and prune all pass through
//! [`element_units`].

use std::ffi::CStr;
use std::net::IpAddr;

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::encode;
use super::error::{FirewallError, Object};
use super::skeleton::{
    ADDRS4, ADDRS6, FWD_GUARD, HPORTS4, HPORTS6, INTRA, INTRA4, L2OPEN, MACS, MASQ4, MASQ6, NETS,
    NOMASQ4, NOMASQ6, PORTS4, PORTS6, RADDRS4,
};
use super::tables::cstr_static;
use super::types::{Elements, PortMapping, Source, TableFamily};
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
    refuse_routed_ipv6(elems)?;
    use TableFamily::{Bridge, Inet};
    // Per-network elements and sources are never exclusive: the containers of a network share
    // the former, and the latter are keyed by the host veth, named after the container id, so
    // re-adding a live endpoint's own elements (restore) is fine.
    let mut masq4 = SetUnits::new(Inet, MASQ4, NLM_F_CREATE);
    let mut nomasq4 = SetUnits::new(Inet, NOMASQ4, NLM_F_CREATE);
    let mut masq6 = SetUnits::new(Inet, MASQ6, NLM_F_CREATE);
    let mut nomasq6 = SetUnits::new(Inet, NOMASQ6, NLM_F_CREATE);
    let mut nets = SetUnits::new(Inet, NETS, NLM_F_CREATE);
    let mut intra = SetUnits::new(Inet, INTRA, NLM_F_CREATE);
    let mut intra4 = SetUnits::new(Inet, INTRA4, NLM_F_CREATE);
    let port_flags = if exclusive_ports {
        NLM_F_CREATE | NLM_F_EXCL
    } else {
        NLM_F_CREATE
    };
    let mut ports4 = SetUnits::new(Inet, PORTS4, port_flags);
    let mut hports4 = SetUnits::new(Inet, HPORTS4, port_flags);
    let mut ports6 = SetUnits::new(Inet, PORTS6, port_flags);
    let mut hports6 = SetUnits::new(Inet, HPORTS6, port_flags);
    let mut raddrs4 = SetUnits::new(Inet, RADDRS4, NLM_F_CREATE);
    let mut macs = SetUnits::new(Bridge, MACS, NLM_F_CREATE);
    let mut addrs4 = SetUnits::new(Bridge, ADDRS4, NLM_F_CREATE);
    let mut addrs6 = SetUnits::new(Bridge, ADDRS6, NLM_F_CREATE);
    let mut l2open = SetUnits::new(Bridge, L2OPEN, NLM_F_CREATE);

    masq4.units = elems.masq4.iter().map(|net| masq4_unit(*net)).collect();
    nomasq4.units = elems
        .nomasq4
        .iter()
        .map(|(subnet, to)| nomasq4_unit(*subnet, *to))
        .collect();
    masq6.units = elems.masq6.iter().map(|net| masq6_unit(*net)).collect();
    nomasq6.units = elems
        .nomasq6
        .iter()
        .map(|(subnet, to)| nomasq6_unit(*subnet, *to))
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
    intra4.units = elems.intra4.iter().map(|net| intra4_unit(*net)).collect();
    for m in &elems.ports4 {
        let (g, key) = match m.host_ip() {
            Some(ip) => (&mut hports4, encode::hports4_key(ip, m.proto, m.host_port)),
            None => (&mut ports4, encode::ports4_key(m.proto, m.host_port)),
        };
        g.units.push(port_unit(
            m,
            false,
            key,
            encode::dnat4_data(m.container_ip, m.container_port),
        ));
    }
    for m in &elems.ports6 {
        let (g, key) = match m.host_ip() {
            Some(ip) => (&mut hports6, encode::hports6_key(ip, m.proto, m.host_port)),
            None => (&mut ports6, encode::ports4_key(m.proto, m.host_port)),
        };
        g.units.push(port_unit(
            m,
            true,
            key,
            encode::dnat6_data(m.container_ip, m.container_port),
        ));
    }
    for src in &elems.sources {
        let veth = ifname_of("host interface", &src.host_interface)?;
        macs.units.push(Unit {
            object: source_object(MACS, src),
            elems: one(encode::macs_key(&veth, src.mac.0)),
        });
        addrs4.units.extend(addrs4_unit(ADDRS4, src, &veth));
        addrs6.units.extend(addrs6_unit(src, &veth));
    }
    // Routed endpoints: MAC and address checked together in one set of the inet table (no
    // MAC-only set: IPv6 from routed veths is dropped whole, and other ethertypes never reach
    // the inet hooks). Without an IPv4 address a routed veth gets no element: it sends nothing.
    for src in &elems.routed_sources {
        let veth = ifname_of("host interface", &src.host_interface)?;
        raddrs4.units.extend(addrs4_unit(RADDRS4, src, &veth));
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
        masq4, nomasq4, masq6, nomasq6, nets, intra, intra4, ports4, hports4, ports6, hports6,
        raddrs4, macs, addrs4, addrs6, l2open,
    ]
    .into_iter()
    .filter(|g| !g.units.is_empty())
    .collect())
}

/// A routed endpoint has no IPv6 anti-spoofing set (routed networks are IPv4-only, and
/// `rantispoof` drops their IPv6): refuse IPv6 addresses of a routed source rather than drop
/// them without a word.
fn refuse_routed_ipv6(elems: &Elements) -> Result<(), FirewallError> {
    match elems
        .routed_sources
        .iter()
        .find_map(|s| Some((s, s.ipv6.first()?)))
    {
        None => Ok(()),
        Some((src, ip)) => Err(FirewallError::RoutedIpv6 {
            host_interface: src.host_interface.clone(),
            address: *ip,
        }),
    }
}

/// One published port (map data `data` under `key`), for either family.
fn port_unit<A: Copy + Into<IpAddr>>(
    m: &PortMapping<A>,
    ipv6: bool,
    key: Vec<u8>,
    data: Vec<u8>,
) -> Unit {
    Unit {
        object: Object::Port {
            proto: m.proto,
            host_ip: m.host_ip().map(Into::into),
            host_port: m.host_port,
            ipv6,
        },
        elems: vec![ElemSpec {
            key,
            data: Some(data),
            ..Default::default()
        }],
    }
}

/// One subnet in `masq6`: an interval (start, end marker).
fn masq6_unit(net: Ipv6Network) -> Unit {
    let net = Ipv6Network::new(net.network(), net.prefix()).unwrap_or(net);
    Unit {
        object: Object::Masq6(net),
        elems: encode::interval6_elems(net),
    }
}

/// One IPv6 masquerade exception in `nomasq6`.
fn nomasq6_unit(subnet: Ipv6Network, to: Ipv6Network) -> Unit {
    let norm = |n: Ipv6Network| Ipv6Network::new(n.network(), n.prefix()).unwrap_or(n);
    let (subnet, destination) = (norm(subnet), norm(to));
    Unit {
        object: Object::NoMasq6 {
            subnet,
            destination,
        },
        elems: vec![encode::nomasq6_elem(subnet, destination)],
    }
}

/// The `veth . MAC . IPv6 address` elements of one source in `addrs6`; none when it has no
/// IPv6 address (then it sends no IPv6 at all).
fn addrs6_unit(src: &Source, veth: &[u8; encode::IFNAME_LEN]) -> Option<Unit> {
    if src.ipv6.is_empty() {
        return None;
    }
    Some(Unit {
        object: source_object(ADDRS6, src),
        elems: src
            .ipv6
            .iter()
            .map(|ip| ElemSpec {
                key: encode::addrs6_key(veth, src.mac.0, *ip),
                ..Default::default()
            })
            .collect(),
    })
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

/// One routed network's subnet in `intra4`: `subnet . subnet`, an interval concatenation.
fn intra4_unit(subnet: Ipv4Network) -> Unit {
    let subnet = Ipv4Network::new(subnet.network(), subnet.prefix()).unwrap_or(subnet);
    Unit {
        object: Object::Intra4(subnet),
        elems: vec![encode::intra4_elem(subnet)],
    }
}

/// The `veth . MAC . IPv4 address` elements of one source in `set` (`addrs4` or
/// `raddrs4`); none when it has no IPv4 address.
fn addrs4_unit(set: &'static CStr, src: &Source, veth: &[u8; encode::IFNAME_LEN]) -> Option<Unit> {
    if src.ipv4.is_empty() {
        return None;
    }
    Some(Unit {
        object: source_object(set, src),
        elems: src
            .ipv4
            .iter()
            .map(|ip| ElemSpec {
                key: encode::addrs4_key(veth, src.mac.0, *ip),
                ..Default::default()
            })
            .collect(),
    })
}

fn source_object(set: &'static CStr, src: &Source) -> Object {
    Object::Source {
        set: cstr_static(set),
        host_interface: src.host_interface.clone(),
    }
}

/// The forwarding guard's element of one family (set `fwd_guard`: `ipv4` or `ipv6`).
pub(super) fn guard_units(ipv6: bool) -> Vec<SetUnits> {
    let mut g = SetUnits::new(TableFamily::Inet, FWD_GUARD, NLM_F_CREATE);
    g.units.push(Unit {
        object: Object::ForwardGuard { ipv6 },
        elems: one(vec![if ipv6 {
            encode::NFPROTO_IPV6
        } else {
            encode::NFPROTO_IPV4
        }]),
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
        Object::Masq6(_) => Some(cstr_static(MASQ6)),
        Object::NoMasq6 { .. } => Some(cstr_static(NOMASQ6)),
        Object::Intra4(_) => Some(cstr_static(INTRA4)),
        Object::Port { host_ip, ipv6, .. } => Some(cstr_static(match (host_ip, ipv6) {
            (Some(_), false) => HPORTS4,
            (None, false) => PORTS4,
            (Some(_), true) => HPORTS6,
            (None, true) => PORTS6,
        })),
        Object::ForwardGuard { .. } => Some(cstr_static(FWD_GUARD)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "units_tests.rs"]
mod tests;
