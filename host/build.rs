//! Builds the detection engine as a wasm32-wasip2 component so the binary can
//! embed it: a fresh checkout needs no separate wasm build step.
//!
//! The component is built into `<target>/clawwatch-wasm`, shared by every
//! profile, so debug, release and test builds compile it once.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("host/ sits in the workspace");
    for watched in ["plugin/src", "plugin/Cargo.toml", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CLAWWATCH_COMPONENT");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("clawwatch_plugin.wasm");

    // A prebuilt component may be supplied (e.g. by a packager); otherwise build it.
    let built = match env::var_os("CLAWWATCH_COMPONENT") {
        Some(path) => PathBuf::from(path),
        None => build_component(workspace, &out_dir),
    };
    std::fs::copy(&built, &embedded).unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), embedded.display()));
    println!("cargo:rustc-env=CLAWWATCH_COMPONENT_PATH={}", embedded.display());
}

fn build_component(workspace: &Path, out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out.
    let target_root = out_dir.ancestors().nth(4).expect("OUT_DIR has the usual depth");
    let wasm_target_dir = target_root.join("clawwatch-wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--package", "clawwatch-plugin", "--lib", "--target", "wasm32-wasip2", "--profile", "wasm", "--locked"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&wasm_target_dir);
    // Flags meant for the host build (coverage, sanitizers, a host target) must not leak into the guest's.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the clawwatch component");
    if !status.success() {
        panic!(
            "building the clawwatch engine component for wasm32-wasip2 failed ({status}). \
             Is the target installed? Run `rustup target add wasm32-wasip2`."
        );
    }
    wasm_target_dir.join("wasm32-wasip2/wasm/clawwatch_plugin.wasm")
}
