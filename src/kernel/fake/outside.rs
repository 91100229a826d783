//! The fake's view of what lies outside the network: files in containers' roots and the
//! resolver process.

use std::io;

use super::Fake;
use crate::kernel::rootfs::{RootfsError, Written};
use crate::kernel::seam::ContainerFiles;

/// The fake resolver runs once started: `deliver` says NotRunning until `start` is called
/// (or when told to fail, an error); calls are recorded as `dns.deliver N` / `dns.start Z`.
impl crate::kernel::seam::Resolver for Fake {
    fn deliver(
        &self,
        _run_dir: &std::path::Path,
        updates: &[crate::resolver::Update],
    ) -> Result<crate::resolver::Delivery, crate::resolver::ResolverError> {
        if let Some(errno) = self.call("dns.deliver", updates.len().to_string()) {
            return Err(crate::resolver::ResolverError::Refused(format!(
                "fake errno {errno}"
            )));
        }
        Ok(if self.state.borrow().resolver_running {
            crate::resolver::Delivery::Applied
        } else {
            crate::resolver::Delivery::NotRunning
        })
    }
    fn stop_hung(
        &self,
        _run_dir: &std::path::Path,
        pid: &str,
    ) -> Result<(), crate::resolver::ResolverError> {
        self.call("dns.stop_hung", pid.to_owned());
        self.state.borrow_mut().resolver_running = false;
        Ok(())
    }
    fn start(
        &self,
        _run_dir: &std::path::Path,
        snapshot: &crate::resolver::Snapshot,
    ) -> Result<(), crate::resolver::ResolverError> {
        if let Some(errno) = self.call("dns.start", snapshot.zones.len().to_string()) {
            return Err(crate::resolver::ResolverError::Start(format!(
                "fake errno {errno}"
            )));
        }
        self.state.borrow_mut().resolver_running = true;
        Ok(())
    }
}

impl ContainerFiles for Fake {
    /// Recorded as `PID ROOTFS/REL N bytes`; fails (an I/O error) when told to.
    fn write_container_file(
        &self,
        pid: i32,
        rootfs: &std::path::Path,
        rel: &std::path::Path,
        contents: &[u8],
    ) -> Result<Written, RootfsError> {
        let key = format!("{}/{}", rootfs.display(), rel.display());
        let arg = format!("{pid} {key} {} bytes", contents.len());
        if let Some(errno) = self.call("file.write", arg) {
            return Err(RootfsError::Io {
                op: "write (fake)",
                rootfs: rootfs.to_owned(),
                rel: rel.to_owned(),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        let mut s = self.state.borrow_mut();
        if let Some(found) = s.file_outcomes.get(&key) {
            return Ok(*found);
        }
        s.files.insert(key, contents.to_vec());
        Ok(Written::Wrote)
    }
}
