//! Host-port claims across containers: `RUN_DIR/ports/<proto>.<port>/<host ip>`, one file
//! per published host port holding its owner's id (`0.0.0.0` for a publish on every host
//! address, of both families: the name predates IPv6, and files written then load unchanged;
//! an IPv6 host address is a file named by its text, e.g. `2001:db8::1`).
//!
//! The kernel's maps already refuse the same key twice, but a publish on every address
//! (`ports4`) and one on a single address (`hports4`) live in different maps: both would be
//! accepted, and the specific one, matched first, would silently take the port from the
//! earlier container. A directory per port answers "is this port published on any
//! address?" with one small directory read, without reading every endpoint record. Like
//! the IPAM files, a claim costs the same however many containers run.
//!
//! Callers hold the store's lock. A claim whose owner has no endpoint record is stale (a
//! crash between writing it and the record, or a record quarantined) and is taken over.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::ports::{PortSpec, Proto};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("host port {port}/{proto} is already published by {owner} on {held}; a publish on {wanted} would take it over: pick another host port or stop {owner}")]
    Shadowed {
        proto: Proto,
        port: u16,
        owner: String,
        held: String,
        wanted: String,
    },
}

/// The address part of a claim's file name.
const EVERY_ADDRESS: &str = "0.0.0.0";

pub struct Claims {
    root: PathBuf,
}

/// One host port to claim: protocol, host address (`None`: every address), port.
///
/// A claim on every address conflicts with every other claim of the port, whatever its
/// family, even when the container publishing on every address has IPv4 only: a claim does
/// not know the endpoint's families, and the conservative answer keeps one rule for old and
/// new claim files. Specific addresses conflict only with the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    pub port: u16,
}

impl Claim {
    fn address(&self) -> String {
        self.host_ip
            .filter(|ip| !ip.is_unspecified())
            .map_or_else(|| EVERY_ADDRESS.to_owned(), |ip| ip.to_string())
    }
}

/// Every host port the specs publish.
pub fn claims_of(specs: &[PortSpec]) -> Vec<Claim> {
    specs
        .iter()
        .flat_map(|s| {
            s.pairs().map(move |(port, _)| Claim {
                proto: s.proto,
                host_ip: s.host_ip,
                port,
            })
        })
        .collect()
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ClaimError + 'a {
    move |source| ClaimError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Claims {
    pub fn new(run_dir: &Path) -> Self {
        Claims {
            root: run_dir.join("ports"),
        }
    }

    fn port_dir(&self, c: &Claim) -> PathBuf {
        self.root.join(format!("{}.{}", c.proto, c.port))
    }

    /// Claims every port for `owner`, or none: on a conflict the claims made so far are
    /// released. `is_live(id)`: whether another claim's owner still has a record.
    pub fn claim(
        &self,
        owner: &str,
        claims: &[Claim],
        is_live: impl Fn(&str) -> bool,
    ) -> Result<(), ClaimError> {
        if claims.is_empty() {
            return Ok(());
        }
        create_dir(&self.root)?;
        for (i, c) in claims.iter().enumerate() {
            if let Err(e) = self.claim_one(owner, c, &is_live) {
                self.release(owner, &claims[..i]);
                return Err(e);
            }
        }
        Ok(())
    }

    fn claim_one(
        &self,
        owner: &str,
        c: &Claim,
        is_live: &impl Fn(&str) -> bool,
    ) -> Result<(), ClaimError> {
        let dir = self.port_dir(c);
        create_dir(&dir)?;
        let wanted = c.address();
        // A publish on every address conflicts with any other on this port; a specific one
        // with a publish on every address or on the same address.
        let rivals: Vec<String> = if wanted == EVERY_ADDRESS {
            let entries = fs::read_dir(&dir).map_err(io("read", &dir))?;
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        } else {
            vec![EVERY_ADDRESS.to_owned(), wanted.clone()]
        };
        for held in rivals {
            let path = dir.join(&held);
            let Some(holder) = read_owner(&path)? else {
                continue;
            };
            if holder == owner {
                continue;
            }
            if is_live(&holder) {
                let held = if held == EVERY_ADDRESS {
                    "every host address".to_owned()
                } else {
                    held
                };
                let wanted = if wanted == EVERY_ADDRESS {
                    "every host address".to_owned()
                } else {
                    wanted.clone()
                };
                return Err(ClaimError::Shadowed {
                    proto: c.proto,
                    port: c.port,
                    owner: match holder.strip_prefix("service=") {
                        Some(name) => format!("service {name} (`nethook service rm {name}`)"),
                        None => format!("container {holder}"),
                    },
                    held,
                    wanted,
                });
            }
        }
        write_owner(&dir.join(&wanted), owner)
    }

    /// Drops `owner`'s claims on these ports (others' claims stay). Best effort: a claim
    /// that cannot be removed is stale once the record goes, and taken over then.
    pub fn release(&self, owner: &str, claims: &[Claim]) {
        for c in claims {
            let dir = self.port_dir(c);
            let path = dir.join(c.address());
            if read_owner(&path).ok().flatten().as_deref() == Some(owner) {
                let _ = fs::remove_file(&path);
            }
            // Fails with ENOTEMPTY while another address of this port is claimed.
            let _ = fs::remove_dir(&dir);
        }
    }

    /// Removes every claim whose owner fails `is_live`; returns them as (port, address,
    /// owner) for gc's report.
    pub fn sweep(
        &self,
        is_live: impl Fn(&str) -> bool,
        dry_run: bool,
    ) -> Result<Vec<(String, String, String)>, ClaimError> {
        let mut removed = Vec::new();
        let ports = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        for port in ports.flatten() {
            let dir = port.path();
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let owner = read_owner(&path)?.unwrap_or_default();
                if !owner.is_empty() && is_live(&owner) {
                    continue;
                }
                removed.push((
                    port.file_name().to_string_lossy().into_owned(),
                    entry.file_name().to_string_lossy().into_owned(),
                    owner,
                ));
                if !dry_run {
                    fs::remove_file(&path).map_err(io("remove", &path))?;
                }
            }
            if !dry_run {
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(removed)
    }
}

fn create_dir(dir: &Path) -> Result<(), ClaimError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create directory", dir)(e)),
    }
}

