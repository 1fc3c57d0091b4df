//! On-disk cache of compiled policy modules.
//!
//! Compiling a component takes ~100 ms; loading a compiled one takes about a
//! millisecond, which is what makes a `shipgate eval` process cheap. Entries
//! are keyed by the module's sha256 and the engine's compatibility hash, are
//! written atomically (temp file + rename) into a directory only the owner can
//! write, and are only ever our own output: a file that fails to load is
//! replaced, never trusted.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// The cache directory: `$SHIPGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/shipgate`,
    /// else `$HOME/.cache/shipgate`. `None` when none can be found.
    pub(crate) fn default_dir() -> Option<PathBuf> {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("SHIPGATE_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("shipgate")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("shipgate")))
    }

    /// Opens (creating, mode 0700) the cache directory. Refuses a directory
    /// that others can write to: its files would be loaded as trusted code.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self> {
        create_private_dir(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// A cached compilation of the module with this digest, if any.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_for(sha256);
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        if !metadata.is_file() || check_private(&metadata).is_err() {
            return None;
        }
        // SAFETY: the file is in a directory only this user can write, named
        // by the digest of the module it was compiled from and our engine's
        // compatibility hash, and written whole by `put` (rename is atomic).
        unsafe { Component::deserialize_file(engine, &path) }.ok()
    }

    /// Stores a compiled module. Failures only cost a recompile next time,
    /// so callers may ignore them.
    pub(crate) fn put(&self, sha256: &str, component: &Component) -> Result<()> {
        let bytes = component.serialize()?;
        let mut temp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("creating a temporary file in {}", self.dir.display()))?;
        temp.write_all(&bytes)?;
        temp.as_file().sync_all()?;
        temp.persist(self.path_for(sha256))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the module cache {}", dir.display()))?;
    let metadata =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !metadata.is_dir() {
        bail!(
            "module cache {} is not a directory (a symbolic link?)",
            dir.display()
        );
    }
    check_private(&metadata).with_context(|| format!("module cache {}", dir.display()))
}

/// Cached code runs as native code: only files and directories that this
/// user owns and nobody else can write are trusted.
fn check_private(metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // getuid(2), not /proc/self: a minimal root filesystem may have no /proc.
    // SAFETY: getuid takes nothing, always succeeds and touches no memory.
    let me = unsafe { libc::getuid() };
    if metadata.uid() != me {
        bail!(
            "owned by user {}, not by this user ({me}); refusing to load code from it",
            metadata.uid()
        );
    }
    if metadata.mode() & 0o022 != 0 {
        bail!(
            "writable by others (mode {:o}); refusing to load code from it",
            metadata.mode() & 0o777
        );
    }
    Ok(())
}
