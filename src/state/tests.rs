//! Tests of the store and its IPAM directories.

use super::*;
use crate::model::ipam::{Allocations, Lease, Subnet};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nethook-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn store(t: &TempDir) -> Store {
    Store::new(t.0.join("etc"), t.0.join("run"))
}

#[test]
fn default_network_exists_without_files() {
    let t = TempDir::new("default");
    let s = store(&t);
    assert_eq!(
        s.load_network("nethook").unwrap(),
        Network::builtin_default()
    );
    assert!(matches!(
        s.load_network("other"),
        Err(StoreError::UnknownNetwork { .. })
    ));
    assert_eq!(s.list_networks().unwrap().len(), 1);
}

#[test]
fn networks_are_created_once_and_removed() {
    let t = TempDir::new("networks");
    let s = store(&t);
    let n = Network::new("blue", "10.90.0.0/24", None, None, true).unwrap();
    s.create_network(&n).unwrap();
    assert!(matches!(
        s.create_network(&n),
        Err(StoreError::NetworkExists { .. })
    ));
    assert_eq!(s.load_network("blue").unwrap(), n);
    assert_eq!(s.list_networks().unwrap().len(), 2);
    assert!(s.remove_network("blue").unwrap());
    assert!(!s.remove_network("blue").unwrap());
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cid(s: &str) -> ContainerId {
    ContainerId::parse(s).unwrap()
}

fn lease(address: &str, advances_cursor: bool) -> Lease {
    Lease {
        address: ip(address),
        advances_cursor,
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

fn write_legacy(s: &Store, text: &str) -> PathBuf {
    let path = s.run_dir().join("ipam").join("nethook.json");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_lease_becomes_an_owner_file_and_moves_the_cursor() {
    let t = TempDir::new("record");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
    let file = s.ipam_dir("nethook").join("10.77.0.2");
    assert_eq!(fs::read_to_string(&file).unwrap(), "a");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&s.ipam_dir("nethook")), 0o700);
    assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("a"));
    assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
    // A static address leaves the cursor where round robin put it.
    ipam.record(&lease("10.77.9.9", false), &cid("b")).unwrap();
    assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
    assert!(ipam.is_taken(ip("10.77.9.9")).unwrap());
    assert!(!ipam.is_taken(ip("10.77.0.3")).unwrap());
}

#[test]
fn choosing_through_the_directory_resumes_after_the_cursor() {
    let t = TempDir::new("choose");
    let s = store(&t);
    let net = Network::builtin_default();
    let ipam = s.ipam("nethook").unwrap();
    for (n, expected) in [("a", "10.77.0.2"), ("b", "10.77.0.3")] {
        let l = crate::model::ipam::choose(&Subnet::of(&net).unwrap(), None, &ipam).unwrap();
        assert_eq!(l.address, ip(expected));
        ipam.record(&l, &cid(n)).unwrap();
    }
    assert!(ipam.release(ip("10.77.0.2"), "a").unwrap());
    assert_eq!(
        crate::model::ipam::choose(&Subnet::of(&net).unwrap(), None, &ipam)
            .unwrap()
            .address,
        ip("10.77.0.4")
    );
    let taken =
        crate::model::ipam::choose(&Subnet::of(&net).unwrap(), Some(ip("10.77.0.3")), &ipam)
            .unwrap_err();
    assert!(taken.to_string().contains("container b"), "{taken}");
}

#[test]
fn an_existing_address_file_is_a_race_not_a_retry() {
    let t = TempDir::new("race");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
    let e = ipam
        .record(&lease("10.77.0.2", true), &cid("b"))
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::AddressRace { source, .. } if source.raw_os_error() == Some(nix::libc::EEXIST)),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("ipam/nethook/10.77.0.2") && e.to_string().contains("bug"),
        "{e}"
    );
    // The first owner keeps it.
    assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("a"));
}

#[test]
fn release_frees_only_the_current_owners_address() {
    let t = TempDir::new("release");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    ipam.record(&lease("10.77.0.2", true), &cid("new")).unwrap();
    assert!(!ipam.release(ip("10.77.0.2"), "old").unwrap());
    assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap().as_deref(), Some("new"));
    assert!(ipam.release(ip("10.77.0.2"), "new").unwrap());
    assert!(!ipam.release(ip("10.77.0.2"), "new").unwrap());
    assert_eq!(ipam.owner(ip("10.77.0.2")).unwrap(), None);
}

