//! The heart of `devloop up`: what to do on each event, as a synchronous function of (state, event) →
//! actions, so unit tests drive it without servers or clocks.
//!
//! The rules: a change re-hashes (at most one hash per image at a time; what changes meanwhile is kept and
//! hashed right after); a failed hash loses nothing (the next hash is a full rescan, at once if changes came
//! in while it ran); an unchanged tag does nothing at all; a new tag builds, with the filter that hashed it;
//! a newer tag while a build runs cancels it and builds the newer one; a build result that is no longer what
//! is on disk is never deployed; one rollout per image at a time, the newest built tag deployed next.
//!
//! The changed paths travel only through here: [`Event::Changed`] brings them, [`Action::Hash`] hands them
//! to the hasher.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::filter::Filter;
pub use crate::watch::Scope;

/// The filter a tag was hashed with, which decides what its build may send. Compared by identity.
#[derive(Clone)]
pub struct Hashed(pub Arc<Filter>);

impl PartialEq for Hashed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Hashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hashed(filter)")
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Inputs of these images changed (a debounced batch, or the start): what each hash must look at.
    Changed { changes: BTreeMap<String, Scope>, at: Instant },
    /// The config was read again: `rescan` images changed (hash them afresh), `redeploy` images' deploys
    /// changed (deploy their tag even if it is the one running), `removed` images are gone.
    Reconfigured { rescan: Vec<String>, redeploy: Vec<String>, removed: Vec<String>, at: Instant },
    /// An image's inputs hash to `tag`, judged by `filter`.
    Hashed { image: String, tag: String, filter: Hashed, took: Duration },
    /// Hashing failed (e.g. the Dockerfile is gone).
    HashFailed { image: String, error: String },
    /// `tag` is built and pushed (or was already in the registry).
    Built { image: String, tag: String, digest: String, took: Duration, steps: (usize, usize), cached: bool, export: Option<Duration> },
    /// Building `tag` failed or was cancelled.
    BuildFailed { image: String, tag: String, error: String, cancelled: bool },
    /// Files changed while BuildKit read them (a save mid-build): the build is void, nothing was pushed.
    BuildStale { image: String, tag: String, reason: String, at: Instant },
    /// The rollout of `tag` ended.
    RolledOut { image: String, tag: String, ok: bool, took: Duration, at: Instant, pod: PodStages },
}

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hash the image's inputs, looking again at `scope`.
    Hash { image: String, scope: Scope },
    /// Build and push this tag (skipping the build when the registry has it), sending what `filter` allows.
    Build { image: String, tag: String, filter: Hashed },
    /// Cancel the image's running build.
    CancelBuild(String),
    /// Roll the image's workloads to this tag.
    Deploy { image: String, tag: String, digest: String },
    /// Tell the user.
    Report(Report),
}

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
    RolloutFailed { image: String, tag: String },
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
    /// Time the rollout took.
    pub rollout: Duration,
    /// Where the rollout's time went.
    pub pod: PodStages,
    /// From the change being seen to the rollout being done.
    pub total: Duration,
}

#[derive(Debug, Default)]
struct ImageState {
    hashing: bool,
    /// What changed and is not hashed yet (while a hash runs, or after one failed).
    pending: Option<Scope>,
    /// The newest tag hashed from disk.
    disk: Option<String>,
    building: Option<String>,
    deploying: Option<String>,
    /// Built, waiting for the running rollout to end.
    queued: Option<(String, String)>,
    deployed: Option<String>,
    /// The iteration in flight: when its change was seen, and its figures so far.
    started: Option<Instant>,
    summary: Summary,
}

/// All images' state.
#[derive(Debug, Default)]
pub struct State {
    images: BTreeMap<String, ImageState>,
}

impl State {
    /// The tag deployed for `image`, if any.
    pub fn deployed(&self, image: &str) -> Option<&str> {
        self.images.get(image).and_then(|s| s.deployed.as_deref())
    }
    /// Whether anything is under way.
    pub fn busy(&self) -> bool {
        self.images.values().any(|s| s.hashing || s.building.is_some() || s.deploying.is_some())
    }
}

