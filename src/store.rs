//! On-disk state: network definitions (persistent) and runtime state (tmpfs):
//! the lock, IPAM allocations and endpoint records. The only module that touches files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{AddrParseError, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::ids::ContainerId;
use crate::ipam::{Allocations, Lease, Pool};
use crate::network::Network;
use crate::options::DEFAULT_NETWORK;

pub const DEFAULT_CONFIG_DIR: &str = "/etc/nethook";
pub const DEFAULT_RUN_DIR: &str = "/run/nethook";
/// Environment variables that override the two roots, for the CLI, the hook and the hook
/// files `install`/`inject` write.
pub const CONFIG_DIR_ENV: &str = "NETHOOK_CONFIG_DIR";
pub const RUN_DIR_ENV: &str = "NETHOOK_RUN_DIR";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupted ({source}); run `nethook gc` to rebuild runtime state, or fix or remove the file")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is a symlink or not a regular file/directory; refusing to follow it")]
    NotPlain { path: PathBuf },
    #[error("{path} does not hold an IPv4 address ({source}); remove it, it only says where allocation resumes")]
    BadCursor {
        path: PathBuf,
        #[source]
        source: AddrParseError,
    },
    #[error("{path} appeared although nethook holds {lock}: something writes IPAM state without the lock; this is a bug, please report it")]
    AddressRace {
        path: PathBuf,
        lock: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unknown network {name:?}; create it with `nethook network create {name} --subnet CIDR` or use the default network")]
    UnknownNetwork { name: String },
    #[error("network {name} already exists; pick another name or `nethook network rm {name}` first")]
    NetworkExists { name: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_owned(), source }
}

/// Where state lives; both roots are overridable so tests never share state.
#[derive(Debug, Clone)]
pub struct Store {
    config_dir: PathBuf,
    run_dir: PathBuf,
}

/// The exclusive lock over IPAM, endpoint records and nftables elements. Dropping it
/// (or the process dying) releases it.
pub struct Lock {
    _guard: fd_lock::RwLockWriteGuard<'static, File>,
}

impl Store {
    pub fn new(config_dir: PathBuf, run_dir: PathBuf) -> Self {
        Self { config_dir, run_dir }
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn networks_dir(&self) -> PathBuf {
        self.config_dir.join("networks")
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.networks_dir().join(format!("{name}.json"))
    }

    fn ipam_root(&self) -> PathBuf {
        self.run_dir.join("ipam")
    }

    /// A network's allocations: one file per address, named by it, holding the owner's id.
    pub fn ipam_dir(&self, network: &str) -> PathBuf {
        self.ipam_root().join(network)
    }

    /// The single file older versions kept a network's allocations in.
    fn legacy_pool_path(&self, network: &str) -> PathBuf {
        self.ipam_root().join(format!("{network}.json"))
    }

    pub fn endpoint_path(&self, id: &ContainerId) -> PathBuf {
        self.run_dir.join("endpoints").join(format!("{id}.json"))
    }

    /// Takes the exclusive lock, creating the run directory on first use.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        ensure_dir(&self.run_dir)?;
        let path = self.run_dir.join("lock");
        let file = open_nofollow(&path, OpenOptions::new().read(true).write(true).create(true).mode(0o600))?;
        // The lock lives as long as the guard; leaking the small RwLock box lets the guard
        // be 'static without self-references. A process takes the lock a handful of times.
        let lock: &'static mut fd_lock::RwLock<File> = Box::leak(Box::new(fd_lock::RwLock::new(file)));
        let guard = lock.write().map_err(io_err("lock", &path))?;
        Ok(Lock { _guard: guard })
    }

    // ---- networks -------------------------------------------------------------------

    /// The named network: its file if there is one, else the built-in default.
    pub fn load_network(&self, name: &str) -> Result<Network, StoreError> {
        match read_json::<Network>(&self.network_path(name))? {
            Some(n) => Ok(n),
            None if name == DEFAULT_NETWORK => Ok(Network::builtin_default()),
            None => Err(StoreError::UnknownNetwork { name: name.to_owned() }),
        }
    }

