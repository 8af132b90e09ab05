//! Gives the shared library the SONAME of its ABI, `libcotyledon.so.<abi>`,
//! with the number from Cargo.toml's `[package.metadata.cotyledon] abi`
//! (one place for the library, the header's macro and the Makefile).
fn main() {
    let manifest =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    let abi: u32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("abi = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Cargo.toml: [package.metadata.cotyledon] abi = <number>");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcotyledon.so.{abi}");
    println!("cargo:rustc-env=COTYLEDON_ABI={abi}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
}
