//! Issue 17, the state side: the socket keeper trusts only its own user and holds no lock
//! (defect 6), state directories other users could write are refused (7, first half),
//! unreadable records and cursors are quarantined and repaired (8), and a FIFO in place of
//! a bundle's config.json is refused instead of blocking the hook (9).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

// ---- defect 6: the socket keeper --------------------------------------------------

/// Connects to the keeper (at the run directory's socket, or at the abstract name older
/// versions used) and hands it the descriptor of argv[2]'s file, or of a new pipe's write
/// end when argv[2] is "pipe". Prints "sent <what>" or "refused <why>". With argv[3] =
/// "loop" it says "ready", then keeps handing /dev/null over every 5 ms, to keep a keeper
/// alive, until killed.
const HANDER: &str = r#"import os,socket,sys,time
addrs=[sys.argv[1]+'/netfilter-release','\0nethook/netfilter-release']
def hand(fd):
    err=None
    for a in addrs:
        s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)
        try:
            s.connect(a)
            socket.send_fds(s,[b'x'],[fd])
            return None
        except OSError as e:
            err=e
        finally:
            s.close()
    return err
if len(sys.argv)>3:
    fd=os.open('/dev/null',os.O_RDONLY)
    print('ready',flush=True)
    while True:
        hand(fd);time.sleep(0.005)
if sys.argv[2]=='pipe':
    r,w=os.pipe();what='pipe:[%d]'%os.fstat(w).st_ino
else:
    w=os.open(sys.argv[2],os.O_RDONLY);what=sys.argv[2]
err=hand(w)
print('refused %s'%err if err else 'sent %s'%what)"#;

/// `python -c HANDER args`, run through `prefix` (e.g. setpriv and its options) if any.
/// A python every user may run, quick to start.
const PYTHON: &str = "/usr/bin/python3";

fn hander(prefix: &[&str], python: &str, args: &[&str]) -> Command {
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(python);
            c
        }
        None => Command::new(python),
    };
    c.arg("-c").arg(HANDER).args(args);
    c
}

/// The pid of the process listening on a keeper socket in this netns, if one is.
fn keeper_pid() -> Option<u32> {
    let unix = std::fs::read_to_string("/proc/net/unix").ok()?;
    // Num RefCount Protocol Flags Type St Inode Path; listening: flags 00010000.
    let inodes: Vec<String> = unix
        .lines()
        .filter(|l| l.contains("netfilter-release"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[3] == "00010000").then(|| f[6].to_owned())
        })
        .collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fd_targets(pid)
            .iter()
            .any(|t| inodes.iter().any(|i| *t == format!("socket:[{i}]")))
        {
            return Some(pid);
        }
    }
    None
}

fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_socket_keeper_takes_sockets_only_from_its_own_user_and_holds_no_lock() {
    sandbox!(
        "the_socket_keeper_takes_sockets_only_from_its_own_user_and_holds_no_lock",
        {
            if !needs("setpriv && test -x /usr/bin/python3") {
                return;
            }
            let nh = Nethook::new("keeper");
            let run = nh.run_dir().display().to_string();
            // Keeps any keeper alive once it is there (as root: the hooks' own user). Running
            // before the first keeper starts, as that one goes once no hook came for 50 ms.
            let mut feeder = Server(
                hander(&[], PYTHON, &[&run, "/dev/null", "loop"])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let mut ready = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(feeder.0.stdout.as_mut().unwrap()),
                &mut ready,
            )
            .unwrap();
            assert_eq!(ready.trim(), "ready");
            let c = FakeContainer::start("keeper-ctr");
            // A setup's netfilter sockets go to a keeper when the hook exits.
            nh.setup(&c, &[("nethook.ports", "18300:80")]);
            let mut pid = None;
            wait_until(10, "a keeper to listen", || {
                pid = keeper_pid();
                pid.is_some()
            });
            let pid = pid.unwrap();

            // Another user, plainly, and with the power to pass the run directory's permissions:
            // neither gets a descriptor into the keeper.
            let nobody = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ];
            let nobody_dac = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+dac_override,+dac_read_search",
                "--ambient-caps=+dac_override,+dac_read_search",
            ];
            for (who, prefix) in [
                ("nobody", &nobody[..]),
                ("nobody with CAP_DAC_OVERRIDE", &nobody_dac[..]),
            ] {
                let out = hander(prefix, PYTHON, &[&run, "pipe"]).output().unwrap();
                let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                assert!(
                    out.status.success(),
                    "{who}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                // Then the hooks' user hands over a marker: once the keeper holds it, it has
                // dealt with every connection before it.
                let marker = nh.dirs.0.join(format!("marker-{}", who.len()));
                std::fs::write(&marker, "").unwrap();
                let marker = marker.display().to_string();
                let out = hander(&[], PYTHON, &[&run, &marker]).output().unwrap();
                assert!(
                    String::from_utf8_lossy(&out.stdout).starts_with("sent"),
                    "root's hand-over after {who}'s ({said}): {out:?}; keeper {pid} alive: {}; {}",
                    Path::new(&format!("/proc/{pid}")).exists(),
                    sh(&format!(
                        "grep -c . /proc/net/unix; ls -la {}",
                        nh.run_dir().display()
                    ))
                );
                wait_until(5, "the keeper to take root's marker", || {
                    fd_targets(pid).contains(&marker)
                });
                if let Some(pipe) = said.strip_prefix("sent ") {
                    assert!(
                        !fd_targets(pid).iter().any(|t| t == pipe),
                        "the keeper took {who}'s descriptor {pipe}"
                    );
                }
            }
            nh.teardown(&c);
        }
    );
}

