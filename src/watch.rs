//! Watching every input of the images' content tags: each context (its paths judged by the image's one
//! [`Filter`], the same that hashes and sends), and the inputs that are not in the context tree — the
//! Dockerfile wherever it lives, the ignore files (which change the filter itself, so they count even when
//! they exclude themselves), and `devloop.toml`. Notify events become [`Change`]s, debounced into batches.
//!
//! The notify callback never blocks: it `try_send`s into a bounded queue and, when the queue is full, sets a
//! flag instead, which makes the next batch a rescan of every image (and a re-read of the config), so no
//! change is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Image;
use crate::filter::Filter;

/// Errors starting the watcher.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct Error {
    path: PathBuf,
    source: notify::Error,
}

/// One image's inputs, as the watcher judges paths.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The image.
    pub image: String,
    /// Its context directory.
    pub root: PathBuf,
    /// Its one filter (replaced when an ignore file changes).
    pub filter: Filter,
    /// The Dockerfile: an input of the tag wherever it lives and whatever the filter says of it.
    pub dockerfile: PathBuf,
    /// Files that decide the filter: `<Dockerfile>.dockerignore`, the context's `.dockerignore` (and
    /// `.gitignore` when the image opts in).
    pub ignore_files: Vec<PathBuf>,
}

impl Watched {
    /// The inputs of a configured image, judged by `filter`.
    pub fn of(image: &Image, filter: Filter) -> Watched {
        let mut ignore_files = vec![crate::filter::beside_dockerignore(&image.dockerfile), image.context.join(".dockerignore")];
        if image.gitignore {
            ignore_files.push(image.context.join(".gitignore"));
        }
        Watched { image: image.name.clone(), root: image.context.clone(), filter, dockerfile: image.dockerfile.clone(), ignore_files }
    }

    /// The same paths, as notify reports them (directories resolved, so symlinked checkouts match).
    fn canonical(mut self) -> Watched {
        self.root = std::fs::canonicalize(&self.root).unwrap_or(self.root);
        self.dockerfile = canonical_file(&self.dockerfile);
        self.ignore_files = self.ignore_files.iter().map(|p| canonical_file(p)).collect();
        self
    }
}

/// A file's path with its directory resolved (the file itself may come and go as editors save).
fn canonical_file(p: &Path) -> PathBuf {
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir).ok(), p.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// What a path means for an image's next hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// A path in the context tree (relative to the context) that the filter lets through.
    Path(String),
    /// An input outside the tree (the Dockerfile): the tree stands, the tag must be computed again.
    Inputs,
    /// A file that decides the filter: everything must be judged again.
    Filter,
}

/// A relevant change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One of an image's inputs.
    Image {
        /// The image.
        image: String,
        /// What changed for it.
        touch: Touch,
    },
    /// `devloop.toml`.
    Config,
    /// A file of an image's tree was written to (`open`), or closed after writing, renamed or removed: while
    /// a writer may still hold it, its bytes may be half there, and its batch does not close early.
    Writing {
        /// The image.
        image: String,
        /// The path, relative to the context.
        path: String,
        /// Written to, not closed yet.
        open: bool,
    },
}

/// What an image's next hash must look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// These paths of the tree (possibly none: only inputs outside the tree changed).
    Paths(BTreeSet<String>),
    /// Everything: scan the context afresh with a freshly read filter.
    Rescan,
}

impl Scope {
    /// Folds `other` in: paths add up, and a rescan absorbs everything.
    pub fn merge(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::Rescan, _) => {}
            (_, Scope::Rescan) => *self = Scope::Rescan,
            (Scope::Paths(have), Scope::Paths(new)) => have.extend(new),
        }
    }

    fn of(touch: Touch) -> Scope {
        match touch {
            Touch::Path(p) => Scope::Paths(BTreeSet::from([p])),
            Touch::Inputs => Scope::Paths(BTreeSet::new()),
            Touch::Filter => Scope::Rescan,
        }
    }
}

