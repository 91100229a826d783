//! The fake's service and name pieces answer as the kernel would.

use std::path::Path;

use super::Fake;
use crate::kernel::link::{BridgeSpec, LinkError};
use crate::kernel::rootfs::Written;
use crate::kernel::seam::{ContainerFiles, Links};
use crate::model::mac::Mac;

fn net(s: &str) -> ipnetwork::IpNetwork {
    s.parse().unwrap()
}

#[test]
fn bridge_routes_are_recorded_listed_and_go_with_the_bridge() {
    let k = Fake::new();
    let routes = [net("10.89.0.0/24"), net("fd89::/64")];
    k.ensure_bridge(&BridgeSpec {
        name: "nh0",
        mac: Mac([2, 0, 0, 0, 0, 1]),
        ipv4: None,
        ipv6: None,
        owner_tag: "t",
        routes: &routes,
    })
    .unwrap();
    assert_eq!(
        k.calls(),
        vec!["link.ensure_bridge nh0 routes 10.89.0.0/24,fd89::/64"]
    );
    assert_eq!(k.device_routes("nh0").unwrap(), routes.to_vec());
    k.ensure_device_route("nh0", net("10.90.0.0/24")).unwrap();
    assert!(k.delete_device_route("nh0", net("10.89.0.0/24")).unwrap());
    assert!(!k.delete_device_route("nh0", net("10.89.0.0/24")).unwrap());
    assert_eq!(k.device_routes("nh0").unwrap().len(), 2);
    // Only changes are changes.
    assert_eq!(
        k.changes(),
        vec![
            "link.ensure_bridge",
            "link.ensure_device_route",
            "link.delete_device_route",
            "link.delete_device_route"
        ]
    );
    k.remove_link("nh0");
    assert_eq!(k.device_routes("nh0").unwrap(), vec![]);
    let err: LinkError = k
        .ensure_device_route("nh0", net("10.89.0.0/24"))
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENODEV));
}

#[test]
fn a_port_reads_as_hairpin_on_until_set_off() {
    let k = Fake::new();
    assert_eq!(k.hairpin("nh-a").unwrap(), None);
    k.add_link("nh-a");
    assert_eq!(k.hairpin("nh-a").unwrap(), Some(true));
    k.set_hairpin("nh-a", false).unwrap();
    assert_eq!(k.hairpin("nh-a").unwrap(), Some(false));
    k.fail("link.set_hairpin nh-a on", libc::EPERM);
    assert!(k.set_hairpin("nh-a", true).is_err());
    assert!(k.set_hairpin("nh-b", true).is_err());
}

#[test]
fn container_files_are_written_unless_the_root_holds_a_link_or_mount_there() {
    let k = Fake::new();
    let (root, rel) = (Path::new("/b/rootfs"), Path::new("etc/resolv.conf"));
    assert_eq!(
        k.write_container_file(7, root, rel, b"ns").unwrap(),
        Written::Wrote
    );
    assert_eq!(
        k.container_file("/b/rootfs", "etc/resolv.conf"),
        Some(b"ns".to_vec())
    );
    k.set_container_file("/b/other", "etc/resolv.conf", Written::MountPoint);
    assert_eq!(
        k.write_container_file(7, Path::new("/b/other"), rel, b"ns")
            .unwrap(),
        Written::MountPoint
    );
    assert_eq!(k.container_file("/b/other", "etc/resolv.conf"), None);
    k.fail("file.write", libc::EROFS);
    assert!(k.write_container_file(7, root, rel, b"ns").is_err());
    assert_eq!(
        k.calls()[0],
        "file.write 7 /b/rootfs/etc/resolv.conf 2 bytes"
    );
}