// ---- defect 7: state directories other users could write -------------------------

/// A record as setup writes it, naming `host_interface`.
fn record(id: &str, host_interface: &str) -> String {
    serde_json::json!({
        "id": id, "network": "nethook", "bridge": "nethook0", "interface": "eth0",
        "host_interface": host_interface, "mac": "02:00:00:00:00:01",
        "ipv4": {"address": "10.77.0.9", "prefix": 24, "gateway": "10.77.0.1"},
        "ports": []
    })
    .to_string()
}

#[test]
fn a_run_directory_other_users_could_write_is_refused_by_every_command() {
    sandbox!(
        "a_run_directory_other_users_could_write_is_refused_by_every_command",
        {
            let nh = Nethook::new("unsafe-run");
            let run = nh.run_dir();
            std::fs::create_dir_all(run.join("endpoints")).unwrap();
            // A link that is not nethook's, and a record forged to name it.
            sh("ip link add victim0 type veth peer name victim1");
            std::fs::write(
                run.join("endpoints/forged.json"),
                record("forged", "victim0"),
            )
            .unwrap();
            let c = FakeContainer::start("forged");
            let other = FakeContainer::start("bystander");
            for (how, fix) in [
                ("chmod 0777 {0}", "chmod 0700"),
                ("chmod 0700 {0} && chown 65534 {0}", "chown root"),
            ] {
                sh(&format!(
                    "chown -R 0:0 {0} && chmod 0700 {0}",
                    run.display()
                ));
                sh(&how.replace("{0}", &run.display().to_string()));
                let refused = |what: &str, ok: bool, err: &str| {
                    assert!(!ok, "{how}: {what} was not refused");
                    assert!(
                        err.contains(&run.display().to_string()) && err.contains(fix),
                        "{how}: {what}: {err}"
                    );
                    assert_eq!(
                        err.trim_end().lines().count(),
                        1,
                        "{how}: {what}: not one line: {err}"
                    );
                };
                let out = nh.hook(&c.state("stopped", &[]));
                refused(
                    "poststop",
                    out.status.success(),
                    &String::from_utf8_lossy(&out.stderr),
                );
                assert!(
                    sh_ok("ip link show victim0"),
                    "{how}: teardown deleted the link a forged record named"
                );
                let out = nh.hook(&other.state("creating", &[]));
                refused(
                    "setup",
                    out.status.success(),
                    &String::from_utf8_lossy(&out.stderr),
                );
                for cmd in [&["ls"][..], &["gc"], &["gc", "--dry-run"]] {
                    let (ok, _, err) = nh.cli(cmd);
                    refused(&cmd.join(" "), ok, &err);
                }
                assert!(
                    sh_ok("ip link show victim0"),
                    "{how}: the forged record's link is gone"
                );
                assert!(run.join("endpoints/forged.json").exists());
            }
            // Made safe again, everything works.
            sh(&format!(
                "chown 0:0 {0} && chmod 0700 {0} && rm {0}/endpoints/forged.json",
                run.display()
            ));
            nh.setup(&other, &[]);
            nh.teardown(&other);
        }
    );
}

// ---- defect 8: unreadable records and cursors --------------------------------------

