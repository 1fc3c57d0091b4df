//! Reloading the gate: on SIGHUP, and when the gate file or one of its
//! module files changes (a mounted ConfigMap is updated by swapping a
//! symbolic link, and the image has no shell for `kill -HUP 1`). Requests
//! keep the gate they started with; a gate that does not load leaves the
//! old one serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::Signal;

use super::state::AppState;

/// Reloads the gate on every SIGHUP.
pub(super) async fn on_hangup(state: Arc<AppState>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        reload(&state, "SIGHUP").await;
    }
}

/// Reloads the gate whenever what its files are changes, checked every
/// `interval`. A change that does not load is tried again only when the
/// files change again.
pub(super) async fn on_change(state: Arc<AppState>, interval: Duration) {
    let mut seen = fingerprint(&state);
    loop {
        tokio::time::sleep(interval).await;
        let now = fingerprint(&state);
        if now != seen {
            // Taken before the reload, so a change made meanwhile is seen
            // next time. (A gate naming other modules than before differs
            // next time too, and is reloaded once more: harmless.)
            seen = now;
            reload(&state, "files changed").await;
        }
    }
}

/// Loads the gate again, off the async threads, and logs the outcome.
async fn reload(state: &Arc<AppState>, cause: &'static str) {
    let reloading = state.clone();
    match tokio::task::spawn_blocking(move || reloading.service.reload()).await {
        Ok(Ok(())) => {
            let gate = state.service.gate();
            tracing::info!(
                cause,
                gate = %gate.gate().origin.label(),
                sha256 = %gate.gate().sha256,
                "gate reloaded"
            );
        }
        Ok(Err(error)) => tracing::error!(
            cause,
            error = %error,
            "gate reload failed; the previous gate keeps serving"
        ),
        Err(error) => tracing::error!(cause, error = %error, "gate reload task failed"),
    }
}

/// What identifies the current content of a file without reading it: where
/// its path leads (a swapped symbolic link leads elsewhere), its inode, size
/// and modification time; `None` for a file that cannot be read.
type FileId = Option<(PathBuf, u64, u64, SystemTime)>;

/// The identity of the gate file and of every module file the served gate
/// names.
fn fingerprint(state: &AppState) -> Vec<FileId> {
    use std::os::unix::fs::MetadataExt;
    let mut files = vec![state.service.settings().gate_path.clone()];
    files.extend(state.service.gate().gate().module_files());
    files
        .into_iter()
        .map(|path| {
            let target = std::fs::canonicalize(&path).ok()?;
            let metadata = std::fs::metadata(&target).ok()?;
            Some((
                target,
                metadata.ino(),
                metadata.len(),
                metadata.modified().ok()?,
            ))
        })
        .collect()
}
