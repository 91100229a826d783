//! nftables layer of nethook: one table, `table inet nethook`, whose static skeleton (sets, maps,
//! chains, rules) is created once, and per-container set/map elements added and deleted in one
//! atomic batch each.
//!
//! Every function opens a fresh netlink socket in the calling thread, so it acts on the network
//! namespace that thread is in. Nothing here ever calls `setns`.
//!
//! Callers serialise mutations with the nethook lock (flock): `ensure_skeleton` is a
//! check-then-create, and rule adds are not idempotent.

mod encode;
pub(crate) mod netlink;
#[allow(unsafe_code)]
mod nft_sys;
mod skeleton;

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use nftnl::{Batch, Chain, MsgType, NlMsg, Policy, ProtoFamily, Rule, Table};
use nix::errno::Errno;

pub use encode::Proto;
use netlink::{Bus, MsgBuilder, NlSocket};
use nft_sys::{Borrowed, ElemMsg, ElemSpec};
use skeleton::{ChainKind, HPORTS4, MASQ4, PORTS4, TABLE};

/// The table's name as `nft` shows it (`table inet nethook`).
pub const TABLE_NAME: &str = "nethook";

/// One published port (ranges are expanded by the caller: one mapping per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// `None` (or 0.0.0.0): every host address (map `ports4`); `Some(ip)`: only `ip` (`hports4`).
    /// `Some(127.0.0.1)` needs `net.ipv4.conf.<bridge>.route_localnet=1`, set by the caller.
    pub host_ip: Option<Ipv4Addr>,
    pub proto: Proto,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

impl PortMapping {
    fn host_ip(&self) -> Option<Ipv4Addr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// Everything one container owns in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// Subnets whose outgoing traffic is masqueraded (shared by the containers of a network:
    /// adding an existing one succeeds; delete it only when the network's last endpoint goes).
    pub masq4: Vec<Ipv4Network>,
    pub ports: Vec<PortMapping>,
}

/// What a netlink message in a batch was about (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table,
    Set(&'static str),
    Chain(&'static str),
    /// Rule `index` of the skeleton (in `nft list` order) in `chain`.
    Rule {
        chain: &'static str,
        index: usize,
    },
    Masq4(Ipv4Network),
    Port {
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
    },
    /// Batch begin/end message.
    Batch,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Table => write!(f, "table inet {TABLE_NAME}"),
            Object::Set(s) => write!(f, "set {s}"),
            Object::Chain(c) => write!(f, "chain {c}"),
            Object::Rule { chain, index } => write!(f, "rule #{index} of chain {chain}"),
            Object::Masq4(n) => write!(f, "masq4 element {n}"),
            Object::Port {
                proto,
                host_ip,
                host_port,
            } => match host_ip {
                Some(ip) => write!(f, "hports4 element {ip} . {proto} . {host_port}"),
                None => write!(f, "ports4 element {proto} . {host_port}"),
            },
            Object::Batch => f.write_str("batch control message"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A host port is already published (by another container): the whole batch was rejected.
    #[error("host port {}{host_port}/{proto} is already published", host_ip.map(|ip| format!("{ip}:")).unwrap_or_default())]
    PortTaken {
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
    },
    /// The kernel rejected a message of a batch (the whole batch was rolled back).
    #[error("nftables: {op} {object} failed")]
    Kernel {
        op: &'static str,
        object: Object,
        #[source]
        errno: Errno,
    },
    /// Netlink socket trouble (open, send, receive, parse).
    #[error("nftables: netlink {op}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl FirewallError {
    /// The errno behind the error, when the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            FirewallError::PortTaken { .. } => Some(Errno::EEXIST),
            FirewallError::Kernel { errno, .. } => Some(*errno),
            FirewallError::Netlink { source, .. } => source.raw_os_error().map(Errno::from_raw),
        }
    }
}

fn nl_err(op: &'static str) -> impl FnOnce(io::Error) -> FirewallError {
    move |source| FirewallError::Netlink { op, source }
}

// ---- batches ----

/// One message of a batch and what it is about.
struct Item<'a> {
    object: Object,
    msg: Box<dyn NlMsg + 'a>,
    ty: MsgType,
}

