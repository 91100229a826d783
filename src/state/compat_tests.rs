//! State written by the version before the dual-stack types still loads, and what this
//! version writes for an IPv4-only bridge network is byte for byte what that version wrote.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::model::ipam::{Allocations, Lease};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nethook-compat-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn store(&self) -> Store {
        Store::new(self.0.join("etc"), self.0.join("run"))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `nethook network create backend --subnet 10.88.0.0/24`, as the previous version wrote it.
const NETWORK_FILE: &str = r#"{
  "name": "backend",
  "bridge": "nh-backend",
  "ipv4": {
    "subnet": "10.88.0.0/24",
    "gateway": "10.88.0.1"
  },
  "masquerade": true
}
"#;

/// An endpoint record as the previous version wrote it (`nethook.ports=8080:80,
/// 127.0.0.1:5353:53/udp`).
const ENDPOINT_FILE: &str = r#"{
  "id": "web-1",
  "network": "nethook",
  "bridge": "nethook0",
  "host_interface": "nh0123456789abc",
  "interface": "eth0",
  "mac": "02:4e:0a:4d:00:02",
  "ipv4": {
    "address": "10.77.0.2",
    "prefix": 16,
    "gateway": "10.77.0.1"
  },
  "ports": [
    {
      "host_port": 8080,
      "container_port": 80,
      "count": 1,
      "proto": "tcp"
    },
    {
      "host_ip": "127.0.0.1",
      "host_port": 5353,
      "container_port": 53,
      "count": 1,
      "proto": "udp"
    }
  ],
  "masquerade": true,
  "netns": "/proc/4242/ns/net"
}
"#;

fn write_private(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn a_network_definition_of_the_previous_version_loads_and_is_rewritten_unchanged() {
    let t = TempDir::new("network");
    let s = t.store();
    let path = s.network_path("backend");
    write_private(&path, NETWORK_FILE);
    let net = s.load_network("backend").unwrap();
    assert_eq!(
        net,
        Network::new("backend", "10.88.0.0/24", None, None, true).unwrap()
    );
    assert!(net.ipv6.is_none());
    fs::remove_file(&path).unwrap();
    s.create_network(&net).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), NETWORK_FILE);
}

#[test]
fn a_definition_with_an_ipv6_part_loads_and_a_bad_one_is_refused_with_one_line() {
    let t = TempDir::new("ipv6");
    let s = t.store();
    let text = NETWORK_FILE.replace(
        "\"masquerade\": true",
        "\"ipv6\": {\"subnet\": \"fd00:88::/64\", \"gateway\": \"fd00:88::1\"},\n  \"masquerade\": true",
    );
    write_private(&s.network_path("backend"), &text);
    let net = s.load_network("backend").unwrap();
    let v6 = net.ipv6.unwrap();
    assert_eq!(v6.subnet.to_string(), "fd00:88::/64");
    assert!(
        v6.masquerade,
        "an ipv6 part without masquerade masquerades, like IPv4's"
    );
    write_private(
        &s.network_path("backend"),
        &text.replace("fd00:88::/64", "fe80::/64"),
    );
    let e = s.load_network("backend").unwrap_err();
    assert!(matches!(e, StoreError::Definition { .. }), "{e:?}");
    let line = crate::log::describe(&e);
    assert!(line.contains("link-local"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    // Listing refuses it too rather than leave it out silently.
    assert!(s.list_networks().is_err());
}

#[test]
fn an_endpoint_record_of_the_previous_version_loads_and_is_rewritten_unchanged() {
    let t = TempDir::new("endpoint");
    let s = t.store();
    let id = ContainerId::parse("web-1").unwrap();
    let path = s.endpoint_path(&id);
    write_private(&path, ENDPOINT_FILE);
    let ep = s.load_endpoint(&id).unwrap().unwrap();
    assert_eq!(ep.ipv4.unwrap().address, Ipv4Addr::new(10, 77, 0, 2));
    assert!(ep.ipv6.is_none());
    assert!(ep.driver.is_bridge());
    assert_eq!(ep.ports.len(), 2);
    fs::remove_file(&path).unwrap();
    s.save_endpoint(&ep).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), ENDPOINT_FILE);
}

#[test]
fn an_ipam_directory_of_the_previous_version_loads_and_grows_the_same_way() {
    let t = TempDir::new("ipam");
    let s = t.store();
    let dir = s.ipam_dir("nethook");
    // One file per address holding the owner's id, and the cursor with a newline.
    write_private(&dir.join("10.77.0.2"), "web-1");
    write_private(&dir.join("last"), "10.77.0.2\n");
    let ipam = s.ipam("nethook").unwrap();
    assert_eq!(
        ipam.allocations().unwrap(),
        vec![(Ipv4Addr::new(10, 77, 0, 2), "web-1".to_owned())]
    );
    assert_eq!(
        Allocations::<Ipv4Addr>::last(&ipam).unwrap(),
        Some(Ipv4Addr::new(10, 77, 0, 2))
    );
    let lease = Lease {
        address: Ipv4Addr::new(10, 77, 0, 3),
        advances_cursor: true,
    };
    ipam.record(&lease, &ContainerId::parse("web-2").unwrap())
        .unwrap();
    assert_eq!(fs::read_to_string(dir.join("10.77.0.3")).unwrap(), "web-2");
    assert_eq!(fs::read_to_string(dir.join("last")).unwrap(), "10.77.0.3\n");
    // Nothing of the other family appears.
    assert!(!dir.join("last6").exists());
}

#[test]
fn each_family_has_its_own_addresses_and_cursor_in_one_directory() {
    let t = TempDir::new("families");
    let s = t.store();
    let ipam = s.ipam("nethook").unwrap();
    let id = ContainerId::parse("c1").unwrap();
    let v6: Ipv6Addr = "fd00::2".parse().unwrap();
    ipam.record(
        &Lease {
            address: v6,
            advances_cursor: true,
        },
        &id,
    )
    .unwrap();
    assert!(ipam.has_addresses().unwrap());
    assert!(ipam.allocations().unwrap().is_empty());
    assert_eq!(
        ipam.allocations_of::<Ipv6Addr>().unwrap(),
        vec![(v6, "c1".to_owned())]
    );
    assert_eq!(Allocations::<Ipv6Addr>::last(&ipam).unwrap(), Some(v6));
    assert_eq!(Allocations::<Ipv4Addr>::last(&ipam).unwrap(), None);
    assert!(ipam.release_ip(v6.into(), "c1").unwrap());
    assert!(!ipam.has_addresses().unwrap());
}
