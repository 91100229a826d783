//! Links the `nethook` binary as a position-dependent executable, with the unwinder linked in,
//! when it is linked dynamically.
//!
//! The normal build is static (`.cargo/config.toml`: `crt-static` and the `static`
//! relocation model), which gives both of these by itself, so this script then adds nothing.
//! A build whose RUSTFLAGS replace that configuration links dynamically, and gets them here.
//!
//! Why: a hook is a process started for every container and gone a few milliseconds
//! later, so its start-up is on every container's critical path.
//!
//! - As a PIE the binary carries ~17,000 relative relocations that the dynamic loader
//!   applies at every start, touching (and copying) every page of `.data.rel.ro`: about
//!   150 extra page faults and 0.45 ms per start on the benchmark machine. Linked at a
//!   fixed address the linker resolves them once.
//! - Rust's standard library links the unwinder as the shared `libgcc_s` (panics abort
//!   here; it is there for backtraces). Loading one more shared object cost each hook
//!   0.13 ms from exec to `main` under runc (tracepoints, 40 runs). GCC's static unwinder,
//!   `libgcc_eh.a`, linked in whole provides the same symbols, so the linker (which links
//!   shared libraries as needed) leaves `libgcc_s` out. The GCC runtime library exception
//!   allows this. Without a `libgcc_eh.a` the binary links as before.
//!
//! Only the binary is affected (not the library, tests or dependencies), so no `--target`
//! build is needed to keep build scripts and proc macros position-independent.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if crt_static() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    if let Some(eh) = static_unwinder() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,{},--pop-state",
            eh.display()
        );
    }
}

fn crt_static() -> bool {
    std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "crt-static"))
}

/// Where the C compiler keeps `libgcc_eh.a`; it answers the bare name when it has none.
fn static_unwinder() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