/// The changes a path means: for every image whose inputs include it, and for the config.
pub fn relevant(watched: &[Watched], config: &Path, path: &Path) -> Vec<Change> {
    let mut out = Vec::new();
    if path == config {
        out.push(Change::Config);
    }
    for w in watched {
        let touch = if w.ignore_files.iter().any(|f| f == path) {
            Touch::Filter
        } else if path == w.dockerfile {
            // Inside the context and let through, it is also a file of the tree: its entry must follow, or
            // the kept tree's tag drifts from a fresh scan's.
            if let Some(rel) = path.strip_prefix(&w.root).ok().and_then(Path::to_str).filter(|r| !r.is_empty() && !w.filter.excluded(r)) {
                out.push(Change::Image { image: w.image.clone(), touch: Touch::Path(rel.to_string()) });
            }
            Touch::Inputs
        } else {
            let Some(rel) = path.strip_prefix(&w.root).ok().and_then(Path::to_str) else { continue };
            if rel.is_empty() || w.filter.excluded(rel) {
                continue;
            }
            Touch::Path(rel.to_string())
        };
        out.push(Change::Image { image: w.image.clone(), touch });
    }
    out
}

/// The directories to watch: every context recursively; the directory of each input outside all contexts
/// (and of the config) alone, so an editor's rename-and-replace save of that file is seen.
fn watch_list(watched: &[Watched], config: &Path) -> Vec<(PathBuf, RecursiveMode)> {
    let mut out: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for w in watched {
        if !out.iter().any(|(d, _)| *d == w.root) {
            out.push((w.root.clone(), RecursiveMode::Recursive)); // images may share a context
        }
    }
    let singles = watched.iter().flat_map(|w| std::iter::once(&w.dockerfile).chain(&w.ignore_files)).chain([&config.to_path_buf()]).cloned().collect::<Vec<_>>();
    for file in singles {
        let Some(dir) = file.parent() else { continue };
        if watched.iter().any(|w| dir.starts_with(&w.root)) || out.iter().any(|(d, _)| d == dir) || !dir.is_dir() {
            continue;
        }
        out.push((dir.to_path_buf(), RecursiveMode::NonRecursive));
    }
    out
}

/// A running watcher; dropping it stops watching.
pub struct Handle {
    _watcher: RecommendedWatcher,
    /// Set when the queue overflowed: the next batch must treat everything as changed.
    pub overflowed: Arc<AtomicBool>,
    watched: Arc<RwLock<Vec<Watched>>>,
}

impl Handle {
    /// Replaces an image's filter (an ignore file changed): the next events are judged by it.
    pub fn set_filter(&self, image: &str, filter: Filter) {
        let mut w = self.watched.write().expect("not poisoned");
        if let Some(entry) = w.iter_mut().find(|w| w.image == image) {
            entry.filter = filter;
        }
    }
}

