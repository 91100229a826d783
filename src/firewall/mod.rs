//! nftables layer of nethook: two tables whose static skeleton (sets, maps, chains, rules) is
//! created once, and per-container set/map elements added and deleted in one atomic batch each.
//!
//! - `table inet nethook`: published ports (DNAT maps), masquerade, the 127.0.0.1 guard, and
//!   isolation between networks (forward hook: into a nethook bridge only replies, published
//!   ports and traffic within the same network).
//! - `table bridge nethook`: anti-spoofing where a container's frames enter the bridge (the host
//!   end of its veth): its MAC, and its IPv4 address in IPv4 and ARP, must be its own.
//!
//! Every function opens a fresh netlink socket in the calling thread, so it acts on the network
//! namespace that thread is in. Nothing here ever calls `setns`.
//!
//! Callers serialise mutations with the nethook lock (flock): `ensure_skeleton` is a
//! check-then-create, and rule adds are not idempotent.

mod encode;
pub(crate) mod netlink;
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
pub use netlink::defer_netfilter_release;

/// Ends deferring (see `defer_netfilter_release`): the sockets kept so far are closed by a
/// child process after this one exits. Call it last, when the process is single-threaded.
/// Should no child start, it says so; the sockets then go with this process's exit.
pub fn release_deferred_sockets() {
    if let Err(e) = crate::sys::process::close_after_exit(netlink::take_deferred()) {
        crate::log::line(&format!("could not hand netfilter sockets to a child ({e}); exiting waits for the kernel instead"));
    }
}
use netlink::{Bus, MsgBuilder, NlSocket};
use crate::sys::nft::{Borrowed, ElemMsg, ElemSpec};
use skeleton::{ChainKind, Part, ADDRS4, HPORTS4, INTRA, MACS, MASQ4, NETS, PORTS4, TABLE};

use crate::mac::Mac;

/// The tables' name as `nft` shows it (`table inet nethook`, `table bridge nethook`).
pub const TABLE_NAME: &str = "nethook";

/// The address family of one of nethook's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `table inet nethook`: NAT, guard, isolation.
    Inet,
    /// `table bridge nethook`: anti-spoofing.
    Bridge,
}

impl Family {
    fn proto(self) -> ProtoFamily {
        match self {
            Family::Inet => ProtoFamily::Inet,
            Family::Bridge => ProtoFamily::Bridge,
        }
    }

    fn nfproto(self) -> u8 {
        match self {
            Family::Inet => libc::NFPROTO_INET as u8,
            Family::Bridge => libc::NFPROTO_BRIDGE as u8,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        })
    }
}

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

/// Who may send from one host veth (anti-spoofing): frames entering the bridge from
/// `host_interface` must carry `mac`, and IPv4/ARP one of `ipv4`. A host veth (`nh…`) with no
/// element sends nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Host end of the container's veth (≤ 15 bytes).
    pub host_interface: String,
    pub mac: Mac,
    /// The container's IPv4 addresses (set `addrs4`); empty: no IPv4 or ARP at all.
    pub ipv4: Vec<Ipv4Addr>,
}

/// Everything one container owns in the tables, and the per-network elements it relies on.
///
/// Per network (shared by the containers of a network: adding an existing one succeeds; delete
/// them only when the network's last endpoint goes): `masq4`, `bridges`.
/// Per container (see [`Elements::own`]): `ports`, `sources`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// Subnets whose outgoing traffic is masqueraded (set `masq4`).
    pub masq4: Vec<Ipv4Network>,
    /// Bridges of nethook networks (sets `nets` and `intra`): isolation between networks.
    pub bridges: Vec<String>,
    /// Published ports (maps `ports4`, `hports4`), added exclusively.
    pub ports: Vec<PortMapping>,
    /// Anti-spoofing (sets `macs`, `addrs4` of `table bridge nethook`).
    pub sources: Vec<Source>,
}

impl Elements {
    pub fn is_empty(&self) -> bool {
        self.masq4.is_empty()
            && self.bridges.is_empty()
            && self.ports.is_empty()
            && self.sources.is_empty()
    }

    /// Only what belongs to this container alone (ports, sources): what a rollback deletes. The
    /// per-network elements (masq4, bridges) go with the network's last endpoint.
    pub fn own(&self) -> Elements {
        Elements {
            ports: self.ports.clone(),
            sources: self.sources.clone(),
            ..Elements::default()
        }
    }