/// Send `items` as ONE nftables batch (atomic: all or nothing). Returns the kernel's errors as
/// (object, errno), empty on success.
fn run_batch(items: &[Item<'_>]) -> Result<Vec<(Object, Errno)>, FirewallError> {
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let mut batch = Batch::new();
    for it in items {
        batch.add(&Borrowed(&*it.msg), it.ty);
    }
    let batch = batch.finalize();
    let seqs = batch.sequence_numbers();
    let n = items.len() as u32;
    // nftnl numbers the messages consecutively; when the kernel ACKs batch begin/end (6.10+) the
    // range also covers those two, otherwise only the messages.
    let first_msg_seq = if seqs.len() as u32 == n + 2 {
        seqs.start + 1
    } else {
        seqs.start
    };
    let object_of = |seq: u32| -> Object {
        seq.checked_sub(first_msg_seq)
            .and_then(|i| items.get(i as usize))
            .map(|it| it.object.clone())
            .unwrap_or(Object::Batch)
    };
    let bytes: Vec<u8> = batch.iter().flat_map(|page| page.iter().copied()).collect();
    sock.reserve_replies(seqs.len());
    sock.send(&bytes).map_err(nl_err("send"))?;
    let expect: BTreeSet<u32> = seqs.collect();
    let errors = sock.collect_acks(&expect).map_err(nl_err("receive"))?;
    Ok(errors
        .into_iter()
        .map(|(seq, errno)| (object_of(seq), Errno::from_raw(errno)))
        .collect())
}

/// Map batch errors of an element add/delete to the one error to report.
fn first_error(op: &'static str, errors: Vec<(Object, Errno)>) -> Result<(), FirewallError> {
    // A taken port is the interesting error; anything else (e.g. ENOENT: the skeleton is missing)
    // is reported as it is. Messages after a failure may be reported as failing too.
    if let Some((
        Object::Port {
            proto,
            host_ip,
            host_port,
        },
        _,
    )) = errors
        .iter()
        .find(|(o, e)| matches!(o, Object::Port { .. }) && *e == Errno::EEXIST)
    {
        return Err(FirewallError::PortTaken {
            proto: *proto,
            host_ip: *host_ip,
            host_port: *host_port,
        });
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some((object, errno)) => Err(FirewallError::Kernel { op, object, errno }),
    }
}

fn table() -> Table {
    Table::new(TABLE, ProtoFamily::Inet)
}

// ---- skeleton ----

const NFTA_TABLE_NAME: u16 = 1;

/// Does `table inet nethook` exist (one NFT_MSG_GETTABLE)?
pub fn table_exists() -> Result<bool, FirewallError> {
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let ty = ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | libc::NFT_MSG_GETTABLE as u16;
    let mut m = MsgBuilder::nfnl(ty, netlink::NLM_F_ACK, 1, libc::NFPROTO_INET as u8);
    m.attr_str(NFTA_TABLE_NAME, TABLE_NAME);
    sock.send(&m.finish()).map_err(nl_err("send"))?;
    let errors = sock
        .collect_acks(&BTreeSet::from([1]))
        .map_err(nl_err("receive"))?;
    match errors.first() {
        None => Ok(true),
        Some((_, e)) if *e == libc::ENOENT => Ok(false),
        Some((_, e)) => Err(FirewallError::Kernel {
            op: "get",
            object: Object::Table,
            errno: Errno::from_raw(*e),
        }),
    }
}

/// Create the whole skeleton in one batch when `table inet nethook` is missing.
/// Returns whether it was created. Call with the nethook lock held.
pub fn ensure_skeleton() -> Result<bool, FirewallError> {
    if table_exists()? {
        return Ok(false);
    }
    create_skeleton()?;
    Ok(true)
}

/// Build the skeleton's chains (nftnl objects) for `table`.
fn build_chains(table: &Table) -> Vec<(&'static str, Chain<'_>)> {
    skeleton::chains()
        .into_iter()
        .map(|spec| {
            let mut chain = Chain::new(spec.name, table);
            if let ChainKind::Base { ty, hook, priority } = spec.kind {
                chain.set_type(ty);
                chain.set_hook(hook, priority);
                chain.set_policy(Policy::Accept);
            }
            (cstr_static(spec.name), chain)
        })
        .collect()
}

/// Build the skeleton's rules for the given chains, each with its comment.
fn build_rules<'a>(chains: &'a [(&'static str, Chain<'a>)]) -> Vec<(Object, Rule<'a>)> {
    let mut per_chain: Vec<(&str, usize)> = Vec::new();
    skeleton::rules()
        .into_iter()
        .filter_map(|spec| {
            let name = cstr_static(spec.chain);
            let (_, chain) = chains.iter().find(|(n, _)| *n == name)?;
            let index = match per_chain.iter_mut().find(|(n, _)| *n == name) {
                Some((_, i)) => {
                    *i += 1;
                    *i
                }
                None => {
                    per_chain.push((name, 0));
                    0
                }
            };
            let mut rule = Rule::new(chain);
            for e in &spec.exprs {
                rule.add_expr(e);
            }
            // Invariant: the comments are short constants (< NFTNL_UDATA_COMMENT_MAXLEN = 128),
            // pinned by the golden tests, so this cannot fail; a failure would only drop the text.
            let _ = rule.set_comment(spec.comment);
            Some((Object::Rule { chain: name, index }, rule))
        })
        .collect()
}

