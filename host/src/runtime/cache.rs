//! On-disk cache of compiled policy modules.
//!
//! Compiling a component takes ~100 ms; loading a compiled one takes about a
//! millisecond, which is what makes a `shipgate eval` process cheap. Entries
//! are keyed by the module's sha256 and the engine's compatibility hash, are
//! written atomically (temp file + rename) into a directory only the owner can
//! write, and are only ever our own output.
//!
//! Compiled code runs as native code, outside the sandbox and the module's
//! pin, so an entry is loaded only if the tag beside it (keyed BLAKE3) over
//! the module's digest, the engine and the code was made with the per-user
//! key kept outside the cache. A cache restored from elsewhere, or a file
//! swapped for another module's, fails its tag and is compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
    /// Tags every entry; never stored in the cache.
    key: [u8; KEY_BYTES],
}

const KEY_BYTES: usize = 32;
/// An entry is the serialized component and, in a file beside it, its tag.
const TAG_BYTES: usize = 32;

impl ModuleCache {
    /// The cache directory: `$SHIPGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/shipgate`,
    /// else `$HOME/.cache/shipgate`. `None` when none can be found.
    pub(crate) fn default_dir() -> Option<PathBuf> {
        env_path("SHIPGATE_CACHE_DIR")
            .or_else(|| env_path("XDG_CACHE_HOME").map(|d| d.join("shipgate")))
            .or_else(|| env_path("HOME").map(|d| d.join(".cache").join("shipgate")))
    }

    /// The key file: `$SHIPGATE_CACHE_KEY_FILE`, else
    /// `$XDG_CONFIG_HOME/shipgate/cache.key`, else
    /// `$HOME/.config/shipgate/cache.key`. `None` when none can be found.
    pub(crate) fn default_key_file() -> Option<PathBuf> {
        let key = |dir: PathBuf| dir.join("shipgate").join("cache.key");
        env_path("SHIPGATE_CACHE_KEY_FILE")
            .or_else(|| env_path("XDG_CONFIG_HOME").map(key))
            .or_else(|| env_path("HOME").map(|home| key(home.join(".config"))))
    }

    /// Opens (creating, mode 0700) the cache directory and reads (creating
    /// on first use) its key. Refuses a directory that others can write to,
    /// and a key inside the cache: a restored cache would bring its own.
    pub(crate) fn open(dir: &Path, key_file: &Path, engine: &Engine) -> Result<Self> {
        create_private_dir(dir)?;
        let key = read_or_create_key(key_file, dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            key,
        })
    }

    /// The tag of an entry starts from the module it claims to be and this
    /// engine; the code follows.
    fn hasher(&self, sha256: &str) -> blake3::Hasher {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(sha256.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.engine_key.as_bytes());
        hasher.update(b"\0");
        hasher
    }

    #[cfg(test)]
    fn tag(&self, sha256: &str, code: &[u8]) -> blake3::Hash {
        self.hasher(sha256).update(code).finalize()
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// An entry's tag lives beside its code, so that the code can be
    /// mapped as wasmtime wrote it.
    fn tag_path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.tag", self.engine_key))
    }

    /// A cached compilation of the module with this digest, if any, and
    /// if its tag is this cache's.
    pub(crate) fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_for(sha256);
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        if !metadata.is_file() || check_private(&metadata).is_err() {
            return None;
        }
        let tag = std::fs::read(self.tag_path_for(sha256)).ok()?;
        let tag: [u8; TAG_BYTES] = tag.try_into().ok()?;
        // blake3::Hash compares in constant time.
        if self.tag_of_file(sha256, &path).ok()? != blake3::Hash::from_bytes(tag) {
            return None;
        }
        // SAFETY: the file holds the code `put` serialized for the module
        // with this digest and this engine: its tag says so, and only a
        // holder of this user's key can make one. (Only a process of this
        // user could swap it between the check and the load; such a process
        // could as well change the key.) Loaded by mapping it, not copying.
        unsafe { Component::deserialize_file(engine, &path) }.ok()
    }

    /// The tag of the code in `path`, read in chunks: no copy of the whole.
    fn tag_of_file(&self, sha256: &str, path: &Path) -> std::io::Result<blake3::Hash> {
        let mut hasher = self.hasher(sha256);
        hasher.update_reader(std::fs::File::open(path)?)?;
        Ok(hasher.finalize())
    }

    /// Stores a compiled module. Failures only cost a recompile next time,
    /// so callers may ignore them.
    pub(crate) fn put(&self, sha256: &str, component: &Component) -> Result<()> {
        let code = component.serialize()?;
        let tag = self.hasher(sha256).update(&code).finalize();
        // The tag first: a code file is never there without it, and a tag
        // alone, or one for other code, only fails the check.
        for (path, bytes) in [
            (self.tag_path_for(sha256), &tag.as_bytes()[..]),
            (self.path_for(sha256), &code[..]),
        ] {
            let mut temp = tempfile::NamedTempFile::new_in(&self.dir)
                .with_context(|| format!("creating a temporary file in {}", self.dir.display()))?;
            temp.write_all(bytes)?;
            temp.as_file().sync_all()?;
            temp.persist(path)?;
        }
        Ok(())
    }
}

