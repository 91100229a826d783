//! The resolver process (`nethook dns serve`): binds every zone's addresses, says "ready" to
//! the hook that started it, then applies control requests until no entry is left.
//!
//! A request is applied whole or not at all: the addresses it adds are bound first, and
//! only when all of them are does the table change (under a write lock the query threads
//! wait on for microseconds; their sockets stay open).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};

use hickory_proto::op::Message;

use super::client::io;
use super::listen::{self, Bound, Listener};
use super::upstream::{Upstreams, RESOLVED_CONF, RESOLV_CONF};
use super::zone::{Answer, ZoneTable};
use super::{
    ctl_path, dir, pid_path, Request, ResolverError, Snapshot, Update, MAX_CONTROL_BYTES, READY,
    REPLY_ERROR, REPLY_EXITING, REPLY_OK,
};

/// What the serving threads read.
pub(super) struct Shared {
    tables: RwLock<Tables>,
    pub(super) upstreams: Upstreams,
    pub(super) forwards: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Tables {
    zones: HashMap<String, ZoneTable>,
    /// Listen address → the network whose names are answered there.
    by_listen: HashMap<IpAddr, String>,
}

impl Tables {
    fn entries(&self) -> usize {
        self.zones.values().map(ZoneTable::len).sum()
    }

    fn index(&mut self) {
        self.by_listen = self
            .zones
            .iter()
            .flat_map(|(net, z)| z.listen.iter().map(move |a| (*a, net.clone())))
            .collect();
    }
}

impl Shared {
    /// The answer from the zone of the address the query arrived on (never another's);
    /// `None` for a client outside that zone's network (or no zone): it gets REFUSED.
    pub(super) fn answer(&self, at: IpAddr, from: IpAddr, req: Option<&Message>) -> Option<Answer> {
        let t = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let zone = t.by_listen.get(&at).and_then(|net| t.zones.get(net))?;
        if !zone.admits(from) {
            return None;
        }
        Some(req.map_or(Answer::Forward, |r| zone.answer(r)))
    }
}

/// The resolver's state: the shared tables and a listener per address.
pub(super) struct Resolver {
    shared: Arc<Shared>,
    listeners: HashMap<IpAddr, Listener>,
}

impl Resolver {
    /// Binds every address of the snapshot; one line saying why not otherwise.
    pub(super) fn new(snapshot: &Snapshot) -> Result<Self, ResolverError> {
        let shared = Arc::new(Shared {
            tables: RwLock::new(Tables::default()),
            upstreams: Upstreams::new(RESOLV_CONF.into(), RESOLVED_CONF.into()),
            forwards: Arc::new(AtomicUsize::new(0)),
        });
        let mut r = Resolver {
            shared,
            listeners: HashMap::new(),
        };
        let updates: Vec<Update> = snapshot.zones.iter().cloned().map(Update::Zone).collect();
        r.apply(&updates)?;
        Ok(r)
    }

    pub(super) fn entries(&self) -> usize {
        self.shared.tables.read().map(|t| t.entries()).unwrap_or(0)
    }

    fn addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.listeners.keys().copied().collect();
        v.sort();
        v
    }

