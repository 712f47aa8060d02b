//! Generates `include/defender.h` from the Rust sources with cbindgen.
//!
//! The header is committed. The build rewrites it only when its content changes, so a stale
//! committed header shows up as a change in `git status` (the test suite checks for that).

use std::path::Path;

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let crate_dir = Path::new(&crate_dir);
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        // Parsing from lib.rs (not `with_crate`) needs no `cargo metadata`, so it works offline.
        .with_src(crate_dir.join("src").join("lib.rs"))
        .with_config(config)
        .generate()
        .unwrap_or_else(|err| panic!("cbindgen could not generate include/defender.h: {err}"));

    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let header = crate_dir.join("include").join("defender.h");
    if std::fs::read(&header).ok().as_deref() != Some(generated.as_slice()) {
        std::fs::create_dir_all(header.parent().expect("include/ has a parent")).expect("include/ can be created");
        std::fs::write(&header, generated).expect("include/defender.h can be written");
    }
}