/// Reads a claim's owner. No symlinks or FIFOs: the run directory is root's, but a claim
/// file is read by root hooks, which must neither follow nor block on one.
fn read_owner(path: &Path) -> Result<Option<String>, ClaimError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    if !file.metadata().map_err(io("inspect", path))?.is_file() {
        return Err(io("read", path)(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        )));
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text).map_err(io("read", path))?;
    Ok(Some(text.trim().to_owned()))
}

fn write_owner(path: &Path, owner: &str) -> Result<(), ClaimError> {
    super::files::write_owner_file(path, owner).map_err(|(action, e)| io(action, path)(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> &str {
        s
    }

    fn tcp(ip: Option<[u8; 4]>, port: u16) -> Claim {
        Claim {
            proto: Proto::Tcp,
            host_ip: ip.map(IpAddr::from),
            port,
        }
    }

    fn tcp6(ip: Option<&str>, port: u16) -> Claim {
        Claim {
            proto: Proto::Tcp,
            host_ip: ip.map(|t| t.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn ipv6_addresses_are_claimed_like_ipv4_ones() {
        let (d, c) = dir();
        c.claim(id("a"), &[tcp6(Some("2001:db8::1"), 80)], |_| true)
            .unwrap();
        assert!(d.0.join("ports/tcp.80/2001:db8::1").is_file());
        // The same IPv6 address is refused, another one (and an IPv4 one) is not.
        let e = c
            .claim(id("b"), &[tcp6(Some("2001:db8::1"), 80)], |_| true)
            .unwrap_err();
        assert!(e.to_string().contains("on 2001:db8::1"), "{e}");
        c.claim(id("b"), &[tcp6(Some("2001:db8::2"), 80)], |_| true)
            .unwrap();
        c.claim(id("c"), &[tcp(Some([192, 0, 2, 1]), 80)], |_| true)
            .unwrap();
        // Every address takes both families: refused while any of them holds the port.
        let e = c.claim(id("d"), &[tcp6(None, 80)], |_| true).unwrap_err();
        assert!(
            e.to_string().contains("a publish on every host address"),
            "{e}"
        );
        c.release(id("a"), &[tcp6(Some("2001:db8::1"), 80)]);
        c.release(id("b"), &[tcp6(Some("2001:db8::2"), 80)]);
        c.release(id("c"), &[tcp(Some([192, 0, 2, 1]), 80)]);
        c.claim(id("d"), &[tcp6(None, 80)], |_| true).unwrap();
        let e = c
            .claim(id("e"), &[tcp6(Some("2001:db8::1"), 80)], |_| true)
            .unwrap_err();
        assert!(e.to_string().contains("on every host address"), "{e}");
    }

    #[test]
    fn claims_written_before_ipv6_still_hold() {
        // An old claim file: `0.0.0.0` for every address.
        let (d, c) = dir();
        let port = d.0.join("ports/tcp.8080");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("0.0.0.0"), "old").unwrap();
        for wanted in [
            tcp(Some([192, 0, 2, 1]), 8080),
            tcp6(Some("2001:db8::1"), 8080),
        ] {
            let e = c.claim(id("new"), &[wanted], |_| true).unwrap_err();
            assert!(
                e.to_string()
                    .contains("container old on every host address"),
                "{e}"
            );
        }
        let specs = crate::model::ports::parse_ports("[2001:db8::1]:8080:80,9:9").unwrap();
        let all = claims_of(&specs);
        assert_eq!(all, vec![tcp6(Some("2001:db8::1"), 8080), tcp(None, 9)]);
    }

    fn dir() -> (tempdir::Dir, Claims) {
        let d = tempdir::Dir::new();
        let c = Claims::new(&d.0);
        (d, c)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "nethook-claims-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_specific_publish_after_a_wildcard_one_of_the_same_port_is_refused() {
        let (_d, c) = dir();
        c.claim(id("a"), &[tcp(None, 8080)], |_| true).unwrap();
        let e = c
            .claim(id("b"), &[tcp(Some([192, 0, 2, 1]), 8080)], |_| true)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("already published by container a on every host address"),
            "{e}"
        );
    }

    #[test]
    fn a_wildcard_publish_after_a_specific_one_of_the_same_port_is_refused() {
        let (_d, c) = dir();
        c.claim(id("a"), &[tcp(Some([192, 0, 2, 1]), 8080)], |_| true)
            .unwrap();
        let e = c.claim(id("b"), &[tcp(None, 8080)], |_| true).unwrap_err();
        assert!(e.to_string().contains("on 192.0.2.1"), "{e}");
    }

    #[test]
    fn specific_publishes_on_different_addresses_coexist_and_other_ports_are_free() {
        let (_d, c) = dir();
        c.claim(id("a"), &[tcp(Some([192, 0, 2, 1]), 80)], |_| true)
            .unwrap();
        c.claim(id("b"), &[tcp(Some([192, 0, 2, 2]), 80)], |_| true)
            .unwrap();
        c.claim(
            id("c"),
            &[
                tcp(None, 81),
                Claim {
                    proto: Proto::Udp,
                    host_ip: None,
                    port: 80,
                },
            ],
            |_| true,
        )
        .unwrap();
    }

    #[test]
    fn a_refused_claim_releases_the_ports_it_had_claimed_already() {
        let (_d, c) = dir();
        c.claim(id("a"), &[tcp(None, 90)], |_| true).unwrap();
        assert!(c
            .claim(id("b"), &[tcp(None, 89), tcp(None, 90)], |_| true)
            .is_err());
        c.claim(id("c"), &[tcp(Some([192, 0, 2, 9]), 89)], |_| true)
            .unwrap();
    }

    #[test]
    fn a_claim_of_an_owner_without_record_is_taken_over_and_swept() {
        let (_d, c) = dir();
        c.claim(id("gone"), &[tcp(None, 70)], |_| true).unwrap();
        c.claim(id("new"), &[tcp(Some([192, 0, 2, 1]), 70)], |o| o != "gone")
            .unwrap();
        let swept = c.sweep(|o| o != "gone", false).unwrap();
        assert_eq!(
            swept,
            vec![("tcp.70".into(), "0.0.0.0".into(), "gone".into())]
        );
        c.claim(id("other"), &[tcp(None, 70)], |_| true)
            .unwrap_err();
    }

    #[test]
    fn release_keeps_other_owners_claims() {
        let (_d, c) = dir();
        c.claim(id("a"), &[tcp(Some([192, 0, 2, 1]), 60)], |_| true)
            .unwrap();
        c.claim(id("b"), &[tcp(Some([192, 0, 2, 2]), 60)], |_| true)
            .unwrap();
        c.release(
            id("a"),
            &[tcp(Some([192, 0, 2, 1]), 60), tcp(Some([192, 0, 2, 2]), 60)],
        );
        assert!(
            c.claim(id("x"), &[tcp(None, 60)], |_| true).is_err(),
            "b's claim must stay"
        );
    }
}
