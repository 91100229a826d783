//! On-disk state: network definitions (persistent) and runtime state (tmpfs):
//! the lock, IPAM allocations and endpoint records. The only module that touches files.
//!
//! Every directory and file read must be root's (or nethook's user's) and writable by
//! nobody else (`files::check_trusted`): a record names the links teardown deletes. A
//! record or cursor that cannot be read is moved aside by `gc` (`quarantine`) rather than
//! block every command that lists them.

pub mod claims;
#[cfg(test)]
mod compat_tests;
mod deleting;
mod files;
mod ipam_dir;
pub mod services;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::model::ipam::Pool;
use crate::model::network::file::NetworkFile;
use crate::model::network::DEFAULT_NETWORK;
use crate::model::network::{Network, NetworkError};

pub use deleting::{Deletion, DeletionMark};
use files::{
    ensure_dir, io_err, list_json_stems, open_nofollow, read_json, remove_file, write_json,
};
pub use ipam_dir::IpamDir;
pub use services::{service_owner, Member, Members};

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
    #[error("{path} is corrupted ({source}); run `nethook gc`, which moves unreadable records aside, or fix or remove the file")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is a symlink or not a regular file/directory; refusing to follow it")]
    NotPlain { path: PathBuf },
    #[error("{path} is not a regular file; refusing to read it (remove it; `nethook gc` moves such records aside)")]
    NotRegular { path: PathBuf },
    #[error("{path} is larger than {limit} bytes; refusing to read it (remove it; `nethook gc` moves such records aside)")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("refusing {path}: it is {problem}, so another user could forge nethook's state and make it delete any interface; {fix}")]
    Unsafe {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("{path} does not hold an {family} address ({source}); remove it, it only says where allocation resumes")]
    BadCursor {
        path: PathBuf,
        family: &'static str,
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
    #[error("{path}: {source}")]
    Definition {
        path: PathBuf,
        #[source]
        source: NetworkError,
    },
    #[error("unknown service {name:?}; create it with `nethook service create {name} --network NET --port 80/tcp`, or see `nethook service ls`")]
    UnknownService { name: String },
    #[error(
        "service {name} already exists; pick another name or `nethook service rm {name}` first"
    )]
    ServiceExists { name: String },
    #[error("{path} is not a members file (KEY ADDR4 ADDR6 per line); run `nethook gc`, which rebuilds it from the endpoint records")]
    BadMembers { path: PathBuf },
    #[error("unknown network {name:?}; create it with `nethook network create {name} --subnet CIDR` or use the default network")]
    UnknownNetwork { name: String },
    #[error(
        "network {name} already exists; pick another name or `nethook network rm {name}` first"
    )]
    NetworkExists { name: String },
}

impl StoreError {
    /// Why a file is unreadable, for a report line: the problem without the advice (to run
    /// gc, to remove the file) that the error's message adds.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Corrupt { source, .. } => format!("not a valid record ({source})"),
            StoreError::NotPlain { .. } => "a symlink or not a regular file".into(),
            StoreError::NotRegular { .. } => "not a regular file".into(),
            StoreError::TooLarge { limit, .. } => format!("larger than {limit} bytes"),
            StoreError::BadCursor { source, family, .. } => {
                format!("not an {family} address ({source})")
            }
            StoreError::Unsafe { problem, .. } => problem.clone(),
            other => crate::log::describe(other),
        }
    }

    /// The file this error found unreadable, when moving it aside is the repair: its
    /// content is not JSON, or it is no regular file, too large, or written by another user.
    pub fn unreadable_file(&self) -> Option<&Path> {
        match self {
            StoreError::Corrupt { path, .. }
            | StoreError::NotPlain { path }
            | StoreError::NotRegular { path }
            | StoreError::TooLarge { path, .. }
            | StoreError::BadCursor { path, .. } => Some(path),
            StoreError::Unsafe { path, .. }
                if path.symlink_metadata().is_ok_and(|m| !m.is_dir()) =>
            {
                Some(path)
            }
            _ => None,
        }
    }
}

