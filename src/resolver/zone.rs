//! One network's names and the answer to one query: pure, so every rule is a unit test.
//!
//! Names are kept lowercase without the trailing dot; a query is lowered the same way, so
//! matching is case-insensitive while the answer repeats the name as it was asked.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Entry, Zone, SERVICE_KEY_PREFIX};

/// A zone ready to answer from: its entries and the two indexes built from them.
#[derive(Debug, Default)]
pub(super) struct ZoneTable {
    /// The network's name, lowercase: the domain `NAME.NETWORK` answers under.
    domain: String,
    pub(super) listen: Vec<IpAddr>,
    clients: Vec<ipnetwork::IpNetwork>,
    entries: HashMap<String, Entry>,
    /// Lowercase name → keys of the entries with that name (aliases may be shared).
    by_name: HashMap<String, Vec<String>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

/// What the zone says about a query.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Not ours: forward it.
    Forward,
    /// A reply built here.
    Local(Vec<u8>),
}

impl ZoneTable {
    pub(super) fn new(zone: &Zone) -> Self {
        let mut t = ZoneTable {
            domain: lower(&zone.network),
            listen: zone.listen.clone(),
            clients: zone.clients.clone(),
            ..Default::default()
        };
        for e in &zone.entries {
            t.upsert(e.clone());
        }
        t
    }

    /// Whether a query from `from` is served at all (its answer or a forward).
    pub(super) fn admits(&self, from: IpAddr) -> bool {
        self.clients.is_empty() || self.clients.iter().any(|n| n.contains(from))
    }

    /// Its containers' entries: services (`svc:NAME`) keep no resolver running, since a
    /// service's name is of use only to containers.
    pub(super) fn len(&self) -> usize {
        self.entries
            .keys()
            .filter(|k| !k.starts_with(SERVICE_KEY_PREFIX))
            .count()
    }

    pub(super) fn upsert(&mut self, entry: Entry) {
        self.remove(&entry.key);
        for n in &entry.names {
            self.by_name
                .entry(lower(n))
                .or_default()
                .push(entry.key.clone());
        }
        for a in &entry.addrs {
            self.by_addr.entry(*a).or_default().push(entry.key.clone());
        }
        self.entries.insert(entry.key.clone(), entry);
    }

    pub(super) fn remove(&mut self, key: &str) {
        let Some(old) = self.entries.remove(key) else {
            return;
        };
        for n in &old.names {
            drop_key(&mut self.by_name, &lower(n), key);
        }
        for a in &old.addrs {
            drop_key(&mut self.by_addr, a, key);
        }
    }

    /// The entries a (lowercase, dotless) name means, `None` when the name is not ours.
    /// `Some(empty)` is the network's own domain or a name under it that nobody has.
    fn lookup(&self, name: &str) -> Option<Vec<&Entry>> {
        let keys = match name.strip_suffix(self.domain.as_str()) {
            Some("") => return Some(Vec::new()),
            Some(host) if host.ends_with('.') => {
                self.by_name.get(&host[..host.len() - 1]).map(Vec::as_slice)
            }
            _ => Some(self.by_name.get(name)?.as_slice()),
        };
        Some(
            keys.unwrap_or_default()
                .iter()
                .filter_map(|k| self.entries.get(k))
                .collect(),
        )
    }

    /// The answer to a request parsed from the wire. Anything but one plain query is
    /// forwarded: the upstream knows better what to make of it.
    pub(super) fn answer(&self, req: &Message) -> Answer {
        if req.metadata.message_type != MessageType::Query
            || req.metadata.op_code != OpCode::Query
            || req.queries.len() != 1
        {
            return Answer::Forward;
        }
        let q = &req.queries[0];
        let name = lower(&q.name().to_ascii());
        let (code, answers) = match q.query_type() {
            RecordType::PTR => match self.ptr(q) {
                Some(records) => (ResponseCode::NoError, records),
                None => return Answer::Forward,
            },
            qtype => match self.lookup(&name) {
                None => return Answer::Forward,
                // The network's domain and what is under it are ours alone: an unknown
                // name there does not exist (the apex itself exists, with no data).
                Some(found) if found.is_empty() && name != self.domain => {
                    (ResponseCode::NXDomain, Vec::new())
                }
                Some(found) => (ResponseCode::NoError, addresses(q, qtype, &found)),
            },
        };
        Answer::Local(reply(req, q, code, answers))
    }

    /// PTR records for one of the zone's addresses, `None` for any other name.
    fn ptr(&self, q: &Query) -> Option<Vec<Record>> {
        let net = q.name().parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let keys = self.by_addr.get(&net.addr())?;
        let mut records = Vec::new();
        for e in keys.iter().filter_map(|k| self.entries.get(k)) {
            for n in &e.names {
                let fqdn = format!("{}.{}.", lower(n), self.domain);
                if let Ok(target) = Name::from_ascii(&fqdn) {
                    records.push(Record::from_rdata(
                        q.name().clone(),
                        0,
                        RData::PTR(PTR(target)),
                    ));
                }
            }
        }
        Some(records)
    }
}

fn addresses(q: &Query, qtype: RecordType, found: &[&Entry]) -> Vec<Record> {
    let mut records = Vec::new();
    for a in found.iter().flat_map(|e| e.addrs.iter()) {
        let rdata = match (a, qtype) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
            // A known name asked for another type: NOERROR with no data, never forwarded.
            _ => continue,
        };
        let r = Record::from_rdata(q.name().clone(), 0, rdata);
        if !records.contains(&r) {
            records.push(r);
        }
    }
    records
}

/// An authoritative reply with TTL 0 answers (a container's address changes with it).
fn reply(req: &Message, q: &Query, code: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m.add_query(q.clone());
    let limit = match &req.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            m.set_edns(edns);
            usize::from(e.max_payload().max(512))
        }
        None => 512,
    };
    m.add_answers(answers);
    let bytes = m.to_vec().unwrap_or_default();
    if bytes.len() <= limit {
        return bytes;
    }
    // Too many addresses for the client's buffer: say so, and it asks again over TCP.
    m.answers.clear();
    m.metadata.truncation = true;
    m.to_vec().unwrap_or_default()
}

/// A reply saying the server failed (no upstream answered, or none is known).
pub(super) fn servfail(req: &Message) -> Vec<u8> {
    error_reply(req, ResponseCode::ServFail)
}

/// The reply to a client outside the network.
pub(super) fn refused(req: &Message) -> Vec<u8> {
    error_reply(req, ResponseCode::Refused)
}

fn error_reply(req: &Message, code: ResponseCode) -> Vec<u8> {
    let mut m = Message::error_msg(req.metadata.id, req.metadata.op_code, code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(req.queries.clone());
    m.to_vec().unwrap_or_default()
}

fn lower(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn drop_key<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<String>>, k: &K, key: &str) {
    if let Some(keys) = map.get_mut(k) {
        keys.retain(|x| x != key);
        if keys.is_empty() {
            map.remove(k);
        }
    }
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
