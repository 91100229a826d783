//! The control protocol against a stand-in resolver: a datagram socket at RUN/dns/ctl that
//! answers what the test tells it to.

use super::*;
use crate::resolver::{Entry, Zone};

struct Run(PathBuf);

impl Run {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nethook-dnsctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(dir(&p)).unwrap();
        Run(p)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in resolver answering one request with `reply` (none: never answers); returns
/// the request it got.
fn stand_in(run: &Path, reply: Option<&'static str>) -> std::thread::JoinHandle<Request> {
    let sock = UnixDatagram::bind(ctl_path(run)).unwrap();
    std::fs::write(pid_path(run), "4242\n").unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_CONTROL_BYTES];
        let (n, peer) = sock.recv_from(&mut buf).unwrap();
        if let Some(r) = reply {
            sock.send_to(r.as_bytes(), peer.as_pathname().unwrap())
                .unwrap();
        }
        serde_json::from_slice(&buf[..n]).unwrap()
    })
}

fn upsert(n: usize) -> Vec<Update> {
    (0..n)
        .map(|i| Update::Upsert {
            network: "net1".into(),
            entry: Entry {
                key: format!("{i:064x}"),
                names: vec![format!("c{i}")],
                addrs: vec![format!("10.88.{}.{}", i / 250, i % 250 + 2)
                    .parse()
                    .unwrap()],
            },
        })
        .collect()
}

#[test]
fn no_directory_or_no_socket_means_not_running() {
    let run = Run::new("none");
    std::fs::remove_dir_all(dir(&run.0)).unwrap();
    assert_eq!(deliver(&run.0, &upsert(1)).unwrap(), Delivery::NotRunning);
    std::fs::create_dir_all(dir(&run.0)).unwrap();
    assert_eq!(deliver(&run.0, &upsert(1)).unwrap(), Delivery::NotRunning);
}

#[test]
fn a_socket_left_by_a_dead_resolver_means_not_running() {
    let run = Run::new("stale");
    drop(UnixDatagram::bind(ctl_path(&run.0)).unwrap());
    assert!(ctl_path(&run.0).exists());
    assert_eq!(deliver(&run.0, &upsert(1)).unwrap(), Delivery::NotRunning);
}

#[test]
fn ok_means_applied_and_the_updates_arrive_whole() {
    let run = Run::new("ok");
    let server = stand_in(&run.0, Some("ok"));
    let updates = upsert(2000);
    assert_eq!(deliver(&run.0, &updates).unwrap(), Delivery::Applied);
    assert_eq!(server.join().unwrap().updates, updates);
    // The client's own socket is gone again.
    let left: Vec<_> = std::fs::read_dir(dir(&run.0))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn exiting_removes_the_socket_and_pid_file_so_the_next_delivery_starts_fresh() {
    let run = Run::new("exit");
    let server = stand_in(&run.0, Some("exiting"));
    let remove = [Update::DropZone {
        network: "net1".into(),
    }];
    assert_eq!(deliver(&run.0, &remove).unwrap(), Delivery::Exited);
    server.join().unwrap();
    assert!(!ctl_path(&run.0).exists() && !pid_path(&run.0).exists());
    assert_eq!(deliver(&run.0, &remove).unwrap(), Delivery::NotRunning);
}

#[test]
fn a_refusal_is_the_resolvers_line() {
    let run = Run::new("refused");
    let _server = stand_in(
        &run.0,
        Some("error DNS for network net1 needs 10.88.0.1:53/udp, but x"),
    );
    let e = deliver(&run.0, &upsert(1)).unwrap_err();
    assert!(matches!(e, ResolverError::Refused(_)));
    assert_eq!(
        e.to_string(),
        "DNS for network net1 needs 10.88.0.1:53/udp, but x"
    );
}

#[test]
fn a_resolver_that_does_not_answer_is_named_by_its_pid() {
    let run = Run::new("silent");
    let _server = stand_in(&run.0, None);
    let e = deliver(&run.0, &upsert(1)).unwrap_err();
    assert!(e.to_string().contains("pid 4242) did not answer"), "{e}");
}

#[test]
fn updates_too_large_for_one_datagram_are_refused_before_sending() {
    let run = Run::new("large");
    let big = Update::Zone(Zone {
        network: "n".into(),
        listen: vec![],
        clients: vec![],
        entries: vec![Entry {
            key: "k".into(),
            names: vec!["x".repeat(MAX_CONTROL_BYTES)],
            addrs: vec![],
        }],
    });
    assert!(matches!(
        deliver(&run.0, &[big]),
        Err(ResolverError::TooLarge(_))
    ));
}

#[test]
fn a_snapshot_without_entries_starts_nothing() {
    let run = Run::new("empty");
    let snap = Snapshot {
        zones: vec![Zone {
            network: "n".into(),
            listen: vec!["10.88.0.1".parse().unwrap()],
            clients: vec![],
            entries: vec![],
        }],
    };
    start(&run.0, &snap).unwrap();
    assert!(!ctl_path(&run.0).exists());
}

#[test]
fn the_wire_format_of_updates_is_stable_json() {
    let u = Update::Remove {
        network: "net1".into(),
        key: "svc:web".into(),
    };
    assert_eq!(
        serde_json::to_string(&u).unwrap(),
        r#"{"Remove":{"network":"net1","key":"svc:web"}}"#
    );
}
