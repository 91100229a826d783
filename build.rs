//! Links the `nethook` binary as a position-dependent executable.
//!
//! Why: a hook is a process started for every container and gone a few milliseconds
//! later, so its start-up is on every container's critical path. As a PIE the binary
//! carries ~17,000 relative relocations that the dynamic loader applies at every start,
//! touching (and copying) every page of `.data.rel.ro`: about 150 extra page faults and
//! 0.45 ms per start on the benchmark machine. Linked at a fixed address the linker
//! resolves them once. Only the binary is affected (not the library, tests or
//! dependencies), so no `--target` build is needed to keep build scripts and proc macros
//! position-independent.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
