//! The local store of modules from registries: content-addressed files
//! named by their sha256, so a path is never built from anything but
//! validated hex, and every read checks the bytes against their name.
//!
//! ```text
//! STORE/manifests/sha256/<hex>     the manifest a gate's reference pins
//! STORE/blobs/sha256/<hex>         the module it names
//! STORE/signatures/<hex>.json      cosign signatures of that manifest, as pulled
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where modules from registries are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Store {
    root: PathBuf,
}

/// The store when none is named: `$SHIPGATE_STORE`, else
/// `$XDG_DATA_HOME/shipgate/store`, else `~/.local/share/shipgate/store`.
pub(crate) fn default_root() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("SHIPGATE_STORE")
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("shipgate/store")))
        .or_else(|| var("HOME").map(|h| h.join(".local/share/shipgate/store")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Manifest,
    Blob,
}

impl Store {
    pub(crate) fn new(root: PathBuf) -> Store {
        Store { root }
    }

    fn path(&self, kind: Kind, hex: &str) -> PathBuf {
        debug_assert!(is_hex_digest(hex));
        let dir = match kind {
            Kind::Manifest => "manifests",
            Kind::Blob => "blobs",
        };
        self.root.join(dir).join("sha256").join(hex)
    }

    fn signatures_path(&self, manifest_hex: &str) -> PathBuf {
        self.root
            .join("signatures")
            .join(format!("{manifest_hex}.json"))
    }

    /// The bytes stored under `hex`, checked against it; `Ok(None)` when
    /// absent. At most `max_bytes` are read.
    pub(crate) fn get(
        &self,
        kind: Kind,
        hex: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        if !is_hex_digest(hex) {
            return Err(format!("'{hex}' is not a sha256 digest"));
        }
        let path = self.path(kind, hex);
        let bytes = match read_at_most(&path, max_bytes)? {
            Some(bytes) => bytes,
            None => return Ok(None),
        };
        let actual = digest(&bytes);
        if actual != hex {
            return Err(format!(
                "{} holds content with sha256 {actual}: the store was altered",
                path.display()
            ));
        }
        Ok(Some(bytes))
    }

    /// Stores `bytes` under their own digest (written to a temporary file and
    /// renamed, so a reader never sees half a file). Returns the hex digest.
    pub(crate) fn put(&self, kind: Kind, bytes: &[u8]) -> Result<String, String> {
        let hex = digest(bytes);
        write_atomically(&self.path(kind, &hex), bytes)?;
        Ok(hex)
    }

    /// The signatures pulled for a manifest (JSON), if any.
    pub(crate) fn signatures(
        &self,
        manifest_hex: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        read_at_most(&self.signatures_path(manifest_hex), max_bytes)
    }

    pub(crate) fn put_signatures(&self, manifest_hex: &str, json: &[u8]) -> Result<(), String> {
        write_atomically(&self.signatures_path(manifest_hex), json)
    }
}

pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn is_hex_digest(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn read_at_most(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "{} is larger than {max_bytes} bytes",
            path.display()
        ));
    }
    Ok(Some(bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().expect("store paths have a directory");
    let failed = |e: std::io::Error| format!("writing {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    std::io::Write::write_all(&mut temporary, bytes).map_err(failed)?;
    temporary
        .persist(path)
        .map_err(|e| format!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_checked_against_its_name_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf());
        let hex = store.put(Kind::Blob, b"module").unwrap();
        assert_eq!(
            store.get(Kind::Blob, &hex, 64).unwrap().as_deref(),
            Some(&b"module"[..])
        );
        assert_eq!(store.get(Kind::Manifest, &hex, 64).unwrap(), None);
        assert!(
            store
                .get(Kind::Blob, &hex, 3)
                .unwrap_err()
                .contains("larger than 3 bytes")
        );
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), b"swapped").unwrap();
        assert!(
            store
                .get(Kind::Blob, &hex, 64)
                .unwrap_err()
                .contains("the store was altered")
        );
        assert!(store.get(Kind::Blob, "../../etc/passwd", 64).is_err());
    }
}
