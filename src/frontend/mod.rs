//! Front ends: turn what a runtime hands over into a `core::request::Request`, and write
//! the files that make runtimes call nethook.

pub mod annotations;
pub mod cni;
pub mod hook;
pub mod install;
pub mod network_cli;
pub mod oci;
mod process;
pub mod resolv;
pub mod service_cli;

/// A value as the CLI prints JSON: pretty, one newline after it.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("write JSON")?;
    writeln!(out).context("write JSON")?;
    Ok(())
}