fn cstr_static(c: &'static CStr) -> &'static str {
    // Invariant: all names in `skeleton` are ASCII literals.
    c.to_str().unwrap_or("?")
}

fn create_skeleton() -> Result<(), FirewallError> {
    let table = table();
    let sets: Vec<_> = skeleton::SETS
        .iter()
        .map(|spec| {
            let set = nftnl::set::Set::<Ipv4Addr>::new_named(
                spec.name,
                spec.id,
                &table,
                ProtoFamily::Inet,
            );
            let udata = if spec.data.is_none() {
                encode::udata_key_big_endian()
            } else {
                Vec::new()
            };
            nft_sys::configure_set(
                &set,
                spec.key_type,
                spec.key_len,
                spec.flags,
                spec.data,
                &udata,
            );
            (cstr_static(spec.name), set)
        })
        .collect();
    let chains = build_chains(&table);
    let rules = build_rules(&chains);

    let mut items: Vec<Item<'_>> = Vec::new();
    items.push(Item {
        object: Object::Table,
        msg: Box::new(table_msg()),
        ty: MsgType::Add,
    });
    for (name, set) in &sets {
        items.push(Item {
            object: Object::Set(name),
            msg: Box::new(Borrowed(set)),
            ty: MsgType::Add,
        });
    }
    for (name, chain) in &chains {
        items.push(Item {
            object: Object::Chain(name),
            msg: Box::new(Borrowed(chain)),
            ty: MsgType::Add,
        });
    }
    for (object, rule) in &rules {
        items.push(Item {
            object: object.clone(),
            msg: Box::new(Borrowed(rule)),
            ty: MsgType::Add,
        });
    }
    first_error("create", run_batch(&items)?)
}

fn table_msg() -> Table {
    table()
}

/// Delete `table inet nethook` with everything in it (tests, cleanup). Ok(false) if it was absent.
pub fn delete_table() -> Result<bool, FirewallError> {
    let items = [Item {
        object: Object::Table,
        msg: Box::new(table_msg()),
        ty: MsgType::Del,
    }];
    let errors = run_batch(&items)?;
    if errors.iter().any(|(_, e)| *e == Errno::ENOENT) {
        return Ok(false);
    }
    first_error("delete", errors).map(|()| true)
}

// ---- elements ----

/// NLM_F_* values as the u16 netlink header field.
const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;

/// The element messages for `elems`, one message per subnet (start + end) and per port.
fn element_items(table: &Table, elems: &Elements) -> Vec<(Object, ElemMsg)> {
    let mut out = Vec::new();
    for net in &elems.masq4 {
        // Not exclusive: the subnet is shared by the containers of a network.
        let msg = ElemMsg::new(table, MASQ4, NLM_F_CREATE, &encode::interval_elems(*net));
        // Normalise host bits so the object names the element as nft shows it.
        let net = Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net);
        out.push((Object::Masq4(net), msg));
    }
    for m in &elems.ports {
        let host_ip = m.host_ip();
        let (set, key) = match host_ip {
            Some(ip) => (HPORTS4, encode::hports4_key(ip, m.proto, m.host_port)),
            None => (PORTS4, encode::ports4_key(m.proto, m.host_port)),
        };
        let elem = ElemSpec {
            key,
            data: Some(encode::dnat4_data(m.container_ip, m.container_port)),
            ..Default::default()
        };
        // Exclusive: a host port already mapped fails the batch with EEXIST.
        let msg = ElemMsg::new(table, set, NLM_F_CREATE | NLM_F_EXCL, &[elem]);
        out.push((
            Object::Port {
                proto: m.proto,
                host_ip,
                host_port: m.host_port,
            },
            msg,
        ));
    }
    out
}

