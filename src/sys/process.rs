//! Letting the hook exit before the kernel has finished with its netfilter sockets, or
//! before the rest of a teardown that only waits for the kernel.

use std::ffi::{c_int, c_void};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};

use super::keeper;

/// Stack of the child in `close_after_exit`; it runs a few libc calls on small buffers.
const CHILD_STACK: usize = 16 * 1024;

/// From linux/membarrier.h.
const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// The child's wait when membarrier(GLOBAL) is not offered: several grace periods here.
const FALLBACK_GRACE_NS: libc::c_long = 100_000_000;

/// Where this process's hooks meet their keeper; unset, there is no keeper.
static KEEPER: OnceLock<keeper::Addr> = OnceLock::new();

/// Lets `close_after_exit` hand sockets to a keeper listening in `run_dir`, which must be
/// the store's run directory, checked to be private to its owner (0700, root's): that
/// directory is what keeps other users from the keeper. The first call wins. False when
/// the path is too long for a socket address: hooks then release their own sockets.
pub(crate) fn set_keeper_dir(run_dir: &Path) -> bool {
    match keeper::Addr::in_dir(run_dir) {
        Some(addr) => {
            let _ = KEEPER.set(addr);
            true
        }
        None => false,
    }
}

/// How the child of `close_after_exit` waits out a grace period.
#[derive(Clone, Copy)]
enum GraceWait {
    Membarrier,
    Sleep,
}

/// What the child of `close_after_exit` reads: the stdio descriptors it closes first (-1
/// when not open), the sockets it releases (ascending; every other descriptor it closes at
/// once), the keeper's address if there may be one, this process's user (a keeper must be
/// the same), and how it waits before its exit releases what it holds.
struct ChildPlan {
    stdio: [c_int; 3],
    fds: &'static [c_int],
    keeper: Option<keeper::Addr>,
    euid: libc::uid_t,
    wait: GraceWait,
}

/// Hands `fds` to a child process whose exit releases them, so this process's exit does
/// not wait for what their release waits for (see
/// `kernel::netlink::defer_netfilter_release`).
///
/// The child shares this process's memory (`CLONE_VM`, as `posix_spawn` does) but gets its
/// own copy of the file table: nothing is copied page by page as with `fork`, and this
/// process keeps writing its memory without copy-on-write faults on its way out. The child
/// closes the stdin/stdout/stderr it inherited, so a runtime reading the hook's output sees
/// EOF when the hook exits. (Releases queued at exit run newest first, so stdio is closed
/// explicitly, before the sockets, rather than left to the exit.)
///
/// When to release them matters. Releasing a netfilter socket while the kernel's work item
/// is still waiting for its grace period flushes that work with nf_tables' commit mutex
/// held, and every other nftables commit on the host, the next hook's included, queues
/// behind it (~16 ms). In a burst of hooks some commit's work is nearly always pending, so
/// the children hand their sockets to one of them, the keeper (`sys::keeper`), which
/// releases them all once no hook has come for a while. The keeper, or a child that could
/// reach none, first waits out a grace period of its own, after which the last commit's
/// work is done and the releases take the mutex only briefly. `membarrier(GLOBAL)` is that
/// wait (the kernel implements it as `synchronize_rcu`); where the kernel does not offer it
/// (nohz_full), a fixed sleep longer than a grace period here stands in.
pub(crate) fn close_after_exit(fds: Vec<OwnedFd>) -> io::Result<()> {
    if fds.is_empty() {
        return Ok(());
    }
    let mut raw: Vec<c_int> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    raw.sort_unstable();
    // Asked once here, so the child knows which wait the kernel offers.
    // SAFETY: membarrier(QUERY) only reads which commands the kernel supports.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0) };
    let wait = if supported >= 0 && supported & MEMBARRIER_CMD_GLOBAL != 0 {
        GraceWait::Membarrier
    } else {
        GraceWait::Sleep
    };
    // The child closes exactly the stdio descriptors that are open. (It shares this thread's
    // errno, which its failing calls may write; see `sys::keeper` for why that is harmless.)
    let plan: &'static ChildPlan = Box::leak(Box::new(ChildPlan {
        stdio: [0, 1, 2].map(|fd| {
            // SAFETY: F_GETFD only reads the descriptor's flags; EBADF when it is not open.
            let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            if open {
                fd
            } else {
                -1
            }
        }),
        // Leaked like the plan: the child reads it after this process is gone.
        fds: Box::leak(raw.into_boxed_slice()),
        keeper: KEEPER.get().copied(),
        // SAFETY: geteuid cannot fail.
        euid: unsafe { libc::geteuid() },
        wait,
    }));
    // Leaked on purpose: the child runs on it after this process is gone.
    let stack: &'static mut [u8] = Box::leak(vec![0u8; CHILD_STACK].into_boxed_slice());
    // The stack grows down from its end; the ABI wants 16-byte alignment there.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;

    extern "C" fn child(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the leaked `ChildPlan` passed below, never freed or written.
        let plan = unsafe { &*arg.cast::<ChildPlan>() };
        for &fd in plan.stdio.iter().filter(|fd| **fd >= 0) {
            // SAFETY: a raw close of a descriptor that was open when the file table was
            // copied; only this process's own copy is affected.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
        let fds = plan.fds;
        // The copies of everything else this process had open go now: the store's lock
        // above all, which a copy kept here would hold for as long as this child lives.
        close_all_but(fds);
        // More than one hand-over carries are not handed over: the child keeps them itself.
        if let (Some(addr), true) = (&plan.keeper, fds.len() <= keeper::MAX_FDS) {
            if keeper::hand_over(addr, fds, plan.euid) {
                return 0;
            }
            // No keeper: become one, or, when another child took the name just now, try it.
            if !keeper::keep(addr, plan.euid) && keeper::hand_over(addr, fds, plan.euid) {
                return 0;
            }
        }
        match plan.wait {
            // SAFETY: membarrier(GLOBAL) takes no pointers; the parent's QUERY showed that
            // this kernel supports it.
            GraceWait::Membarrier => unsafe {
                libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0);
            },
            GraceWait::Sleep => {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: FALLBACK_GRACE_NS,
                };
                // SAFETY: `ts` lives on this stack for the call; with a valid timespec and
                // no signal handlers installed in the child, nanosleep does not fail.
                unsafe { libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, 0usize) };
            }
        }
        // Returning makes the clone trampoline call exit(2), which closes the rest.
        0
    }

    // SAFETY: `child` touches only its own stack (`top`, inside a leaked allocation nobody
    // else uses), the leaked, read-only `plan` and errno (see `sys::keeper`), so sharing the
    // address space with this process, which goes on and exits, is sound. Without
    // CLONE_FILES the child has its own descriptor table; without CLONE_THREAD it is a
    // separate process (SIGCHLD on exit, reaped by whoever inherits it).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            (plan as *const ChildPlan).cast_mut().cast::<c_void>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // Our copies close now; the child's keep the sockets alive until it exits.
    drop(fds);
    Ok(())
}