    /// Only the per-network elements (masq4, bridges).
    pub fn shared(&self) -> Elements {
        Elements {
            masq4: self.masq4.clone(),
            bridges: self.bridges.clone(),
            ..Elements::default()
        }
    }
}

/// What a netlink message in a batch was about (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table(Family),
    /// A set or map (names are unique across both tables).
    Set(&'static str),
    Chain {
        family: Family,
        name: &'static str,
    },
    /// Rule `index` of the skeleton (in `nft list` order) in `chain`.
    Rule {
        family: Family,
        chain: &'static str,
        index: usize,
    },
    Masq4(Ipv4Network),
    /// A network's bridge in set `set` (`nets` or `intra`).
    Bridge {
        set: &'static str,
        bridge: String,
    },
    /// An endpoint's anti-spoofing element in set `set` (`macs` or `addrs4`).
    Source {
        set: &'static str,
        host_interface: String,
    },
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
            Object::Table(family) => write!(f, "table {family} {TABLE_NAME}"),
            Object::Set(s) => write!(f, "set {s}"),
            Object::Chain { family, name } => write!(f, "chain {name} of table {family} {TABLE_NAME}"),
            Object::Rule {
                family,
                chain,
                index,
            } => write!(f, "rule #{index} of chain {chain} of table {family} {TABLE_NAME}"),
            Object::Masq4(n) => write!(f, "masq4 element {n}"),
            Object::Bridge { set, bridge } => write!(f, "{set} element for bridge {bridge}"),
            Object::Source {
                set,
                host_interface,
            } => write!(f, "{set} element for host interface {host_interface}"),
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
    /// A bridge or host veth name that cannot be an interface name, so no element can name it.
    #[error("nftables: {what} {name:?} is not a valid interface name (1 to 15 bytes, no NUL); fix the network definition or endpoint record, or run `nethook gc`")]
    InterfaceName { what: &'static str, name: String },
}

impl FirewallError {
    /// The errno behind the error, when the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            FirewallError::PortTaken { .. } => Some(Errno::EEXIST),
            FirewallError::Kernel { errno, .. } => Some(*errno),
            FirewallError::Netlink { source, .. } => source.raw_os_error().map(Errno::from_raw),
            FirewallError::InterfaceName { .. } => None,
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

/// Send `items` as ONE nftables batch (atomic: all or nothing; it may span both tables). Returns
/// the kernel's errors as (object, errno), empty on success.
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

fn table(family: Family) -> Table {
    Table::new(TABLE, family.proto())
}

// ---- skeleton ----

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;

/// Does the object named by one GET request exist? ENOENT → false.
fn probe(
    msg_type: u32,
    family: Family,
    attrs: &[(u16, &str)],
    object: Object,
) -> Result<bool, FirewallError> {
    let sock = NlSocket::open(Bus::Netfilter).map_err(nl_err("socket"))?;
    let ty = ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | msg_type as u16;
    let mut m = MsgBuilder::nfnl(ty, netlink::NLM_F_ACK, 1, family.nfproto());
    for (attr, val) in attrs {
        m.attr_str(*attr, val);
    }
    sock.send(&m.finish()).map_err(nl_err("send"))?;
    let errors = sock
        .collect_acks(&BTreeSet::from([1]))
        .map_err(nl_err("receive"))?;
    match errors.first() {
        None => Ok(true),
        Some((_, e)) if *e == libc::ENOENT => Ok(false),
        Some((_, e)) => Err(FirewallError::Kernel {
            op: "get",
            object,
            errno: Errno::from_raw(*e),
        }),
    }
}

fn table_exists_in(family: Family) -> Result<bool, FirewallError> {
    probe(
        libc::NFT_MSG_GETTABLE as u32,
        family,
        &[(NFTA_TABLE_NAME, TABLE_NAME)],
        Object::Table(family),
    )
}

fn set_exists(family: Family, set: &'static CStr) -> Result<bool, FirewallError> {
    let name = cstr_static(set);
    probe(
        libc::NFT_MSG_GETSET as u32,
        family,
        &[(NFTA_SET_TABLE, TABLE_NAME), (NFTA_SET_NAME, name)],
        Object::Set(name),
    )
}

/// Does `table inet nethook` exist (one NFT_MSG_GETTABLE)? See [`missing_skeleton`] for all of
/// the skeleton.
pub fn table_exists() -> Result<bool, FirewallError> {
    table_exists_in(Family::Inet)
}

/// The parts of the skeleton that are missing (2 GET requests when everything is there).
fn missing_parts() -> Result<Vec<Part>, FirewallError> {
    let mut missing = Vec::new();
    // The newest object of the inet table first: present means the whole inet table is.
    if !set_exists(Family::Inet, NETS)? {
        if !table_exists_in(Family::Inet)? {
            missing.push(Part::Base);
        }
        // An inet table made by an older nethook: only the isolation part is missing.
        missing.push(Part::Isolation);
    }
    if !table_exists_in(Family::Bridge)? {
        missing.push(Part::Antispoof);
    }
    Ok(missing)
}

/// What of the skeleton is missing, for people ("table inet nethook", "table bridge nethook",
/// or "the isolation chain and sets of table inet nethook" on a host with an older nethook's
/// table). Empty when everything is there.
pub fn missing_skeleton() -> Result<Vec<&'static str>, FirewallError> {
    let missing = missing_parts()?;
    Ok(missing
        .iter()
        .filter_map(|part| match part {
            Part::Base => Some("table inet nethook"),
            // Named on its own only when the rest of the inet table is there.
            Part::Isolation if missing.contains(&Part::Base) => None,
            Part::Isolation => Some("the isolation chain and sets of table inet nethook"),
            Part::Antispoof => Some("table bridge nethook"),
        })
        .collect())
}

/// Create whatever part of the skeleton is missing (both tables when neither exists; only
/// `table bridge nethook` and the isolation objects on a host with an older nethook's inet table),
/// in one batch. Returns whether anything was created. Call with the nethook lock held.
///
/// When something was missing while endpoints exist, their elements are missing too: re-add them
/// with [`restore`] (`nethook gc` does).
pub fn ensure_skeleton() -> Result<bool, FirewallError> {
    let missing = missing_parts()?;
    if missing.is_empty() {
        return Ok(false);
    }
    create_parts(&missing)?;
    Ok(true)
}

/// The two tables (the nftnl objects that chains, sets and rules borrow).
struct Tables {
    inet: Table,
    bridge: Table,
}

impl Tables {
    fn new() -> Self {
        Tables {
            inet: table(Family::Inet),
            bridge: table(Family::Bridge),
        }
    }

    fn get(&self, family: Family) -> &Table {
        match family {
            Family::Inet => &self.inet,
            Family::Bridge => &self.bridge,
        }
    }
}

/// One chain of the skeleton as an nftnl object.
struct BuiltChain<'a> {
    part: Part,
    name: &'static str,
    chain: Chain<'a>,
}