fn quarantined(nh: &Nethook) -> Vec<String> {
    std::fs::read_dir(nh.run_dir().join("quarantine"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn truncate(path: &Path) {
    let text = std::fs::read(path).unwrap();
    std::fs::write(path, &text[..text.len() / 2]).unwrap();
}

#[test]
fn gc_quarantines_unreadable_records_and_repairs_a_bad_cursor() {
    sandbox!(
        "gc_quarantines_unreadable_records_and_repairs_a_bad_cursor",
        {
            let nh = Nethook::new("repair");
            let (a, b) = (
                FakeContainer::start("ok-ctr"),
                FakeContainer::start("cut-ctr"),
            );
            nh.setup(&a, &[]);
            nh.setup(&b, &[]);
            let cut = nh.run_dir().join("endpoints/cut-ctr.json");
            truncate(&cut);
            let cursor = nh.run_dir().join("ipam/nethook/last");
            std::fs::write(&cursor, "banana\n").unwrap();

            // ls lists the readable records and warns about the other.
            let (ok, out, err) = nh.cli(&["ls", "--json"]);
            assert!(ok, "ls failed: {err}");
            let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
            assert_eq!(
                listed
                    .iter()
                    .map(|e| e["id"].as_str().unwrap())
                    .collect::<Vec<_>>(),
                ["ok-ctr"]
            );
            assert!(
                err.contains("warning")
                    && err.contains("cut-ctr.json")
                    && err.contains("nethook gc"),
                "{err}"
            );

            // A setup on the network is not blocked by the cursor.
            let c = FakeContainer::start("next-ctr");
            nh.setup(&c, &[]);
            std::fs::write(&cursor, "banana\n").unwrap();

            // gc moves both aside, says so, and frees the address the unreadable record held.
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok, "gc failed: {err}");
            assert!(
                out.contains("quarantine endpoint record") && out.contains("cut-ctr.json"),
                "{out}"
            );
            assert!(
                out.contains("quarantine IPAM file of nethook") && out.contains("last"),
                "{out}"
            );
            assert!(
                out.contains("free address") && out.contains("cut-ctr"),
                "{out}"
            );
            assert!(!cut.exists() && !cursor.exists());
            let moved = quarantined(&nh);
            assert!(
                moved
                    .iter()
                    .any(|n| n.starts_with("endpoints-cut-ctr.json.")),
                "{moved:?}"
            );
            assert!(
                moved.iter().any(|n| n.starts_with("nethook-last.")),
                "{moved:?}"
            );
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(ok && out.contains("nothing to collect"), "{out}{err}");
            let (ok, _, err) = nh.cli(&["ls"]);
            assert!(ok && err.is_empty(), "{err}");

            // The next setup on the network works.
            let d = FakeContainer::start("after-gc");
            nh.setup(&d, &[]);
            for ctr in [&a, &c, &d] {
                nh.teardown(ctr);
            }
        }
    );
}

#[test]
fn poststop_of_a_container_whose_record_is_unreadable_moves_it_aside_and_says_so() {
    sandbox!(
        "poststop_of_a_container_whose_record_is_unreadable_moves_it_aside_and_says_so",
        {
            let nh = Nethook::new("cut-poststop");
            let c = FakeContainer::start("cut-stop");
            nh.setup(&c, &[]);
            let record = nh.run_dir().join("endpoints/cut-stop.json");
            truncate(&record);
            let out = nh.hook(&c.state("stopped", &[]));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains("cut-stop.json")
                    && err.contains("moved it to")
                    && err.contains("nethook gc"),
                "{err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(!record.exists());
            assert!(quarantined(&nh)
                .iter()
                .any(|n| n.starts_with("endpoints-cut-stop.json.")));
            // A second poststop finds nothing to do; gc frees the address.
            nh.teardown(&c);
            let (ok, out, err) = nh.cli(&["gc"]);
            assert!(
                ok && out.contains("free address") && out.contains("cut-stop"),
                "{out}{err}"
            );
            assert_eq!(nh.allocations("nethook"), 0);
        }
    );
}

// ---- defect 9: a FIFO in place of the bundle's config.json -------------------------

#[test]
fn a_fifo_as_the_bundles_config_json_is_refused_without_blocking() {
    sandbox!(
        "a_fifo_as_the_bundles_config_json_is_refused_without_blocking",
        {
            let nh = Nethook::new("fifo");
            let bundle = TempDir::new("fifo-bundle");
            let config: PathBuf = bundle.0.join("config.json");
            sh(&format!("mkfifo {}", config.display()));
            let c = FakeContainer::start("fifo-ctr");
            // No annotations in the state: the hook must read them from the bundle.
            let state = serde_json::json!({
            "ociVersion": "1.0.2", "id": c.id, "status": "creating", "pid": c.pid(), "bundle": bundle.0,
        })
        .to_string();
            let mut child = nh.spawn_hook(&state);
            // Only a guard against hanging the test run, not a measure of the hook's speed.
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("the hook blocked on the FIFO");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(
                err.contains(&config.display().to_string())
                    && err.contains("is not a regular file"),
                "{err}"
            );
            assert_eq!(nh.records(), 0);
        }
    );
}