    /// All networks, the default one included, sorted by name.
    pub fn list_networks(&self) -> Result<Vec<Network>, StoreError> {
        let mut out: Vec<Network> = Vec::new();
        for name in list_json_stems(&self.networks_dir())? {
            if let Some(n) = read_json::<Network>(&self.network_path(&name))? {
                out.push(n);
            }
        }
        if !out.iter().any(|n| n.name == DEFAULT_NETWORK) {
            out.push(Network::builtin_default());
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn create_network(&self, net: &Network) -> Result<(), StoreError> {
        let path = self.network_path(&net.name);
        if path.symlink_metadata().is_ok() {
            return Err(StoreError::NetworkExists { name: net.name.clone() });
        }
        ensure_dir(&self.config_dir)?;
        ensure_dir(&self.networks_dir())?;
        write_json(&path, net)
    }

    /// Removes a network's file; false when there was none.
    /// Removes a network's file and its address directory (by then only `last` and
    /// addresses `gc` would free); false when there was no file.
    pub fn remove_network(&self, name: &str) -> Result<bool, StoreError> {
        let had_file = remove_file(&self.network_path(name))?;
        let dir = self.ipam_dir(name);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", &dir)(e)),
            _ => {}
        }
        Ok(had_file)
    }

    // ---- IPAM -----------------------------------------------------------------------

    /// A network's allocations, for use under the lock. Converts the single file of older
    /// versions on first use, so every later reader sees one layout.
    pub fn ipam(&self, network: &str) -> Result<IpamDir, StoreError> {
        ensure_dir(&self.ipam_root())?;
        let dir = IpamDir { dir: self.ipam_dir(network), lock: self.run_dir.join("lock") };
        ensure_dir(&dir.dir)?;
        let legacy = self.legacy_pool_path(network);
        if let Some(pool) = read_json::<Pool>(&legacy)? {
            dir.adopt(&pool)?;
            remove_file(&legacy)?;
        }
        Ok(dir)
    }

    /// Every allocation of `network` by address, those still in an unconverted file of an
    /// older version included. Changes nothing, for `gc --dry-run`.
    pub fn list_allocations(&self, network: &str) -> Result<Vec<(Ipv4Addr, String)>, StoreError> {
        let dir = IpamDir { dir: self.ipam_dir(network), lock: self.run_dir.join("lock") };
        let mut out = dir.allocations()?;
        if let Some(pool) = read_json::<Pool>(&self.legacy_pool_path(network))? {
            for (ip, owner) in pool.allocations {
                if !out.iter().any(|(held, _)| *held == ip) {
                    out.push((ip, owner));
                }
            }
            out.sort();
        }
        Ok(out)
    }

    // ---- endpoints ------------------------------------------------------------------

    pub fn load_endpoint(&self, id: &ContainerId) -> Result<Option<Endpoint>, StoreError> {
        read_json(&self.endpoint_path(id))
    }

    pub fn save_endpoint(&self, ep: &Endpoint) -> Result<(), StoreError> {
        ensure_dir(&self.run_dir.join("endpoints"))?;
        write_json(&self.endpoint_path(&ep.id), ep)
    }

    pub fn remove_endpoint(&self, id: &ContainerId) -> Result<bool, StoreError> {
        remove_file(&self.endpoint_path(id))
    }

    /// Every endpoint record, sorted by id. Files whose names are not valid ids are skipped.
    pub fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut out = Vec::new();
        for stem in list_json_stems(&self.run_dir.join("endpoints"))? {
            let Ok(id) = ContainerId::parse(&stem) else { continue };
            if let Some(ep) = self.load_endpoint(&id)? {
                out.push(ep);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// One network's allocations, `RUN_DIR/ipam/<network>/`: a file per address (`10.77.0.2`,
/// holding the owner's container id) and `last`, the round-robin cursor. Allocating
/// touches one address file and the cursor instead of rewriting every allocation, so a
/// setup costs the same with one container or thousands. Only valid under the lock.
#[derive(Debug)]
pub struct IpamDir {
    dir: PathBuf,
    lock: PathBuf,
}

impl IpamDir {
    fn address_path(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join("last")
    }

    /// Records a lease chosen by `ipam::choose`. The address file is created exclusively:
    /// under the lock it cannot exist, so if it does, something bypassed the lock, and
    /// failing beats handing one address to two containers.
    pub fn record(&self, lease: &Lease, id: &ContainerId) -> Result<(), StoreError> {
        let path = self.address_path(lease.address);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let mut file = match open_nofollow(&path, &mut opts) {
            Ok(f) => f,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AddressRace { path, lock: self.lock.clone(), source });
            }
            Err(e) => return Err(e),
        };
        let written = file.write_all(id.as_str().as_bytes()).map_err(io_err("write", &path)).and_then(|()| {
            if lease.advances_cursor {
                write_atomic(&self.cursor_path(), format!("{}\n", lease.address).as_bytes())
            } else {
                Ok(())
            }
        });
        if written.is_err() {
            // The caller fails the setup, which then has no record through which teardown
            // or gc would find this address: free it here, or it stays held by nobody.
            let _ = fs::remove_file(&path);
        }
        written
    }

    /// Frees `ip` only if `owner` still holds it: a late teardown of an old container must
    /// not free an address that was handed to a newer one. False when it did not.
    pub fn release(&self, ip: Ipv4Addr, owner: &str) -> Result<bool, StoreError> {
        if self.owner(ip)?.as_deref() != Some(owner) {
            return Ok(false);
        }
        remove_file(&self.address_path(ip))
    }

    /// Whether any address is allocated. Stops at the first address file, so the answer
    /// does not cost a read of every allocation.
    pub fn has_addresses(&self) -> Result<bool, StoreError> {
        match crate::sys::dir::any_entry(&self.dir, |name| address_name(name).is_some()) {
            Ok(found) => Ok(found),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("list", &self.dir)(e)),
        }
    }

    /// Every allocation, by address. Reads the whole directory: for `gc`, not for hooks.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let Some(ip) = address_name(&entry.file_name()) else { continue };
            // Gone since the listing only if something bypassed the lock; nothing to report.
            if let Some(owner) = self.owner(ip)? {
                out.push((ip, owner));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes the allocations of an older version's single file into this directory.
    /// Idempotent, so a conversion cut short by a crash is finished by the next one: an
    /// address already present keeps its file, and the file of the older version is
    /// removed by the caller only after this succeeded.
    fn adopt(&self, pool: &Pool) -> Result<(), StoreError> {
        for (ip, owner) in &pool.allocations {
            // Through a rename, so a crash cannot leave an empty file that a rerun would
            // then keep: the address would look held by nobody and gc would free it.
            if !self.is_taken(*ip)? {
                write_atomic(&self.address_path(*ip), owner.as_bytes())?;
            }
        }
        if let (Some(last), None) = (pool.last, self.last()?) {
            write_atomic(&self.cursor_path(), format!("{last}\n").as_bytes())?;
        }
        Ok(())
    }
}

impl Allocations for IpamDir {
    type Error = StoreError;

    fn owner(&self, ip: Ipv4Addr) -> Result<Option<String>, StoreError> {
        let path = self.address_path(ip);
        Ok(read_small(&path)?.map(|text| text.trim_end().to_owned()))
    }

    fn is_taken(&self, ip: Ipv4Addr) -> Result<bool, StoreError> {
        let path = self.address_path(ip);
        match path.symlink_metadata() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("inspect", &path)(e)),
        }
    }

