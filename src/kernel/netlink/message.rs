//! Netlink messages as plain bytes: a builder for requests, iterators over the messages of a
//! datagram and over the attributes of a message. Used as they are for nfnetlink and
//! ctnetlink (whose payloads libnftnl or `conntrack` build); route messages are typed (see
//! `route`) and only travel in these frames.

use std::io;

use super::{NLA_F_NESTED, NLA_TYPE_MASK, NLMSG_HDRLEN, NLM_F_REQUEST};

/// Parse the payload of an NLMSG_ERROR message: (positive errno or 0, seq of the request).
pub(crate) fn parse_error(payload: &[u8]) -> io::Result<(i32, Option<u32>)> {
    let code = payload
        .get(0..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("short NLMSG_ERROR"))?;
    let seq = payload
        .get(4 + 8..4 + 12)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    Ok((-code, seq))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One received netlink message.
#[derive(Debug)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub portid: u32,
    pub payload: &'a [u8],
}

/// Iterator over the netlink messages of one datagram.
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Msg<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let b = self.buf;
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.buf = &[];
            return Some(Err(bad("bad netlink message length")));
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            portid: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
            payload: &b[NLMSG_HDRLEN..len],
        };
        self.buf = &b[align4(len).min(b.len())..];
        Some(Ok(msg))
    }
}

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterator over netlink attributes: yields (type without flag bits, value).
pub(crate) struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Attrs { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.buf = &[];
            return None;
        }
        let val = &b[4..len];
        self.buf = &b[align4(len).min(b.len())..];
        Some((ty, val))
    }
}

/// Builds one netlink message into a byte vector (several can be concatenated into one send).
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl MsgBuilder {
    /// Header plus the 4-byte `nfgenmsg` (family, version 0, resource id 0, big endian).
    pub(crate) fn nfnl(ty: u16, flags: u16, seq: u32, family: u8) -> Self {
        let mut b = Self::raw(ty, flags, seq);
        b.buf.extend_from_slice(&[family, 0, 0, 0]);
        b
    }

    /// Header only; the caller appends the family header.
    pub(crate) fn raw(ty: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        MsgBuilder {
            buf,
            nests: Vec::new(),
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub(crate) fn attr(&mut self, ty: u16, val: &[u8]) -> &mut Self {
        let len = 4 + val.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(val);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    pub(crate) fn nest_begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(crate) fn nest_end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Finish: patch the length, return the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::NLM_F_ACK;

    #[test]
    fn builder_roundtrip() {
        let mut b = MsgBuilder::nfnl(0x0a01, NLM_F_ACK, 7, 1);
        b.attr_str(1, "nethook");
        b.nest_begin(2).attr(1, &[1, 2, 3, 4, 5]).nest_end();
        let bytes = b.finish();
        assert_eq!(bytes.len() % 4, 0);
        let msgs: Vec<_> = Messages::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!((m.ty, m.seq), (0x0a01, 7));
        assert_eq!(m.flags, NLM_F_ACK | NLM_F_REQUEST);
        let attrs: Vec<_> = Attrs::new(&m.payload[4..]).collect();
        assert_eq!(attrs[0], (1, &b"nethook\0"[..]));
        assert_eq!(attrs[1].0, 2);
        let inner: Vec<_> = Attrs::new(attrs[1].1).collect();
        assert_eq!(inner, vec![(1, &[1u8, 2, 3, 4, 5][..])]);
    }

    #[test]
    fn error_payload() {
        // errno -17 (EEXIST) followed by the echoed request header with seq 42.
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&36u32.to_ne_bytes());
        p.extend_from_slice(&[0u8; 4]);
        p.extend_from_slice(&42u32.to_ne_bytes());
        p.extend_from_slice(&[0u8; 4]);
        assert_eq!(parse_error(&p).unwrap(), (17, Some(42)));
    }
}
