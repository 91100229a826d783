//! Element batches: what the elements of a container are as set elements and messages, and
//! adding them (one container atomically, or every live one at once for a restore). Deleting
//! is in `delete.rs`.
//!
//! Elements of one set go in as few messages as fit (`MAX_ELEMS_PER_MSG` each). A message that
//! holds several published ports cannot say which one was taken when the kernel answers EEXIST;
//! only then is the map read back to find it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CStr;

use ipnetwork::Ipv4Network;
use nftnl::MsgType;
use nix::errno::Errno;

use super::batch::{first_error, run_batch, Item};
use super::readback::dump_set;
use super::skeleton::{
    ADDRS4, FWD_GUARD, HPORTS4, INTRA, L2OPEN, MACS, MASQ4, NETS, PORTS4, PROBES,
};
use super::tables::{cstr_static, Tables};
use super::{encode, nl_err, Elements, Family, FirewallError, Object};
use crate::kernel::netlink::{Bus, NlSocket};
use crate::sys::nft::{ElemMsg, ElemSpec, MAX_ELEMS_PER_MSG};

/// NLM_F_* values as the u16 netlink header field.
const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;

/// One element, or the start and end of one interval, and what it is about.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) object: Object,
    pub(super) elems: Vec<ElemSpec>,
}

/// The units of one set, and the netlink flags to add them with.
#[derive(Debug, Clone)]
pub(super) struct SetUnits {
    pub(super) family: Family,
    pub(super) set: &'static CStr,
    pub(super) add_flags: u16,
    pub(super) units: Vec<Unit>,
}

impl SetUnits {
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

fn one(key: Vec<u8>) -> Vec<ElemSpec> {
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
    let group = |family, set, add_flags| SetUnits {
        family,
        set,
        add_flags,
        units: Vec::new(),
    };
    // Per-network elements and sources are never exclusive: the containers of a network share
    // the former, and the latter are keyed by the host veth, named after the container id, so
    // re-adding a live endpoint's own elements (restore) is fine.
    let mut masq4 = group(Family::Inet, MASQ4, NLM_F_CREATE);
    let mut nets = group(Family::Inet, NETS, NLM_F_CREATE);
    let mut intra = group(Family::Inet, INTRA, NLM_F_CREATE);
    let port_flags = if exclusive_ports {
        NLM_F_CREATE | NLM_F_EXCL
    } else {
        NLM_F_CREATE
    };
    let mut ports4 = group(Family::Inet, PORTS4, port_flags);
    let mut hports4 = group(Family::Inet, HPORTS4, port_flags);
    let mut macs = group(Family::Bridge, MACS, NLM_F_CREATE);
    let mut addrs4 = group(Family::Bridge, ADDRS4, NLM_F_CREATE);
    let mut l2open = group(Family::Bridge, L2OPEN, NLM_F_CREATE);

    for net in &elems.masq4 {
        // Normalise host bits so the object names the element as nft shows it.
        let net = Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net);
        masq4.units.push(Unit {
            object: Object::Masq4(net),
            elems: encode::interval_elems(net),
        });
    }
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
    for m in &elems.ports {
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
        let object = |set: &'static CStr| Object::Source {
            set: cstr_static(set),
            host_interface: src.host_interface.clone(),
        };
        macs.units.push(Unit {
            object: object(MACS),
            elems: one(encode::macs_key(&veth, src.mac.0)),
        });
        if !src.ipv4.is_empty() {
            addrs4.units.push(Unit {
                object: object(ADDRS4),
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
    Ok([masq4, nets, intra, ports4, hports4, macs, addrs4, l2open]
        .into_iter()
        .filter(|g| !g.units.is_empty())
        .collect())
}

/// What a message of several elements is called in errors.
fn chunk_object(set: &'static str, chunk: &[Unit]) -> Object {
    match chunk {
        [only] => only.object.clone(),
        _ => Object::Elements {
            set,
            count: chunk.len(),
        },
    }
}

/// The messages for `sets`: per set, consecutive units in messages of at most
/// `MAX_ELEMS_PER_MSG` elements (an interval's two ends stay in one message).
pub(super) fn messages(
    tables: &Tables,
    sets: &[SetUnits],
    ty: MsgType,
    destroy: bool,
) -> Vec<Item<'static>> {
    let mut items = Vec::new();
    for g in sets {
        let table = tables.get(g.family);
        let mut start = 0;
        while start < g.units.len() {
            let mut end = start;
            let mut count = 0;
            while end < g.units.len()
                && (end == start || count + g.units[end].elems.len() <= MAX_ELEMS_PER_MSG)
            {
                count += g.units[end].elems.len();
                end += 1;
            }
            let chunk = &g.units[start..end];
            let specs: Vec<ElemSpec> = chunk.iter().flat_map(|u| u.elems.clone()).collect();
            let msg = ElemMsg::new(table, g.set, g.add_flags, &specs).destroying(destroy);
            items.push(Item {
                object: chunk_object(g.name(), chunk),
                msg: Box::new(msg),
                ty,
            });
            start = end;
        }
    }
    items
}

/// The set an error's object names, for the element objects of this module.
pub(super) fn set_of(object: &Object) -> Option<&'static str> {
    match object {
        Object::Set(s) | Object::Elements { set: s, .. } => Some(s),
        Object::Bridge { set, .. } | Object::Source { set, .. } => Some(set),
        Object::Masq4(_) => Some(cstr_static(MASQ4)),
        Object::Port {
            host_ip: Some(_), ..
        } => Some(cstr_static(HPORTS4)),
        Object::Port { host_ip: None, .. } => Some(cstr_static(PORTS4)),
        Object::ForwardGuard => Some(cstr_static(FWD_GUARD)),
        _ => None,
    }
}

/// A no-op that only a current table accepts: add, without NLM_F_EXCL, an element no packet
/// can match (nfproto 0; the interface name `nethook/probe`, which the kernel refuses for a
/// link, as it has a '/') to the table's probe set. The first batch
/// creates it and it stays (see `is_probe`); re-adding an element that is there gives the
/// kernel no work to commit, where adding and deleting one would leave a deferred free
/// behind every setup, which the next netfilter socket closed anywhere on the host would
/// wait for under nf_tables' commit lock. On a table from an older nethook the set is
/// missing and the batch fails with ENOENT, which makes the caller run `ensure_skeleton`,
/// which re-creates that table.
pub(super) fn probe_items(tables: &Tables, families: &BTreeSet<Family>) -> Vec<Item<'static>> {
    let mut items = Vec::new();
    for (family, set) in PROBES {
        if !families.contains(&family) {
            continue;
        }
        items.push(Item {
            object: Object::Set(cstr_static(set)),
            msg: Box::new(ElemMsg::new(
                tables.get(family),
                set,
                NLM_F_CREATE,
                &one(probe_key(family)),
            )),
            ty: MsgType::Add,
        });
    }
    items
}

