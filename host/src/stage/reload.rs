//! Policy reloads: SIGHUP or a changed file re-reads the policy, and the new
//! text reaches the engine in order with the records, so it applies at a
//! record boundary.

use crate::source::Chunk;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Counts policy reload signals (SIGHUP, a changed file). Every record is read
/// under one value of it, so a reload applies at a record boundary: records
/// read before the signal are judged by the policy that was running then.
static POLICY_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The reload epoch records read now belong to.
pub fn policy_epoch() -> u64 {
    POLICY_EPOCH.load(Ordering::SeqCst)
}

/// Marks a reload signal: records read from now on belong to the new epoch.
pub fn next_policy_epoch() -> u64 {
    POLICY_EPOCH.fetch_add(1, Ordering::SeqCst) + 1
}

/// Without a policy file there is nothing to re-read: SIGHUP (whose default
/// would end the process) is ignored, saying so.
pub async fn ignore_hangups() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while hup.recv().await.is_some() {
            eprintln!("clawwatch: SIGHUP ignored: no --policy file to re-read");
        }
    }
}

/// Re-reads the policy on SIGHUP and when the file changes (checked every
/// two seconds), and hands the text to the engine in order with the records:
/// it applies from the first record read after the signal, or once every
/// reader has handed on what it read before it (within `max_latency`).
pub async fn watch_policy(path: PathBuf, tx: mpsc::Sender<Chunk>, max_latency: Duration) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => h.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let reason = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                "file changed"
            }
        };
        last = modified(&path);
        let epoch = next_policy_epoch();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                tracing::info!(reason, path = %path.display(), "reloading the policy");
                if tx.send(Chunk::Reload { text, epoch }).await.is_err() {
                    return;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(max_latency + Duration::from_millis(100)).await;
                    let _ = tx.send(Chunk::ApplyReload { epoch }).await;
                });
            }
            Err(e) => eprintln!(
                "clawwatch: cannot re-read policy {}: {e}; the running policy stays",
                path.display()
            ),
        }
    }
}
