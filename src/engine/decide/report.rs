//! What the core tells the user ([`Report`]), and the figures an iteration or a sync carries.

use std::time::Duration;

/// What the user is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A change left the tag as it was.
    Unchanged { image: String, tag: String },
    /// A build started.
    Building { image: String, tag: String },
    /// A build was void: its context changed while BuildKit read it.
    Stale { image: String, tag: String, reason: String },
    /// A build was superseded by newer content.
    Superseded { image: String, old: String, new: String },
    /// Hashing or building failed; running pods were left alone.
    Failed { image: String, tag: Option<String>, error: String },
    /// One full iteration: change → hash → build → rollout.
    Iteration(Summary),
    /// A rollout failed (details were reported by the rollout itself).
    RolloutFailed { image: String, tag: String, reason: Option<String> },
    /// Files were copied into running pods.
    Synced(SyncSummary),
    /// A sync failed, or was not tried (`skipped`: too large, no container to take it); the image is rebuilt
    /// and rolled out instead (`for_good`: and from now on).
    SyncFallback { image: String, error: String, for_good: bool, skipped: bool },
    /// Pods of a rollout that had succeeded crashed `after` it: `error` says how; `rollback`: the tag being
    /// put back; `late`: after [`ROLLOUT_CRASH_WINDOW`], so left running.
    Crashed { image: String, tag: String, error: String, after: Duration, rollback: Option<String>, late: bool },
    /// The tag put back after a crash runs again.
    RolledBack { image: String, tag: String },
    /// A build could not start (`error`: which server did not answer); it is tried again `after` this.
    Retrying { image: String, error: String, after: Duration },
    /// An image's builds moved to another BuildKit replica, or back to its own.
    BuildkitMoved { image: String, message: String },
    /// A change to a manual image is held until a trigger (`paused`: to a paused image, until resumed):
    /// `changes` paths held so far (0: everything).
    Held { image: String, changes: usize, paused: bool },
    /// A trigger released `changes` held paths (none held: the image is looked at again).
    Triggered { image: String, changes: Option<usize> },
    /// A trigger found no image holding a change.
    NothingToTrigger,
    /// The image was paused (its changes held from now on) or resumed: `released`, the held paths acted on
    /// now (none: nothing was held; 0: everything).
    Paused { image: String, paused: bool, released: Option<usize> },
    /// A rebuild was asked for: the image is hashed again and built even if its tag is deployed or in the
    /// registry.
    Rebuilding { image: String },
    /// A build waits for a slot: `running` builds of at most `limit` run.
    QueuedBuild { image: String, tag: String, running: usize, limit: usize },
    /// `tag` is built; its first rollout waits for these images' first rollouts (`depends-on`).
    WaitsFor { image: String, tag: String, on: Vec<String> },
    /// At the end of `up`, pods are left running files synced on top of image `tag` (`synced` paths, whose
    /// tree has the `content` tag), which no image holds: these `pods` (empty: not known which).
    LeftSynced { image: String, tag: String, synced: usize, content: Option<String>, pods: Vec<String> },
}

/// One sync, for its summary line, and the state the pods are in after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSummary {
    /// The image.
    pub image: String,
    /// Files copied and paths deleted.
    pub files: usize,
    /// Paths deleted.
    pub deleted: usize,
    /// Pods synced.
    pub pods: usize,
    /// A replay of the synced set into pods that came later.
    pub replay: bool,
    /// The debounce wait of the batch it syncs (none for a replay).
    pub debounce: Duration,
    /// The exec and transfer, across pods in parallel.
    pub sync: Duration,
    /// Hashing (only to know the content tag).
    pub hash: Duration,
    /// From the change being seen to the files in place.
    pub total: Duration,
    /// The image the pods run.
    pub tag: String,
    /// Paths synced on top of it since it was rolled out.
    pub synced: usize,
    /// The content tag the synced tree has (the tag a build would give), when known.
    pub content: Option<String>,
}

/// When the rollout's first new pod reached each stage, from the start of the deploy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodStages {
    /// The pod existed.
    pub created: Option<Duration>,
    /// Its containers were running.
    pub running: Option<Duration>,
    /// It was Ready.
    pub ready: Option<Duration>,
}

/// The figures of one iteration, for the summary line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The image.
    pub image: String,
    /// Its new tag.
    pub tag: String,
    /// How long the batch that started it waited for the saves to stop (before `total`'s clock starts).
    pub debounce: Duration,
    /// Time spent hashing.
    pub hash: Duration,
    /// Time spent building and pushing (zero on a registry hit).
    pub build: Duration,
    /// Build steps and how many were cached.
    pub steps: (usize, usize),
    /// The registry already had the tag.
    pub registry_hit: bool,
    /// Of the build, exporting and pushing the image (as BuildKit reports it).
    pub export: Option<Duration>,
    /// The BuildKit replica that built it, when there are several.
    pub buildkit: Option<String>,
    /// Time the rollout took.
    pub rollout: Duration,
    /// Where the rollout's time went.
    pub pod: PodStages,
    /// From the change being seen to the rollout being done.
    pub total: Duration,
}
