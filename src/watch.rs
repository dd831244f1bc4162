//! Watching the images' contexts: notify events go through each image's [`Filter`] (the same one that hashes
//! and sends) and are debounced into batches of changed images.
//!
//! The notify callback never blocks: it `try_send`s into a bounded queue and, when the queue is full, sets a
//! flag instead, which makes the next batch include every image (a rescan) so no change is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::filter::Filter;

/// Errors starting the watcher.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct Error {
    path: PathBuf,
    source: notify::Error,
}

/// One image's watched directory.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The image.
    pub image: String,
    /// Its context directory.
    pub root: PathBuf,
    /// Its one filter.
    pub filter: Filter,
}

/// A relevant change: which image, which path (relative to its context).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The image whose context changed.
    pub image: String,
    /// The path, relative to the context.
    pub path: String,
}

/// The images a path concerns: those whose context contains it and whose filter lets it through.
pub fn relevant(watched: &[Watched], path: &Path) -> Vec<Change> {
    watched
        .iter()
        .filter_map(|w| {
            let rel = path.strip_prefix(&w.root).ok()?;
            let rel = rel.to_str()?;
            if rel.is_empty() || w.filter.excluded(rel) {
                return None;
            }
            Some(Change { image: w.image.clone(), path: rel.to_string() })
        })
        .collect()
}

/// A running watcher; dropping it stops watching.
pub struct Handle {
    _watcher: RecommendedWatcher,
    /// Set when the queue overflowed: the next batch must treat every image as changed.
    pub overflowed: Arc<AtomicBool>,
    watched: Arc<RwLock<Vec<Watched>>>,
}

impl Handle {
    /// Replaces an image's filter (its `.dockerignore` changed): the next events are judged by it.
    pub fn set_filter(&self, image: &str, filter: Filter) {
        let mut w = self.watched.write().expect("not poisoned");
        if let Some(entry) = w.iter_mut().find(|w| w.image == image) {
            entry.filter = filter;
        }
    }
}

/// Starts watching every context recursively, sending relevant changes to `tx`.
pub fn start(watched: Vec<Watched>, tx: mpsc::Sender<Change>) -> Result<Handle, Error> {
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let roots: Vec<PathBuf> = watched.iter().map(|w| w.root.clone()).collect();
    let watched: Vec<Watched> = watched
        .into_iter()
        .map(|mut w| {
            w.root = std::fs::canonicalize(&w.root).unwrap_or(w.root);
            w
        })
        .collect();
    let watched = Arc::new(RwLock::new(watched));
    let shared = watched.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else {
            flag.store(true, Ordering::Relaxed); // an error from notify: rescan to be safe
            return;
        };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.need_rescan() {
            flag.store(true, Ordering::Relaxed);
        }
        // A read lock held for the filter checks only; writers (a filter refresh) are rare and brief.
        let watched = shared.read().expect("not poisoned");
        for p in &event.paths {
            for change in relevant(&watched, p) {
                if tx.try_send(change).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
    })
    .map_err(|source| Error { path: PathBuf::new(), source })?;
    for root in roots {
        watcher.watch(&root, RecursiveMode::Recursive).map_err(|source| Error { path: root.clone(), source })?;
    }
    Ok(Handle { _watcher: watcher, overflowed, watched })
}

/// Debounce settings (`[watch]`).
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// A batch closes after this much quiet.
    pub quiet: Duration,
    /// …or this long after its first change, even if changes keep coming.
    pub max: Duration,
}

/// What changed in one batch, per image: the changed paths, or None when every path must be looked at
/// again (after an overflow).
pub type Batch = BTreeMap<String, Option<BTreeSet<String>>>;

