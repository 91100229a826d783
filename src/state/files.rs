//! How the store opens, reads and writes its files and directories: never through a
//! symlink, never blocking on a FIFO or device, and only where no other user could have
//! written (a forged record would make root delete any interface it names).

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// Larger state files are refused rather than read: a record with thousands of published
/// ports is a few hundred KiB.
pub(super) const MAX_FILE_BYTES: u64 = 16 << 20;

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn euid() -> u32 {
    static EUID: OnceLock<u32> = OnceLock::new();
    *EUID.get_or_init(crate::sys::process::euid)
}

/// Refuses a file or directory another user could have written: one owned by neither root
/// nor the user nethook runs as, or writable by group or others. Costs nothing but the
/// stat the caller made anyway.
pub(super) fn check_trusted(path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    let fix = |what: &str| {
        if meta.is_dir() {
            format!("{what} (e.g. `chmod 0700 {}`)", path.display())
        } else {
            what.to_owned()
        }
    };
    if uid != 0 && uid != euid() {
        return Err(StoreError::Unsafe {
            path: path.to_owned(),
            problem: format!(
                "owned by uid {uid}, neither root nor nethook's user (uid {})",
                euid()
            ),
            fix: fix(&format!(
                "check who wrote it, then `chown root: {}`",
                path.display()
            )),
        });
    }
    if mode & 0o022 != 0 {
        return Err(StoreError::Unsafe {
            path: path.to_owned(),
            problem: format!(
                "writable by {} (mode {mode:04o})",
                if mode & 0o002 != 0 {
                    "every user"
                } else {
                    "its group"
                }
            ),
            fix: fix(&format!("`chmod go-w {}`", path.display())),
        });
    }
    Ok(())
}

/// Creates `dir` (0700, and so any missing parent) if needed; refuses a symlink or another
/// file in its place, and a directory another user could write to.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match dir.symlink_metadata() {
        Ok(m) if m.is_dir() => check_trusted(dir, &m),
        Ok(_) => Err(StoreError::NotPlain {
            path: dir.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir)),
        Err(e) => Err(io_err("inspect", dir)(e)),
    }
}

/// Checks an existing directory as `ensure_dir` does; false when there is none.
pub(super) fn check_dir(dir: &Path) -> Result<bool, StoreError> {
    match dir.symlink_metadata() {
        Ok(m) if m.is_dir() => check_trusted(dir, &m).map(|()| true),
        Ok(_) => Err(StoreError::NotPlain {
            path: dir.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", dir)(e)),
    }
}

/// Opens without following a symlink and without blocking: a FIFO's open would wait for a
/// writer (and its read for data); readers then refuse anything but a regular file.
pub(super) fn open_nofollow(path: &Path, opts: &mut OpenOptions) -> Result<File, StoreError> {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                StoreError::NotPlain {
                    path: path.to_owned(),
                }
            } else {
                io_err("open", path)(e)
            }
        })
}

/// Reads a whole file; `None` when it does not exist. One fstat tells the file is regular,
/// trusted and not too large, and sizes the buffer (std's `read_to_end` on a `File` would
/// make that call itself).
pub(super) fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let file = match open_nofollow(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    if !meta.is_file() {
        return Err(StoreError::NotRegular {
            path: path.to_owned(),
        });
    }
    check_trusted(path, &meta)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    let mut text = Vec::with_capacity(meta.len() as usize + 1);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io_err("read", path))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(Some(text))
}

/// Reads a short text file (an owner id, an address); `None` when it does not exist.
pub(super) fn read_small(path: &Path) -> Result<Option<String>, StoreError> {
    Ok(read_bytes(path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Reads a JSON file; `None` when it does not exist.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let Some(text) = read_bytes(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            path: path.to_owned(),
            source,
        })
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|e| io_err("serialise", path)(e.into()))?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Writes through a temporary file and a rename so readers never see a torn file.
pub(super) fn write_atomic(path: &Path, text: &[u8]) -> Result<(), StoreError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = open_nofollow(
        &tmp,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600),
    )?;
    file.write_all(text).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

/// Writes an owner's key into a claim file (a port's, a name's) in place, never through a
/// symlink; on failure, which step failed ("create" or "write") with the error.
pub(super) fn write_owner_file(path: &Path, owner: &str) -> Result<(), (&'static str, io::Error)> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ("create", e))?;
    f.write_all(owner.as_bytes()).map_err(|e| ("write", e))
}

pub(super) fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// The names of `dir`'s `*.json` files without the suffix (hidden files left out), after
/// checking the directory as `ensure_dir` does. Empty when there is no directory.
pub(super) fn list_json_stems(dir: &Path) -> Result<Vec<String>, StoreError> {
    if !check_dir(dir)? {
        return Ok(Vec::new());
    }
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