/// Starts watching every input of `watched` and the `config` file, sending relevant changes to `tx`.
/// `overflowed` is raised when a change could not be queued.
pub fn start(watched: Vec<Watched>, config: &Path, tx: mpsc::Sender<Change>, overflowed: Arc<AtomicBool>) -> Result<Handle, Error> {
    let flag = overflowed.clone();
    let watched: Vec<Watched> = watched.into_iter().map(Watched::canonical).collect();
    let config = canonical_file(config);
    let dirs = watch_list(&watched, &config);
    let watched = Arc::new(RwLock::new(watched));
    let shared = watched.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else {
            flag.store(true, Ordering::Relaxed); // an error from notify: rescan to be safe
            return;
        };
        let open = writing(&event.kind);
        // Reading is no change; closing after a write only tells that the writer is done.
        let closed = open == Some(false) && matches!(event.kind, notify::EventKind::Access(_));
        if matches!(event.kind, notify::EventKind::Access(_)) && !closed {
            return;
        }
        if event.need_rescan() {
            flag.store(true, Ordering::Relaxed);
        }
        // A read lock held for the filter checks only; writers (a filter refresh) are rare and brief.
        let watched = shared.read().expect("not poisoned");
        for p in &event.paths {
            for change in relevant(&watched, &config, p) {
                let write = match (&change, open) {
                    (Change::Image { image, touch: Touch::Path(path) }, Some(open)) => {
                        Some(Change::Writing { image: image.clone(), path: path.clone(), open })
                    }
                    _ => None,
                };
                // The write's state first: the batch it opens must not close early on the change alone.
                let changes = write.into_iter().chain((!closed).then_some(change));
                for c in changes {
                    if tx.try_send(c).is_err() {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    })
    .map_err(|source| Error { path: PathBuf::new(), source })?;
    for (dir, mode) in dirs {
        watcher.watch(&dir, mode).map_err(|source| Error { path: dir.clone(), source })?;
    }
    Ok(Handle { _watcher: watcher, overflowed, watched })
}

/// What an event says of a writer: Some(true) bytes were written (the file may still be open for more),
/// Some(false) the writer closed it, or it was renamed or removed; None: nothing about writing.
fn writing(kind: &notify::EventKind) -> Option<bool> {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    use notify::EventKind as K;
    match kind {
        K::Create(CreateKind::File | CreateKind::Any) | K::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Some(true),
        K::Access(AccessKind::Close(AccessMode::Write)) | K::Remove(_) | K::Modify(ModifyKind::Name(_)) => Some(false),
        _ => None,
    }
}

/// Debounce settings (`[watch]`).
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// A batch closes after this much quiet.
    pub quiet: Duration,
    /// …or this long after its first change, even if changes keep coming.
    pub max: Duration,
    /// …or after this much quiet, when the caller says the batch may close early (every path synced, none
    /// missing: see [`QUICK`]).
    pub quick: Duration,
}

/// The quiet time of a batch that may close early. An editor's save is one burst of syscalls from one
/// process — vim: probe `4913`, rename the file to its backup, write it anew, drop the backup; JetBrains:
/// write `…___jb_tmp___`, rename the file to `…___jb_old___`, rename the new one over it; VS Code: truncate
/// and write in place, or write a temporary file and rename it over — whose events arrive within a
/// millisecond or two. The one dangerous moment in them, the file missing between the renames of a
/// rename-over save, is never closed early (the caller checks that every path is there); nor is a batch
/// with a file written to and not closed yet (a large copy, a writer that pauses mid-file: its bytes may be
/// half there, and a sync would send them). 10 ms leaves a margin of several times a save's own length.
pub const QUICK: Duration = Duration::from_millis(10);

/// What changed in one batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Per image, what its next hash must look at.
    pub images: BTreeMap<String, Scope>,
    /// `devloop.toml` changed.
    pub config: bool,
    /// Changes were dropped (queue overflow, a notify error): every image must be rescanned and the config
    /// read again.
    pub everything: bool,
    /// Images whose inputs outside the context tree (the Dockerfile) changed: their change needs a build,
    /// whatever else it touched.
    pub outside: BTreeSet<String>,
    /// From its first change to its close: the debounce's share of an iteration.
    pub waited: Duration,
    /// (image, path) written to and not closed since: the batch does not close early while there is one.
    pub writing: BTreeSet<(String, String)>,
}

impl Batch {
    fn add(&mut self, c: Change) {
        if let Change::Image { image, touch: Touch::Inputs } = &c {
            self.outside.insert(image.clone());
        }
        match c {
            Change::Config => self.config = true,
            Change::Writing { image, path, open: true } => {
                self.writing.insert((image, path));
            }
            Change::Writing { image, path, open: false } => {
                self.writing.remove(&(image, path));
            }
            Change::Image { image, touch } => match self.images.entry(image) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Scope::of(touch));
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(Scope::of(touch)),
            },
        }
    }
}

/// Waits for the next batch: opened by the first change, closed after `quiet` with no further change or
/// `max` after it opened — or after `quick` with no further change when `early` says this batch may close
/// sooner (asked once per lull: a batch it turns down waits out the full `quiet`). Returns None when the
/// sender is gone.
pub async fn next_batch(rx: &mut mpsc::Receiver<Change>, overflowed: &AtomicBool, d: Debounce, early: impl Fn(&Batch) -> bool) -> Option<Batch> {
    let first = rx.recv().await?;
    let opened = Instant::now();
    let cap = opened + d.max;
    let mut batch = Batch::default();
    batch.add(first);
    let mut last = opened;
    // Whether `early` may still be asked in this lull.
    let mut ask = d.quick < d.quiet;
    loop {
        let wake = (last + if ask { d.quick } else { d.quiet }).min(cap);
        match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(Some(c)) => {
                batch.add(c);
                last = Instant::now();
                ask = d.quick < d.quiet;
            }
            Ok(None) => break,
            Err(_) if !ask || wake == cap => break,
            Err(_) => {
                if !overflowed.load(Ordering::Relaxed) && batch.writing.is_empty() && early(&batch) {
                    break;
                }
                ask = false;
            }
        }
    }
    batch.everything = overflowed.swap(false, Ordering::Relaxed);
    batch.waited = opened.elapsed();
    Some(batch)
}

#[cfg(test)]
mod tests;
