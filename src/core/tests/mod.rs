//! The core's order of work, through the recording fake kernel (`kernel::fake`): what
//! attach applies and in which order, what a failure at each step undoes, what detach and
//! gc remove. No root: the store lives in a directory the test owns, and the container's
//! "namespace" is a plain file the fake never enters.

mod attach;
mod detach;
mod gc;
mod ipv6;
mod macvlan;
mod routed;
mod services;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::core::attach::{setup, SetupError};
use crate::core::request::Options;
use crate::core::request::Request;
use crate::kernel::fake::Fake;
use crate::model::endpoint::Endpoint;
use crate::model::ids::ContainerId;
use crate::model::ports::parse_ports;
use crate::state::Store;

/// A store in a fresh directory, a fake kernel and a stand-in namespace file.
pub(crate) struct World {
    root: PathBuf,
    pub store: Store,
    pub fake: Fake,
    netns: PathBuf,
}

impl World {
    pub fn new(tag: &str) -> Self {
        static QUIET: Once = Once::new();
        // ensure_forwarding sends a notice to the system log: not from a unit test.
        QUIET.call_once(|| std::env::set_var(crate::log::SYSLOG_SOCKET_ENV, "/nonexistent/log"));
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "nethook-core-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let netns = root.join("netns");
        fs::write(&netns, "").unwrap();
        World {
            store: Store::new(root.join("etc"), root.join("run")),
            fake: Fake::new(),
            netns,
            root,
        }
    }

    pub fn request(&self, id: &str, ports: &str) -> Request {
        Request {
            id: ContainerId::parse(id).unwrap(),
            netns: Some(self.netns.clone()),
            options: Options {
                ports: if ports.is_empty() {
                    Vec::new()
                } else {
                    parse_ports(ports).unwrap()
                },
                ..Options::default()
            },
        }
    }

    pub fn setup(&self, id: &str, ports: &str) -> Result<Endpoint, SetupError> {
        setup(&self.store, &self.fake, &self.request(id, ports))
    }

    pub fn record(&self, id: &str) -> Option<Endpoint> {
        self.store.load_endpoint(&cid(id)).unwrap()
    }

    /// Every address held on the default network, with its owner.
    pub fn addresses(&self) -> Vec<(std::net::IpAddr, String)> {
        self.store.list_allocations("nethook").unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub(crate) fn cid(id: &str) -> ContainerId {
    ContainerId::parse(id).unwrap()
}
