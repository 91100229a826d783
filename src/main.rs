//! The `nethook` command line: the OCI hook plus tools to manage networks and see
//! endpoints. Errors are one line on stderr and a non-zero exit code.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use nethook::core::{gc, list as view, network as networks};
use nethook::frontend::oci::Stage;
use nethook::frontend::{cni, hook, install};
use nethook::kernel::seam::Host;
use nethook::model::network::{DriverKind, Network};
use nethook::state::{Store, CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR, DEFAULT_RUN_DIR, RUN_DIR_ENV};

#[derive(Parser)]
#[command(
    name = "nethook",
    version,
    about = "Container networking as an OCI hook: bridge, IPAM, nftables NAT"
)]
struct Cli {
    /// Where network definitions live.
    #[arg(long, global = true, env = CONFIG_DIR_ENV, default_value = DEFAULT_CONFIG_DIR)]
    config_dir: PathBuf,
    /// Where runtime state (lock, IPAM, endpoint records) lives; should be on tmpfs.
    #[arg(long, global = true, env = RUN_DIR_ENV, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as an OCI hook: reads the container state JSON on stdin.
    Hook {
        /// Force the stage instead of deriving it from the state's status.
        #[arg(long, value_enum)]
        stage: Option<Stage>,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List endpoints (containers with a nethook network).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Write a Podman hooks.d file (nethook.json) that runs nethook for annotated containers,
    /// and/or install nethook as a CNI plugin.
    Install {
        /// The hooks directory given to `podman --hooks-dir`.
        #[arg(long, required_unless_present = "cni_bin_dir")]
        podman_hooks_dir: Option<PathBuf>,
        /// Install this binary as the CNI plugin DIR/nethook (e.g. /opt/cni/bin).
        #[arg(long)]
        cni_bin_dir: Option<PathBuf>,
        /// Write an example conflist (10-nethook.conflist) here (e.g. /etc/cni/net.d).
        #[arg(long, requires = "cni_bin_dir")]
        cni_conf_dir: Option<PathBuf>,
        /// Run for every container, not only those annotated nethook.network.
        #[arg(long)]
        always: bool,
        /// Hook binary path to register (default: this binary).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Add nethook's createRuntime and poststop hooks to BUNDLE/config.json (runc, crun, youki).
    Inject {
        bundle: PathBuf,
        /// Hook binary path to register (default: this binary).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Remove endpoints whose container is gone and free addresses nobody holds.
    Gc {
        /// Say what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The DNS resolver (`serve`, started by hooks); `start` and `deliver` read JSON on stdin.
    #[command(hide = true)]
    Dns {
        #[arg(default_value = "serve")]
        action: String,
    },
}

#[derive(Subcommand)]
enum NetworkCommand {
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
    },
    /// Give a network (the default one `nethook` included) IPv6: containers started from
    /// now on get an address of each family.
    Update {
        name: String,
        /// IPv6 subnet in CIDR form, e.g. fd00:77::/64.
        #[arg(long, value_name = "PREFIX")]
        subnet6: String,
        /// IPv6 gateway address on the bridge (default: PREFIX::1).
        #[arg(long)]
        gateway6: Option<Ipv6Addr>,
        /// Do not masquerade IPv6 traffic leaving the subnet.
        #[arg(long)]
        no_masquerade6: bool,
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

fn main() -> ExitCode {
    if let Some(store) = plain_hook_invocation() {
        nethook::exit_now(hook::run(&store, None));
    }
    // Runtimes exec a CNI plugin with no arguments; a command line with some is the CLI,
    // even from a shell that happens to export CNI_COMMAND.
    if std::env::var_os("CNI_COMMAND").is_some() && std::env::args_os().len() == 1 {
        nethook::exit_now(cni_plugin());
    }
    let cli = Cli::parse();
    let store = Store::new(cli.config_dir, cli.run_dir);
    let result = match cli.command {
        Command::Hook { stage } => nethook::exit_now(hook::run(&store, stage)),
        Command::Network(cmd) => network(&store, cmd),
        Command::Ls { json } => list(&store, json),
        Command::Gc { dry_run } => run_gc(&store, dry_run),
        Command::Dns { action } => {
            nethook::exit_now(nethook::resolver::command(store.run_dir(), &action))
        }
        Command::Install {
            podman_hooks_dir,
            cni_bin_dir,
            cni_conf_dir,
            always,
            binary,
        } => hook_binary(binary).and_then(|bin| {
            if let Some(dir) = podman_hooks_dir {
                let path = install::install_podman_hook(&dir, &bin, &hook_env(&store), always)?;
                println!("{}", path.display());
            }
            if let Some(dir) = cni_bin_dir {
                let done =
                    install::install_cni(&dir, &bin, cni_conf_dir.as_deref(), &hook_env(&store))?;
                println!("{}", done.plugin.display());
                if let Some((path, written)) = done.conflist {
                    let note = if written { "" } else { " (exists, left as is)" };
                    println!("{}{note}", path.display());
                }
            }
            Ok(())
        }),
        Command::Inject { bundle, binary } => hook_binary(binary).and_then(|bin| {
            let changed = install::inject(&bundle, &bin, &hook_env(&store))?;
            println!(
                "{}: {}",
                bundle.join("config.json").display(),
                if changed {
                    "hooks added"
                } else {
                    "already set"
                }
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nethook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The CNI plugin: reads all of stdin (a runtime may block writing it otherwise) and runs
/// the command `CNI_COMMAND` names.
fn cni_plugin() -> u8 {
    let mut stdin = Vec::new();
    if let Err(e) = io::Read::read_to_end(&mut io::stdin().lock(), &mut stdin) {
        let e = cni::error::CniError::new(
            cni::error::Code::Io,
            format!("reading the network configuration from stdin: {e}"),
        );
        println!("{}", e.to_json(cni::version::NEWEST.as_str()));
        return 1;
    }
    cni::run(&stdin)
}

/// `nethook hook` with no other argument, as every hook file and `inject` write it: the store
/// comes from the same environment variables and defaults clap would use (an empty variable
/// counts as unset here, where clap would refuse it). Building clap's whole command tree
/// costs about 0.2 ms, a noticeable part of a hook's few milliseconds.
fn plain_hook_invocation() -> Option<Store> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "hook" || args.next().is_some() {
        return None;
    }
    let dir = |var: &str, default: &str| match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    };
    Some(Store::new(
        dir(CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR),
        dir(RUN_DIR_ENV, DEFAULT_RUN_DIR),
    ))
}

fn network(store: &Store, cmd: NetworkCommand) -> Result<()> {
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
        } => {
            networks::add_ipv6(
                store,
                &Host::new(),
                &name,
                &subnet6,
                gateway6,
                !no_masquerade6,
            )?;
            say_ipv6_forwarding(store, &name);
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
    if nethook::kernel::sysctl::ipv6_forwarding().unwrap_or(true) {
        return;
    }
    let bridges = nethook::core::recover::own_bridges(store).unwrap_or_default();
    let changed = nethook::kernel::sysctl::ra_interfaces(&bridges);
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

/// Lists the records that can be read; the others get a warning each on stderr (the exit
/// stays 0: the list is right about every record it shows, and `gc` is the repair).
fn list(store: &Store, json: bool) -> Result<()> {
    let endpoints = settled_endpoints(store)?;
    if json {
        let views: Vec<view::EndpointView> = endpoints.iter().map(Into::into).collect();
        print_json(&views)
    } else {
        print!("{}", view::endpoints_table(&endpoints));
        Ok(())
    }
}

/// The endpoint records as they settled (see `list::settled`); each unreadable one gets a
/// warning on stderr.
fn settled_endpoints(store: &Store) -> Result<Vec<nethook::model::endpoint::Endpoint>> {
    let (endpoints, unreadable) = view::settled(store)?;
    for (path, why) in unreadable {
        eprintln!(
            "nethook: warning: skipped endpoint record {}: {why}; `nethook gc` moves it aside",
            path.display()
        );
    }
    Ok(endpoints)
}

fn run_gc(store: &Store, dry_run: bool) -> Result<()> {
    let actions = gc::gc(store, &Host::new(), dry_run)?;
    let prefix = if dry_run { "would " } else { "" };
    for a in &actions {
        println!("{prefix}{a}");
    }
    if actions.is_empty() {
        println!("nothing to collect");
    }
    Ok(())
}

/// The path runtimes should exec: absolute, because hooks run without PATH.
fn hook_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe().context("find this binary's path")?,
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("hook binary {} not found", path.display()))?;
    Ok(path)
}

/// State directories that differ from the defaults travel with the hook as its env.
fn hook_env(store: &Store) -> install::HookEnv {
    let differs = |p: &std::path::Path, default: &str| {
        (p != std::path::Path::new(default)).then(|| p.to_owned())
    };
    install::HookEnv {
        config_dir: differs(store.config_dir(), DEFAULT_CONFIG_DIR),
        run_dir: differs(store.run_dir(), DEFAULT_RUN_DIR),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("write JSON")?;
    writeln!(out).context("write JSON")?;
    Ok(())
}
