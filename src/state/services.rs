//! Services in the store: definitions in `CONFIG/services/NAME.json` (they outlive
//! reboots, like networks), members in `RUN/services/NAME.members` (they are containers,
//! gone with a reboot), and the names containers hold on a network with DNS
//! (`RUN/names/NETWORK/NAME`, holding the owner's key).
//!
//! The members file lists one member per line in slot order (`KEY ADDR4 ADDR6`, `-` for a
//! family it lacks): the firewall picks a member by slot, so a member's slot must stay put
//! while it lives; a leaving member's slot takes the last one (see `core::services`).

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::files::{ensure_dir, io_err, list_json_stems, read_json, read_small, remove_file};
use super::files::{write_atomic, write_json, write_owner_file};
use super::{Store, StoreError};
use crate::model::service::Service;

/// The owner a service's host-port claims carry: never a container key (`=` is not allowed
/// in one).
pub fn service_owner(name: &str) -> String {
    format!("service={name}")
}

/// One member: its endpoint key and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// A service's members in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(pub Vec<Member>);

impl Members {
    fn parse(text: &str) -> Option<Self> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut f = line.split_whitespace();
            let key = f.next()?.to_owned();
            let v4 = match f.next()? {
                "-" => None,
                a => Some(a.parse().ok()?),
            };
            let v6 = match f.next()? {
                "-" => None,
                a => Some(a.parse().ok()?),
            };
            out.push(Member { key, v4, v6 });
        }
        Some(Members(out))
    }

    fn render(&self) -> String {
        let mut s = String::with_capacity(self.0.len() * 48);
        for m in &self.0 {
            let v4 = m.v4.map_or("-".to_owned(), |a| a.to_string());
            let v6 = m.v6.map_or("-".to_owned(), |a| a.to_string());
            s.push_str(&format!("{} {v4} {v6}\n", m.key));
        }
        s
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|m| m.key == key)
    }
}

impl Store {
    fn services_dir(&self) -> PathBuf {
        self.config_dir().join("services")
    }

    fn service_path(&self, name: &str) -> PathBuf {
        self.services_dir().join(format!("{name}.json"))
    }

    fn members_path(&self, name: &str) -> PathBuf {
        self.run_dir()
            .join("services")
            .join(format!("{name}.members"))
    }

    pub fn load_service(&self, name: &str) -> Result<Option<Service>, StoreError> {
        read_json(&self.service_path(name))
    }

    /// The named service, or an error that says how to make it.
    pub fn service(&self, name: &str) -> Result<Service, StoreError> {
        self.load_service(name)?
            .ok_or_else(|| StoreError::UnknownService {
                name: name.to_owned(),
            })
    }

    /// Every service, sorted by name.
    pub fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let mut out = Vec::new();
        for name in list_json_stems(&self.services_dir())? {
            if let Some(s) = self.load_service(&name)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The names of a network's services.
    pub fn services_of(&self, network: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_services()?
            .into_iter()
            .filter(|s| s.network == network)
            .map(|s| s.name)
            .collect())
    }

    pub fn create_service(&self, s: &Service) -> Result<(), StoreError> {
        let path = self.service_path(&s.name);
        if path.symlink_metadata().is_ok() {
            return Err(StoreError::ServiceExists {
                name: s.name.clone(),
            });
        }
        ensure_dir(self.config_dir())?;
        ensure_dir(&self.services_dir())?;
        write_json(&path, s)
    }

    /// Removes a definition and its members file; false when there was no definition.
    pub fn remove_service(&self, name: &str) -> Result<bool, StoreError> {
        remove_file(&self.members_path(name))?;
        remove_file(&self.service_path(name))
    }

    /// Whether a claim's owner is alive: a container with a record, or a defined service.
    pub fn owner_is_live(&self, owner: &str) -> bool {
        match owner.strip_prefix("service=") {
            Some(name) => self.service_path(name).exists(),
            None => self.has_endpoint(owner),
        }
    }

    pub fn members(&self, service: &str) -> Result<Members, StoreError> {
        let path = self.members_path(service);
        match read_small(&path)? {
            None => Ok(Members::default()),
            Some(text) => Members::parse(&text).ok_or(StoreError::BadMembers { path }),
        }
    }

    pub fn save_members(&self, service: &str, members: &Members) -> Result<(), StoreError> {
        let path = self.members_path(service);
        if members.0.is_empty() {
            remove_file(&path)?;
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        write_atomic(&path, members.render().as_bytes())
    }

    fn name_path(&self, network: &str, name: &str) -> PathBuf {
        self.run_dir().join("names").join(network).join(name)
    }

    /// Claims `name` on `network` for `owner`: `Err(holder)` when a live container holds
    /// it; a claim whose owner has no record any more is taken over.
    pub fn claim_name(
        &self,
        network: &str,
        name: &str,
        owner: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let path = self.name_path(network, name);
        if let Some(holder) = read_small(&path)? {
            if holder != owner && self.has_endpoint(&holder) {
                return Ok(Err(holder));
            }
        }
        if let Some(dir) = path.parent() {
            ensure_dir(&self.run_dir().join("names"))?;
            ensure_dir(dir)?;
        }
        write_owner_file(&path, owner).map_err(|(action, e)| io_err(action, &path)(e))?;
        Ok(Ok(()))
    }

    /// Drops `owner`'s claim on `name` (another's stays).
    pub fn release_name(&self, network: &str, name: &str, owner: &str) {
        let path = self.name_path(network, name);
        if read_small(&path).ok().flatten().as_deref() == Some(owner) {
            let _ = fs::remove_file(&path);
        }
    }

    /// The holder of `name` on `network`, if a live container holds it.
    pub fn name_holder(&self, network: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(read_small(&self.name_path(network, name))?.filter(|h| self.has_endpoint(h)))
    }

    /// Name claims whose owner has no record (gc): (network, name, owner).
    pub fn stale_names(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let root = self.run_dir().join("names");
        let mut out = Vec::new();
        let nets = match fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("list", &root)(e)),
        };
        for net in nets.flatten() {
            let network = net.file_name().to_string_lossy().into_owned();
            let Ok(names) = fs::read_dir(net.path()) else {
                continue;
            };
            for n in names.flatten() {
                let name = n.file_name().to_string_lossy().into_owned();
                let owner = read_small(&n.path())?.unwrap_or_default();
                if !self.has_endpoint(&owner) {
                    out.push((network.clone(), name, owner));
                }
            }
        }
        Ok(out)
    }

    /// Removes a stale name claim found by `stale_names`.
    pub fn drop_name_claim(&self, network: &str, name: &str) -> Result<bool, StoreError> {
        remove_file(&self.name_path(network, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_in_slot_order_with_missing_families() {
        let m = Members(vec![
            Member {
                key: "a".into(),
                v4: Some("10.0.0.2".parse().unwrap()),
                v6: None,
            },
            Member {
                key: "b@eth1".into(),
                v4: None,
                v6: Some("fd00::3".parse().unwrap()),
            },
        ]);
        let text = m.render();
        assert_eq!(text, "a 10.0.0.2 -\nb@eth1 - fd00::3\n");
        assert_eq!(Members::parse(&text).unwrap(), m);
        assert_eq!(m.slot_of("b@eth1"), Some(1));
        assert!(Members::parse("a 10.0.0.300 -\n").is_none());
    }

    #[test]
    fn service_owners_are_never_container_keys() {
        assert!(crate::model::ids::ContainerId::parse_key(&service_owner("web")).is_err());
    }
}
