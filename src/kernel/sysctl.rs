//! Kernel settings by writing `/proc/sys` directly (no `sysctl` binary in hooks), and
//! only when the value differs, so the common path is one read.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot set {path} to {value}")]
pub struct SysctlError {
    pub path: PathBuf,
    pub value: String,
    #[source]
    pub source: io::Error,
}

/// Sets `/proc/sys/<key>` (key with '/' separators) to `value` when it differs.
pub fn ensure(key: &str, value: &str) -> Result<bool, SysctlError> {
    let path = PathBuf::from("/proc/sys").join(key);
    let err = |source| SysctlError {
        path: path.clone(),
        value: value.to_owned(),
        source,
    };
    if read(&path).map_err(err)? == value {
        return Ok(false);
    }
    fs::write(&path, value).map_err(err)?;
    Ok(true)
}

/// A setting's current value, without the trailing newline.
fn read(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// Whether the host forwards IPv4 (one read; read before turning it on, hence the error).
pub fn ip_forwarding() -> Result<bool, SysctlError> {
    let path = PathBuf::from("/proc/sys").join(IP_FORWARD);
    match read(&path) {
        Ok(v) => Ok(v != "0"),
        Err(source) => Err(SysctlError {
            path,
            value: "1".into(),
            source,
        }),
    }
}

/// Turns IPv4 forwarding on. Callers guard the forward hook first (see `recover`): the
/// host must not start routing between its other interfaces.
pub fn enable_ip_forwarding() -> Result<bool, SysctlError> {
    ensure(IP_FORWARD, "1")
}

/// Lets DNAT to a container work for connections to 127.0.0.1 (the firewall drops
/// 127.0.0.0/8 arriving on any other interface, so this opens nothing to the LAN), or
/// turns that off again. Set only on bridges with a 127.0.0.1 publish: should the guard
/// rule be flushed by another tool, only those bridges' containers could reach the host's
/// loopback services. A bridge that is gone has nothing to change.
pub fn route_localnet(bridge: &str, on: bool) -> Result<bool, SysctlError> {
    let key = route_localnet_key(bridge);
    match ensure(&key, if on { "1" } else { "0" }) {
        Err(e) if !on && e.source.kind() == io::ErrorKind::NotFound => Ok(false),
        other => other,
    }
}

/// Is `route_localnet` on for the bridge (false when there is no such bridge)?
pub fn route_localnet_on(bridge: &str) -> bool {
    read(&Path::new("/proc/sys").join(route_localnet_key(bridge))).is_ok_and(|v| v == "1")
}

fn route_localnet_key(bridge: &str) -> String {
    format!("net/ipv4/conf/{bridge}/route_localnet")
}

/// Turns IPv6 off on a host veth, so the host gets no link-local address, route or
/// neighbour chatter per container. A bridge port needs no IPv6 of its own to forward a
/// dual-stack container's IPv6 frames: the bridge (which has IPv6) is the host's end of
/// the network. (Containers of a network without IPv6 have their IPv6 dropped at their
/// bridge port; see the bridge table.) Only for names in the
/// hook's own namespace: a `/proc/sys/net` lookup from inside a container's namespace
/// would slow every later lookup on the host. Missing when the kernel has IPv6 disabled
/// altogether: nothing to do then.
pub fn disable_ipv6(ifname: &str) -> Result<bool, SysctlError> {
    match ensure(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1") {
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(false),
        other => other,
    }
}

const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// Whether the host forwards IPv6 (`net.ipv6.conf.all.forwarding`). A kernel with no IPv6
/// forwards none, and cannot be made to: an error then, as for a failed read.
pub fn ipv6_forwarding() -> Result<bool, SysctlError> {
    let path = Path::new(IPV6_CONF).join("all/forwarding");
    match read(&path) {
        Ok(v) => Ok(v != "0"),
        Err(source) => Err(SysctlError {
            path,
            value: "1".into(),
            source,
        }),
    }
}

/// Turns IPv6 forwarding on without costing the host its default route, and returns the
/// interfaces whose `accept_ra` it changed (empty when forwarding was on already, or when
/// no interface took router advertisements).
///
/// Why: turning `all.forwarding` on makes the kernel delete, at once, every default route
/// it learned from a router advertisement on an interface whose `accept_ra` is not 2, and
/// ignore later advertisements there: a host that takes its IPv6 default route from RAs
/// loses it for good (h21 §3, `rt6_purge_dflt_routers`; Docker has this bug, moby#43466).
/// `accept_ra=2` means "accept them even when forwarding". So first every interface with
/// `accept_ra=1` gets 2 (0 and 2 need nothing), then forwarding goes on. Left out: `all`,
/// `default` (raising it would make nethook's future bridges take RAs), `lo`, nethook's
/// bridges (`bridges`) and veths (`nh…`, `nr…`), which must not take RAs at all.
///
/// Callers guard the forward hook first, as for IPv4. Should a write fail halfway, the
/// interfaces set to 2 so far behave as before (with forwarding off, 2 acts as 1).
pub fn enable_ipv6_forwarding(bridges: &[String]) -> Result<Vec<String>, SysctlError> {
    enable_ipv6_forwarding_in(Path::new(IPV6_CONF), bridges)
}

/// `enable_ipv6_forwarding` on a `net/ipv6/conf` directory at `conf` (a test's copy).
pub fn enable_ipv6_forwarding_in(
    conf: &Path,
    bridges: &[String],
) -> Result<Vec<String>, SysctlError> {
    let forwarding = conf.join("all/forwarding");
    let err = |path: &Path, value: &str| {
        let (path, value) = (path.to_owned(), value.to_owned());
        move |source| SysctlError {
            path,
            value,
            source,
        }
    };
    if read(&forwarding).map_err(err(&forwarding, "1"))? != "0" {
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    for name in ra_uplinks_in(conf, bridges).map_err(err(conf, "2"))? {
        let path = conf.join(&name).join("accept_ra");
        match fs::write(&path, "2") {
            Ok(()) => changed.push(name),
            // Gone since the listing: nothing to keep.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path, "2")(e)),
        }
    }
    fs::write(&forwarding, "1").map_err(err(&forwarding, "1"))?;
    Ok(changed)
}

/// The interfaces `enable_ipv6_forwarding` would set `accept_ra=2` on if it ran now, read
/// only: `network create --subnet6` says it beforehand.
pub fn ra_interfaces(bridges: &[String]) -> Vec<String> {
    ra_uplinks_in(Path::new(IPV6_CONF), bridges).unwrap_or_default()
}

/// The entries of the `net/ipv6/conf` directory `conf` that take router advertisements
/// with `accept_ra=1` and are no interface of nethook's (`takes_router_adverts`), sorted.
/// One whose setting cannot be read (gone since the listing) is left out.
fn ra_uplinks_in(conf: &Path, bridges: &[String]) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(conf)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| takes_router_adverts(name, bridges))
        .filter(|name| read(&conf.join(name).join("accept_ra")).is_ok_and(|v| v == "1"))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether the interface `name` (an entry of `net/ipv6/conf`) is one whose RA-learned
/// routes forwarding must keep: a host interface, not a pseudo-entry, loopback or one of
/// nethook's own links.
pub fn takes_router_adverts(name: &str, bridges: &[String]) -> bool {
    !matches!(name, "all" | "default" | "lo")
        && !name.starts_with("nh")
        && !name.starts_with(crate::model::ids::ROUTED_VETH_PREFIX)
        && !bridges.iter().any(|b| b == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("nethook-v6conf-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn conf(tag: &str, entries: &[(&str, &str)], forwarding: &str) -> Dir {
        let dir = Dir::new(tag);
        for name in ["all", "default"] {
            fs::create_dir(dir.path().join(name)).unwrap();
            fs::write(dir.path().join(name).join("accept_ra"), "1\n").unwrap();
        }
        fs::write(dir.path().join("all/forwarding"), format!("{forwarding}\n")).unwrap();
        for (name, accept_ra) in entries {
            fs::create_dir(dir.path().join(name)).unwrap();
            fs::write(
                dir.path().join(name).join("accept_ra"),
                format!("{accept_ra}\n"),
            )
            .unwrap();
        }
        dir
    }

    fn value(dir: &Dir, key: &str) -> String {
        fs::read_to_string(dir.path().join(key))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn uplinks_taking_router_adverts_get_accept_ra_2_before_forwarding_goes_on() {
        let dir = conf(
            "uplinks",
            &[
                ("eth0", "1"),
                ("wlan0", "1"),
                ("eth1", "0"),
                ("vpn0", "2"),
                ("lo", "1"),
                ("nethook0", "1"),
                ("nh37qtfj4jsnhdt", "1"),
                ("nr37qtfj4jsnhdt", "1"),
            ],
            "0",
        );
        let changed = enable_ipv6_forwarding_in(dir.path(), &["nethook0".into()]).unwrap();
        assert_eq!(changed, vec!["eth0", "wlan0"]);
        assert_eq!(value(&dir, "all/forwarding"), "1");
        for (key, want) in [
            ("eth0/accept_ra", "2"),
            ("wlan0/accept_ra", "2"),
            ("eth1/accept_ra", "0"),
            ("vpn0/accept_ra", "2"),
            ("lo/accept_ra", "1"),
            ("nethook0/accept_ra", "1"),
            ("nh37qtfj4jsnhdt/accept_ra", "1"),
            ("nr37qtfj4jsnhdt/accept_ra", "1"),
            ("all/accept_ra", "1"),
            ("default/accept_ra", "1"),
        ] {
            assert_eq!(value(&dir, key), want, "{key}");
        }
    }

    #[test]
    fn forwarding_that_is_on_already_is_left_alone_with_every_accept_ra() {
        let dir = conf("on", &[("eth0", "1")], "1");
        assert!(enable_ipv6_forwarding_in(dir.path(), &[])
            .unwrap()
            .is_empty());
        assert_eq!(value(&dir, "eth0/accept_ra"), "1");
    }

    #[test]
    fn a_host_with_no_interface_taking_router_adverts_only_gets_forwarding() {
        let dir = conf("none", &[("eth0", "0")], "0");
        assert!(enable_ipv6_forwarding_in(dir.path(), &[])
            .unwrap()
            .is_empty());
        assert_eq!(value(&dir, "all/forwarding"), "1");
        assert_eq!(value(&dir, "eth0/accept_ra"), "0");
    }

    #[test]
    fn a_missing_ipv6_tree_is_an_error_naming_the_setting() {
        let dir = Dir::new("missing");
        let e = enable_ipv6_forwarding_in(&dir.path().join("nope"), &[]).unwrap_err();
        assert!(e.to_string().contains("all/forwarding"), "{e}");
    }

    #[test]
    fn only_host_interfaces_are_candidates() {
        let bridges = ["nh-web".to_owned()];
        for name in ["eth0", "wlan0", "enp3s0.100", "br-lan", "nethook0"] {
            assert!(takes_router_adverts(name, &bridges), "{name}");
        }
        for name in [
            "all",
            "default",
            "lo",
            "nh-web",
            "nh37qtfj4jsnhdt",
            "nr37qtfj4jsnhdt",
        ] {
            assert!(!takes_router_adverts(name, &bridges), "{name}");
        }
    }
}