/// Build every chain of the skeleton (nftnl objects; rules need them even when only their part is
/// created).
fn build_chains(tables: &Tables) -> Vec<BuiltChain<'_>> {
    skeleton::chains()
        .into_iter()
        .map(|spec| {
            let mut chain = Chain::new(spec.name, tables.get(spec.part.family()));
            if let ChainKind::Base { ty, hook, priority } = spec.kind {
                chain.set_type(ty);
                chain.set_hook(hook, priority);
                chain.set_policy(Policy::Accept);
            }
            BuiltChain {
                part: spec.part,
                name: cstr_static(spec.name),
                chain,
            }
        })
        .collect()
}

/// Build the skeleton's rules for the given chains, each with its comment and its part.
fn build_rules<'a>(chains: &'a [BuiltChain<'a>]) -> Vec<(Part, Object, Rule<'a>)> {
    let mut per_chain: Vec<(Family, &str, usize)> = Vec::new();
    skeleton::rules()
        .into_iter()
        .filter_map(|spec| {
            let family = spec.part.family();
            let name = cstr_static(spec.chain);
            let built = chains
                .iter()
                .find(|c| c.name == name && c.part.family() == family)?;
            let index = match per_chain
                .iter_mut()
                .find(|(f, n, _)| *f == family && *n == name)
            {
                Some((_, _, i)) => {
                    *i += 1;
                    *i
                }
                None => {
                    per_chain.push((family, name, 0));
                    0
                }
            };
            let mut rule = Rule::new(&built.chain);
            for e in &spec.exprs {
                rule.add_expr(e);
            }
            // Invariant: the comments are short constants (< NFTNL_UDATA_COMMENT_MAXLEN = 128),
            // pinned by the golden tests, so this cannot fail; a failure would only drop the text.
            let _ = rule.set_comment(spec.comment);
            Some((
                spec.part,
                Object::Rule {
                    family,
                    chain: name,
                    index,
                },
                rule,
            ))
        })
        .collect()
}

