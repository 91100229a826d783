//! Removing per-container elements that no live record accounts for: a record that gc had
//! to quarantine, or a hook killed between its batch and its record's removal, leaves
//! published ports mapped to an address that will be given to the next container. Only gc
//! calls this, under the lock: one dump per per-container set, one delete batch.

use std::collections::HashSet;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::delete::delete_units;
use super::error::{nl_err, FirewallError, Object};
use super::probe::is_probe;
use super::readback::dump_set;
use super::skeleton::{ADDRS4, ADDRS6, HPORTS4, HPORTS6, L2OPEN, MACS, PORTS4, PORTS6, RADDRS4};
use super::tables::cstr_static;
use super::types::{Elements, TableFamily};
use super::units::{element_units, SetUnits, Unit};
use crate::kernel::netlink::{Bus, NlSocket};
use crate::sys::nft::ElemSpec;

/// The sets whose every element belongs to one container. The per-network sets (masq4,
/// masq6, nomasq4, nomasq6, nets, intra, intra4) go with the network's last endpoint, and a
/// stale one opens nothing to anyone but a later network with the same subnet or bridge.
const PER_CONTAINER: [(TableFamily, &CStr); 9] = [
    (TableFamily::Inet, PORTS4),
    (TableFamily::Inet, HPORTS4),
    (TableFamily::Inet, PORTS6),
    (TableFamily::Inet, HPORTS6),
    (TableFamily::Inet, RADDRS4),
    (TableFamily::Bridge, MACS),
    (TableFamily::Bridge, ADDRS4),
    (TableFamily::Bridge, ADDRS6),
    (TableFamily::Bridge, L2OPEN),
];

/// An element as a set holds it: set, key, map data.
type Wanted = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Deletes (unless `dry_run`) the elements of the per-container sets that `live` does not
/// have, and describes each for gc's report. A missing table or set has nothing to prune.
pub fn prune(live: &Elements, dry_run: bool) -> Result<Vec<String>, FirewallError> {
    let wanted: HashSet<Wanted> = element_units(live, false)?
        .into_iter()
        .flat_map(|g| {
            let set = g.name();
            g.units
                .into_iter()
                .flat_map(move |u| u.elems.into_iter().map(move |e| (set, e.key, e.data)))
        })
        .collect();
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let mut stale = Vec::new();
    let mut report = Vec::new();
    for (family, set) in PER_CONTAINER {
        let Some(present) = dump_set(&sock, family, set)? else {
            continue;
        };
        let name = cstr_static(set);
        let units: Vec<Unit> = present
            .into_iter()
            .filter(|e| {
                !is_probe(family, set, &e.key)
                    && !wanted.contains(&(name, e.key.clone(), e.data.clone()))
            })
            .map(|e| {
                report.push(format!(
                    "delete {} from set {name}: no live endpoint has it",
                    describe(set, &e)
                ));
                let elem = ElemSpec {
                    key: e.key,
                    ..ElemSpec::default()
                };
                Unit {
                    object: Object::Elements {
                        set: name,
                        count: 1,
                    },
                    elems: vec![elem],
                }
            })
            .collect();
        stale.push(SetUnits {
            family,
            set,
            add_flags: 0,
            units,
        });
    }
    drop(sock);
    if !dry_run {
        delete_units(stale, &[])?;
    }
    Ok(report)
}

/// An element as nft would show it, as far as gc's report needs.
fn describe(set: &CStr, e: &ElemSpec) -> String {
    let k = &e.key;
    // Map data: address . port, the address 4 bytes (ports4, hports4) or 16 (the IPv6 maps).
    let target = e.data.as_deref().and_then(|d| {
        let alen = if d.len() > 8 { 16 } else { 4 };
        let port = be16(d.get(alen..alen + 2)?)?;
        Some(match ip(d.get(..alen)?)? {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        })
    });
    let target = target.map(|t| format!(" -> {t}")).unwrap_or_default();
    if set == PORTS4 || set == PORTS6 {
        if let (Some(proto), Some(port)) = (k.first(), k.get(4..6).and_then(be16)) {
            return format!("{} {port}{target}", proto_name(*proto));
        }
    } else if set == HPORTS4 || set == HPORTS6 {
        let alen = if set == HPORTS6 { 16 } else { 4 };
        if let (Some(addr), Some(proto), Some(port)) = (
            k.get(..alen).and_then(ip),
            k.get(alen),
            k.get(alen + 4..alen + 6).and_then(be16),
        ) {
            return format!("{addr} {} {port}{target}", proto_name(*proto));
        }
    } else if let Some(name) = k.get(..16) {
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        return format!("host interface {:?}", String::from_utf8_lossy(&name[..end]));
    }
    format!(
        "element {}",
        k.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A 4- or 16-byte address.
fn ip(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(Ipv4Addr::from(v4).into());
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| Ipv6Addr::from(v6).into())
}

fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn proto_name(n: u8) -> String {
    crate::model::ports::Proto::from_number(n)
        .map_or_else(|| format!("proto {n}"), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::encode;
    use crate::model::ports::Proto;

    #[test]
    fn published_ports_are_described_as_nft_shows_them() {
        let data = Some(encode::dnat4_data(Ipv4Addr::new(10, 77, 0, 5), 80));
        let wild = ElemSpec {
            key: encode::ports4_key(Proto::Tcp, 8080),
            data: data.clone(),
            ..ElemSpec::default()
        };
        assert_eq!(describe(PORTS4, &wild), "tcp 8080 -> 10.77.0.5:80");
        let one = ElemSpec {
            key: encode::hports4_key(Ipv4Addr::LOCALHOST, Proto::Udp, 53),
            data,
            ..ElemSpec::default()
        };
        assert_eq!(describe(HPORTS4, &one), "127.0.0.1 udp 53 -> 10.77.0.5:80");
        let veth = encode::ifname("nhabc").unwrap();
        let mac = ElemSpec {
            key: encode::macs_key(&veth, [2, 0, 0, 0, 0, 1]),
            ..ElemSpec::default()
        };
        assert_eq!(describe(MACS, &mac), "host interface \"nhabc\"");
        let routed = ElemSpec {
            key: encode::addrs4_key(
                &encode::ifname("nr0123456789ab").unwrap(),
                [2, 0, 0, 0, 0, 1],
                Ipv4Addr::new(10, 88, 0, 2),
            ),
            ..ElemSpec::default()
        };
        assert_eq!(
            describe(RADDRS4, &routed),
            "host interface \"nr0123456789ab\""
        );
    }

    #[test]
    fn ipv6_ports_and_addresses_are_described_too() {
        let c: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let data = Some(encode::dnat6_data(c, 80));
        let wild = ElemSpec {
            key: encode::ports4_key(Proto::Tcp, 8080),
            data: data.clone(),
            ..ElemSpec::default()
        };
        assert_eq!(describe(PORTS6, &wild), "tcp 8080 -> [fd00:77::2]:80");
        let one = ElemSpec {
            key: encode::hports6_key("2001:db8::1".parse().unwrap(), Proto::Udp, 53),
            data,
            ..ElemSpec::default()
        };
        assert_eq!(
            describe(HPORTS6, &one),
            "2001:db8::1 udp 53 -> [fd00:77::2]:80"
        );
        let src = ElemSpec {
            key: encode::addrs6_key(&encode::ifname("nhabc").unwrap(), [2, 0, 0, 0, 0, 1], c),
            ..ElemSpec::default()
        };
        assert_eq!(describe(ADDRS6, &src), "host interface \"nhabc\"");
        assert!(PER_CONTAINER.contains(&(TableFamily::Bridge, ADDRS6)));
    }
}