/// Add all of one container's elements in ONE atomic batch.
///
/// masq4 subnets may already be there (shared); a host port that is already published fails the
/// whole batch with [`FirewallError::PortTaken`] and nothing of it is applied.
pub fn add(elems: &Elements) -> Result<(), FirewallError> {
    let table = table();
    let msgs = element_items(&table, elems);
    if msgs.is_empty() {
        return Ok(());
    }
    let items: Vec<Item<'_>> = msgs
        .into_iter()
        .map(|(object, msg)| Item {
            object,
            msg: Box::new(msg),
            ty: MsgType::Add,
        })
        .collect();
    first_error("add", run_batch(&items)?)
}

/// Delete a container's elements in one batch. Elements that are already gone do not fail: when
/// the batch fails only with ENOENT, each element is retried in a batch of its own, ignoring
/// ENOENT (the table being gone counts as gone too).
pub fn delete(elems: &Elements) -> Result<(), FirewallError> {
    let table = table();
    let msgs = element_items(&table, elems);
    if msgs.is_empty() {
        return Ok(());
    }
    let items: Vec<Item<'_>> = msgs
        .into_iter()
        .map(|(object, msg)| Item {
            object,
            msg: Box::new(msg),
            ty: MsgType::Del,
        })
        .collect();
    let errors = run_batch(&items)?;
    if errors.is_empty() {
        return Ok(());
    }
    if errors.iter().any(|(_, e)| *e != Errno::ENOENT) {
        return first_error("delete", errors);
    }
    let mut first = None;
    for item in items {
        let errors = run_batch(std::slice::from_ref(&item))?;
        let errors: Vec<_> = errors
            .into_iter()
            .filter(|(_, e)| *e != Errno::ENOENT)
            .collect();
        if let Err(e) = first_error("delete", errors) {
            // Keep going: delete as much as possible, report the first failure.
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_taken_is_preferred_and_formatted() {
        let errors = vec![
            (
                Object::Masq4("10.77.0.0/16".parse().unwrap()),
                Errno::EINVAL,
            ),
            (
                Object::Port {
                    proto: Proto::Udp,
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 53,
                },
                Errno::EEXIST,
            ),
        ];
        let e = first_error("add", errors).unwrap_err();
        assert!(matches!(
            e,
            FirewallError::PortTaken {
                proto: Proto::Udp,
                host_port: 53,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "host port 127.0.0.1:53/udp is already published"
        );
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        let e = FirewallError::PortTaken {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 8080,
        };
        assert_eq!(e.to_string(), "host port 8080/tcp is already published");
    }

    #[test]
    fn other_errors_keep_object_and_errno() {
        let errors = vec![(Object::Set("ports4"), Errno::ENOENT)];
        let e = first_error("add", errors).unwrap_err();
        assert_eq!(e.to_string(), "nftables: add set ports4 failed");
        let src = std::error::Error::source(&e).unwrap().to_string();
        assert!(src.contains("No such file"), "{src}");
        assert!(first_error("add", vec![]).is_ok());
        // EEXIST on something that is not a port is not "port taken".
        let e = first_error("add", vec![(Object::Table, Errno::EEXIST)]).unwrap_err();
        assert!(matches!(
            e,
            FirewallError::Kernel {
                errno: Errno::EEXIST,
                ..
            }
        ));
    }

    #[test]
    fn unspecified_host_ip_means_every_address() {
        let m = PortMapping {
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            proto: Proto::Tcp,
            host_port: 80,
            container_ip: Ipv4Addr::new(10, 77, 0, 2),
            container_port: 80,
        };
        assert_eq!(m.host_ip(), None);
    }

    #[test]
    fn one_message_per_subnet_and_port() {
        let t = table();
        let elems = Elements {
            masq4: vec!["10.77.1.2/16".parse().unwrap()],
            ports: vec![PortMapping {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8080,
                container_ip: Ipv4Addr::new(10, 77, 0, 2),
                container_port: 80,
            }],
        };
        let items = element_items(&t, &elems);
        let objects: Vec<_> = items.iter().map(|(o, _)| o.to_string()).collect();
        assert_eq!(
            objects,
            vec!["masq4 element 10.77.0.0/16", "ports4 element tcp . 8080"]
        );
    }
}

#[cfg(test)]
mod golden;
