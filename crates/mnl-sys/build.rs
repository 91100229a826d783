//! `links = "mnl"` needs a build script. This one links nothing: the functions are Rust, and
//! `pkgconfig/libmnl.pc` tells nftnl-sys's pkg-config probe so.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