/// Decides what to do about `event`.
pub fn step(state: &mut State, event: Event) -> Vec<Action> {
    let mut out = Vec::new();
    match event {
        Event::Changed { changes, at } => {
            for (image, scope) in changes {
                changed(state, image, scope, at, &mut out);
            }
        }
        Event::Reconfigured { rescan, redeploy, removed, at } => {
            for image in removed {
                if state.images.remove(&image).is_some_and(|s| s.building.is_some()) {
                    out.push(Action::CancelBuild(image));
                }
            }
            for image in redeploy {
                if let Some(s) = state.images.get_mut(&image) {
                    s.deployed = None;
                }
            }
            for image in rescan {
                changed(state, image, Scope::Rescan, at, &mut out);
            }
        }
        Event::Hashed { image, tag, filter, took } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            s.hashing = false;
            s.summary.hash += took;
            if let Some(scope) = s.pending.take() {
                // More changes came while hashing: only the newest content counts.
                s.hashing = true;
                out.push(Action::Hash { image, scope });
                return out;
            }
            s.disk = Some(tag.clone());
            let in_flight = s.building.as_ref() == Some(&tag)
                || s.deploying.as_ref() == Some(&tag)
                || s.queued.as_ref().is_some_and(|(t, _)| *t == tag);
            if in_flight {
                return out;
            }
            if let Some(old) = s.building.take() {
                out.push(Action::CancelBuild(image.clone()));
                out.push(Action::Report(Report::Superseded { image: image.clone(), old, new: tag.clone() }));
            }
            s.queued = None;
            if s.deployed.as_ref() == Some(&tag) && s.deploying.is_none() {
                s.started = None;
                s.summary = Summary::default();
                out.push(Action::Report(Report::Unchanged { image, tag }));
                return out;
            }
            s.building = Some(tag.clone());
            out.push(Action::Report(Report::Building { image: image.clone(), tag: tag.clone() }));
            out.push(Action::Build { image, tag, filter });
        }
        Event::HashFailed { image, error } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            s.hashing = false;
            // The hasher's tree is no longer known to match the disk: whatever comes next is a full rescan.
            let came_meanwhile = s.pending.replace(Scope::Rescan).is_some();
            if came_meanwhile {
                // The failure may be a moment of a larger change (a directory gone mid-checkout) that has
                // since gone on: look again now rather than wait for a change that may never come.
                s.hashing = true;
                out.push(Action::Hash { image: image.clone(), scope: s.pending.take().expect("just set") });
            } else {
                s.started = None;
                s.summary = Summary::default();
            }
            out.push(Action::Report(Report::Failed { image, tag: None, error }));
        }
        Event::Built { image, tag, digest, took, steps, cached, export } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.building.as_ref() != Some(&tag) {
                return out; // superseded: a newer build owns this image now
            }
            s.building = None;
            if s.disk.as_ref() != Some(&tag) {
                return out; // never deploy what is no longer on disk
            }
            s.summary.build += took;
            s.summary.steps = steps;
            s.summary.registry_hit = cached;
            s.summary.export = export;
            if s.deploying.is_some() {
                s.queued = Some((tag, digest));
            } else {
                s.deploying = Some(tag.clone());
                out.push(Action::Deploy { image, tag, digest });
            }
        }
        Event::BuildFailed { image, tag, error, cancelled } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.building.as_ref() != Some(&tag) {
                return out;
            }
            s.building = None;
            s.started = None;
            s.summary = Summary::default();
            if !cancelled {
                out.push(Action::Report(Report::Failed { image, tag: Some(tag), error }));
            }
        }
        Event::BuildStale { image, tag, reason, at } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.building.as_ref() != Some(&tag) {
                return out;
            }
            s.building = None;
            out.push(Action::Report(Report::Stale { image: image.clone(), tag, reason }));
            // The change's own event may have been hashed already (to the same tag, while it was building):
            // hash again rather than wait for a change that has come and gone.
            changed(state, image, Scope::Paths(Default::default()), at, &mut out);
        }
        Event::RolledOut { image, tag, ok, took, at, pod } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.deploying.as_ref() != Some(&tag) {
                return out;
            }
            s.deploying = None;
            if ok {
                s.deployed = Some(tag.clone());
                let mut summary = std::mem::take(&mut s.summary);
                summary.image = image.clone();
                summary.tag = tag.clone();
                summary.rollout = took;
                summary.pod = pod;
                summary.total = s.started.map_or(took, |t0| at.saturating_duration_since(t0));
                out.push(Action::Report(Report::Iteration(summary)));
            } else {
                s.summary = Summary::default();
                out.push(Action::Report(Report::RolloutFailed { image: image.clone(), tag: tag.clone() }));
            }
            s.started = None;
            if let Some((next, digest)) = s.queued.take() {
                if s.disk.as_ref() == Some(&next) {
                    s.deploying = Some(next.clone());
                    s.started = Some(at);
                    out.push(Action::Deploy { image, tag: next, digest });
                }
            }
        }
    }
    out
}

/// An image's inputs changed: hash now, or after the running hash (the changes wait in `pending`).
fn changed(state: &mut State, image: String, scope: Scope, at: Instant, out: &mut Vec<Action>) {
    let s = state.images.entry(image.clone()).or_default();
    s.started.get_or_insert(at);
    match &mut s.pending {
        Some(p) => p.merge(scope),
        None => s.pending = Some(scope),
    }
    if !s.hashing {
        s.hashing = true;
        out.push(Action::Hash { image, scope: s.pending.take().expect("just set") });
    }
}

#[cfg(test)]
mod tests;
