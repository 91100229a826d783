//! How state is shown to people (tables) and scripts (JSON).

use std::time::Duration;

use serde::Serialize;

use crate::model::endpoint::Endpoint;
use crate::model::network::Network;
use crate::model::ports::PortSpec;
use crate::state::{Store, StoreError, Unreadable};

/// One row of `nethook ls --json`. Stable field names: scripts depend on them.
#[derive(Debug, Serialize)]
pub struct EndpointView<'a> {
    /// The record's key: a hook's container id, or `CONTAINER@IFNAME` for a CNI attachment.
    pub id: &'a str,
    /// Who made it: "hook" (OCI hook) or "cni" (CNI plugin).
    pub source: &'static str,
    /// The container's id (for a CNI attachment, the part before `@`).
    pub container: &'a str,
    pub network: &'a str,
    pub interface: &'a str,
    pub host_interface: &'a str,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub mac: String,
    pub ports: &'a [PortSpec],
    /// Its DNS name and aliases, and the services it is a member of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub aliases: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub services: &'a [String],
}

impl<'a> From<&'a Endpoint> for EndpointView<'a> {
    fn from(ep: &'a Endpoint) -> Self {
        let (source, container) = match ep.id.attachment_parts() {
            Some((container, _)) => ("cni", container),
            None => ("hook", ep.id.as_str()),
        };
        EndpointView {
            id: ep.id.as_str(),
            source,
            container,
            network: &ep.network,
            interface: &ep.interface,
            host_interface: &ep.host_interface,
            ipv4: ep.ipv4.map(|a| a.address.to_string()),
            ipv6: ep.ipv6.map(|a| a.address.to_string()),
            mac: ep.mac.to_string(),
            ports: &ep.ports,
            name: ep.name.as_deref(),
            aliases: &ep.aliases,
            services: &ep.services,
        }
    }
}

