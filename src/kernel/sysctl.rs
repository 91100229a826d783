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

/// Turns IPv6 off on a host veth of a network that has no IPv6, so the host gets no
/// link-local address, route or neighbour chatter per container. (Containers' IPv6 is
/// dropped at their bridge port instead; see the bridge table.) Only for names in the
/// hook's own namespace: a `/proc/sys/net` lookup from inside a container's namespace
/// would slow every later lookup on the host. Missing when the kernel has IPv6 disabled
/// altogether: nothing to do then.
pub fn disable_ipv6(ifname: &str) -> Result<bool, SysctlError> {
    match ensure(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1") {
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(false),
        other => other,
    }
}