    /// Applies the updates in order, all or none.
    pub(super) fn apply(&mut self, updates: &[Update]) -> Result<(), ResolverError> {
        // Where every network listens once the updates are applied, checked before anything.
        let mut listen: HashMap<String, Vec<IpAddr>> = {
            let t = self.shared.tables.read().unwrap_or_else(|p| p.into_inner());
            t.zones
                .iter()
                .map(|(n, z)| (n.clone(), z.listen.clone()))
                .collect()
        };
        for u in updates {
            match u {
                Update::Upsert { network, .. } | Update::Remove { network, .. } => {
                    if !listen.contains_key(network) {
                        return Err(ResolverError::Refused(format!(
                            "DNS resolver: no network {network} to update (send its Zone first)"
                        )));
                    }
                }
                Update::Zone(z) => {
                    listen.insert(z.network.clone(), z.listen.clone());
                }
                Update::DropZone { network } => {
                    listen.remove(network);
                }
            }
        }
        let mut owner: HashMap<IpAddr, &str> = HashMap::new();
        for (net, addrs) in &listen {
            for a in addrs {
                if let Some(other) = owner.insert(*a, net).filter(|o| o != net) {
                    return Err(ResolverError::Refused(format!(
                        "DNS resolver: networks {other} and {net} both listen on {a}: give each network its own gateway"
                    )));
                }
            }
        }
        // Bind what is new before changing anything: a failure leaves all as it was.
        let mut new: Vec<(&IpAddr, &&str)> = (owner.iter())
            .filter(|(a, _)| !self.listeners.contains_key(a))
            .collect();
        new.sort();
        let mut bound: Vec<Bound> = Vec::new();
        for (a, net) in new {
            bound.push(listen::bind(*a, net)?);
        }
        let built: Vec<Option<ZoneTable>> = updates
            .iter()
            .map(|u| match u {
                Update::Zone(z) => Some(ZoneTable::new(z)),
                _ => None,
            })
            .collect();
        // Replaced zones are dropped after the lock is released: freeing a few thousand
        // entries is no reason to hold queries up.
        let mut replaced: Vec<ZoneTable> = Vec::new();
        {
            let mut t = self
                .shared
                .tables
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (u, table) in updates.iter().zip(built) {
                match (u, table) {
                    (Update::Upsert { network, entry }, _) => {
                        if let Some(z) = t.zones.get_mut(network) {
                            z.upsert(entry.clone());
                        }
                    }
                    (Update::Remove { network, key }, _) => {
                        if let Some(z) = t.zones.get_mut(network) {
                            z.remove(key);
                        }
                    }
                    (Update::Zone(z), Some(table)) => {
                        replaced.extend(t.zones.insert(z.network.clone(), table));
                    }
                    (Update::DropZone { network }, _) => {
                        replaced.extend(t.zones.remove(network));
                    }
                    (Update::Zone(_), None) => {}
                }
            }
            t.index();
        }
        drop(replaced);
        for b in bound {
            let addr = b.addr;
            let l = Listener::start(b, &self.shared).map_err(|source| ResolverError::Io {
                action: "start the threads for",
                path: addr.to_string().into(),
                source,
            })?;
            self.listeners.insert(addr, l);
        }
        let gone: Vec<IpAddr> = (self.listeners.keys().copied())
            .filter(|a| !owner.contains_key(a))
            .collect();
        for a in gone {
            if let Some(l) = self.listeners.remove(&a) {
                l.stop();
            }
        }
        Ok(())
    }

    /// Closes every listening socket (and joins their threads): an exiting resolver frees
    /// its ports before it says so, so the next hook's new resolver can bind them at once.
    fn close_all(&mut self) {
        for (_, l) in self.listeners.drain() {
            l.stop();
        }
    }
}

/// `nethook dns serve`: the resolver process. Reads the snapshot on stdin, binds, writes
/// "ready" (or its one-line error) on stdout, then serves until no entry is left.
pub fn run(run_dir: &Path) -> u8 {
    close_inherited();
    // Its own session: no terminal's hangup, no signal to the hook's process group.
    let _ = nix::unistd::setsid();
    // Not the hook's directory (a bundle the runtime will unmount or delete).
    let _ = std::env::set_current_dir("/");
    // Spawned as /proc/self/exe, it would show as "exe" in ps and in port-holder messages.
    let _ = nix::sys::prctl::set_name(c"nethook-dns");
    crate::log::to_syslog();
    match prepare(run_dir) {
        Ok((resolver, ctl)) => {
            // stdio goes to /dev/null before "ready" is said (through a copy of stdout),
            // so the starter's pipes are closed here by the time it returns.
            let ready = std::io::stdout().as_fd().try_clone_to_owned();
            detach_stdio();
            if let Ok(fd) = ready {
                let _ = std::fs::File::from(fd).write_all(format!("{READY}\n").as_bytes());
            }
            crate::log::notice(&format!(
                "DNS resolver (pid {}) serves {} names on {:?}",
                std::process::id(),
                resolver.entries(),
                resolver.addresses()
            ));
            serve(resolver, &ctl, run_dir)
        }
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "{}", crate::describe(&e));
            1
        }
    }
}

/// Closes every descriptor but stdio. nethook opens its own with O_CLOEXEC (the lock,
/// netlink and netfilter sockets), but whoever ran the hook may have left some open, and
/// a process that lives on must not hold, say, a runtime's pipe: the runtime would wait
/// for its end. Called first thing, when nothing in this process owns a descriptor yet.
fn close_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    // The directory's own descriptor is in the list and closed by now: EBADF, ignored.
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