/// Closes every descriptor from 3 up except `keep` (ascending). For the `CLONE_VM` child:
/// raw syscalls only, errors ignored (a descriptor that is not open is what is wanted).
fn close_all_but(keep: &[c_int]) {
    let mut first: c_int = 3;
    for &fd in keep {
        if fd > first {
            close_range(first, fd - 1);
        }
        first = first.max(fd + 1);
    }
    close_range(first, c_int::MAX);
}

/// Where close_range(2) is missing (before Linux 5.9) descriptors are closed one by one, up
/// to this many: a hook has a few dozen open.
const FALLBACK_CLOSE_LIMIT: c_int = 4096;

fn close_range(first: c_int, last: c_int) {
    // SAFETY: close_range only closes descriptors of this process's own table (the child's
    // copy, see `close_after_exit`); it takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        for fd in first..=last.min(FALLBACK_CLOSE_LIMIT) {
            // SAFETY: as above, one descriptor at a time; EBADF for those not open.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    }
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Which side of `fork_background` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The original process, free to exit.
    Parent,
    /// The copy, which finishes the work and ends with `exit_now`.
    Child,
}

/// Starts a copy of this process that carries on while the original returns and exits; the
/// runtime waiting for the hook waits for the original only. The copy reads and writes
/// /dev/null instead of the runtime's pipes (so the runtime sees EOF when the hook exits),
/// and runs in a session of its own (so a Ctrl-C meant for the runtime's process group does
/// not cut it short).
///
/// Only for a process with a single thread, as the hook is (its netlink sockets are plain
/// synchronous ones; nothing starts a thread): the copy has only the calling thread, and a lock
/// held by any other thread at the fork would stay locked in it for good.
pub(crate) fn fork_background() -> io::Result<Forked> {
    let devnull = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: the process has one thread (see above), so the child inherits no lock that
    // another thread held, and may go on to run ordinary code (allocate, take locks).
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => Ok(Forked::Parent),
        ForkResult::Child => {
            // Best effort: failing either only leaves the child where the parent was.
            let _ = setsid();
            for redirect in [dup2_stdin::<&std::fs::File>, dup2_stdout, dup2_stderr] {
                let _ = redirect(&devnull);
            }
            Ok(Forked::Child)
        }
    }
}

/// Ends the process at once with `code`, skipping atexit handlers and thread-local and
/// static destructors, which only free memory the kernel reclaims anyway and cost a hook
/// ~0.2 ms on its way out. For the hook path only: it writes nothing to stdout (so nothing
/// buffered is lost) and stderr is unbuffered.
pub fn exit_now(code: u8) -> ! {
    // SAFETY: _exit is always safe to call; what it skips is stated above and is nothing
    // the hook relies on: every file, lock and socket it holds is closed by the kernel.
    unsafe { libc::_exit(c_int::from(code)) }
}
