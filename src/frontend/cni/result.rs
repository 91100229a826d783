//! ADD's result: the attachment's interfaces, address, route and DNS, in the shape of the
//! requested `cniVersion`, appended to a `prevResult` when nethook runs after another
//! plugin, so plugins after it (bandwidth, tuning) see every interface.

use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use super::version::Version;
use crate::model::endpoint::Endpoint;

/// What ADD made, as the result reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub host_ifname: String,
    pub ifname: String,
    pub mac: String,
    /// CNI_NETNS, as the runtime gave it.
    pub sandbox: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl Attached {
    /// None when the endpoint has no IPv4 side (no version writes one without).
    pub fn of(ep: &Endpoint, sandbox: &str) -> Option<Self> {
        let v4 = ep.ipv4?;
        Some(Attached {
            host_ifname: ep.host_interface.clone(),
            ifname: ep.interface.clone(),
            mac: ep.mac.to_string(),
            sandbox: sandbox.to_owned(),
            address: v4.address,
            prefix: ep.container_prefix().unwrap_or(v4.prefix),
            gateway: v4.gateway,
        })
    }
}

/// The result JSON: `prev`'s interfaces, IPs, routes and DNS first, then nethook's, with
/// the IP's `interface` index pointing at the container interface in the merged list.
pub fn render(version: Version, a: &Attached, prev: Option<&Value>) -> Value {
    let list = |key: &str| -> Vec<Value> {
        prev.and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut routes = list("routes");
    // A macvlan endpoint has no host-side interface.
    if !a.host_ifname.is_empty() {
        interfaces.push(json!({ "name": a.host_ifname }));
    }
    let index = interfaces.len();
    interfaces.push(json!({ "name": a.ifname, "mac": a.mac, "sandbox": a.sandbox }));
    let mut ip = Map::new();
    if version.ips_have_version() {
        ip.insert("version".into(), json!("4"));
    }
    ip.insert(
        "address".into(),
        json!(format!("{}/{}", a.address, a.prefix)),
    );
    ip.insert("gateway".into(), json!(a.gateway.to_string()));
    ip.insert("interface".into(), json!(index));
    ips.push(Value::Object(ip));
    // An earlier plugin's default route stays the container's: a second one would not be
    // what the container has.
    let has_default = routes
        .iter()
        .any(|r| r.get("dst").and_then(Value::as_str) == Some("0.0.0.0/0"));
    if !has_default {
        routes.push(json!({ "dst": "0.0.0.0/0", "gw": a.gateway.to_string() }));
    }
    let dns = prev
        .and_then(|p| p.get("dns"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "cniVersion": version.as_str(),
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

#[cfg(test)]
#[path = "result_tests.rs"]
mod tests;
