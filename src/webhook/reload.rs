//! Reloading files without a restart. A Kubernetes Secret or ConfigMap volume changes its files by swapping a
//! `..data` symlink to a new directory, which a watch on the file itself never sees: each file's directory is
//! watched (`notify`), and the files are also read and compared every `poll` as a fallback. `on_change` runs once
//! per change of any file's content, after the writes have settled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long after an event the files are read (a swap touches several paths).
const SETTLE: Duration = Duration::from_millis(100);

/// A running watch; dropping it stops it.
pub struct Watch {
    task: JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the files hold now: one digest each (`None` for a file that cannot be read).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    paths.iter().map(|p| std::fs::read(p).ok().map(|bytes| Sha256::digest(&bytes).into())).collect()
}

/// Calls `on_change` whenever the content of any of `paths` changes, until the returned [`Watch`] is dropped;
/// when it returns false (what it read may be good later, e.g. a certificate not valid yet), it is called again
/// at the next poll even if nothing changed.
pub fn watch(paths: Vec<PathBuf>, poll: Duration, on_change: impl Fn() -> bool + Send + 'static) -> Watch {
    let (tx, mut events) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            let mut dirs: Vec<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; polling only");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; polling only");
            None
        }
    };
    // What the files hold when the watch starts: any later content is a change.
    let mut last = fingerprint(&paths);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                Some(()) = events.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while events.try_recv().is_ok() {}
                }
            }
            let now = fingerprint(&paths);
            if now != last {
                // Unsettled: no fingerprint matches an empty one, so the next poll calls again.
                last = if on_change() { now } else { Vec::new() };
            }
        }
    });
    Watch { task, _watcher: watcher }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Lays out `dir` like a Secret volume: `tls.crt` → `..data/tls.crt`, `..data` → `..<version>`.
    fn secret_volume(dir: &Path, version: &str, content: &str) {
        let target = dir.join(format!("..{version}"));
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::write(target.join("tls.crt"), content).expect("write");
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
        std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
        if !dir.join("tls.crt").exists() {
            std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).expect("symlink");
        }
    }

    async fn until(count: &AtomicUsize, want: usize) {
        for _ in 0..100 {
            if count.load(Ordering::SeqCst) >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {want} changes, saw {}", count.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_secret_volume_symlink_swap_is_seen_by_the_watch() {
        let dir = tempfile::tempdir().expect("tempdir");
        secret_volume(dir.path(), "v1", "one");
        let changes = Arc::new(AtomicUsize::new(0));
        let counter = changes.clone();
        // A poll far beyond the test: only the directory watch can see the swap.
        let _watch = watch(vec![dir.path().join("tls.crt")], Duration::from_secs(3600), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        secret_volume(dir.path(), "v2", "two");
        until(&changes, 1).await;
        secret_volume(dir.path(), "v3", "two");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(changes.load(Ordering::SeqCst), 1, "the same content is not a change");
    }

    #[tokio::test]
    async fn polling_sees_a_change_the_watch_cannot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "a").expect("write");
        let changes = Arc::new(AtomicUsize::new(0));
        let counter = changes.clone();
        let mut watch = watch(vec![file.clone()], Duration::from_millis(50), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        });
        watch._watcher = None; // as if the platform had no file events
        std::fs::write(&file, "b").expect("write");
        until(&changes, 1).await;
    }

    #[tokio::test]
    async fn content_not_good_yet_is_read_again_at_the_next_poll() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tls.crt");
        std::fs::write(&file, "a").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        // Unsettled twice (a certificate not valid yet), then good.
        let _watch =
            watch(vec![file.clone()], Duration::from_millis(50), move || counter.fetch_add(1, Ordering::SeqCst) >= 2);
        std::fs::write(&file, "b").expect("write");
        until(&calls, 3).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "called again until settled, then only on a change");
    }
}
