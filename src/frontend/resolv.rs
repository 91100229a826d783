//! `nethook.resolv=true`: the container's `/etc/resolv.conf` names its network's resolver.
//!
//! Podman, CRI runtimes and the CNI path bind-mount a resolv.conf of their own (Podman:
//! `--dns GATEWAY`; CNI: the result's `dns`). Bare runc, crun and youki bundles have only
//! the file in their root: on request, the hook writes it there at createRuntime, through
//! the container's mount namespace (see `kernel::rootfs`), so it is right from the
//! container's first instruction. It is a request, not the default, because it changes a
//! file of the bundle's root. A file a runtime mounted there, or a symlink, is left alone
//! and the system log says so.

use std::path::Path;

use crate::core::request::Request;
use crate::frontend::oci::{self, HookInput, OciError};
use crate::kernel::rootfs::{RootfsError, Written};
use crate::kernel::seam::Kernel;
use crate::model::endpoint::Endpoint;
use crate::model::network::Network;
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ResolvError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("nethook.resolv=true, but network {network} has no resolver; turn it on with `nethook network update {network} --dns on`")]
    NoDns { network: String },
    #[error("nethook.resolv=true needs the container's pid in the state")]
    NoPid,
}

/// Before setup: the network must have a resolver to name.
pub fn check(store: &Store, req: &Request) -> Result<(), ResolvError> {
    let net = store.load_network(&req.options.network)?;
    if !net.dns {
        return Err(ResolvError::NoDns { network: net.name });
    }
    Ok(())
}

/// The file's text: the network's resolver at each gateway, and its domain to search.
pub fn contents(net: &Network) -> String {
    let mut s =
        String::from("# written by nethook (nethook.resolv=true): the resolver of network ");
    s.push_str(&net.name);
    s.push('\n');
    for ip in net.dns_addresses() {
        s.push_str(&format!("nameserver {ip}\n"));
    }
    s.push_str(&format!("search {}\n", net.name));
    s
}

/// After setup: writes the file into the container's root.
pub fn write(
    store: &Store,
    k: &dyn Kernel,
    input: &HookInput,
    ep: &Endpoint,
) -> Result<(), ResolvError> {
    let pid = input.pid.ok_or(ResolvError::NoPid)?;
    let net = store.load_network(&ep.network)?;
    let rootfs = oci::bundle_rootfs(&input.bundle)?;
    let written = k.files().write_container_file(
        pid,
        &rootfs,
        Path::new("etc/resolv.conf"),
        contents(&net).as_bytes(),
    )?;
    match written {
        Written::Wrote => {}
        Written::MountPoint => crate::log::line(&format!(
            "{}: /etc/resolv.conf is mounted by the runtime; left it alone (nethook.resolv)",
            ep.id
        )),
        Written::Symlink => crate::log::line(&format!(
            "{}: /etc/resolv.conf is a symlink; left it alone (nethook.resolv)",
            ep.id
        )),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_every_gateway_and_the_network_domain() {
        let mut n = Network::new("app", "10.88.0.0/24", None, None, true).unwrap();
        n.set_ipv6("fd00:88::/64", None, true).unwrap();
        n.set_dns(true).unwrap();
        let text = contents(&n);
        assert!(
            text.contains("nameserver 10.88.0.1\nnameserver fd00:88::1\nsearch app\n"),
            "{text}"
        );
    }
}
