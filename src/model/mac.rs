//! Ethernet addresses for container interfaces.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast MAC derived from the IPv4 address (`02:4e:` + the
    /// address), so a reused address keeps its MAC and neighbours' ARP caches stay right.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Mac([0x02, 0x4e, o[0], o[1], o[2], o[3]])
    }

    /// The same for a container of an IPv6-only network: `02:4e:` + the address's last 32
    /// bits, which sequential allocation keeps unique within a network (a static address
    /// that shares them with another container's needs `nethook.mac`).
    pub fn from_ipv6(ip: Ipv6Addr) -> Self {
        let o = ip.octets();
        Mac([0x02, 0x4e, o[12], o[13], o[14], o[15]])
    }

    /// Is this in the range `from_ipv4` derives from? Another container's or a bridge's MAC
    /// could be this one, so a MAC given by annotation must not be.
    pub fn is_derived(&self) -> bool {
        self.0[..2] == [0x02, 0x4e]
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err("expected six hex bytes like 02:42:ac:11:00:02".into());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err("expected six hex bytes like 02:42:ac:11:00:02".into());
            }
            *slot =
                u8::from_str_radix(part, 16).map_err(|_| format!("{part:?} is not a hex byte"))?;
        }
        if out[0] & 1 == 1 {
            return Err("is a multicast address; the first byte must be even (e.g. 02:...)".into());
        }
        if out == [0; 6] {
            return Err("is the all-zero address".into());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_mac_is_local_unicast_and_embeds_the_address() {
        let m = Mac::from_ipv4("10.77.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:4e:0a:4d:00:02");
        assert_eq!(m.0[0] & 1, 0);
        assert_eq!(m.0[0] & 2, 2);
    }

    #[test]
    fn parse_roundtrips_and_refuses_multicast() {
        assert_eq!(
            "02:AA:bb:00:00:01".parse::<Mac>().unwrap().to_string(),
            "02:aa:bb:00:00:01"
        );
        assert!("01:00:5e:00:00:01".parse::<Mac>().is_err());
        assert!("ff:ff:ff:ff:ff:ff".parse::<Mac>().is_err());
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:0g".parse::<Mac>().is_err());
        assert!("00:00:00:00:00:00".parse::<Mac>().is_err());
    }
}
