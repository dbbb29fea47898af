//! What the tests that run real Fluent Bit share: where it is, and the rule
//! that such a test may skip only outside CI.

use std::path::{Path, PathBuf};

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