/// A file that could not be read, and why (one line).
pub type Unreadable = (PathBuf, String);

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
        Self {
            config_dir,
            run_dir,
        }
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
    pub fn legacy_pool_path(&self, network: &str) -> PathBuf {
        self.ipam_root().join(format!("{network}.json"))
    }

    pub fn endpoint_path(&self, id: &ContainerId) -> PathBuf {
        self.run_dir.join("endpoints").join(format!("{id}.json"))
    }

    /// Whether `owner` (an id as IPAM and claim files hold it) has an endpoint record.
    pub fn has_endpoint(&self, owner: &str) -> bool {
        ContainerId::parse_key(owner).is_ok_and(|id| self.endpoint_path(&id).exists())
    }

    /// Takes the exclusive lock, creating the run directory on first use and refusing one
    /// another user could write to.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        ensure_dir(&self.run_dir)?;
        let path = self.run_dir.join("lock");
        let file = open_nofollow(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600),
        )?;
        // The lock lives as long as the guard; leaking the small RwLock box lets the guard
        // be 'static without self-references. A process takes the lock a handful of times.
        let lock: &'static mut fd_lock::RwLock<File> =
            Box::leak(Box::new(fd_lock::RwLock::new(file)));
        let guard = lock.write().map_err(io_err("lock", &path))?;
        Ok(Lock { _guard: guard })
    }

    // ---- networks -------------------------------------------------------------------

    /// The named network: its file if there is one, else the built-in default.
    pub fn load_network(&self, name: &str) -> Result<Network, StoreError> {
        match self.read_network(&self.network_path(name))? {
            Some(n) => Ok(n),
            None if name == DEFAULT_NETWORK => Ok(Network::builtin_default()),
            None => Err(StoreError::UnknownNetwork {
                name: name.to_owned(),
            }),
        }
    }

    /// All networks, the default one included, sorted by name.
    pub fn list_networks(&self) -> Result<Vec<Network>, StoreError> {
        let mut out: Vec<Network> = Vec::new();
        for name in list_json_stems(&self.networks_dir())? {
            if let Some(n) = self.read_network(&self.network_path(&name))? {
                out.push(n);
            }
        }
        if !out.iter().any(|n| n.name == DEFAULT_NETWORK) {
            out.push(Network::builtin_default());
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A definition in the layout of `NetworkFile`; one this version cannot serve (an IPv6
    /// part) is refused with its own one-line error rather than called corrupt.
    fn read_network(&self, path: &Path) -> Result<Option<Network>, StoreError> {
        let Some(file) = read_json::<NetworkFile>(path)? else {
            return Ok(None);
        };
        Network::try_from(file)
            .map(Some)
            .map_err(|source| StoreError::Definition {
                path: path.to_owned(),
                source,
            })
    }

    pub fn create_network(&self, net: &Network) -> Result<(), StoreError> {
        let path = self.network_path(&net.name);
        if path.symlink_metadata().is_ok() {
            return Err(StoreError::NetworkExists {
                name: net.name.clone(),
            });
        }
        ensure_dir(&self.config_dir)?;
        ensure_dir(&self.networks_dir())?;
        write_json(&path, net)
    }

    /// Writes a changed definition of a network (a file for the built-in default one).
    pub fn save_network(&self, net: &Network) -> Result<(), StoreError> {
        ensure_dir(&self.config_dir)?;
        ensure_dir(&self.networks_dir())?;
        write_json(&self.network_path(&net.name), net)
    }

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
        let dir = IpamDir {
            dir: self.ipam_dir(network),
            lock: self.run_dir.join("lock"),
        };
        ensure_dir(&dir.dir)?;
        let legacy = self.legacy_pool_path(network);
        if let Some(pool) = read_json::<Pool>(&legacy)? {
            dir.adopt(&pool)?;
            remove_file(&legacy)?;
        }
        Ok(dir)
    }

    /// Every allocation of `network` (both families) by address, those still in an
    /// unconverted file of an older version included. Changes nothing, for `gc --dry-run`.
    pub fn list_allocations(&self, network: &str) -> Result<Vec<(IpAddr, String)>, StoreError> {
        let dir = IpamDir {
            dir: self.ipam_dir(network),
            lock: self.run_dir.join("lock"),
        };
        let mut out: Vec<(IpAddr, String)> = dir
            .allocations_of::<Ipv4Addr>()?
            .into_iter()
            .map(|(ip, owner)| (ip.into(), owner))
            .collect();
        out.extend(
            dir.allocations_of::<Ipv6Addr>()?
                .into_iter()
                .map(|(ip, owner)| (ip.into(), owner)),
        );
        // One that cannot be read is `gc`'s to report (`unreadable_ipam_files`).
        let legacy = read_json::<Pool>(&self.legacy_pool_path(network)).or_else(|e| {
            match e.unreadable_file() {
                Some(_) => Ok(None),
                None => Err(e),
            }
        })?;
        if let Some(pool) = legacy {
            for (ip, owner) in pool.allocations {
                if !out.iter().any(|(held, _)| *held == ip) {
                    out.push((ip.into(), owner));
                }
            }
            out.sort();
        }
        Ok(out)
    }

    // ---- endpoints ------------------------------------------------------------------

    /// The record of `id`. The record file must be trusted (see `files::check_trusted`);
    /// its directory is checked where it is created and listed, not here on the hook's path.
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
            let Ok(id) = ContainerId::parse_key(&stem) else {
                continue;
            };
            if let Some(ep) = self.load_endpoint(&id)? {
                out.push(ep);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

impl Store {
    // ---- repair ---------------------------------------------------------------------

    /// Where `quarantine` moves unreadable files.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.run_dir.join("quarantine")
    }

    /// Moves an unreadable state file (a record, a cursor, an older version's allocation
    /// file) out of the way into `quarantine_dir`, named after it and the time, so it
    /// stays for a person to look at but no command reads it again. Under the lock.
    /// Returns where it went.
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let dir = self.quarantine_dir();
        ensure_dir(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let to = dir.join(format!(
            "{kind}-{name}.{}.{:09}",
            now.as_secs(),
            now.subsec_nanos()
        ));
        fs::rename(path, &to).map_err(io_err("move into quarantine", path))?;
        Ok(to)
    }

    /// Every endpoint record that can be read, sorted by id, and the record files that
    /// cannot, with why: for `ls` and `gc`, which must work around a corrupt record rather
    /// than fail on it. A directory that cannot be listed is still an error.
    pub fn list_endpoints_lenient(&self) -> Result<(Vec<Endpoint>, Vec<Unreadable>), StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for stem in list_json_stems(&self.run_dir.join("endpoints"))? {
            let Ok(id) = ContainerId::parse_key(&stem) else {
                continue;
            };
            match self.load_endpoint(&id) {
                Ok(Some(ep)) => good.push(ep),
                Ok(None) => {}
                Err(e) => match e.unreadable_file() {
                    Some(path) => bad.push((path.to_owned(), e.reason())),
                    None => return Err(e),
                },
            }
        }
        good.sort_by(|a, b| a.id.cmp(&b.id));
        bad.sort();
        Ok((good, bad))
    }

    /// The state files of `network`'s IPAM that cannot be read and are safe to drop or
    /// move aside: a cursor that is no address (or no regular file), and a corrupt
    /// allocation file of an older version. For `gc`.
    pub fn unreadable_ipam_files(&self, network: &str) -> Result<Vec<Unreadable>, StoreError> {
        let mut bad = Vec::new();
        let dir = IpamDir {
            dir: self.ipam_dir(network),
            lock: self.run_dir.join("lock"),
        };
        let cursors = [
            dir.read_cursor::<Ipv4Addr>().err(),
            dir.read_cursor::<Ipv6Addr>().err(),
        ];
        for e in cursors.into_iter().flatten() {
            match e.unreadable_file() {
                Some(path) => bad.push((path.to_owned(), e.reason())),
                None => return Err(e),
            }
        }
        if let Err(e) = read_json::<Pool>(&self.legacy_pool_path(network)) {
            match e.unreadable_file() {
                Some(path) => bad.push((path.to_owned(), e.reason())),
                None => return Err(e),
            }
        }
        Ok(bad)
    }
}