/// The key of a table's probe element (an element no packet matches).
pub(super) fn probe_key(family: Family) -> Vec<u8> {
    match family {
        Family::Inet => vec![0u8],
        Family::Bridge => {
            let mut key = b"nethook/probe".to_vec();
            key.resize(encode::IFNAME_LEN, 0);
            key
        }
    }
}

/// Is this element of `set` the probe that stays in it?
pub(super) fn is_probe(family: Family, set: &CStr, key: &[u8]) -> bool {
    PROBES.contains(&(family, set)) && key == probe_key(family).as_slice()
}

/// Add `sets` in ONE atomic batch (with the probe of each table they touch).
/// `restore`: ports are added non-exclusively; only one mapped elsewhere is taken.
pub(super) fn add_units(sets: &[SetUnits], restore: bool) -> Result<(), FirewallError> {
    if sets.is_empty() {
        return Ok(());
    }
    let tables = Tables::new();
    let families: BTreeSet<Family> = sets.iter().map(|g| g.family).collect();
    let mut items = probe_items(&tables, &families);
    items.extend(messages(&tables, sets, MsgType::Add, false));
    let errors = run_batch(&items)?;
    if errors.is_empty() {
        return Ok(());
    }
    // Several ports in the failing message: find the taken one.
    let port_maps = [cstr_static(PORTS4), cstr_static(HPORTS4)];
    if let Some(map) = errors.iter().find_map(|(o, e)| match o {
        Object::Elements { set, .. } if *e == Errno::EEXIST && port_maps.contains(set) => {
            Some(*set)
        }
        _ => None,
    }) {
        if let Some(g) = sets.iter().find(|g| g.name() == map) {
            if let Some(Object::Port {
                proto,
                host_ip,
                host_port,
            }) = find_taken(g, restore)?
            {
                return Err(FirewallError::PortTaken {
                    proto,
                    host_ip,
                    host_port,
                });
            }
        }
    }
    first_error("add", errors)
}

