//! Where compiled components are cached, so startup does not recompile the
//! engine every time (compiling takes seconds; loading, milliseconds). The
//! cache itself is wasmtime's: it keys entries by the component's bytes and
//! every engine setting that affects compiled code, and recompiles what is
//! stale or damaged.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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

/// Turns on wasmtime's compilation cache in `dir` (created, readable by this
/// user only: compiled code is loaded from it).
pub fn enable(config: &mut wasmtime::Config, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    let mut settings = wasmtime::CacheConfig::new();
    settings.with_directory(dir);
    let cache = crate::component::anyhow_of(wasmtime::Cache::new(settings))
        .with_context(|| format!("using {} as the compilation cache", dir.display()))?;
    config.cache(Some(cache));
    Ok(())
}
