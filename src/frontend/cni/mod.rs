//! The CNI front end: the binary is a CNI plugin when `CNI_COMMAND` is set (SPEC.md of
//! containernetworking/cni, versions 0.3.0 to 1.1.0). The network configuration and the
//! `CNI_*` variables become the same `Request` the OCI hook makes; the core's endpoint
//! becomes the CNI result. An attachment is keyed by container id + interface name
//! (`ContainerId::attachment`), beside the hook's endpoints in one store.
//!
//! Output: the result (ADD), the version info (VERSION) or nothing on stdout, exit 0; or
//! the CNI error JSON on stdout and exit 1.

pub mod config;
pub mod env;
pub mod error;
mod network;
mod ops;
pub mod result;
pub mod version;

use std::io::Write;
use std::path::PathBuf;

use self::config::Config;
use self::env::{Command, Env};
use self::error::CniError;
use self::version::{Version, NEWEST};
use crate::frontend::process::with_socket_keeper;
use crate::state::{Store, CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR, DEFAULT_RUN_DIR, RUN_DIR_ENV};

/// Runs one CNI command with `stdin` (read whole by the caller) and returns the exit code.
/// The caller exits with it at once.
pub fn run(stdin: &[u8]) -> u8 {
    let get = |k: &str| std::env::var(k).ok();
    let command = get("CNI_COMMAND").unwrap_or_default();
    let env = Env::read(get);
    let (version, outcome) = invoke(&command, &env, stdin);
    let (text, code) = match outcome {
        Ok(Some(value)) => (value.to_string(), 0),
        Ok(None) => (String::new(), 0),
        Err(e) => {
            crate::log::line(&format!("CNI {command}: {e}"));
            (e.to_json(version), 1)
        }
    };
    if !text.is_empty() {
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .is_err()
        {
            return 1;
        }
    }
    code
}

type Outcome = Result<Option<serde_json::Value>, CniError>;

/// The command's outcome and the version to write an error in.
fn invoke(command: &str, env: &Env, stdin: &[u8]) -> (&'static str, Outcome) {
    let command = match Command::parse(command) {
        Ok(c) => c,
        Err(e) => return (NEWEST.as_str(), Err(e)),
    };
    let value = match config::parse_json(stdin) {
        Ok(v) => v,
        // VERSION may come with nothing on stdin.
        Err(_) if command == Command::Version && stdin.iter().all(u8::is_ascii_whitespace) => {
            return (NEWEST.as_str(), Ok(Some(version::version_info(NEWEST))))
        }
        Err(e) => return (NEWEST.as_str(), Err(e)),
    };
    // Errors speak the request's version when it is one nethook knows.
    let speak = config::raw_version(&value)
        .and_then(|raw| Version::parse(raw).ok())
        .unwrap_or(NEWEST)
        .as_str();
    if command == Command::Version {
        // Always answered, even for a version nethook does not speak: the runtime asks
        // in its own newest version to learn which ones to use.
        let asked = config::raw_version(&value).and_then(|raw| Version::parse(raw).ok());
        return (
            speak,
            Ok(Some(version::version_info(asked.unwrap_or(NEWEST)))),
        );
    }
    let outcome = config::parse(&value).and_then(|cfg| {
        let store = store_of(&cfg);
        // As in the hook: netfilter sockets go to a keeper instead of making this process's
        // exit wait a grace period (the keeper closes stdout first; see `close_after_exit`).
        with_socket_keeper(&store, || dispatch(command, &cfg, env, &store))
    });
    (speak, outcome)
}

fn dispatch(command: Command, cfg: &Config, env: &Env, store: &Store) -> Outcome {
    match command {
        Command::Add => ops::add(cfg, env, store).map(Some),
        Command::Del => ops::del(env, store).map(|()| None),
        Command::Check => ops::check(cfg, env, store).map(|()| None),
        Command::Gc => ops::gc(cfg, store).map(|()| None),
        Command::Status => ops::status(cfg, store).map(|()| None),
        Command::Version => unreachable!("answered before the configuration is parsed"),
    }
}

/// The state directories: the configuration's `configDir`/`runDir`, else as in hook mode
/// (the `NETHOOK_*` variables, else the defaults).
fn store_of(cfg: &Config) -> Store {
    let dir = |given: &Option<PathBuf>, var: &str, default: &str| match given {
        Some(p) => p.clone(),
        None => match std::env::var_os(var) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(default),
        },
    };
    Store::new(
        dir(&cfg.config_dir, CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR),
        dir(&cfg.run_dir, RUN_DIR_ENV, DEFAULT_RUN_DIR),
    )
}