/// Left-aligned columns separated by two spaces, like `ip -br` and `podman ps`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The endpoints as a table; the IPV6 column only when one of them has IPv6, so hosts
/// without IPv6 see the table they always did.
pub fn endpoints_table(endpoints: &[Endpoint]) -> String {
    let with_v6 = endpoints.iter().any(|ep| ep.ipv6.is_some());
    let with_services = endpoints.iter().any(|ep| !ep.services.is_empty());
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|ep| {
            let ports: Vec<String> = ep.ports.iter().map(ToString::to_string).collect();
            let mut row = vec![
                ep.id.to_string(),
                ep.network.clone(),
                ep.ipv4
                    .map(|a| format!("{}/{}", a.address, a.prefix))
                    .unwrap_or_else(|| "-".into()),
            ];
            if with_v6 {
                row.push(
                    ep.ipv6
                        .map(|a| format!("{}/{}", a.address, a.prefix))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            row.extend([
                ep.interface.clone(),
                ep.host_interface.clone(),
                ep.mac.to_string(),
                if ports.is_empty() {
                    "-".into()
                } else {
                    ports.join(",")
                },
            ]);
            if with_services {
                row.push(if ep.services.is_empty() {
                    "-".into()
                } else {
                    ep.services.join(",")
                });
            }
            row
        })
        .collect();
    let mut header = vec!["ID", "NETWORK", "IPV4"];
    if with_v6 {
        header.push("IPV6");
    }
    header.extend(["IFACE", "HOST-IFACE", "MAC", "PORTS"]);
    if with_services {
        header.push("SERVICES");
    }
    table(&header, &rows)
}

/// "yes", "no", or "yes, not to CIDR,..." when the network keeps the source address of
/// traffic to some destinations (a cluster's pod CIDR).
/// A network with IPv6 says IPv6's after IPv4's: "yes; IPv6 no".
fn masquerade_cell(n: &Network) -> String {
    let v4 = if n.ipv4.is_none() {
        None
    } else if !n.masquerades_ipv4() {
        Some("no".to_owned())
    } else if n.no_masquerade_to.is_empty() {
        Some("yes".to_owned())
    } else {
        let cidrs: Vec<String> = n.no_masquerade_to.iter().map(ToString::to_string).collect();
        Some(format!("yes, not to {}", cidrs.join(",")))
    };
    let v6 = n
        .ipv6
        .map(|v6| if v6.masquerade { "IPv6 yes" } else { "IPv6 no" });
    match (v4, v6) {
        (Some(v4), Some(v6)) => format!("{v4}; {v6}"),
        (Some(v4), None) => v4,
        (None, Some(v6)) => v6.to_owned(),
        (None, None) => "-".to_owned(),
    }
}

/// Both families' parts of a column, IPv4's first: "10.88.0.0/24, fd00:88::/64".
fn families(v4: Option<String>, v6: Option<String>) -> String {
    [v4, v6]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The network's own link: its bridge, a macvlan network's parent, "-" for none.
fn link_cell(n: &Network) -> String {
    match (&n.parent, n.bridge.as_str()) {
        (Some(parent), _) => format!("parent {parent}"),
        (None, "") => "-".into(),
        (None, bridge) => bridge.into(),
    }
}

pub fn networks_table(networks: &[(Network, usize)]) -> String {
    let rows: Vec<Vec<String>> = networks
        .iter()
        .map(|(n, count)| {
            vec![
                n.name.clone(),
                n.driver.to_string(),
                link_cell(n),
                families(
                    n.ipv4.map(|v4| v4.subnet.to_string()),
                    n.ipv6.map(|v6| v6.subnet.to_string()),
                ),
                families(
                    n.ipv4.map(|v4| v4.gateway.to_string()),
                    n.ipv6.map(|v6| v6.gateway.to_string()),
                ),
                masquerade_cell(n),
                count.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "DRIVER",
            "LINK",
            "SUBNET",
            "GATEWAY",
            "MASQUERADE",
            "ENDPOINTS",
        ],
        &rows,
    )
}

/// `service ls`: one row per service.
pub fn services_table(
    services: &[(crate::model::service::Service, crate::state::Members)],
) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|(s, m)| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .map(|p| {
                    if p.target == p.port {
                        format!("{}/{}", p.port, p.proto)
                    } else {
                        format!("{}/{}:{}", p.port, p.proto, p.target)
                    }
                })
                .collect();
            let publish: Vec<String> = s
                .publish
                .iter()
                .map(|p| match p.host_ip {
                    Some(std::net::IpAddr::V6(ip)) => {
                        format!("[{ip}]:{}->{}/{}", p.host_port, p.port, p.proto)
                    }
                    Some(ip) => format!("{ip}:{}->{}/{}", p.host_port, p.port, p.proto),
                    None => format!("{}->{}/{}", p.host_port, p.port, p.proto),
                })
                .collect();
            vec![
                s.name.clone(),
                s.network.clone(),
                families(s.vip4.map(|v| v.to_string()), s.vip6.map(|v| v.to_string())),
                ports.join(","),
                if publish.is_empty() {
                    "-".into()
                } else {
                    publish.join(",")
                },
                if s.affinity.is_some() {
                    "client-ip".into()
                } else {
                    "-".into()
                },
                m.0.len().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "NETWORK", "VIP", "PORTS", "PUBLISH", "AFFINITY", "MEMBERS",
        ],
        &rows,
    )
}

/// How long `ls` waits for teardowns finishing in the background (~20–50 ms each).
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// The endpoint records, read under the lock once no teardown is finishing in the
/// background (it holds the attachment's deletion mark until its record is gone), and no
/// setup is half-way (it holds the lock until its endpoint is complete). A user who may
/// read the records but not take the lock still gets them, as they stand. The records that
/// cannot be read come second, with why.
pub fn settled(store: &Store) -> Result<(Vec<Endpoint>, Vec<Unreadable>), StoreError> {
    let _lock = match store.lock_settled(SETTLE_WAIT) {
        Ok(lock) => Some(lock),
        Err(StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    store.list_endpoints_lenient()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masquerade_column_names_the_destinations_it_spares() {
        let mut n = Network::builtin_default();
        assert_eq!(masquerade_cell(&n), "yes");
        n.set_no_masquerade_to(&["10.244.0.0/16", "10.96.0.0/12"])
            .unwrap();
        assert_eq!(
            masquerade_cell(&n),
            "yes, not to 10.244.0.0/16,10.96.0.0/12"
        );
    }

    #[test]
    fn a_dual_stack_network_shows_both_families() {
        let mut n = Network::new("dual", "10.88.0.0/24", None, None, true).unwrap();
        n.set_ipv6("fd00:88::/64", None, false).unwrap();
        assert_eq!(masquerade_cell(&n), "yes; IPv6 no");
        let t = networks_table(&[(n, 0)]);
        assert!(t.contains("10.88.0.0/24, fd00:88::/64"), "{t}");
        assert!(t.contains("10.88.0.1, fd00:88::1"), "{t}");
        let mut six = Network::named("six", None).unwrap();
        six.set_ipv6("fd00:6::/64", None, true).unwrap();
        assert_eq!(masquerade_cell(&six), "IPv6 yes");
    }

    #[test]
    fn table_aligns_columns_and_keeps_the_last_unpadded() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