#[test]
fn the_cursor_and_temp_files_are_not_addresses() {
    let t = TempDir::new("empty");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    assert!(!ipam.has_addresses().unwrap());
    ipam.record(&lease("10.77.0.2", true), &cid("a")).unwrap();
    fs::write(s.ipam_dir("nethook").join(".last.tmp"), b"10.77.0.2\n").unwrap();
    assert!(ipam.has_addresses().unwrap());
    assert_eq!(
        ipam.allocations().unwrap(),
        vec![(ip("10.77.0.2"), "a".to_owned())]
    );
    assert!(ipam.release(ip("10.77.0.2"), "a").unwrap());
    assert!(!ipam.has_addresses().unwrap());
    assert!(ipam.allocations().unwrap().is_empty());
}

#[test]
fn a_cursor_that_is_not_an_address_restarts_round_robin_and_is_reported_for_gc() {
    let t = TempDir::new("cursor");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    fs::write(s.ipam_dir("nethook").join("last"), b"banana").unwrap();
    // Setup goes on as if there were no cursor ...
    assert_eq!(Allocations::<Ipv4Addr>::last(&ipam).unwrap(), None);
    let l = crate::model::ipam::choose(
        &Subnet::of(&Network::builtin_default()).unwrap(),
        None,
        &ipam,
    )
    .unwrap();
    assert_eq!(l.address, ip("10.77.0.2"));
    // ... and gc is told which file to move aside, and why.
    let bad = s.unreadable_ipam_files("nethook").unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].0.ends_with("ipam/nethook/last") && bad[0].1.contains("not an IPv4 address"),
        "{bad:?}"
    );
    // The next lease writes a good cursor.
    ipam.record(&l, &cid("a")).unwrap();
    assert!(s.unreadable_ipam_files("nethook").unwrap().is_empty());
}