/// A path from a set, non-empty environment variable.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The key in `path`, made (random, mode 0600) if there is none. The key
/// must be this user's alone and must not be inside the cache `dir`.
fn read_or_create_key(path: &Path, dir: &Path) -> Result<[u8; KEY_BYTES]> {
    use std::io::Read;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(parent)?;
    let (dir, parent) = (dir.canonicalize()?, parent.canonicalize()?);
    if parent.starts_with(&dir) {
        bail!(
            "the cache key {} is inside the cache {}: keep it outside",
            path.display(),
            dir.display()
        );
    }
    let mut key = [0u8; KEY_BYTES];
    if !path.exists() {
        // Written whole, then moved into place (never over another
        // process's key): a crash leaves no short key behind.
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("no random bytes for the cache key"))?;
        let mut temp = tempfile::NamedTempFile::new_in(&parent)?;
        temp.write_all(&key)?;
        temp.as_file().sync_all()?;
        match temp.persist_noclobber(path) {
            Ok(_) => return Ok(key),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e.error)
                    .with_context(|| format!("creating the cache key {}", path.display()));
            }
        }
    }
    let opened = std::fs::File::open(path);
    match opened {
        Ok(mut file) => {
            let metadata = file.metadata()?;
            check_private(&metadata).with_context(|| format!("cache key {}", path.display()))?;
            if std::os::unix::fs::MetadataExt::mode(&metadata) & 0o077 != 0
                || metadata.len() != KEY_BYTES as u64
            {
                bail!(
                    "cache key {}: must be {KEY_BYTES} bytes readable by its owner only",
                    path.display()
                );
            }
            file.read_exact(&mut key)?;
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading the cache key {}", path.display()));
        }
    }
    Ok(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_never_inside_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        create_private_dir(&cache).unwrap();
        let key_file = dir.path().join("config/cache.key");
        let key = read_or_create_key(&key_file, &cache).unwrap();
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_or_create_key(&key_file, &cache).unwrap(),
            key,
            "read back, not made again"
        );

        let inside = read_or_create_key(&cache.join("keys/cache.key"), &cache).unwrap_err();
        assert!(inside.to_string().contains("inside the cache"), "{inside}");

        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let readable = read_or_create_key(&key_file, &cache).unwrap_err();
        assert!(
            readable.to_string().contains("readable by its owner only"),
            "{readable:#}"
        );
    }

    #[test]
    fn an_entry_is_tagged_for_its_module_and_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache =
            ModuleCache::open(&dir.path().join("c"), &dir.path().join("k/key"), &engine).unwrap();
        let tag = cache.tag("aa", b"code");
        assert_eq!(tag, cache.tag("aa", b"code"));
        assert_ne!(tag, cache.tag("bb", b"code"), "another module's entry");
        assert_ne!(tag, cache.tag("aa", b"codf"), "other code");
        let other =
            ModuleCache::open(&dir.path().join("c"), &dir.path().join("k/other"), &engine).unwrap();
        assert_ne!(tag, other.tag("aa", b"code"), "another key");
        // Code without this cache's tag (an old entry, a foreign one) is
        // not loaded.
        std::fs::write(cache.path_for("aa"), b"code").unwrap();
        assert!(cache.get(&engine, "aa").is_none());
        std::fs::write(
            cache.tag_path_for("aa"),
            other.tag("aa", b"code").as_bytes(),
        )
        .unwrap();
        assert!(cache.get(&engine, "aa").is_none());
        // Its own tag passes the check (the bytes are then no component).
        std::fs::write(cache.tag_path_for("aa"), tag.as_bytes()).unwrap();
        assert_eq!(cache.tag_of_file("aa", &cache.path_for("aa")).unwrap(), tag);
    }
}
