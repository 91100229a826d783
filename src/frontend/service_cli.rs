//! `nethook service ...`: the command line of services (the definitions and handlers; main.rs
//! only routes to them).

use std::net::IpAddr;

use anyhow::Result;

use super::print_json;
use clap::Subcommand;

use crate::core::list::services_table;
use crate::core::services::{self, ServiceRequest};
use crate::kernel::seam::Host;
use crate::model::service::{parse_affinity, parse_ports, parse_publish, validate_service_name};
use crate::state::Store;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Define a service: a stable virtual IP whose ports spread new connections over the
    /// containers that join it (annotation nethook.service=NAME).
    Create {
        /// A DNS label: also the service's name in the network's resolver.
        name: String,
        /// The network its members are on (default: nethook).
        #[arg(long, default_value = crate::model::network::DEFAULT_NETWORK)]
        network: String,
        /// PORT[/PROTO][:TARGET], comma-separated or repeated: connections to VIP:PORT go
        /// to a member's TARGET (default: the same port; PROTO default: tcp).
        #[arg(long = "port", value_name = "PORT/PROTO[:TARGET]", required = true)]
        ports: Vec<String>,
        /// The VIP (repeat for one of each family); default: the first free address of the
        /// network's service range.
        #[arg(long = "vip", value_name = "IP")]
        vips: Vec<IpAddr>,
        /// [IP:]HOSTPORT[:PORT][/PROTO]: a host port that reaches the service port PORT,
        /// balanced the same way (repeatable).
        #[arg(long = "publish", value_name = "[IP:]HOSTPORT[:PORT][/PROTO]")]
        publish: Vec<String>,
        /// client-ip: a client keeps its member (for 3 hours without a new connection);
        /// none (default): every new connection picks one at random.
        #[arg(long, value_name = "client-ip|none")]
        affinity: Option<String>,
    },
    /// List services with their VIPs, ports and member count.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one service as JSON, its members included.
    Inspect { name: String },
    /// Remove a service (its members keep running, without it).
    Rm { name: String },
}

#[derive(serde::Serialize)]
struct ServiceView<'a> {
    #[serde(flatten)]
    service: &'a crate::model::service::Service,
    members: Vec<MemberView<'a>>,
}

#[derive(serde::Serialize)]
struct MemberView<'a> {
    slot: usize,
    container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<std::net::Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<std::net::Ipv6Addr>,
}

fn view<'a>(
    s: &'a crate::model::service::Service,
    m: &'a crate::state::Members,
) -> ServiceView<'a> {
    ServiceView {
        service: s,
        members: m
            .0
            .iter()
            .enumerate()
            .map(|(slot, m)| MemberView {
                slot,
                container: &m.key,
                ipv4: m.v4,
                ipv6: m.v6,
            })
            .collect(),
    }
}

pub fn run(store: &Store, cmd: ServiceCommand) -> Result<()> {
    match cmd {
        ServiceCommand::Create {
            name,
            network,
            ports,
            vips,
            publish,
            affinity,
        } => {
            let name = validate_service_name(&name)?;
            let ports = parse_ports(&ports)?;
            let publish = publish
                .iter()
                .map(|p| parse_publish(p, &ports))
                .collect::<Result<Vec<_>, _>>()?;
            let affinity = match affinity {
                Some(a) => parse_affinity(&a)?,
                None => None,
            };
            let req = ServiceRequest {
                name,
                network,
                ports,
                vips,
                publish,
                affinity,
            };
            let created = services::create(store, &Host::new(), &req)?;
            for r in &created.ranges_chosen {
                eprintln!(
                    "nethook: network {} had no service range; it has {r} now (change it with `nethook network update {} --service-range CIDR` while it has no services)",
                    req.network, req.network
                );
            }
            if let Some(s) = created.service {
                let vips: Vec<String> = s.vips().iter().map(|v| v.to_string()).collect();
                println!("{} {}", s.name, vips.join(" "));
            }
        }
        ServiceCommand::Ls { json } => {
            let all = services::list(store)?;
            if json {
                let views: Vec<ServiceView> = all.iter().map(|(s, m)| view(s, m)).collect();
                print_json(&views)?;
            } else {
                print!("{}", services_table(&all));
            }
        }
        ServiceCommand::Inspect { name } => {
            let s = store.service(&name)?;
            let m = store.members(&s.name)?;
            print_json(&view(&s, &m))?;
        }
        ServiceCommand::Rm { name } => {
            if !services::remove(store, &Host::new(), &name)? {
                anyhow::bail!("unknown service {name:?}; see `nethook service ls`");
            }
            println!("{name}");
        }
    }
    Ok(())
}
