//! On-disk state: network definitions (persistent) and runtime state (tmpfs):
//! the lock, IPAM pools and endpoint records. The only module that touches files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::ids::ContainerId;
use crate::ipam::Pool;
use crate::network::Network;
use crate::options::DEFAULT_NETWORK;

pub const DEFAULT_CONFIG_DIR: &str = "/etc/nethook";
pub const DEFAULT_RUN_DIR: &str = "/run/nethook";

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

    pub fn pool_path(&self, network: &str) -> PathBuf {
        self.run_dir.join("ipam").join(format!("{network}.json"))
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
    pub fn remove_network(&self, name: &str) -> Result<bool, StoreError> {
        remove_file(&self.network_path(name))
    }

    // ---- IPAM -----------------------------------------------------------------------

    pub fn load_pool(&self, network: &str) -> Result<Pool, StoreError> {
        Ok(read_json(&self.pool_path(network))?.unwrap_or_default())
    }

    pub fn save_pool(&self, network: &str, pool: &Pool) -> Result<(), StoreError> {
        ensure_dir(&self.run_dir.join("ipam"))?;
        write_json(&self.pool_path(network), pool)
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

/// Reads a JSON file; `None` when it does not exist.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let mut file = match open_nofollow(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io_err("read", path))?;
    serde_json::from_slice(&text).map(Some).map_err(|source| StoreError::Corrupt { path: path.to_owned(), source })
}

/// Writes through a temporary file and a rename so readers never see a torn file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| io_err("serialise", path)(e.into()))?;
    text.push(b'\n');
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = open_nofollow(&tmp, OpenOptions::new().write(true).create(true).truncate(true).mode(0o600))?;
    file.write_all(&text).map_err(io_err("write", &tmp))?;
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

    #[test]
    fn corrupted_pool_names_the_file_and_gc() {
        let t = TempDir::new("corrupt");
        let s = store(&t);
        s.save_pool("nethook", &Pool::default()).unwrap();
        fs::write(s.pool_path("nethook"), b"{\"allocations\": {").unwrap();
        let e = s.load_pool("nethook").unwrap_err().to_string();
        assert!(e.contains("ipam/nethook.json") && e.contains("nethook gc"), "{e}");
    }

    #[test]
    fn symlinked_state_files_are_refused() {
        let t = TempDir::new("symlink");
        let s = store(&t);
        s.save_pool("nethook", &Pool::default()).unwrap();
        let target = t.0.join("elsewhere.json");
        fs::write(&target, b"{}").unwrap();
        fs::remove_file(s.pool_path("nethook")).unwrap();
        std::os::unix::fs::symlink(&target, s.pool_path("nethook")).unwrap();
        assert!(matches!(s.load_pool("nethook"), Err(StoreError::NotPlain { .. })));
    }

    #[test]
    fn lock_can_be_taken_again_after_release() {
        let t = TempDir::new("lock");
        let s = store(&t);
        drop(s.lock().unwrap());
        drop(s.lock().unwrap());
    }
}