    fn last(&self) -> Result<Option<Ipv4Addr>, StoreError> {
        let path = self.cursor_path();
        let Some(text) = read_small(&path)? else { return Ok(None) };
        text.trim().parse().map(Some).map_err(|source| StoreError::BadCursor { path, source })
    }
}

/// The address an IPAM directory entry stands for; `None` for the cursor and temp files.
fn address_name(name: &std::ffi::OsStr) -> Option<Ipv4Addr> {
    name.to_str()?.parse().ok()
}

/// Creates `dir` (0700) if needed and refuses a symlink in its place.
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match dir.symlink_metadata() {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::NotPlain { path: dir.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("create directory", dir))
        }
        Err(e) => Err(io_err("inspect", dir)(e)),
    }
}

fn open_nofollow(path: &Path, opts: &mut OpenOptions) -> Result<File, StoreError> {
    opts.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC).open(path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            StoreError::NotPlain { path: path.to_owned() }
        } else {
            io_err("open", path)(e)
        }
    })
}

/// Reads a whole file; `None` when it does not exist.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match open_nofollow(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io_err("read", path))?;
    Ok(Some(text))
}

/// Reads a short text file (an owner id, an address); `None` when it does not exist.
fn read_small(path: &Path) -> Result<Option<String>, StoreError> {
    Ok(read_bytes(path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Reads a JSON file; `None` when it does not exist.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let Some(text) = read_bytes(path)? else { return Ok(None) };
    serde_json::from_slice(&text).map(Some).map_err(|source| StoreError::Corrupt { path: path.to_owned(), source })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| io_err("serialise", path)(e.into()))?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Writes through a temporary file and a rename so readers never see a torn file.
fn write_atomic(path: &Path, text: &[u8]) -> Result<(), StoreError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = open_nofollow(&tmp, OpenOptions::new().write(true).create(true).truncate(true).mode(0o600))?;
    file.write_all(text).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

fn list_json_stems(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".json") {
            if !stem.starts_with('.') {
                out.push(stem.to_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("nethook-store-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn store(t: &TempDir) -> Store {
        Store::new(t.0.join("etc"), t.0.join("run"))
    }

    #[test]
    fn default_network_exists_without_files() {
        let t = TempDir::new("default");
        let s = store(&t);
        assert_eq!(s.load_network("nethook").unwrap(), Network::builtin_default());
        assert!(matches!(s.load_network("other"), Err(StoreError::UnknownNetwork { .. })));
        assert_eq!(s.list_networks().unwrap().len(), 1);
    }

    #[test]
    fn networks_are_created_once_and_removed() {
        let t = TempDir::new("networks");
        let s = store(&t);
        let n = Network::new("blue", "10.90.0.0/24", None, None, true).unwrap();
        s.create_network(&n).unwrap();
        assert!(matches!(s.create_network(&n), Err(StoreError::NetworkExists { .. })));
        assert_eq!(s.load_network("blue").unwrap(), n);
        assert_eq!(s.list_networks().unwrap().len(), 2);
        assert!(s.remove_network("blue").unwrap());
        assert!(!s.remove_network("blue").unwrap());
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn cid(s: &str) -> ContainerId {
        ContainerId::parse(s).unwrap()
    }

    fn lease(address: &str, advances_cursor: bool) -> Lease {
        Lease { address: ip(address), advances_cursor }
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn write_legacy(s: &Store, text: &str) -> PathBuf {
        let path = s.run_dir().join("ipam").join("nethook.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_lease_becomes_an_owner_file_and_moves_the_cursor() {
        let t = TempDir::new("record");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
        let file = s.ipam_dir("nethook").join("10.77.0.2");
        assert_eq!(fs::read_to_string(&file).unwrap(), "a");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&s.ipam_dir("nethook")), 0o700);
        assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("a"));
        assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
        // A static address leaves the cursor where round robin put it.
        ipam.record(&lease("10.77.9.9", false), &cid("b")).unwrap();
        assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
        assert!(ipam.is_taken(ip("10.77.9.9")).unwrap());
        assert!(!ipam.is_taken(ip("10.77.0.3")).unwrap());
    }

    #[test]
    fn choosing_through_the_directory_resumes_after_the_cursor() {
        let t = TempDir::new("choose");
        let s = store(&t);
        let net = Network::builtin_default();
        let ipam = s.ipam("nethook").unwrap();
        for (n, expected) in [("a", "10.77.0.2"), ("b", "10.77.0.3")] {
            let l = crate::ipam::choose(&net, None, &ipam).unwrap();
            assert_eq!(l.address, ip(expected));
            ipam.record(&l, &cid(n)).unwrap();
        }
        assert!(ipam.release(ip("10.77.0.2"), "a").unwrap());
        assert_eq!(crate::ipam::choose(&net, None, &ipam).unwrap().address, ip("10.77.0.4"));
        let taken = crate::ipam::choose(&net, Some(ip("10.77.0.3")), &ipam).unwrap_err();
        assert!(taken.to_string().contains("container b"), "{taken}");
    }

    #[test]
    fn an_existing_address_file_is_a_race_not_a_retry() {
        let t = TempDir::new("race");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
        let e = ipam.record(&lease("10.77.0.2", true), &cid("b")).unwrap_err();
        assert!(matches!(&e, StoreError::AddressRace { source, .. } if source.raw_os_error() == Some(nix::libc::EEXIST)), "{e:?}");
        assert!(e.to_string().contains("ipam/nethook/10.77.0.2") && e.to_string().contains("bug"), "{e}");
        // The first owner keeps it.
        assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn release_frees_only_the_current_owners_address() {
        let t = TempDir::new("release");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        ipam.record(&lease("10.77.0.2", true), &cid("new")).unwrap();
        assert!(!ipam.release(ip("10.77.0.2"), "old").unwrap());
        assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("new"));
        assert!(ipam.release(ip("10.77.0.2"), "new").unwrap());
        assert!(!ipam.release(ip("10.77.0.2"), "new").unwrap());
        assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap(), None);
    }

    #[test]
    fn the_cursor_and_temp_files_are_not_addresses() {
        let t = TempDir::new("empty");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        assert!(!ipam.has_addresses().unwrap());
        ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
        fs::write(s.ipam_dir("nethook").join(".last.tmp"), b"10.77.0.2\n").unwrap();
        assert!(ipam.has_addresses().unwrap());
        assert_eq!(ipam.allocations().unwrap(), vec![(ip("10.77.0.2"), "a".to_owned())]);
        assert!(ipam.release(ip("10.77.0.2"), "a").unwrap());
        assert!(!ipam.has_addresses().unwrap());
        assert!(ipam.allocations().unwrap().is_empty());
    }

    #[test]
    fn a_cursor_that_is_not_an_address_names_its_file() {
        let t = TempDir::new("cursor");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        fs::write(s.ipam_dir("nethook").join("last"), b"banana").unwrap();
        let e = ipam.last().unwrap_err();
        assert!(matches!(e, StoreError::BadCursor { .. }));
        assert!(e.to_string().contains("ipam/nethook/last"), "{e}");
    }

    #[test]
    fn the_single_file_of_older_versions_is_converted_once() {
        let t = TempDir::new("upgrade");
        let s = store(&t);
        let legacy = write_legacy(&s, r#"{"allocations": {"10.77.0.2": "a", "10.77.0.7": "b"}, "last": "10.77.0.7"}"#);
        // Dry runs see the old allocations without converting them.
        assert_eq!(s.list_allocations("nethook").unwrap().len(), 2);
        assert!(legacy.exists());
        let ipam = s.ipam("nethook").unwrap();
        assert!(!legacy.exists());
        assert_eq!(ipam.allocations().unwrap(), vec![(ip("10.77.0.2"), "a".to_owned()), (ip("10.77.0.7"), "b".to_owned())]);
        assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.7")));
        assert_eq!(mode(&s.ipam_dir("nethook").join("10.77.0.2")), 0o600);
        // Allocation continues where the old file left off.
        let next = crate::ipam::choose(&Network::builtin_default(), None, &ipam).unwrap();
        assert_eq!(next.address, ip("10.77.0.8"));
        ipam.record(&next, &cid("c")).unwrap();
        // Later loads find nothing to convert and change nothing.
        let again = s.ipam("nethook").unwrap();
        assert_eq!(again.allocations().unwrap().len(), 3);
        assert_eq!(again.last().unwrap(), Some(ip("10.77.0.8")));
    }

    #[test]
    fn a_conversion_cut_short_is_finished_without_overwriting() {
        let t = TempDir::new("upgrade-resume");
        let s = store(&t);
        // A crash after some files were written but before the old file was removed; since
        // then the directory moved on (.2 freed and given to c, cursor past it).
        let ipam = s.ipam("nethook").unwrap();
        ipam.record(&lease("10.77.0.2", true), &cid("c")).unwrap();
        write_legacy(&s, r#"{"allocations": {"10.77.0.2": "a", "10.77.0.3": "b"}, "last": "10.77.0.3"}"#);
        let ipam = s.ipam("nethook").unwrap();
        assert_eq!(ipam.allocations().unwrap(), vec![(ip("10.77.0.2"), "c".to_owned()), (ip("10.77.0.3"), "b".to_owned())]);
        assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
    }

    #[test]
    fn a_corrupted_old_file_names_the_file() {
        let t = TempDir::new("corrupt");
        let s = store(&t);
        write_legacy(&s, "{\"allocations\": {");
        let e = s.ipam("nethook").unwrap_err().to_string();
        assert!(e.contains("ipam/nethook.json"), "{e}");
    }

    #[test]
    fn symlinked_state_files_are_refused() {
        let t = TempDir::new("symlink");
        let s = store(&t);
        let ipam = s.ipam("nethook").unwrap();
        let target = t.0.join("elsewhere");
        fs::write(&target, b"someone").unwrap();
        std::os::unix::fs::symlink(&target, s.ipam_dir("nethook").join("10.77.0.2")).unwrap();
        assert!(matches!(ipam.owner(ip("10.77.0.2")), Err(StoreError::NotPlain { .. })));
        assert!(matches!(ipam.record(&lease("10.77.0.2", true), &cid("a")), Err(StoreError::AddressRace { .. })));
        assert_eq!(fs::read_to_string(&target).unwrap(), "someone");
        std::os::unix::fs::symlink(&target, s.ipam_dir("nethook").join("last")).unwrap();
        assert!(matches!(ipam.last(), Err(StoreError::NotPlain { .. })));
        // A network directory that is a symlink is refused before anything is read.
        std::os::unix::fs::symlink(&t.0, s.ipam_dir("other")).unwrap();
        assert!(matches!(s.ipam("other"), Err(StoreError::NotPlain { .. })));
    }

    #[test]
    fn lock_can_be_taken_again_after_release() {
        let t = TempDir::new("lock");
        let s = store(&t);
        drop(s.lock().unwrap());
        drop(s.lock().unwrap());
    }
}