fn cstr_static(c: &'static CStr) -> &'static str {
    // Invariant: all names in `skeleton` are ASCII literals.
    c.to_str().unwrap_or("?")
}

/// The user data nft attaches to a set of the skeleton (key byte order, comment).
fn set_udata(spec: &skeleton::SetSpec) -> Vec<u8> {
    let mut udata = spec
        .key_byteorder
        .map(encode::udata_key_byteorder)
        .unwrap_or_default();
    // Invariant: the comments are short constants (the golden listing test pins them).
    if let Some(comment) = spec.comment.and_then(encode::udata_set_comment) {
        udata.extend(comment);
    }
    udata
}

/// Create the objects of `parts` in ONE batch: the tables they live in (adding an existing table
/// changes nothing), then their sets, chains and rules.
fn create_parts(parts: &[Part]) -> Result<(), FirewallError> {
    let tables = Tables::new();
    let wanted = |part: &Part| parts.contains(part);
    let sets: Vec<_> = skeleton::SETS
        .iter()
        .filter(|spec| wanted(&spec.part))
        .map(|spec| {
            let family = spec.part.family();
            let set = nftnl::set::Set::<Ipv4Addr>::new_named(
                spec.name,
                spec.id,
                tables.get(family),
                family.proto(),
            );
            crate::sys::nft::configure_set(
                &set,
                spec.key_type,
                spec.key_len,
                spec.flags,
                spec.data,
                &set_udata(spec),
            );
            (cstr_static(spec.name), set)
        })
        .collect();
    let chains = build_chains(&tables);
    let rules = build_rules(&chains);

    let mut items: Vec<Item<'_>> = Vec::new();
    let mut families: Vec<Family> = parts.iter().map(|p| p.family()).collect();
    families.dedup();
    for family in families {
        items.push(Item {
            object: Object::Table(family),
            msg: Box::new(table(family)),
            ty: MsgType::Add,
        });
    }
    for (name, set) in &sets {
        items.push(Item {
            object: Object::Set(name),
            msg: Box::new(Borrowed(set)),
            ty: MsgType::Add,
        });
    }
    for c in chains.iter().filter(|c| wanted(&c.part)) {
        items.push(Item {
            object: Object::Chain {
                family: c.part.family(),
                name: c.name,
            },
            msg: Box::new(Borrowed(&c.chain)),
            ty: MsgType::Add,
        });
    }
    for (part, object, rule) in &rules {
        if wanted(part) {
            items.push(Item {
                object: object.clone(),
                msg: Box::new(Borrowed(rule)),
                ty: MsgType::Add,
            });
        }
    }
    first_error("create", run_batch(&items)?)
}

/// Delete both of nethook's tables with everything in them (tests, cleanup). Ok(false) if
/// neither existed.
pub fn delete_table() -> Result<bool, FirewallError> {
    let mut deleted = false;
    for family in [Family::Inet, Family::Bridge] {
        let items = [Item {
            object: Object::Table(family),
            msg: Box::new(table(family)),
            ty: MsgType::Del,
        }];
        let errors = run_batch(&items)?;
        if errors.iter().any(|(_, e)| *e == Errno::ENOENT) {
            continue;
        }
        first_error("delete", errors)?;
        deleted = true;
    }
    Ok(deleted)
}

// ---- elements ----

/// NLM_F_* values as the u16 netlink header field.
const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;

fn ifname_of(what: &'static str, name: &str) -> Result<[u8; encode::IFNAME_LEN], FirewallError> {
    encode::ifname(name).ok_or_else(|| FirewallError::InterfaceName {
        what,
        name: name.to_owned(),
    })
}

/// The element messages for `elems`: one message per subnet (start + end), per bridge and set,
/// per port, and per source and set. `exclusive_ports`: ports fail with EEXIST when taken.
fn element_items(
    tables: &Tables,
    elems: &Elements,
    exclusive_ports: bool,
) -> Result<Vec<(Object, ElemMsg)>, FirewallError> {
    let inet = tables.get(Family::Inet);
    let bridge = tables.get(Family::Bridge);
    let one = |key: Vec<u8>| {
        [ElemSpec {
            key,
            ..Default::default()
        }]
    };
    let mut out = Vec::new();
    // Per-network elements are never exclusive: the containers of a network share them.
    for net in &elems.masq4 {
        let msg = ElemMsg::new(inet, MASQ4, NLM_F_CREATE, &encode::interval_elems(*net));
        // Normalise host bits so the object names the element as nft shows it.
        let net = Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net);
        out.push((Object::Masq4(net), msg));
    }
    for name in &elems.bridges {
        let br = ifname_of("bridge", name)?;
        for (set, key) in [
            (NETS, encode::nets_key(&br)),
            (INTRA, encode::intra_key(&br)),
        ] {
            let msg = ElemMsg::new(inet, set, NLM_F_CREATE, &one(key));
            out.push((
                Object::Bridge {
                    set: cstr_static(set),
                    bridge: name.clone(),
                },
                msg,
            ));
        }
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
        let flags = if exclusive_ports {
            NLM_F_CREATE | NLM_F_EXCL
        } else {
            NLM_F_CREATE
        };
        let msg = ElemMsg::new(inet, set, flags, &[elem]);
        out.push((
            Object::Port {
                proto: m.proto,
                host_ip,
                host_port: m.host_port,
            },
            msg,
        ));
    }
    // Sources are keyed by the host veth, whose name derives from the container id: not
    // exclusive, so re-adding a live endpoint's own elements (gc) is fine.
    for src in &elems.sources {
        let veth = ifname_of("host interface", &src.host_interface)?;
        let object = |set: &'static CStr| Object::Source {
            set: cstr_static(set),
            host_interface: src.host_interface.clone(),
        };
        let msg = ElemMsg::new(
            bridge,
            MACS,
            NLM_F_CREATE,
            &one(encode::macs_key(&veth, src.mac.0)),
        );
        out.push((object(MACS), msg));
        if !src.ipv4.is_empty() {
            let keys: Vec<ElemSpec> = src
                .ipv4
                .iter()
                .map(|ip| ElemSpec {
                    key: encode::addrs4_key(&veth, src.mac.0, *ip),
                    ..Default::default()
                })
                .collect();
            let msg = ElemMsg::new(bridge, ADDRS4, NLM_F_CREATE, &keys);
            out.push((object(ADDRS4), msg));
        }
    }
    Ok(out)
}

