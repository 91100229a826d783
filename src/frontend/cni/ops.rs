//! ADD, DEL, CHECK, GC and STATUS over the core.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::Value;

use super::config::Config;
use super::env::Env;
use super::error::{CniError, Code};
use super::network;
use super::result::{self, Attached};
use super::version::Version;
use crate::core::attach::{self, SetupError};
use crate::core::check;
use crate::core::detach::{self, Deferred, Teardown, TeardownError};
use crate::core::request::{Options, Request};
use crate::frontend::process;
use crate::kernel::netns::Netns;
use crate::kernel::seam::{Host, Kernel};
use crate::log::describe;
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};

pub fn add(cfg: &Config, env: &Env, store: &Store) -> Result<Value, CniError> {
    let key = env.key()?;
    let netns = env.require("CNI_NETNS", &env.netns)?;
    let args = env.args()?;
    let k = Host::new();
    let net = network::ensure(store, &k, cfg)?;
    let req = Request {
        id: key,
        netns: Some(PathBuf::from(netns)),
        options: Options {
            network: cfg.network.clone(),
            ports: cfg.ports.clone(),
            // The capability is the runtime's newer way to say what CNI_ARGS says.
            ip: cfg.ip.or(args.ip),
            ip6: cfg.ip6.or(args.ip6),
            mac: cfg.mac.or(args.mac),
            ifname: env.ifname.clone().unwrap_or_default(),
            default_name: args.pod_name.clone(),
            services: cfg.services.clone(),
            ..Options::default()
        },
    };
    let ep = attach::setup(store, &k, &req).map_err(setup_error)?;
    let mut attached = Attached::of(&ep, netns);
    // The network's resolver, for the runtime to write into the container's resolv.conf.
    attached.nameservers = net.dns_addresses();
    if !attached.nameservers.is_empty() {
        attached.search = vec![net.name.clone()];
    }
    Ok(result::render(
        cfg.version,
        &attached,
        cfg.prev_result.as_ref(),
    ))
}

fn setup_error(e: SetupError) -> CniError {
    let code = match &e {
        SetupError::Netns(_) | SetupError::NoNetns => Code::InvalidEnv,
        SetupError::Plan(_) | SetupError::Store(StoreError::UnknownNetwork { .. }) => {
            Code::InvalidConfig
        }
        SetupError::StillDeleting { .. } => Code::TryAgainLater,
        _ => Code::Setup,
    };
    CniError::new(code, describe(&e))
}

/// Idempotent: an attachment that is gone, or whose namespace is, is no error. With the
/// veth still there, its delete (and the RCU wait it costs) goes to a child process holding
/// the store's lock, as poststop does: the runtime reading stdout to EOF does not wait
/// for it (the child's stdio is /dev/null), and no ADD, GC or `ls` can see the attachment
/// half-removed.
pub fn del(env: &Env, store: &Store) -> Result<(), CniError> {
    let key = env.key()?;
    let k = Host::new();
    match detach::teardown_deferring_link(store, &k, &key) {
        Ok(Teardown::Done(_)) => Ok(()),
        Ok(Teardown::Deferred(work)) => finish_later(*work).map_err(teardown_error),
        Err(e) => Err(teardown_error(e)),
    }
}

fn teardown_error(e: TeardownError) -> CniError {
    CniError::new(
        Code::Teardown,
        format!(
            "{}; the attachment's record stays: DEL again or run `nethook gc`",
            describe(&e)
        ),
    )
}

fn finish_later(work: Deferred) -> Result<(), TeardownError> {
    // Test builds can run the work here instead, to measure what the hand-off saves.
    #[cfg(feature = "failpoints")]
    if std::env::var_os("NETHOOK_TEST_CNI_DEL_INLINE").is_some() {
        return work.run(&Host::new()).map(drop);
    }
    process::finish_later(work, "DEL").map(drop)
}

pub fn check(cfg: &Config, env: &Env, store: &Store) -> Result<(), CniError> {
    cfg.version.require("CHECK", Version::V040)?;
    let key = env.key()?;
    let netns = env.require("CNI_NETNS", &env.netns)?;
    let netns = Netns::open(std::path::Path::new(netns))
        .map_err(|e| CniError::new(Code::CheckFailed, format!("CNI_NETNS: {}", describe(&e))))?;
    let missing = check::check(store, &Host::new(), &key, Some(&netns))
        .map_err(|e| CniError::new(Code::CheckFailed, describe(&e)))?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        Code::CheckFailed,
        format!("{}; DEL and ADD the attachment again", missing.join("; ")),
    ))
}

/// Tears down every CNI attachment of the network that the runtime does not list as
/// valid. Hook endpoints (keys without an interface name) are never touched.
pub fn gc(cfg: &Config, store: &Store) -> Result<(), CniError> {
    cfg.version.require("GC", Version::V110)?;
    let valid: HashSet<ContainerId> = cfg
        .valid_attachments
        .iter()
        .flatten()
        .filter_map(|(cid, ifname)| {
            let cid = ContainerId::parse(cid).ok()?;
            ContainerId::attachment(&cid, ifname).ok()
        })
        .collect();
    let (endpoints, _) = store
        .list_endpoints_lenient()
        .map_err(|e| CniError::new(Code::Io, describe(&e)))?;
    let k = Host::new();
    let mut failed = Vec::new();
    for ep in endpoints {
        if ep.network != cfg.network || ep.id.attachment_parts().is_none() || valid.contains(&ep.id)
        {
            continue;
        }
        let done = match detach::teardown(store, &k, &ep.id) {
            Ok(Teardown::Done(_)) => Ok(()),
            Ok(Teardown::Deferred(work)) => work.run(&k).map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            failed.push(format!("{}: {}", ep.id, describe(&e)));
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        Code::Gc,
        format!(
            "could not collect {}; `nethook gc` retries",
            failed.join("; ")
        ),
    ))
}

/// Ready for ADD: the state directories can be locked, the network is defined (or the
/// conflist can define it) and nftables answers.
pub fn status(cfg: &Config, store: &Store) -> Result<(), CniError> {
    cfg.version.require("STATUS", Version::V110)?;
    let unavailable = |what: String| CniError::new(Code::NotAvailable, what);
    drop(store.lock().map_err(|e| {
        unavailable(format!(
            "state directory {} is not usable: {}",
            store.run_dir().display(),
            describe(&e)
        ))
    })?);
    match store.load_network(&cfg.network) {
        Ok(_) => {}
        Err(StoreError::UnknownNetwork { .. }) if cfg.subnet.is_some() => {}
        Err(e) => {
            return Err(unavailable(format!(
                "{}; define the network or add \"subnet\" to the conflist",
                describe(&e)
            )))
        }
    }
    let k = Host::new();
    k.firewall()
        .table_exists()
        .map_err(|e| unavailable(format!("nftables is not usable: {}", describe(&e))))?;
    Ok(())
}
