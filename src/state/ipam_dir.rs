//! One network's IPAM directory: a file per allocated address and a round-robin cursor
//! per address family.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::files::{io_err, open_nofollow, read_small, remove_file, write_atomic};
use super::StoreError;
use crate::model::ids::ContainerId;
use crate::model::ipam::{Allocations, Family, Lease, Leases, Pool};

/// One network's allocations, `RUN_DIR/ipam/<network>/`: a file per address (`10.77.0.2`,
/// holding the owner's container id) and a round-robin cursor per family (`last` for
/// IPv4, `last6` for IPv6: `Family::CURSOR`). IPv6 addresses would sit beside the IPv4
/// ones, named the same way (`fd00::2`); the names of the two families never clash. Allocating
/// touches one address file and the cursor instead of rewriting every allocation, so a
/// setup costs the same with one container or thousands. Only valid under the lock.
#[derive(Debug)]
pub struct IpamDir {
    pub(super) dir: PathBuf,
    pub(super) lock: PathBuf,
}

impl IpamDir {
    fn address_path<A: Family>(&self, ip: A) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The IPv4 cursor.
    pub(super) fn cursor_path(&self) -> PathBuf {
        self.cursor_path_of::<Ipv4Addr>()
    }

    pub(super) fn cursor_path_of<A: Family>(&self) -> PathBuf {
        self.dir.join(A::CURSOR)
    }

    /// Records a lease chosen by `ipam::choose`. The address file is created exclusively:
    /// under the lock it cannot exist, so if it does, something bypassed the lock, and
    /// failing beats handing one address to two containers.
    pub fn record<A: Family>(&self, lease: &Lease<A>, id: &ContainerId) -> Result<(), StoreError> {
        let path = self.address_path(lease.address);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let mut file = match open_nofollow(&path, &mut opts) {
            Ok(f) => f,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AddressRace {
                    path,
                    lock: self.lock.clone(),
                    source,
                });
            }
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(id.as_str().as_bytes())
            .map_err(io_err("write", &path))
            .and_then(|()| {
                if lease.advances_cursor {
                    write_atomic(
                        &self.cursor_path_of::<A>(),
                        format!("{}\n", lease.address).as_bytes(),
                    )
                } else {
                    Ok(())
                }
            });
        if written.is_err() {
            // The caller fails the setup, which then has no record through which teardown
            // or gc would find this address: free it here, or it stays held by nobody.
            let _ = fs::remove_file(&path);
        }
        written
    }

    /// Records an endpoint's leases, both or neither: a second that fails frees the first.
    pub fn record_leases(&self, leases: &Leases, id: &ContainerId) -> Result<(), StoreError> {
        if let Some(v4) = &leases.v4 {
            self.record(v4, id)?;
        }
        if let Some(v6) = &leases.v6 {
            if let Err(e) = self.record(v6, id) {
                if let Some(v4) = &leases.v4 {
                    let _ = self.release(v4.address, id.as_str());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Frees `ip` only if `owner` still holds it: a late teardown of an old container must
    /// not free an address that was handed to a newer one. False when it did not.
    pub fn release<A: Family>(&self, ip: A, owner: &str) -> Result<bool, StoreError>
    where
        Self: Allocations<A, Error = StoreError>,
    {
        if self.owner(ip)?.as_deref() != Some(owner) {
            return Ok(false);
        }
        remove_file(&self.address_path(ip))
    }

    /// Like `release`, for an address of either family.
    pub fn release_ip(&self, ip: IpAddr, owner: &str) -> Result<bool, StoreError> {
        match ip {
            IpAddr::V4(ip) => self.release(ip, owner),
            IpAddr::V6(ip) => self.release(ip, owner),
        }
    }

    /// Whether any address (of either family) is allocated. Stops at the first address
    /// file, so the answer does not cost a read of every allocation.
    pub fn has_addresses(&self) -> Result<bool, StoreError> {
        let any = |name: &std::ffi::OsStr| {
            address_name::<Ipv4Addr>(name).is_some() || address_name::<Ipv6Addr>(name).is_some()
        };
        match crate::sys::dir::any_entry(&self.dir, any) {
            Ok(found) => Ok(found),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("list", &self.dir)(e)),
        }
    }

    /// Every IPv4 allocation, by address. Reads the whole directory: for `gc`, not hooks.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, StoreError> {
        self.allocations_of()
    }

    /// Every allocation of one family, by address.
    pub fn allocations_of<A: Family>(&self) -> Result<Vec<(A, String)>, StoreError>
    where
        Self: Allocations<A, Error = StoreError>,
    {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let Some(ip) = address_name::<A>(&entry.file_name()) else {
                continue;
            };
            // Gone since the listing only if something bypassed the lock; nothing to report.
            if let Some(owner) = self.owner(ip)? {
                out.push((ip, owner));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes the allocations of an older version's single file into this directory.
    /// Idempotent, so a conversion cut short by a crash is finished by the next one: an
    /// address already present keeps its file, and the file of the older version is
    /// removed by the caller only after this succeeded.
    pub(super) fn adopt(&self, pool: &Pool) -> Result<(), StoreError> {
        for (ip, owner) in &pool.allocations {
            // Through a rename, so a crash cannot leave an empty file that a rerun would
            // then keep: the address would look held by nobody and gc would free it.
            if !self.is_taken(*ip)? {
                write_atomic(&self.address_path(*ip), owner.as_bytes())?;
            }
        }
        if let (Some(last), None) = (pool.last, Allocations::<Ipv4Addr>::last(self)?) {
            write_atomic(&self.cursor_path(), format!("{last}\n").as_bytes())?;
        }
        Ok(())
    }
}

impl IpamDir {
    /// A family's cursor as it is; `BadCursor` when its text is no address of the family.
    pub(super) fn read_cursor<A: Family>(&self) -> Result<Option<A>, StoreError> {
        let path = self.cursor_path_of::<A>();
        let Some(text) = read_small(&path)? else {
            return Ok(None);
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|source| StoreError::BadCursor {
                path,
                family: A::NAME,
                source,
            })
    }
}

impl<A: Family> Allocations<A> for IpamDir {
    type Error = StoreError;

    fn owner(&self, ip: A) -> Result<Option<String>, StoreError> {
        let path = self.address_path(ip);
        Ok(read_small(&path)?.map(|text| text.trim_end().to_owned()))
    }

    fn is_taken(&self, ip: A) -> Result<bool, StoreError> {
        let path = self.address_path(ip);
        match path.symlink_metadata() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("inspect", &path)(e)),
        }
    }

    /// A cursor that does not hold an address counts as none: it only says where round
    /// robin resumes, so allocation restarts from the subnet's start rather than fail every
    /// setup on the network, and the next lease writes a good one (`gc` reports it).
    fn last(&self) -> Result<Option<A>, StoreError> {
        match self.read_cursor::<A>() {
            Err(StoreError::BadCursor { .. }) => Ok(None),
            other => other,
        }
    }
}

/// The address of family `A` an IPAM directory entry stands for; `None` for the cursors,
/// temp files and the other family's addresses.
pub(super) fn address_name<A: Family>(name: &std::ffi::OsStr) -> Option<A> {
    name.to_str()?.parse().ok()
}