/// The batch items that add (or delete) `elems`, one element message per item.
fn element_batch<'a>(
    tables: &'a Tables,
    elems: &Elements,
    exclusive_ports: bool,
    ty: MsgType,
) -> Result<Vec<Item<'a>>, FirewallError> {
    Ok(element_items(tables, elems, exclusive_ports)?
        .into_iter()
        .map(|(object, msg)| Item { object, msg: Box::new(msg), ty })
        .collect())
}

fn add_items(elems: &Elements, exclusive_ports: bool) -> Result<(), FirewallError> {
    let tables = Tables::new();
    let items = element_batch(&tables, elems, exclusive_ports, MsgType::Add)?;
    if items.is_empty() {
        return Ok(());
    }
    first_error("add", run_batch(&items)?)
}

/// Add all of one container's elements in ONE atomic batch (spanning both tables).
///
/// Per-network elements (masq4, bridges) and sources may already be there; a host port that is
/// already published fails the whole batch with [`FirewallError::PortTaken`] and nothing of it is
/// applied.
pub fn add(elems: &Elements) -> Result<(), FirewallError> {
    add_items(elems, true)
}

/// Like [`add`], but elements that are already there (ports included) are fine: re-creates a
/// live endpoint's elements after a part of the skeleton was re-created (`nethook gc`). A port
/// mapped to another target still fails.
pub fn restore(elems: &Elements) -> Result<(), FirewallError> {
    add_items(elems, false)
}