/// The port of `g` (a port map) that made an add fail with EEXIST: one listed twice, or one the
/// map already holds (for a restore: holds with another target).
fn find_taken(g: &SetUnits, restore: bool) -> Result<Option<Object>, FirewallError> {
    let mut seen = HashSet::new();
    for u in &g.units {
        if !seen.insert(&u.elems[0].key) {
            return Ok(Some(u.object.clone()));
        }
    }
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let Some(present) = dump_set(&sock, g.family, g.set)? else {
        return Ok(None);
    };
    let present: HashMap<Vec<u8>, Option<Vec<u8>>> =
        present.into_iter().map(|e| (e.key, e.data)).collect();
    Ok(g.units
        .iter()
        .find(|u| match present.get(&u.elems[0].key) {
            Some(data) => !restore || *data != u.elems[0].data,
            None => false,
        })
        .map(|u| u.object.clone()))
}

/// The forwarding guard's element (set `fwd_guard`).
pub(super) fn guard_units() -> Vec<SetUnits> {
    vec![SetUnits {
        family: Family::Inet,
        set: FWD_GUARD,
        add_flags: NLM_F_CREATE,
        units: vec![Unit {
            object: Object::ForwardGuard,
            elems: one(vec![encode::NFPROTO_IPV4]),
        }],
    }]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::firewall::tests::source;
    use crate::firewall::{PortMapping, Proto, Source};

    fn port(host_port: u16) -> PortMapping {
        PortMapping {
            host_ip: None,
            proto: Proto::Tcp,
            host_port,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: 80,
        }
    }

    fn objects(sets: &[SetUnits]) -> Vec<String> {
        let t = Tables::new();
        messages(&t, sets, MsgType::Add, false)
            .iter()
            .map(|i| i.object.to_string())
            .collect()
    }

    #[test]
    fn one_message_per_set_naming_a_lone_element() {
        let elems = Elements {
            masq4: vec!["10.77.1.2/16".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports: vec![port(8080)],
            sources: vec![
                source("nh0123456789ab", 2),
                Source {
                    ipv4: vec![],
                    ..source("nh0123456789ac", 3)
                },
            ],
            any_ethertype: vec!["nh0123456789ab".into()],
        };
        let sets = element_units(&elems, true).unwrap();
        assert_eq!(
            objects(&sets),
            vec![
                "masq4 element 10.77.0.0/16",
                "nets element for bridge nethook0",
                "intra element for bridge nethook0",
                "ports4 element tcp . 8080",
                // Two endpoints' MACs share one message.
                "2 elements of set macs",
                // No IPv4 address: a MAC element only (IPv4 and ARP from it are dropped).
                "addrs4 element for host interface nh0123456789ab",
                "l2open element for host interface nh0123456789ab",
            ]
        );
        assert!(
            sets.iter().all(|g| g.name() != "hports4"),
            "empty sets are left out"
        );
    }

    #[test]
    fn thousands_of_ports_fit_in_few_messages() {
        let elems = Elements {
            ports: (1..=3000).map(port).collect(),
            ..Elements::default()
        };
        let sets = element_units(&elems, true).unwrap();
        let names = objects(&sets);
        assert_eq!(names.len(), 3000usize.div_ceil(MAX_ELEMS_PER_MSG));
        assert_eq!(
            names[0],
            format!("{MAX_ELEMS_PER_MSG} elements of set ports4")
        );
        // Each message stays far below libnftnl's 64 KiB nest limit.
        let t = Tables::new();
        let items = messages(&t, &sets, MsgType::Add, false);
        let mut batch = nftnl::Batch::new();
        batch.add(&crate::sys::nft::Borrowed(&*items[0].msg), MsgType::Add);
        let bytes: usize = batch.finalize().iter().map(|p| p.len()).sum();
        assert!(bytes < 16 * 1024, "{bytes}");
        // An interval's two ends never straddle two messages.
        let elems = Elements {
            masq4: (0..=255u8)
                .map(|i| Ipv4Network::new(Ipv4Addr::new(10, i, 0, 0), 16).unwrap())
                .collect(),
            ..Elements::default()
        };
        let sets = element_units(&elems, true).unwrap();
        assert_eq!(objects(&sets).len(), 2, "256 intervals = 512 elements");
    }

    #[test]
    fn error_objects_name_their_set() {
        let sets = element_units(
            &Elements {
                masq4: vec!["10.77.0.0/16".parse().unwrap()],
                bridges: vec!["nethook0".into()],
                ports: vec![
                    port(1),
                    PortMapping {
                        host_ip: Some(Ipv4Addr::LOCALHOST),
                        ..port(2)
                    },
                ],
                sources: vec![source("nh0123456789ab", 2)],
                any_ethertype: vec!["nh0123456789ab".into()],
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
}
