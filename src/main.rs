//! The `nethook` command line: the OCI hook plus tools to manage networks and see
//! endpoints. Errors are one line on stderr and a non-zero exit code.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use nethook::core::{gc, list as view};
use nethook::frontend::network_cli::{self, settled_endpoints, NetworkCommand};
use nethook::frontend::oci::Stage;
use nethook::frontend::service_cli::{self, ServiceCommand};
use nethook::frontend::{cni, hook, install, print_json};
use nethook::kernel::seam::Host;
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
    /// Manage services: stable virtual IPs that balance over their member containers.
    #[command(subcommand)]
    Service(ServiceCommand),

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
        Command::Network(cmd) => network_cli::run(&store, cmd),
        Command::Service(cmd) => service_cli::run(&store, cmd),

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
