//! The conflist's `network`, `subnet`, `subnet6` and `noMasqueradeTo`: use a defined
//! network, or define it on first use.

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::config::Config;
use super::error::{CniError, Code};
use crate::core::network::{self as networks, NetworkOpError};
use crate::kernel::seam::Kernel;
use crate::log::describe;
use crate::model::network::Network;
use crate::state::{Store, StoreError};

/// Makes sure `cfg.network` is defined, defining it from `subnet` (and `noMasqueradeTo`)
/// when it is not; a definition that differs from `subnet` or a given `noMasqueradeTo` is
/// refused (code 7) rather than changed under containers that use it.
pub fn ensure(store: &Store, k: &dyn Kernel, cfg: &Config) -> Result<Network, CniError> {
    let defined = load(store, &cfg.network)?;
    if let (Some(net), Some(asked)) = (&defined, cfg.driver) {
        if net.driver != asked {
            return Err(invalid(format!(
                "nethook network {} uses the {} driver, the conflist asks for {asked}; set driver to {}, drop it, or name another network",
                net.name, net.driver, net.driver
            )));
        }
    }
    if let Some(net) = defined {
        return same_definition(&net, cfg).map(|()| net);
    }
    if cfg.subnet.is_none() && cfg.subnet6.is_none() {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "nethook network {} is not defined; add \"subnet\" (and/or \"subnet6\") to the conflist to define it, or run `nethook network create {} --subnet CIDR`",
                cfg.network, cfg.network
            ),
        ));
    }
    let net = from_conflist(cfg)?;
    match networks::create(store, k, &net) {
        Ok(()) => Ok(net),
        // Another ADD defined it meanwhile: fine if it is the same.
        Err(NetworkOpError::Store(StoreError::NetworkExists { .. })) => {
            match load(store, &cfg.network)? {
                Some(net) => same_definition(&net, cfg).map(|()| net),
                None => Err(try_again(&cfg.network)),
            }
        }
        Err(e @ (NetworkOpError::Store(_) | NetworkOpError::Link(_))) => Err(CniError::new(
            Code::Setup,
            format!("defining network {}: {}", cfg.network, describe(&e)),
        )),
        Err(e) => Err(invalid(format!(
            "cannot define network {} from the conflist: {}",
            cfg.network,
            describe(&e)
        ))),
    }
}

/// The definition the conflist's keys describe.
fn from_conflist(cfg: &Config) -> Result<Network, CniError> {
    let mut net = Network::named(&cfg.network, cfg.bridge.as_deref())
        .map_err(|e| invalid(format!("network/bridge of the conflist: {e}")))?;
    if let Some(subnet) = &cfg.subnet {
        net.set_ipv4(subnet, None, true)
            .map_err(|e| invalid(format!("subnet of the conflist: {e}")))?;
    }
    if let Some(subnet6) = &cfg.subnet6 {
        net.set_ipv6(subnet6, None, true)
            .map_err(|e| invalid(format!("subnet6 of the conflist: {e}")))?;
    }
    net.set_no_masquerade_to(&cidrs(&cfg.no_masquerade_to))
        .map_err(|e| invalid(format!("noMasqueradeTo of the conflist: {e}")))?;
    net.set_driver(
        cfg.driver.unwrap_or_default(),
        cfg.parent.as_deref(),
        false,
        cfg.bridge.is_some(),
    )
    .map_err(|e| invalid(format!("driver/parent of the conflist: {e}")))?;
    net.set_dns(cfg.dns)
        .map_err(|e| invalid(format!("dns of the conflist: {e}")))?;
    Ok(net)
}

/// What the conflist says of a defined network must be what it was defined with.
fn same_definition(net: &Network, cfg: &Config) -> Result<(), CniError> {
    if let Some(subnet) = &cfg.subnet {
        same_subnet(net, subnet)?;
    }
    if let Some(subnet6) = &cfg.subnet6 {
        same_subnet6(net, subnet6)?;
    }
    same_exceptions(net, &cfg.no_masquerade_to)
}

fn load(store: &Store, name: &str) -> Result<Option<Network>, CniError> {
    match store.load_network(name) {
        Ok(net) => Ok(Some(net)),
        Err(StoreError::UnknownNetwork { .. }) => Ok(None),
        Err(e) => Err(CniError::new(Code::Io, describe(&e))),
    }
}

fn same_subnet(net: &Network, subnet: &str) -> Result<(), CniError> {
    let asked: Ipv4Network = subnet.parse().map_err(|_| {
        invalid(format!(
            "subnet {subnet:?} is not an IPv4 CIDR like 10.88.0.0/24"
        ))
    })?;
    let have = net.ipv4.map(|v4| v4.subnet);
    if have == Some(asked) {
        return Ok(());
    }
    let have = have.map_or_else(|| "no IPv4 subnet".to_owned(), |s| s.to_string());
    Err(invalid(format!(
        "nethook network {} is already defined with {have}, the conflist asks for {asked}; set subnet to {have}, drop it, or name another network",
        net.name
    )))
}

fn same_subnet6(net: &Network, subnet6: &str) -> Result<(), CniError> {
    let asked: Ipv6Network = subnet6.parse().map_err(|_| {
        invalid(format!(
            "subnet6 {subnet6:?} is not an IPv6 CIDR like fd00:88::/64"
        ))
    })?;
    let have = net.ipv6.map(|v6| v6.subnet);
    if have == Some(asked) {
        return Ok(());
    }
    let have = have.map_or_else(|| "no IPv6 subnet".to_owned(), |s| s.to_string());
    Err(invalid(format!(
        "nethook network {} is already defined with {have}, the conflist asks for subnet6 {asked}; set subnet6 to {have}, drop it, or name another network",
        net.name
    )))
}

fn cidrs(nets: &[Ipv4Network]) -> Vec<String> {
    nets.iter().map(|n| n.to_string()).collect()
}

/// A `noMasqueradeTo` the conflist gives must be what the network was defined with (in any
/// order); one it leaves out takes the definition's.
fn same_exceptions(net: &Network, asked: &[Ipv4Network]) -> Result<(), CniError> {
    if asked.is_empty() {
        return Ok(());
    }
    let mut wanted = net.clone();
    wanted
        .set_no_masquerade_to(&cidrs(asked))
        .map_err(|e| invalid(format!("noMasqueradeTo of the conflist: {e}")))?;
    let sorted = |v: &[Ipv4Network]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    if sorted(&wanted.no_masquerade_to) == sorted(&net.no_masquerade_to) {
        return Ok(());
    }
    Err(invalid(format!(
        "nethook network {} is already defined with noMasqueradeTo [{}], the conflist asks for [{}]; make them the same, drop noMasqueradeTo, or name another network",
        net.name,
        cidrs(&net.no_masquerade_to).join(", "),
        cidrs(&wanted.no_masquerade_to).join(", ")
    )))
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

fn try_again(name: &str) -> CniError {
    CniError::new(
        Code::TryAgainLater,
        format!("network {name} was being defined and removed at once; try again"),
    )
}
