//! Gives the shared library a SONAME with the full version: the C ABI is
//! not declared stable, so every release is its own ABI.
fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcotyledon.so.{version}");
    println!("cargo:rerun-if-changed=build.rs");
}