fn prepare(run_dir: &Path) -> Result<(Resolver, UnixDatagram), ResolverError> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(io("read the snapshot from", Path::new("stdin")))?;
    let snapshot: Snapshot = serde_json::from_slice(&input)
        .map_err(|e| ResolverError::Protocol(format!("snapshot on stdin: {e}")))?;
    let resolver = Resolver::new(&snapshot)?;
    // The first look at the upstreams, so "none" is logged at start rather than at the
    // first query.
    resolver.shared.upstreams.servers();
    let d = dir(run_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(io("create", &d))?;
    // Whoever can write here can send updates: the directory must be ours alone.
    let meta = std::fs::metadata(&d).map_err(io("inspect", &d))?;
    if meta.uid() != crate::sys::process::euid() || meta.mode() & 0o022 != 0 {
        return Err(ResolverError::Refused(format!(
            "DNS resolver: {} is writable by another user: `chown root: {0}; chmod 0700 {0}`",
            d.display()
        )));
    }
    let ctl = ctl_path(run_dir);
    let _ = std::fs::remove_file(&ctl);
    let sock = UnixDatagram::bind(&ctl).map_err(io("bind", &ctl))?;
    let pid = pid_path(run_dir);
    let tmp = pid.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &pid).map_err(io("write", &pid))?;
    Ok((resolver, sock))
}

/// stdin, stdout and stderr on /dev/null: the hook's pipes must not stay open in a
/// process that outlives it (a runtime waits for its hook's output to end).
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

fn serve(mut resolver: Resolver, ctl: &UnixDatagram, run_dir: &Path) -> u8 {
    let mut buf = vec![0u8; MAX_CONTROL_BYTES];
    loop {
        let Ok((n, peer)) = ctl.recv_from(&mut buf) else {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        let result = serde_json::from_slice::<Request>(&buf[..n])
            .map_err(|e| ResolverError::Protocol(e.to_string()))
            .and_then(|req| resolver.apply(&req.updates));
        let exiting = result.is_ok() && resolver.entries() == 0;
        if exiting {
            resolver.close_all();
        }
        let reply = match &result {
            Ok(()) if exiting => REPLY_EXITING.to_owned(),
            Ok(()) => REPLY_OK.to_owned(),
            Err(e) => format!("{REPLY_ERROR}{}", crate::describe(e)),
        };
        if let Some(p) = peer.as_pathname() {
            let _ = ctl.send_to(reply.as_bytes(), p);
        }
        if exiting {
            crate::log::notice(&format!(
                "DNS resolver (pid {}) exits: no names left to serve ({})",
                std::process::id(),
                run_dir.display()
            ));
            return 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::{Entry, Zone};

    fn zone(net: &str, listen: &[&str], names: &[&str]) -> Zone {
        Zone {
            network: net.into(),
            listen: listen.iter().map(|a| a.parse().unwrap()).collect(),
            clients: vec![],
            entries: names
                .iter()
                .enumerate()
                .map(|(i, n)| Entry {
                    key: format!("{net}-{i}"),
                    names: vec![n.to_string()],
                    addrs: vec![format!("10.1.0.{}", i + 2).parse().unwrap()],
                })
                .collect(),
        }
    }

    fn resolver(zones: Vec<Zone>) -> Resolver {
        Resolver::new(&Snapshot { zones }).unwrap()
    }

    #[test]
    fn an_update_for_an_unknown_network_changes_nothing() {
        let mut r = resolver(vec![zone("a", &[], &["web"])]);
        let e = r
            .apply(&[
                Update::Remove {
                    network: "a".into(),
                    key: "a-0".into(),
                },
                Update::Remove {
                    network: "b".into(),
                    key: "b-0".into(),
                },
            ])
            .unwrap_err();
        assert!(e.to_string().contains("no network b"), "{e}");
        assert_eq!(r.entries(), 1, "the first update was not applied alone");
    }

    #[test]
    fn two_networks_on_one_address_are_refused_before_anything_is_bound() {
        let mut r = resolver(vec![]);
        let e = r
            .apply(&[
                Update::Zone(zone("a", &["192.0.2.1"], &["x"])),
                Update::Zone(zone("b", &["192.0.2.1"], &["y"])),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("both listen on 192.0.2.1"), "{e}");
        assert!(r.listeners.is_empty());
        assert_eq!(r.entries(), 0);
    }

    #[test]
    fn a_zone_update_replaces_the_entries_and_drop_zone_removes_them() {
        let mut r = resolver(vec![zone("a", &[], &["web", "db"]), zone("b", &[], &["x"])]);
        assert_eq!(r.entries(), 3);
        r.apply(&[Update::Zone(zone("a", &[], &["only"]))]).unwrap();
        assert_eq!(r.entries(), 2);
        r.apply(&[Update::DropZone {
            network: "a".into(),
        }])
        .unwrap();
        assert_eq!(r.entries(), 1);
        r.apply(&[Update::Remove {
            network: "b".into(),
            key: "b-0".into(),
        }])
        .unwrap();
        assert_eq!(r.entries(), 0);
    }
}
