//! Looking for one entry of a directory without reading all of it.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Bytes asked of the kernel per read: a few dozen entries. Enough for the longest name
/// (a record is at most 280 bytes).
const CHUNK: usize = 1024;

/// Offsets in a `struct linux_dirent64`: inode (8 bytes), offset (8), record length (2),
/// type (1), then the NUL-terminated name.
const RECLEN_AT: usize = 16;
const NAME_AT: usize = 19;

/// Whether `dir` has an entry whose name `wanted` accepts; stops reading at the first.
/// `std::fs::read_dir` asks for 32 KiB per read, and the kernel fills it: on tmpfs that
/// walked every address file of a network with a thousand containers (0.45 ms) to answer
/// whether there was one.
pub(crate) fn any_entry(dir: &Path, wanted: impl Fn(&OsStr) -> bool) -> io::Result<bool> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    let mut buf = [0u8; CHUNK];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which lives across
        // the call, and reads the open directory `dir`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel returns at most `buf.len()` bytes, so the length fits.
        let filled = &buf[..n as usize];
        if filled.is_empty() {
            return Ok(false);
        }
        if entries(filled).any(&wanted) {
            return Ok(true);
        }
    }
}

/// The names in one buffer of `linux_dirent64` records; stops at a malformed record.
fn entries(buf: &[u8]) -> impl Iterator<Item = &OsStr> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let record = buf.get(at..)?;
        let reclen = usize::from(u16::from_ne_bytes([
            *record.get(RECLEN_AT)?,
            *record.get(RECLEN_AT + 1)?,
        ]));
        let name = record.get(NAME_AT..reclen)?;
        at += reclen;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        Some(OsStr::from_bytes(&name[..end]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nethook-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_a_wanted_name_among_more_entries_than_one_read_returns() {
        let dir = scratch("many");
        for i in 0..300 {
            std::fs::write(dir.join(format!("other-{i:03}")), "").unwrap();
        }
        std::fs::write(dir.join("10.77.0.2"), "c1").unwrap();
        assert!(any_entry(&dir, |n| n == "10.77.0.2").unwrap());
        assert!(any_entry(&dir, |n| n == "other-150").unwrap());
        assert!(!any_entry(&dir, |n| n == "10.77.0.3").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_directory_has_only_dot_entries() {
        let dir = scratch("empty");
        assert!(!any_entry(&dir, |n| n != "." && n != "..").unwrap());
        assert!(any_entry(&dir, |n| n == "..").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_not_found() {
        let err = any_entry(Path::new("/nonexistent/nethook-dir"), |_| true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_malformed_record_ends_the_names_instead_of_reading_past_the_buffer() {
        let mut buf = vec![0u8; 24];
        buf[RECLEN_AT] = 24;
        buf[NAME_AT..NAME_AT + 2].copy_from_slice(b"ab");
        let mut two = buf.clone();
        two.extend_from_slice(&[0u8; 20]);
        two[24 + RECLEN_AT] = 200; // claims more than there is
        let names: Vec<_> = entries(&two).collect();
        assert_eq!(names, vec![OsStr::new("ab")]);
    }
}