#[test]
fn unreadable_records_are_listed_apart_and_quarantined() {
    let t = TempDir::new("lenient");
    let s = store(&t);
    s.save_endpoint(&serde_json::from_str(&sample_record("good", 2)).unwrap())
        .unwrap();
    let truncated = s.endpoint_path(&cid("cut"));
    fs::write(&truncated, &sample_record("cut", 3)[..40]).unwrap();
    let fifo = s.endpoint_path(&cid("fifo"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(s.list_endpoints().is_err());
    let (good, bad) = s.list_endpoints_lenient().unwrap();
    assert_eq!(
        good.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(
        bad.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        [truncated.clone(), fifo.clone()]
    );
    assert!(
        bad[0].1.contains("not a valid record") && bad[1].1.contains("not a regular file"),
        "{bad:?}"
    );
    for (path, _) in &bad {
        let to = s.quarantine(path).unwrap();
        assert!(!path_exists(path) && path_exists(&to), "{}", to.display());
        assert!(to.starts_with(s.quarantine_dir()), "{}", to.display());
        assert!(
            to.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("endpoints-"),
            "{}",
            to.display()
        );
    }
    assert_eq!(s.list_endpoints().unwrap().len(), 1);
    assert_eq!(mode(&s.quarantine_dir()), 0o700);
}

#[test]
fn a_fifo_in_place_of_a_state_file_is_refused_without_blocking() {
    let t = TempDir::new("fifo");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    nix::unistd::mkfifo(
        &s.ipam_dir("nethook").join("10.77.0.2"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let e = ipam.owner(ip("10.77.0.2")).unwrap_err();
    assert!(
        matches!(e, StoreError::NotRegular { .. }) && e.to_string().contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn directories_and_files_other_users_could_write_are_refused() {
    let t = TempDir::new("unsafe");
    let s = store(&t);
    drop(s.lock().unwrap());
    assert_eq!(mode(s.run_dir()), 0o700);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(s.run_dir(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = s.lock().err().unwrap();
    assert!(matches!(e, StoreError::Unsafe { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("writable by every user") && text.contains("chmod 0700"),
        "{text}"
    );
    assert!(
        s.list_endpoints_lenient().is_ok(),
        "no endpoints directory yet"
    );
    fs::set_permissions(s.run_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    drop(s.lock().unwrap());
    // A group-writable record is refused, and is one gc may move aside.
    s.save_endpoint(&serde_json::from_str(&sample_record("g", 2)).unwrap())
        .unwrap();
    fs::set_permissions(
        s.endpoint_path(&cid("g")),
        fs::Permissions::from_mode(0o620),
    )
    .unwrap();
    let e = s.load_endpoint(&cid("g")).unwrap_err();
    assert!(
        e.to_string().contains("writable by its group") && e.unreadable_file().is_some(),
        "{e}"
    );
    // The endpoints directory itself: refused when listed.
    fs::set_permissions(
        s.endpoint_path(&cid("g")),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(
        s.run_dir().join("endpoints"),
        fs::Permissions::from_mode(0o733),
    )
    .unwrap();
    let e = s.list_endpoints_lenient().unwrap_err();
    assert!(
        e.to_string().contains("endpoints") && e.unreadable_file().is_none(),
        "{e}"
    );
}

fn sample_record(id: &str, last: u8) -> String {
    serde_json::json!({
        "id": id, "network": "nethook", "bridge": "nethook0", "interface": "eth0",
        "host_interface": "nh000000000001", "mac": "02:00:00:00:00:01",
        "ipv4": {"address": format!("10.77.0.{last}"), "prefix": 24, "gateway": "10.77.0.1"},
        "ports": [], "netns": null
    })
    .to_string()
}

fn path_exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[test]
fn the_single_file_of_older_versions_is_converted_once() {
    let t = TempDir::new("upgrade");
    let s = store(&t);
    let legacy = write_legacy(
        &s,
        r#"{"allocations": {"10.77.0.2": "a", "10.77.0.7": "b"}, "last": "10.77.0.7"}"#,
    );
    // Dry runs see the old allocations without converting them.
    assert_eq!(s.list_allocations("nethook").unwrap().len(), 2);
    assert!(legacy.exists());
    let ipam = s.ipam("nethook").unwrap();
    assert!(!legacy.exists());
    assert_eq!(
        ipam.allocations().unwrap(),
        vec![
            (ip("10.77.0.2"), "a".to_owned()),
            (ip("10.77.0.7"), "b".to_owned())
        ]
    );
    assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.7")));
    assert_eq!(mode(&s.ipam_dir("nethook").join("10.77.0.2")), 0o600);
    // Allocation continues where the old file left off.
    let next = crate::model::ipam::choose(
        &Subnet::of(&Network::builtin_default()).unwrap(),
        None,
        &ipam,
    )
    .unwrap();
    assert_eq!(next.address, ip("10.77.0.8"));
    ipam.record(&next, &cid("c")).unwrap();
    // Later loads find nothing to convert and change nothing.
    let again = s.ipam("nethook").unwrap();
    assert_eq!(again.allocations().unwrap().len(), 3);
    assert_eq!(again.last().unwrap(), Some(ip("10.77.0.8")));
}

#[test]
fn a_conversion_cut_short_is_finished_without_overwriting() {
    let t = TempDir::new("upgrade-resume");
    let s = store(&t);
    // A crash after some files were written but before the old file was removed; since
    // then the directory moved on (.2 freed and given to c, cursor past it).
    let ipam = s.ipam("nethook").unwrap();
    ipam.record(&lease("10.77.0.2", true), &cid("c")).unwrap();
    write_legacy(
        &s,
        r#"{"allocations": {"10.77.0.2": "a", "10.77.0.3": "b"}, "last": "10.77.0.3"}"#,
    );
    let ipam = s.ipam("nethook").unwrap();
    assert_eq!(
        ipam.allocations().unwrap(),
        vec![
            (ip("10.77.0.2"), "c".to_owned()),
            (ip("10.77.0.3"), "b".to_owned())
        ]
    );
    assert_eq!(ipam.last().unwrap(), Some(ip("10.77.0.2")));
}

#[test]
fn a_corrupted_old_file_names_the_file() {
    let t = TempDir::new("corrupt");
    let s = store(&t);
    write_legacy(&s, "{\"allocations\": {");
    let e = s.ipam("nethook").unwrap_err().to_string();
    assert!(e.contains("ipam/nethook.json"), "{e}");
}

#[test]
fn symlinked_state_files_are_refused() {
    let t = TempDir::new("symlink");
    let s = store(&t);
    let ipam = s.ipam("nethook").unwrap();
    let target = t.0.join("elsewhere");
    fs::write(&target, b"someone").unwrap();
    std::os::unix::fs::symlink(&target, s.ipam_dir("nethook").join("10.77.0.2")).unwrap();
    assert!(matches!(
        ipam.owner(ip("10.77.0.2")),
        Err(StoreError::NotPlain { .. })
    ));
    assert!(matches!(
        ipam.record(&lease("10.77.0.2", true), &cid("a")),
        Err(StoreError::AddressRace { .. })
    ));
    assert_eq!(fs::read_to_string(&target).unwrap(), "someone");
    std::os::unix::fs::symlink(&target, s.ipam_dir("nethook").join("last")).unwrap();
    assert!(matches!(
        Allocations::<Ipv4Addr>::last(&ipam),
        Err(StoreError::NotPlain { .. })
    ));
    // A network directory that is a symlink is refused before anything is read.
    std::os::unix::fs::symlink(&t.0, s.ipam_dir("other")).unwrap();
    assert!(matches!(s.ipam("other"), Err(StoreError::NotPlain { .. })));
}

#[test]
fn lock_can_be_taken_again_after_release() {
    let t = TempDir::new("lock");
    let s = store(&t);
    drop(s.lock().unwrap());
    drop(s.lock().unwrap());
}
