//! ADD's result: the attachment's interfaces, address, route and DNS, in the shape of the
//! requested `cniVersion`, appended to a `prevResult` when nethook runs after another
//! plugin, so plugins after it (bandwidth, tuning) see every interface.

use std::net::IpAddr;

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
    /// The container's addresses, IPv4's first: address, prefix length, gateway.
    pub addresses: Vec<(IpAddr, u8, IpAddr)>,
    /// The network's resolver (its gateways) when it has one, and the domain to search.
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl Attached {
    pub fn of(ep: &Endpoint, sandbox: &str) -> Self {
        let v4 = ep.ipv4.map(|v4| {
            let prefix = ep.container_prefix().unwrap_or(v4.prefix);
            (v4.address.into(), prefix, v4.gateway.into())
        });
        let v6 = ep
            .ipv6
            .map(|v6| (v6.address.into(), v6.prefix, v6.gateway.into()));
        Attached {
            host_ifname: ep.host_interface.clone(),
            ifname: ep.interface.clone(),
            mac: ep.mac.to_string(),
            sandbox: sandbox.to_owned(),
            addresses: [v4, v6].into_iter().flatten().collect(),
            nameservers: Vec::new(),
            search: Vec::new(),
        }
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
    for (address, prefix, gateway) in &a.addresses {
        let mut ip = Map::new();
        if version.ips_have_version() {
            let family = if address.is_ipv4() { "4" } else { "6" };
            ip.insert("version".into(), json!(family));
        }
        ip.insert("address".into(), json!(format!("{address}/{prefix}")));
        ip.insert("gateway".into(), json!(gateway.to_string()));
        ip.insert("interface".into(), json!(index));
        ips.push(Value::Object(ip));
        // An earlier plugin's default route stays the container's: a second one would not
        // be what the container has.
        let default = if address.is_ipv4() {
            "0.0.0.0/0"
        } else {
            "::/0"
        };
        let has_default = routes
            .iter()
            .any(|r| r.get("dst").and_then(Value::as_str) == Some(default));
        if !has_default {
            routes.push(json!({ "dst": default, "gw": gateway.to_string() }));
        }
    }
    // An earlier plugin's DNS stays; else nethook's resolver when the network has one.
    let dns = match prev.and_then(|p| p.get("dns")) {
        Some(d) if d.as_object().is_some_and(|o| !o.is_empty()) => d.clone(),
        _ if !a.nameservers.is_empty() => json!({
            "nameservers": a.nameservers.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "search": a.search,
        }),
        _ => json!({}),
    };
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
