//! Builds the detection engine as a wasm32-wasip2 component so the binary can
//! embed it (a fresh checkout needs no separate wasm build step), and as the
//! wasm32-wasip1 Fluent Bit filter module, which it embeds too.
//!
//! The component is built into `<target>/clawwatch-wasm`, shared by every
//! profile, so debug, release and test builds compile it once.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("host/ sits in the workspace");
    for watched in [
        "plugin/src",
        "plugin/Cargo.toml",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
        // The wasm targets' compiler flags.
        ".cargo/config.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CLAWWATCH_COMPONENT");
    println!("cargo:rerun-if-env-changed=CLAWWATCH_FLUENT_BIT_MODULE");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("clawwatch_plugin.wasm");

    // A prebuilt component may be supplied (e.g. by a packager); otherwise build it.
    let built = match env::var_os("CLAWWATCH_COMPONENT") {
        Some(path) => PathBuf::from(path),
        None => build_engine(workspace, &out_dir, "wasm32-wasip2"),
    };
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), embedded.display()));
    println!(
        "cargo:rustc-env=CLAWWATCH_COMPONENT_PATH={}",
        embedded.display()
    );

    // The Fluent Bit filter module: the same engine as a wasip1 core module,
    // embedded too (`clawwatch fluent-bit module` writes it out).
    let filter = match env::var_os("CLAWWATCH_FLUENT_BIT_MODULE") {
        Some(path) => PathBuf::from(path),
        None => build_engine(workspace, &out_dir, "wasm32-wasip1"),
    };
    let embedded_filter = out_dir.join("clawwatch_filter.wasm");
    std::fs::copy(&filter, &embedded_filter).unwrap_or_else(|e| {
        panic!(
            "copying {} to {}: {e}",
            filter.display(),
            embedded_filter.display()
        )
    });
    println!(
        "cargo:rustc-env=CLAWWATCH_FLUENT_BIT_MODULE_PATH={}",
        embedded_filter.display()
    );
}

/// Builds the engine crate for a wasm target; returns the `.wasm` path.
fn build_engine(workspace: &Path, out_dir: &Path, target: &str) -> PathBuf {
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual depth");
    let wasm_target_dir = target_root.join("clawwatch-wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--package",
        "clawwatch-plugin",
        "--lib",
        "--target",
        target,
        "--profile",
        "wasm",
        "--locked",
    ])
    .arg("--manifest-path")
    .arg(workspace.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&wasm_target_dir);
    // Flags meant for the host build (coverage, sanitizers, a host target) must not leak into the guest's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the clawwatch engine for WebAssembly");
    if !status.success() {
        panic!(
            "building the clawwatch engine for {target} failed ({status}). Is the target installed? Run `rustup target add {target}`."
        );
    }
    wasm_target_dir
        .join(target)
        .join("wasm/clawwatch_plugin.wasm")
}
