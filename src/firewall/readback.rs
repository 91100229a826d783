//! Reading a set back (a GETSETELEM dump): which of the elements a batch named are there.
//! Only on failure paths: a taken port to name, or a delete that hit missing elements.

use std::ffi::CStr;

use super::error::{nl_err, FirewallError};
use super::skeleton::TABLE;
use super::tables::cstr_static;
use super::types::TableFamily;
use crate::kernel::netlink::{self, Attrs, MsgBuilder, NlSocket};
use crate::sys::nft::ElemSpec;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;

/// Every element of one set (key, map data, flags); None when the set or its table is missing.
pub(super) fn dump_set(
    sock: &NlSocket,
    family: TableFamily,
    set: &CStr,
) -> Result<Option<Vec<ElemSpec>>, FirewallError> {
    let ty = ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | libc::NFT_MSG_GETSETELEM as u16;
    let mut m = MsgBuilder::nfnl(ty, netlink::NLM_F_DUMP, 1, family.nfproto());
    m.attr_str(NFTA_SET_ELEM_LIST_TABLE, cstr_static(TABLE));
    m.attr_str(NFTA_SET_ELEM_LIST_SET, &set.to_string_lossy());
    let mut out = Vec::new();
    let result = sock.dump(&m.finish(), |msg| {
        let attrs = msg.payload.get(4..).unwrap_or_default();
        for (ty, list) in Attrs::new(attrs) {
            if ty != NFTA_SET_ELEM_LIST_ELEMENTS {
                continue;
            }
            for (ty, elem) in Attrs::new(list) {
                if ty == NFTA_LIST_ELEM {
                    out.push(parse_elem(elem));
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(Some(out)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(nl_err("dump")(e)),
    }
}

fn parse_elem(elem: &[u8]) -> ElemSpec {
    let value = |nested: &[u8]| {
        Attrs::new(nested)
            .find(|(t, _)| *t == NFTA_DATA_VALUE)
            .map(|(_, v)| v.to_vec())
    };
    let mut spec = ElemSpec::default();
    for (ty, val) in Attrs::new(elem) {
        match ty {
            NFTA_SET_ELEM_KEY => spec.key = value(val).unwrap_or_default(),
            NFTA_SET_ELEM_DATA => spec.data = value(val),
            NFTA_SET_ELEM_FLAGS => {
                spec.flags = val
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => {}
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::encode;
    use crate::firewall::Proto;
    use std::net::Ipv4Addr;

    #[test]
    fn dumped_elements_parse() {
        // NFTA_LIST_ELEM payload: KEY { VALUE 8 bytes }, DATA { VALUE 8 bytes }, FLAGS be32 1.
        let mut b = MsgBuilder::raw(0, 0, 0);
        b.nest_begin(NFTA_SET_ELEM_KEY)
            .attr(NFTA_DATA_VALUE, &[6, 0, 0, 0, 0x1f, 0x90, 0, 0])
            .nest_end();
        b.nest_begin(NFTA_SET_ELEM_DATA)
            .attr(NFTA_DATA_VALUE, &[10, 77, 0, 2, 0, 80, 0, 0])
            .nest_end();
        b.attr(NFTA_SET_ELEM_FLAGS, &1u32.to_be_bytes());
        let bytes = b.finish();
        let e = parse_elem(&bytes[netlink::NLMSG_HDRLEN..]);
        assert_eq!(e.key, encode::ports4_key(Proto::Tcp, 8080));
        assert_eq!(
            e.data,
            Some(encode::dnat4_data(Ipv4Addr::new(10, 77, 0, 2), 80))
        );
        assert_eq!(e.flags, libc::NFT_SET_ELEM_INTERVAL_END as u32);
    }
}
