//! What an open file is, from one `statx`: its type, and whether it is the root of a mount
//! (something is mounted on it), which `std::fs::Metadata` cannot say.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The facts `statx` gave about an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    /// `S_IFMT` bits of the mode.
    pub kind: u32,
    /// Whether the file is the root of a mount; `None` when the kernel cannot say (older
    /// than 5.8, or the filesystem does not report it).
    pub mount_root: Option<bool>,
}

impl FileFacts {
    pub(crate) fn is_symlink(&self) -> bool {
        self.kind == libc::S_IFLNK
    }

    pub(crate) fn is_file(&self) -> bool {
        self.kind == libc::S_IFREG
    }
}

/// `statx` of the open file `fd` itself (`AT_EMPTY_PATH`): an `O_PATH` descriptor of a
/// symlink answers for the link.
pub(crate) fn facts(fd: BorrowedFd<'_>) -> io::Result<FileFacts> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is a NUL-terminated empty string that lives across the call; with
    // AT_EMPTY_PATH the kernel reads `fd` (open, borrowed for the call) and writes one
    // `struct statx` into `buf`, which is that size and lives across the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE,
            buf.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded, so the kernel filled the struct (and it started zeroed, so
    // every field holds a valid integer either way).
    let st = unsafe { buf.assume_init() };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(FileFacts {
        kind: u32::from(st.stx_mode) & libc::S_IFMT,
        mount_root: (st.stx_attributes_mask & bit != 0).then_some(st.stx_attributes & bit != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_root_directory_is_a_mount_root_and_a_file_in_it_is_not() {
        let root = std::fs::File::open("/").unwrap();
        let f = facts(root.as_fd()).unwrap();
        assert_eq!(f.kind, libc::S_IFDIR);
        if let Some(root) = f.mount_root {
            assert!(root);
            let exe = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
            let f = facts(exe.as_fd()).unwrap();
            assert!(f.is_file());
            assert_eq!(f.mount_root, Some(false));
        }
    }
}
