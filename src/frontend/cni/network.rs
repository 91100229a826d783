//! The conflist's `network` and `subnet`: use a defined network, or define it on first use.

use ipnetwork::Ipv4Network;

use super::config::Config;
use super::error::{CniError, Code};
use crate::core::network::{self as networks, NetworkOpError};
use crate::kernel::seam::Kernel;
use crate::log::describe;
use crate::model::network::Network;
use crate::state::{Store, StoreError};

/// Makes sure `cfg.network` is defined, defining it from `subnet` when it is not; a
/// definition that differs from `subnet` is refused (code 7) rather than changed under
/// containers that use it.
pub fn ensure(store: &Store, k: &dyn Kernel, cfg: &Config) -> Result<(), CniError> {
    if !cfg.no_masquerade_to.is_empty() {
        return Err(CniError::new(
            Code::UnsupportedField,
            "noMasqueradeTo is not supported by this nethook build; remove it from the conflist",
        ));
    }
    match (load(store, &cfg.network)?, &cfg.subnet) {
        (Some(net), Some(subnet)) => same_subnet(&net, subnet),
        (Some(_), None) => Ok(()),
        (None, None) => Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "nethook network {} is not defined; add \"subnet\" to the conflist to define it, or run `nethook network create {} --subnet CIDR`",
                cfg.network, cfg.network
            ),
        )),
        (None, Some(subnet)) => {
            let net = Network::new(&cfg.network, subnet, None, cfg.bridge.as_deref(), true)
                .map_err(|e| invalid(format!("subnet/network of the conflist: {e}")))?;
            match networks::create(store, k, &net) {
                Ok(()) => Ok(()),
                // Another ADD defined it meanwhile: fine if it is the same.
                Err(NetworkOpError::Store(StoreError::NetworkExists { .. })) => {
                    match load(store, &cfg.network)? {
                        Some(net) => same_subnet(&net, subnet),
                        None => Err(try_again(&cfg.network)),
                    }
                }
                Err(e @ (NetworkOpError::Store(_) | NetworkOpError::Link(_))) => Err(
                    CniError::new(Code::Setup, format!("defining network {}: {}", cfg.network, describe(&e))),
                ),
                Err(e) => Err(invalid(format!(
                    "cannot define network {} from the conflist: {}",
                    cfg.network,
                    describe(&e)
                ))),
            }
        }
    }
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

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

fn try_again(name: &str) -> CniError {
    CniError::new(
        Code::TryAgainLater,
        format!("network {name} was being defined and removed at once; try again"),
    )
}
