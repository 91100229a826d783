//! `nethook network ...`: the command line of network definitions (main.rs only routes to
//! them).

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::print_json;
use clap::Subcommand;

use crate::core::network_update::{self, Changes};
use crate::core::{list as view, network as networks};
use crate::kernel::seam::Host;
use crate::model::network::{DriverKind, Network};
use crate::state::Store;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Define a network.
    Create {
        name: String,
        /// IPv4 subnet in CIDR form, e.g. 10.88.0.0/24 (give it, --subnet6, or both).
        #[arg(long, required_unless_present = "subnet6")]
        subnet: Option<String>,
        /// Gateway address on the bridge (default: the first host address).
        #[arg(long, requires = "subnet")]
        gateway: Option<Ipv4Addr>,
        /// IPv6 subnet in CIDR form, e.g. fd00:88::/64: with --subnet a dual-stack network,
        /// alone an IPv6-only one.
        #[arg(long, value_name = "PREFIX")]
        subnet6: Option<String>,
        /// IPv6 gateway address on the bridge (default: PREFIX::1).
        #[arg(long, requires = "subnet6")]
        gateway6: Option<Ipv6Addr>,
        /// Do not masquerade IPv6 traffic leaving the subnet (for a prefix the host's
        /// upstream routes to it).
        #[arg(long, requires = "subnet6")]
        no_masquerade6: bool,
        /// Bridge name (default: nh-<name>).
        #[arg(long)]
        bridge: Option<String>,
        /// Do not masquerade traffic leaving the subnet.
        #[arg(long)]
        no_masquerade: bool,
        /// Keep the containers' source address for traffic to CIDR (repeatable), e.g. the
        /// cluster CIDR whose node subnets are routed between hosts.
        #[arg(long = "no-masquerade-to", value_name = "CIDR")]
        no_masquerade_to: Vec<String>,
        /// Let containers send any ethertype (LLDP, STP, ...), not only IPv4 and ARP.
        #[arg(long)]
        any_ethertype: bool,
        /// bridge (a Linux bridge, the default), routed (no bridge: a /32 route per
        /// container) or macvlan (containers join the LAN of --parent).
        #[arg(long, default_value = "bridge", value_name = "DRIVER")]
        driver: DriverKind,
        /// The host interface whose LAN macvlan containers join.
        #[arg(long, value_name = "IFACE")]
        parent: Option<String>,
        /// Hand out addresses only from CIDR, inside the subnet (a macvlan network's subnet
        /// is the LAN's: leave out its router, other hosts and DHCP pool).
        #[arg(long = "ip-range", value_name = "CIDR")]
        ip_range: Option<String>,
        /// Run a resolver at the gateway: containers find each other (and services) by
        /// name, other names are forwarded to the host's resolvers.
        #[arg(long)]
        dns: bool,
        /// Where services' virtual IPs come from (one per family, outside the subnet);
        /// default: a free /24 of 10.78.0.0/16 (and /112 of fd96::/48) at the first service.
        #[arg(long = "service-range", value_name = "CIDR")]
        service_ranges: Vec<String>,
    },
    /// Change a network (the default one `nethook` included): give it IPv6 (containers
    /// started from now on get an address of each family), turn its resolver on or off, set
    /// its service range.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["subnet6", "dns", "service_ranges"])))]
    Update {
        name: String,
        /// IPv6 subnet in CIDR form, e.g. fd00:77::/64.
        #[arg(long, value_name = "PREFIX")]
        subnet6: Option<String>,
        /// IPv6 gateway address on the bridge (default: PREFIX::1).
        #[arg(long, requires = "subnet6")]
        gateway6: Option<Ipv6Addr>,
        /// Do not masquerade IPv6 traffic leaving the subnet.
        #[arg(long, requires = "subnet6")]
        no_masquerade6: bool,
        /// The resolver at the gateway: on or off.
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        dns: Option<bool>,
        /// Where services' virtual IPs come from (one per family); only while the network
        /// has no service.
        #[arg(long = "service-range", value_name = "CIDR")]
        service_ranges: Vec<String>,
    },
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one network as JSON.
    Inspect { name: String },
    /// Delete a network that no endpoint uses, and its bridge.
    Rm { name: String },
}