/// Waits for the next batch: opened by the first change, closed after `quiet` with no further change or
/// `max` after it opened. Returns the changes (a rescan of all of `all` after an overflow), or None when
/// the sender is gone.
pub async fn next_batch(rx: &mut mpsc::Receiver<Change>, overflowed: &AtomicBool, all: &[String], d: Debounce) -> Option<Batch> {
    let first = rx.recv().await?;
    let opened = Instant::now();
    let mut batch = Batch::new();
    let mut add = |c: Change| {
        if let Some(paths) = batch.entry(c.image).or_insert_with(|| Some(BTreeSet::new())) {
            paths.insert(c.path);
        }
    };
    add(first);
    let mut deadline = opened + d.quiet;
    loop {
        let cap = opened + d.max;
        match tokio::time::timeout_at(deadline.min(cap), rx.recv()).await {
            Ok(Some(c)) => {
                add(c);
                deadline = Instant::now() + d.quiet;
            }
            Ok(None) | Err(_) => break,
        }
    }
    if overflowed.swap(false, Ordering::Relaxed) {
        for image in all {
            batch.insert(image.clone(), None);
        }
    }
    Some(batch)
}

/// Folds a batch into what is pending for each image (a rescan absorbs paths).
pub fn merge(pending: &mut Batch, batch: Batch) {
    for (image, paths) in batch {
        match (pending.entry(image).or_insert_with(|| Some(BTreeSet::new())), paths) {
            (Some(have), Some(new)) => have.extend(new),
            (slot, _) => *slot = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(image: &str) -> Change {
        Change { image: image.into(), path: "x".into() }
    }

    #[test]
    fn one_filter_decides_what_is_relevant() {
        let w = vec![
            Watched { image: "a".into(), root: "/p/a".into(), filter: Filter::new(&[".env", "tmp"]).unwrap() },
            Watched { image: "b".into(), root: "/p/b".into(), filter: Filter::new::<&str>(&[]).unwrap() },
        ];
        let rel = |p: &str| relevant(&w, Path::new(p)).into_iter().map(|c| (c.image, c.path)).collect::<Vec<_>>();
        assert_eq!(rel("/p/a/src/main.rs"), [("a".to_string(), "src/main.rs".to_string())]);
        for ignored in ["/p/a/.env", "/p/a/tmp/x", "/p/a/src/.main.rs.swp", "/p/a/4913", "/p/a/.git/index", "/p/a/x~", "/p/c/y", "/p/a"] {
            assert!(rel(ignored).is_empty(), "{ignored}");
        }
        assert_eq!(rel("/p/b/.env").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch_and_a_steady_stream_is_capped() {
        let d = Debounce { quiet: Duration::from_millis(100), max: Duration::from_secs(1) };
        let flag = AtomicBool::new(false);
        let (tx, mut rx) = mpsc::channel(64);
        // An editor's save: a few events within a few ms.
        for i in ["a", "a", "b"] {
            tx.send(change(i)).await.unwrap();
        }
        let t0 = Instant::now();
        let batch = next_batch(&mut rx, &flag, &[], d).await.unwrap();
        assert_eq!(batch.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(batch["a"], Some(BTreeSet::from(["x".to_string()])));
        assert_eq!(t0.elapsed(), Duration::from_millis(100));

        // A write every 50 ms forever: the batch still closes at the cap.
        let writer = tokio::spawn(async move {
            loop {
                if tx.send(change("a")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let t0 = Instant::now();
        next_batch(&mut rx, &flag, &[], d).await.unwrap();
        assert!(t0.elapsed() <= Duration::from_millis(1050), "{:?}", t0.elapsed());
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_overflow_turns_the_batch_into_a_rescan_of_every_image() {
        let d = Debounce { quiet: Duration::from_millis(100), max: Duration::from_secs(1) };
        let flag = AtomicBool::new(true);
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(change("a")).await.unwrap();
        let all = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let batch = next_batch(&mut rx, &flag, &all, d).await.unwrap();
        assert_eq!(batch.len(), 3);
        assert!(batch.values().all(Option::is_none), "every image rescanned: {batch:?}");
        assert!(!flag.load(Ordering::Relaxed));
        let mut pending = Batch::from([("a".to_string(), Some(BTreeSet::from(["p".to_string()])))]);
        merge(&mut pending, Batch::from([("a".to_string(), None), ("b".to_string(), Some(BTreeSet::new()))]));
        assert_eq!(pending["a"], None);
        assert_eq!(pending["b"], Some(BTreeSet::new()));
    }
}
