//! On-disk cache of compiled components, so startup does not recompile the
//! engine every time (compiling takes a second or more; loading, milliseconds).
//!
//! Entries are keyed by a hash of the component bytes and of every wasmtime
//! setting that affects compiled code; a stale or corrupt entry is recompiled.

use crate::component::anyhow_of;
use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// `$CLAWWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/clawwatch`, else `~/.cache/clawwatch`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CLAWWATCH_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("clawwatch"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/clawwatch"))
}

fn key(engine: &Engine, wasm: &[u8]) -> String {
    // SipHash with fixed keys: stable for a given build, which is all a cache needs.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    wasm.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn load_or_compile(engine: &Engine, wasm: &[u8], dir: Option<&Path>) -> Result<Component> {
    let Some(dir) = dir else {
        return anyhow_of(Component::new(engine, wasm)).context("compiling the component");
    };
    let path = dir.join(format!("component-{}.cwasm", key(engine, wasm)));
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of this same
        // engine configuration (its name carries the compatibility hash) into a
        // directory only this user can write; wasmtime still checks the header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "loaded compiled component from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached component unusable; recompiling")
            }
        }
    }
    let component = anyhow_of(Component::new(engine, wasm)).context("compiling the component")?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "could not cache the compiled component");
    }
    Ok(component)
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let bytes = component.serialize()?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