pub fn run(store: &Store, cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create {
            name,
            subnet,
            gateway,
            subnet6,
            gateway6,
            no_masquerade6,
            bridge,
            no_masquerade,
            no_masquerade_to,
            any_ethertype,
            driver,
            parent,
            ip_range,
            dns,
            service_ranges,
        } => {
            let mut net = Network::named(&name, bridge.as_deref())?;
            if let Some(subnet) = &subnet {
                net.set_ipv4(subnet, gateway, !no_masquerade)?;
            }
            if let Some(subnet6) = &subnet6 {
                net.set_ipv6(subnet6, gateway6, !no_masquerade6)?;
            }
            net.ethertype_filter = !any_ethertype;
            net.set_no_masquerade_to(&no_masquerade_to)?;
            net.set_driver(
                driver,
                parent.as_deref(),
                gateway.is_some(),
                bridge.is_some(),
            )?;
            if let Some(range) = &ip_range {
                net.set_ip_range(range)?;
            }
            net.set_dns(dns)?;
            for r in &service_ranges {
                net.set_service_range(r)?;
            }
            networks::create(store, &Host::new(), &net)?;
            if net.ipv6.is_some() {
                say_ipv6_forwarding(store, &net.name);
            }
            println!("{}", net.name);
        }
        NetworkCommand::Update {
            name,
            subnet6,
            gateway6,
            no_masquerade6,
            dns,
            service_ranges,
        } => {
            if let Some(subnet6) = subnet6 {
                networks::add_ipv6(
                    store,
                    &Host::new(),
                    &name,
                    &subnet6,
                    gateway6,
                    !no_masquerade6,
                )?;
                say_ipv6_forwarding(store, &name);
            }
            let changes = Changes {
                dns,
                service_ranges,
            };
            if changes.dns.is_some() || !changes.service_ranges.is_empty() {
                network_update::update(store, &Host::new(), &name, &changes)?;
            }
            println!("{name}");
        }
        NetworkCommand::Ls { json } => {
            let endpoints = settled_endpoints(store)?;
            let nets: Vec<(Network, usize)> = store
                .list_networks()?
                .into_iter()
                .map(|n| {
                    let count = endpoints.iter().filter(|e| e.network == n.name).count();
                    (n, count)
                })
                .collect();
            if json {
                let list: Vec<&Network> = nets.iter().map(|(n, _)| n).collect();
                print_json(&list)?;
            } else {
                print!("{}", view::networks_table(&nets));
            }
        }
        NetworkCommand::Inspect { name } => {
            // As the file has it, and the driver even where the file leaves it out (bridge).
            let net = store.load_network(&name)?;
            let mut shown = serde_json::to_value(&net)?;
            if let Some(fields) = shown.as_object_mut() {
                fields.insert("driver".into(), net.driver.name().into());
            }
            print_json(&shown)?;
        }
        NetworkCommand::Rm { name } => {
            let removed = networks::remove(store, &Host::new(), &name)?;
            if let Some(bridge) = removed.foreign_bridge {
                eprintln!(
                    "nethook: {bridge} was not made by nethook for network {name} (no alias nethook-network:{name}): left alone"
                );
            }
            println!("{name}");
        }
    }
    Ok(())
}

/// Before it happens: the first container of a network with IPv6 turns IPv6 forwarding on,
/// and what that changes (see `recover::ensure_forwarding6`).
fn say_ipv6_forwarding(store: &Store, network: &str) {
    if crate::kernel::sysctl::ipv6_forwarding().unwrap_or(true) {
        return;
    }
    let bridges = crate::core::recover::own_bridges(store).unwrap_or_default();
    let changed = crate::kernel::sysctl::ra_interfaces(&bridges);
    let what = if changed.is_empty() {
        "; no interface takes router advertisements with accept_ra=1, so none needs changing"
            .to_owned()
    } else {
        format!(
            " after setting accept_ra=2 on {}, so they keep their default routes from router advertisements",
            changed.join(", ")
        )
    };
    eprintln!("nethook: IPv6 forwarding is off; the first container on {network} turns it on (net.ipv6.conf.all.forwarding=1){what}");
}

/// The endpoint records as they settled (see `list::settled`); each unreadable one gets a
/// warning on stderr.
pub fn settled_endpoints(store: &Store) -> Result<Vec<crate::model::endpoint::Endpoint>> {
    let (endpoints, unreadable) = view::settled(store)?;
    for (path, why) in unreadable {
        eprintln!(
            "nethook: warning: skipped endpoint record {}: {why}; `nethook gc` moves it aside",
            path.display()
        );
    }
    Ok(endpoints)
}

fn parse_on_off(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}
