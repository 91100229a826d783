//! Writing one file into a container's root as the container will see it: its
//! `/etc/resolv.conf` at createRuntime (issue 22).
//!
//! # Through `/proc/PID/root`, not by entering the mount namespace
//!
//! runc, crun and youki call createRuntime hooks after the container's mounts are made and
//! before pivot_root, so the container's root is still at its host path, with whatever the
//! runtime bind-mounted on it, but only in the container's mount namespace. A path walked
//! from an open `/proc/PID/root` crosses the mounts of PID's namespace, so opening the root
//! path from there reaches the same files as entering the namespace would. Entering needs a
//! thread of its own (`setns(CLONE_NEWNS)` refuses a thread that shares its `fs` with
//! others, so it first `unshare(CLONE_FS)`s, and the hook's main thread must not).
//! Measured on the same file (`tests/kernel_svc.rs`, p50 of 1000, release build, 2-CPU VM,
//! 2026-12-03): 14 µs through `/proc/PID/root`, 53 µs by a thread that enters (debug: 19
//! and 78); the thread's spawn and join are most of the difference. The /proc way also keeps the hook
//! single-threaded. Both see the runtime's bind mounts (the test checks the /proc one).
//!
//! # Staying inside the root
//!
//! Everything below the root is resolved with `openat2(RESOLVE_IN_ROOT)`: `..` and absolute
//! symlinks stop at the container's root, so an image's `/etc/resolv.conf -> /x` cannot
//! name a host file (before pivot_root a plain open would follow it to the host's `/x`).
//! The last component is never followed (`O_NOFOLLOW`): a symlink there is reported
//! (`Written::Symlink`) and left alone. A file something is mounted on (a runtime's own
//! resolv.conf, bind-mounted: Podman, CRI) belongs to the runtime: reported
//! (`Written::MountPoint`), not written. The file is truncated and written in place (a
//! rename over a mount point would fail, and a new inode would not be the one the runtime
//! bound).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::sys::fsstat::{self, FileFacts};

/// What became of a write into a container's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file now holds the contents (created if it was missing).
    Wrote,
    /// Something is mounted on the file (the runtime's own): left alone.
    MountPoint,
    /// The file is a symlink: not followed, left alone.
    Symlink,
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot open the root of process {pid} (/proc/{pid}/root); is the container still starting? (its pid must be alive at createRuntime)")]
    Process {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("container root {rootfs} is not there in the mount namespace of process {pid}; run the hook at createRuntime (before the runtime switches root)")]
    Root {
        pid: i32,
        rootfs: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {rel} in container root {rootfs}: it is on a read-only mount; make it writable, or do not ask nethook to write it")]
    ReadOnly { rootfs: PathBuf, rel: PathBuf },
    #[error("{rel} in container root {rootfs} is not a regular file; remove it from the image, or do not ask nethook to write it")]
    NotAFile { rootfs: PathBuf, rel: PathBuf },
    #[error("cannot {op} {rel} in container root {rootfs}")]
    Io {
        op: &'static str,
        rootfs: PathBuf,
        rel: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("this kernel cannot write into a container's root safely: openat2 needs Linux 5.6 and telling mount points 5.8")]
    Unsupported,
}

/// How every path below the root is opened: in the root, no magic links, the last
/// component never followed.
fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Writes `contents` to `rel` (e.g. `etc/resolv.conf`) under the container's root `rootfs`
/// (the bundle's `root.path`, absolute) as process `pid` (the container's, at
/// createRuntime) sees it: see the module for how, and what is left alone.
pub fn write_container_file(
    pid: i32,
    rootfs: &Path,
    rel: &Path,
    contents: &[u8],
) -> Result<Written, RootfsError> {
    let proc_root = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::Process {
        pid,
        source: e.into(),
    })?;
    // The root path itself resolves in PID's root too: an absolute symlink on the way
    // stays in PID's view of the host instead of the hook's.
    let root = openat2(
        &proc_root,
        rootfs,
        how(OFlag::O_PATH | OFlag::O_DIRECTORY).mode(Mode::empty()),
    )
    .map_err(|e| match e {
        Errno::ENOSYS => RootfsError::Unsupported,
        e => RootfsError::Root {
            pid,
            rootfs: rootfs.to_owned(),
            source: e.into(),
        },
    })?;
    let io_err = |op: &'static str| {
        move |source: io::Error| RootfsError::Io {
            op,
            rootfs: rootfs.to_owned(),
            rel: rel.to_owned(),
            source,
        }
    };
    // Opening for writing first is the common case's one open. O_NONBLOCK: a FIFO planted
    // there fails (ENXIO) instead of waiting for a reader.
    let fd = match openat2(
        &root,
        rel,
        how(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK),
    ) {
        Ok(fd) => fd,
        // A symlink (ELOOP), a read-only bind of the runtime's (EROFS) or a directory:
        // look at what is there without opening it for writing.
        Err(e) => return refused(&root, rootfs, rel, e),
    };
    let facts = fsstat::facts(fd.as_fd()).map_err(io_err("look at"))?;
    if let Some(outcome) = left_alone(facts, rootfs, rel)? {
        return Ok(outcome);
    }
    let mut file = File::from(fd);
    file.set_len(0).map_err(io_err("truncate"))?;
    file.write_all(contents).map_err(io_err("write"))?;
    Ok(Written::Wrote)
}

/// Why opening `rel` for writing failed with `errno`, from a look at what is there.
fn refused(
    root: &OwnedFd,
    rootfs: &Path,
    rel: &Path,
    errno: Errno,
) -> Result<Written, RootfsError> {
    let io_err = |source: io::Error| RootfsError::Io {
        op: "open",
        rootfs: rootfs.to_owned(),
        rel: rel.to_owned(),
        source,
    };
    if errno == Errno::ENOSYS {
        return Err(RootfsError::Unsupported);
    }
    let path = match openat2(root, rel, how(OFlag::O_PATH).mode(Mode::empty())) {
        Ok(path) => path,
        // Nothing there to look at (no such directory): the first error says it.
        Err(_) => return Err(io_err(errno.into())),
    };
    let facts = fsstat::facts(path.as_fd()).map_err(io_err)?;
    if let Some(outcome) = left_alone(facts, rootfs, rel)? {
        return Ok(outcome);
    }
    Err(if errno == Errno::EROFS {
        RootfsError::ReadOnly {
            rootfs: rootfs.to_owned(),
            rel: rel.to_owned(),
        }
    } else {
        io_err(errno.into())
    })
}

/// The outcome when the file is not ours to write (a symlink, a mount point); an error
/// when it is no regular file or the kernel cannot tell mount points.
fn left_alone(facts: FileFacts, rootfs: &Path, rel: &Path) -> Result<Option<Written>, RootfsError> {
    if facts.is_symlink() {
        return Ok(Some(Written::Symlink));
    }
    match facts.mount_root {
        Some(true) => return Ok(Some(Written::MountPoint)),
        Some(false) => {}
        None => return Err(RootfsError::Unsupported),
    }
    if !facts.is_file() {
        return Err(RootfsError::NotAFile {
            rootfs: rootfs.to_owned(),
            rel: rel.to_owned(),
        });
    }
    Ok(None)
}
