//! Network namespaces: open one by path, refuse our own, and run work inside one on
//! a dedicated thread so the caller's threads never change namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("no such process for network namespace {path}; is the container still starting? (the pid in the state must be alive at createRuntime)")]
    Gone { path: PathBuf },
    #[error("cannot open network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {path} is the hook's own; refusing to rewire the host (does the container config have a network namespace?)")]
    OwnNamespace { path: PathBuf },
    #[error("cannot enter network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the worker thread for network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// An open handle on a network namespace; holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|source| match source.raw_os_error() {
            Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH) => NetnsError::Gone { path: path.to_owned() },
            _ => NetnsError::Open { path: path.to_owned(), source },
        })?;
        Ok(Self { file, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Errors when this is the namespace the hook itself runs in: configuring it would
    /// rename and re-address the host's own links.
    pub fn ensure_not_own(&self) -> Result<(), NetnsError> {
        let ours = std::fs::metadata("/proc/thread-self/ns/net")
            .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
            .map_err(|source| NetnsError::Open { path: "/proc/self/ns/net".into(), source })?;
        let theirs = self.file.metadata().map_err(|source| NetnsError::Open { path: self.path.clone(), source })?;
        if ours.dev() == theirs.dev() && ours.ino() == theirs.ino() {
            return Err(NetnsError::OwnNamespace { path: self.path.clone() });
        }
        Ok(())
    }

    /// Runs `work` on a fresh thread that has entered this namespace. Sockets opened by
    /// `work` stay bound to the namespace; the thread ends with it, so no thread of ours
    /// is ever left in the wrong namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|source| NetnsError::Enter { path: self.path.clone(), source })?;
                Ok(work())
            });
            handle.join().map_err(|_| NetnsError::Panicked { path: self.path.clone() })?
        })
    }
}
