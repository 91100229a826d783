//! Teardowns under way. A teardown whose veth is still there hands the veth delete (and its
//! ~20 ms RCU wait in the kernel) to a child process. That child must not hold the store's
//! lock while it waits, or every other setup and teardown would queue behind it; instead it
//! holds a mark of its own, `RUN/deleting/KEY`, an empty file it keeps `flock`ed until the
//! attachment's address and record are gone.
//!
//! Whoever would observe the half-removed attachment waits for the mark instead: a setup of
//! the same key (or of the address it still holds), `ls`, `gc`, `network rm`. The record
//! stays until the end, so its address is not handed out again while the old namespace may
//! still use it. A mark whose file is there but unlocked was left by a child that died: the
//! teardown was abandoned, and `gc` (or the next teardown or setup of that key) finishes it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::files::{ensure_dir, io_err, open_nofollow, remove_file};
use super::{Lock, Store, StoreError};
use crate::model::ids::ContainerId;

/// How often a waiter looks at a mark again. A teardown's link work takes ~20–50 ms.
const POLL: Duration = Duration::from_millis(2);

/// Where a teardown of one attachment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// No teardown was started (or it finished).
    None,
    /// A process is finishing it now.
    Running,
    /// It was started, and the process finishing it died.
    Abandoned,
}

/// The mark of a teardown under way; held by the process that finishes it. Dropping it
/// closes the file: the mark stays locked while a copy of it (a forked child's) is open.
/// The file itself is removed with the record (`Store::clear_deletion`).
pub struct DeletionMark {
    _file: File,
}

impl DeletionMark {
    /// For a process that forked the child finishing the teardown: its copy stays open
    /// until it exits. (Closing it would not unlock the child's copy: one open file, one
    /// lock. Leaving it open is for symmetry with the store's lock; it costs nothing.)
    pub fn leave_to_child(self) {
        std::mem::forget(self);
    }
}

impl Store {
    fn deleting_dir(&self) -> PathBuf {
        self.run_dir().join("deleting")
    }

    fn deletion_path(&self, id: &ContainerId) -> PathBuf {
        self.deleting_dir().join(id.as_str())
    }

    /// Marks `id`'s teardown as under way. The caller holds the store's lock and has seen
    /// that no other process is running it (`deletion` is not `Running`).
    pub fn begin_deletion(&self, id: &ContainerId) -> Result<DeletionMark, StoreError> {
        let dir = self.deleting_dir();
        ensure_dir(&dir)?;
        let path = self.deletion_path(id);
        let file = open_nofollow(
            &path,
            OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .mode(0o600),
        )?;
        // Blocking: only a waiter's momentary shared lock on an abandoned mark can be there.
        file.lock().map_err(io_err("lock", &path))?;
        Ok(DeletionMark { _file: file })
    }

    /// Removes `id`'s mark, if any; with its record, under the store's lock.
    pub fn clear_deletion(&self, id: &ContainerId) -> Result<(), StoreError> {
        remove_file(&self.deletion_path(id)).map(drop)
    }

    /// Whether a teardown of `id` was started (running or abandoned): its elements are
    /// gone on purpose, and must not be restored.
    pub fn is_deleting(&self, id: &ContainerId) -> bool {
        self.deletion_path(id).exists()
    }

    /// Whether a teardown of `id` was started and not finished: one failed `open` when not.
    pub fn deletion(&self, id: &ContainerId) -> Result<Deletion, StoreError> {
        let path = self.deletion_path(id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Deletion::None),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        match file.try_lock_shared() {
            // Dropping the file unlocks this probe's own lock.
            Ok(()) => Ok(Deletion::Abandoned),
            Err(TryLockError::WouldBlock) => Ok(Deletion::Running),
            Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    /// Waits, without the store's lock, until `id`'s teardown is no longer running; false
    /// when it still was at `deadline`.
    pub fn wait_for_deletion(
        &self,
        id: &ContainerId,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        loop {
            if self.deletion(id)? != Deletion::Running {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            thread::sleep(POLL);
        }
    }

    /// The keys whose teardown is running now.
    pub fn running_deletions(&self) -> Result<Vec<ContainerId>, StoreError> {
        let dir = self.deleting_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let Ok(id) = ContainerId::parse_key(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            if self.deletion(&id)? == Deletion::Running {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The store's lock, taken when no teardown is running (waiting for those under way,
    /// without the lock, up to `wait`): for whoever shows or changes many records at once
    /// and should see none half-removed. Teardowns still running after `wait` (a stuck
    /// child) are the caller's to skip; `running_deletions` names them.
    pub fn lock_settled(&self, wait: Duration) -> Result<Lock, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            let lock = self.lock()?;
            let running = self.running_deletions()?;
            if running.is_empty() || Instant::now() >= deadline {
                return Ok(lock);
            }
            drop(lock);
            for id in &running {
                self.wait_for_deletion(id, deadline)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn store(tag: &str) -> (Store, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("nethook-deleting-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        (Store::new(root.join("etc"), root.join("run")), root)
    }

    fn id(s: &str) -> ContainerId {
        ContainerId::parse_key(s).unwrap()
    }

    #[test]
    fn a_held_mark_is_running_a_dropped_one_abandoned_a_cleared_one_gone() {
        let (s, root) = store("states");
        let c = id("c1@eth0");
        assert_eq!(s.deletion(&c).unwrap(), Deletion::None);
        let mark = s.begin_deletion(&c).unwrap();
        assert_eq!(s.deletion(&c).unwrap(), Deletion::Running);
        assert!(s.is_deleting(&c));
        assert_eq!(s.running_deletions().unwrap(), vec![c.clone()]);
        drop(mark);
        assert_eq!(s.deletion(&c).unwrap(), Deletion::Abandoned);
        assert!(s.running_deletions().unwrap().is_empty());
        // Another process takes an abandoned teardown over.
        let again = s.begin_deletion(&c).unwrap();
        assert_eq!(s.deletion(&c).unwrap(), Deletion::Running);
        s.clear_deletion(&c).unwrap();
        drop(again);
        assert_eq!(s.deletion(&c).unwrap(), Deletion::None);
        assert!(!s.is_deleting(&c));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_store_lock_is_free_while_a_teardown_runs_and_settled_readers_wait_for_it() {
        let (s, root) = store("settled");
        let c = id("c1");
        let mark = {
            let _lock = s.lock().unwrap();
            s.begin_deletion(&c).unwrap()
        };
        // Others are not held up by the teardown...
        drop(s.lock().unwrap());
        // ...but a reader that must not see it half-way waits until its record is gone.
        let (tx, rx) = mpsc::channel();
        let finisher = {
            let s = s.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let _lock = s.lock().unwrap();
                s.clear_deletion(&c).unwrap();
                tx.send(()).unwrap();
                drop(mark);
            })
        };
        let lock = s.lock_settled(Duration::from_secs(10)).unwrap();
        assert!(
            rx.try_recv().is_ok(),
            "lock_settled returned before the teardown finished"
        );
        assert!(s.running_deletions().unwrap().is_empty());
        drop(lock);
        finisher.join().unwrap();
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_on_a_stuck_teardown() {
        let (s, root) = store("stuck");
        let c = id("c1");
        let _mark = s.begin_deletion(&c).unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!s.wait_for_deletion(&c, deadline).unwrap());
        // lock_settled still hands out the lock; the caller skips what still runs.
        let _lock = s.lock_settled(Duration::from_millis(20)).unwrap();
        assert_eq!(s.running_deletions().unwrap(), vec![c]);
        fs::remove_dir_all(root).unwrap();
    }
}