/// Delete elements in one batch. Elements that are already gone do not fail: when the batch
/// fails only with ENOENT, each element is retried in a batch of its own, ignoring ENOENT (a
/// table being gone counts as gone too).
pub fn delete(elems: &Elements) -> Result<(), FirewallError> {
    let tables = Tables::new();
    let items = element_batch(&tables, elems, true, MsgType::Del)?;
    if items.is_empty() {
        return Ok(());
    }
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
        let e = first_error("add", vec![(Object::Table(Family::Inet), Errno::EEXIST)]).unwrap_err();
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

    fn source(veth: &str, last: u8) -> Source {
        Source {
            host_interface: veth.into(),
            mac: Mac([0x02, 0x4e, 10, 77, 0, last]),
            ipv4: vec![Ipv4Addr::new(10, 77, 0, last)],
        }
    }

    #[test]
    fn one_message_per_subnet_bridge_set_port_and_source_set() {
        let t = Tables::new();
        let elems = Elements {
            masq4: vec!["10.77.1.2/16".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports: vec![PortMapping {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8080,
                container_ip: Ipv4Addr::new(10, 77, 0, 2),
                container_port: 80,
            }],
            sources: vec![
                source("nh0123456789ab", 2),
                Source {
                    ipv4: vec![],
                    ..source("nh0123456789ac", 3)
                },
            ],
        };
        let items = element_items(&t, &elems, true).unwrap();
        let objects: Vec<_> = items.iter().map(|(o, _)| o.to_string()).collect();
        assert_eq!(
            objects,
            vec![
                "masq4 element 10.77.0.0/16",
                "nets element for bridge nethook0",
                "intra element for bridge nethook0",
                "ports4 element tcp . 8080",
                "macs element for host interface nh0123456789ab",
                "addrs4 element for host interface nh0123456789ab",
                // No IPv4 address: a MAC element only (IPv4 and ARP from it are dropped).
                "macs element for host interface nh0123456789ac",
            ]
        );
    }

    #[test]
    fn own_and_shared_split_per_container_from_per_network() {
        let e = Elements {
            masq4: vec!["10.77.0.0/16".parse().unwrap()],
            bridges: vec!["nethook0".into()],
            ports: vec![],
            sources: vec![source("nh0123456789ab", 2)],
        };
        assert!(!e.is_empty() && Elements::default().is_empty());
        let own = e.own();
        assert!(own.masq4.is_empty() && own.bridges.is_empty());
        assert_eq!(own.sources, e.sources);
        let shared = e.shared();
        assert!(shared.sources.is_empty() && shared.ports.is_empty());
        assert_eq!((shared.masq4, shared.bridges), (e.masq4.clone(), e.bridges.clone()));
    }

    #[test]
    fn bad_interface_names_are_refused_before_the_kernel() {
        let t = Tables::new();
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
        ] {
            match element_items(&t, &elems, true) {
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
    fn skeleton_objects_name_their_table() {
        assert_eq!(Object::Table(Family::Bridge).to_string(), "table bridge nethook");
        assert_eq!(
            Object::Rule {
                family: Family::Bridge,
                chain: "antispoof",
                index: 2
            }
            .to_string(),
            "rule #2 of chain antispoof of table bridge nethook"
        );
    }

    #[test]
    fn every_part_has_objects_and_rules_find_their_chains() {
        let tables = Tables::new();
        let chains = build_chains(&tables);
        let rules = build_rules(&chains);
        assert_eq!(rules.len(), skeleton::rules().len());
        for part in Part::ALL {
            assert!(chains.iter().any(|c| c.part == part) || part == Part::Isolation);
            assert!(rules.iter().any(|(p, _, _)| *p == part), "{part:?} has rules");
        }
        // Set ids are unique within a batch.
        let mut ids: Vec<_> = skeleton::SETS.iter().map(|s| s.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), skeleton::SETS.len());
        // The isolation rule in `forward` (a Base chain) is part of Isolation: an old inet
        // table gets it without re-creating its chain.
        assert!(rules.iter().any(|(p, o, _)| *p == Part::Isolation
            && matches!(o, Object::Rule { chain: "forward", .. })));
    }
}

#[cfg(test)]
mod golden;
