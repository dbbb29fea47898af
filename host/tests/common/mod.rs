//! What the tests that run the binary and real tools share: running
//! `clawwatch`, where Fluent Bit is, and the rule that a test needing a real
//! tool may skip only outside CI.
#![allow(dead_code)] // each test crate uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fluent Bit 5.1.1 and WAMR's `wamrc` from `../shared/tools/fluent-bit`, or
/// `None` (the caller says SKIPPED) where that directory is absent. Under CI
/// (`CI` set) a missing tool fails the test instead.
pub fn fluent_bit_tools() -> Option<(PathBuf, PathBuf)> {
    let dir = repo().join("../shared/tools/fluent-bit");
    let (fluent_bit, wamrc) = (dir.join("fluent-bit"), dir.join("wamrc"));
    if fluent_bit.is_file() && wamrc.is_file() {
        return Some((fluent_bit, wamrc));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide Fluent Bit and wamrc at {}",
        dir.display()
    );
    eprintln!(
        "SKIPPED: no Fluent Bit and wamrc at {} (see its README)",
        dir.display()
    );
    None
}

/// `program` (the binary, or a shell around it) to run in the repository,
/// with the compiled component cached for every test.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(repo()).env(
        "CLAWWATCH_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
    );
    command
}

/// Runs the `clawwatch` binary in the repository, however it ends.
pub fn clawwatch_output<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(args)
        .output()
        .unwrap()
}

/// [`clawwatch_output`], asserting the run succeeds.
pub fn clawwatch<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = clawwatch_output(args);
    assert!(
        out.status.success(),
        "clawwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
