//! Live update, decided: when a batch is synced instead of built, one sync per image at a time (what comes
//! meanwhile is queued and goes next, in one), replays into pods that come later, the fallback to a build
//! when a sync fails or cannot be done (a rollout even to the deployed tag: the pods may hold what no image
//! does), and the honest state: the image the pods run, how many paths were synced on top of it, and the
//! content tag that synced tree has — cleared only once the pods are known to hold the image's content.
//!
//! Where a sync goes is the core's to say: the runs of the deployed reference its pod state names
//! ([`pods`]), Ready or not. None to take it means build and roll out instead, said in one line. Which runs
//! hold the synced set is kept per run; one that lacks it gets it replayed.
//!
//! A sync to every pod is also the hash of its paths: it reads each file once, puts those bytes in the tar
//! and their digests in the hasher's tree, and reports the content tag ([`Event::Hashed`]) before it sends.
//! So the core counts it as the image's running hash (no other hash runs meanwhile, and one that comes
//! waits for it), and queued paths go into the tree only with their own sync — or, when a build comes
//! first, with the build's hash. A replay into a pod that came later reads the synced set again and hashes
//! nothing: if the disk has moved on since, that change's own event is on its way and its sync goes to
//! every pod, the replayed one too.

use super::pods::{Incarnation, Pods};
use super::*;
use crate::config::sync_route;

/// An image's synced state.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// Context paths synced (copied or deleted) into the pods since the deployed tag rolled out.
    pub(super) synced: BTreeSet<String>,
    /// The content tag of the synced tree.
    pub(super) content: Option<String>,
    /// A sync is under way.
    pub(super) running: bool,
    /// The paths of the running sync to every pod (a fallback build hashes them again).
    sending: BTreeSet<String>,
    /// The running sync has not yet reported the content tag of what it read ([`Event::Hashed`]).
    owes_hash: bool,
    /// …and it is a replay.
    running_replay: bool,
    /// When the oldest change of the running sync was seen.
    started: Option<Instant>,
    /// Hashing time of the running sync's changes.
    hash: Duration,
    /// Paths for the next sync, and when the first of them was seen.
    queued: BTreeSet<String>,
    queued_at: Option<Instant>,
    /// The debounce wait of the running sync's first batch, and of the queued one's.
    debounce: Duration,
    queued_debounce: Option<Duration>,
    /// The runs of the deployed reference that hold the whole synced set: what was synced into each.
    pub(super) holds: BTreeSet<Incarnation>,
    /// The runs the running sync goes to.
    sending_to: Vec<Incarnation>,
    /// Runs a sync found gone before the pod watch said so: not replayed into while they are the runs the
    /// watch knows (its news of them is on its way).
    pub(super) missed: BTreeSet<Incarnation>,
    /// The containers cannot take a sync (no `tar`): build from now on.
    disabled: bool,
    /// A sync done, waiting for its content tag to be reported.
    waiting: Option<SyncSummary>,
    /// The filter of the last hash: a sync sends only what it lets into a build.
    pub(super) filter: Option<Hashed>,
    /// A sync failed or was not done: the pods may hold what no image does (part of it, or the edits a
    /// revert was to undo), so the next build rolls out even the deployed tag, and nothing syncs until then.
    pub(super) reroll: bool,
}

impl Live {
    /// A hash reported: whichever it was, the running sync's is no longer owed (hashes run one at a time).
    pub(super) fn hashed(&mut self) {
        self.owes_hash = false;
    }

    /// The deployed image now holds everything: nothing is synced on top of it.
    pub(super) fn rolled_out(&mut self) {
        self.synced.clear();
        self.content = None;
        self.holds.clear();
    }

    /// Reports the sync waiting for its content tag.
    pub(super) fn report_waiting(&mut self, content: Option<String>, out: &mut Vec<Action>) {
        if let Some(mut w) = self.waiting.take() {
            w.content = content;
            w.synced = self.synced.len();
            out.push(Action::Report(Report::Synced(w)));
        }
    }
}

/// Whether `scope` of `image` can be synced: every path is covered by a rule, a rollout of this session
/// runs, and nothing is being built or rolled out (a build under way will carry the change), nor waits to be
/// hashed (after a failed hash, the rescan owed: the hasher's tree is gone).
pub(super) fn covered(state: &State, image: &str, scope: &Scope) -> bool {
    let (Some(rules), Some(s), Scope::Paths(paths)) = (state.rules.get(image), state.images.get(image), scope) else { return false };
    !paths.is_empty()
        && paths.iter().all(|p| sync_route(rules, p).is_some())
        && s.deployed.is_some()
        && s.building.is_none()
        && s.deploying.is_none()
        && s.queued.is_none()
        && s.pending.is_none()
        && !(s.hashing && s.hash_builds)
        && !s.pending_builds
        && !s.live.disabled
        && s.live.filter.is_some()
        && !s.live.reroll
}

/// Syncs a covered change: now, or after the running sync.
pub(super) fn sync(state: &mut State, image: String, scope: Scope, at: Instant, debounce: Duration, out: &mut Vec<Action>) {
    let s = state.images.get_mut(&image).expect("covered");
    let Scope::Paths(paths) = scope else { unreachable!("covered") };
    if s.live.running {
        s.live.queued.extend(paths);
        s.live.queued_at.get_or_insert(at);
        s.live.queued_debounce.get_or_insert(debounce);
    } else {
        to_every_run(state, image, paths, at, debounce, out);
    }
}

/// Syncs `paths` into every run of the deployed reference; with none to take it, builds instead.
fn to_every_run(state: &mut State, image: String, paths: BTreeSet<String>, at: Instant, debounce: Duration, out: &mut Vec<Action>) {
    let State { images, pods, .. } = &mut *state;
    let Some(s) = images.get_mut(&image) else { return };
    let reference = s.running.clone().unwrap_or_default();
    let into = pods.running(&reference);
    if into.is_empty() {
        let error = format!("no running container of {reference} can take the sync (none running, or all being replaced)");
        fall_back(state, image, paths, error, false, true, at, out);
    } else {
        start(s, image, paths, into, false, at, debounce, out);
    }
}

/// Starts a sync of `paths` into the runs `into` (`replay`: the synced set into runs that lack it). One to
/// every run is the image's hash too.
#[allow(clippy::too_many_arguments)]
fn start(s: &mut ImageState, image: String, paths: BTreeSet<String>, into: Vec<Incarnation>, replay: bool, at: Instant, debounce: Duration, out: &mut Vec<Action>) {
    s.live.running = true;
    s.live.running_replay = replay;
    s.live.started = Some(at);
    s.live.debounce = debounce;
    s.live.hash = Duration::ZERO;
    if !replay {
        debug_assert!(!s.hashing, "no hash runs while a sync may start");
        s.live.synced.extend(paths.iter().cloned());
        s.live.sending = paths.clone();
        s.live.owes_hash = true;
        s.hashing = true;
        s.hash_builds = false;
        // The set grew: no run holds all of it until this sync reaches it.
        s.live.holds.clear();
    }
    s.live.sending_to = into.clone();
    let filter = s.live.filter.clone().expect("synced with it");
    out.push(Action::Sync { image, paths, into, replay, filter });
}

/// The runs of the deployed reference that lack the synced set and may get it now: none while nothing is
/// synced, or while a rollout (under way, or a fallback build's, to come) will replace them with an image
/// that has it all.
pub(super) fn lacking<'a>(s: &'a ImageState, pods: &'a Pods) -> impl Iterator<Item = Incarnation> + 'a {
    let syncs = !s.live.synced.is_empty() && s.deploying.is_none() && !s.live.reroll && !s.live.disabled;
    let reference = s.running.as_deref().filter(|_| syncs);
    reference.into_iter().flat_map(|r| pods.running(r)).filter(|run| !s.live.holds.contains(run) && !s.live.missed.contains(run))
}

/// Replays the synced set into the runs that lack it: now, or after the running sync.
pub(super) fn replay(state: &mut State, image: String, at: Instant, out: &mut Vec<Action>) {
    let State { images, pods, .. } = &mut *state;
    let Some(s) = images.get_mut(&image) else { return };
    if s.live.running {
        s.live.queued_at.get_or_insert(at);
        return;
    }
    let into: Vec<Incarnation> = lacking(s, pods).collect();
    if !into.is_empty() {
        let paths = s.live.synced.clone();
        start(s, image, paths, into, true, at, Duration::ZERO, out);
    }
}

/// A sync failed or could not be done: the image is built from what is on disk (the paths it was to send
/// and those queued behind it) and rolled out even to the deployed tag, since the pods may hold part of it,
/// or the earlier syncs it was to undo (a revert hashes to the deployed tag). Nothing syncs until then.
#[allow(clippy::too_many_arguments)]
fn fall_back(state: &mut State, image: String, paths: BTreeSet<String>, error: String, unsupported: bool, skipped: bool, at: Instant, out: &mut Vec<Action>) {
    let Some(s) = state.images.get_mut(&image) else { return };
    let mut scope = Scope::Paths(paths);
    fold_queued(s, &mut scope);
    s.live.waiting = None;
    s.live.disabled |= unsupported;
    s.live.reroll = true;
    out.push(Action::Report(Report::SyncFallback { image: image.clone(), error, for_good: unsupported, skipped }));
    changed(state, image, scope, at, Duration::ZERO, out);
}

/// A change that needs a build while covered paths wait for the running sync: the build carries them (their
/// sync is dropped, and they go into the build's hash).
pub(super) fn fold_queued(s: &mut ImageState, scope: &mut Scope) {
    if !s.live.queued.is_empty() {
        scope.merge(Scope::Paths(std::mem::take(&mut s.live.queued)));
        s.live.queued_at = None;
        s.live.queued_debounce = None;
    }
}

/// A hash of synced content is done: its tag is the content tag, nothing is built.
pub(super) fn hashed(s: &mut ImageState, _image: &str, tag: String, took: Duration, out: &mut Vec<Action>) {
    s.live.hash += took;
    s.live.content = Some(tag.clone());
    settle(s);
    s.live.report_waiting(Some(tag), out);
}

/// The content is the deployed tag's (a revert): nothing is synced on top of the image any more — once the
/// pods have it, that is: not while a sync is under way or queued (it may yet fail), nor while the content
/// tag of the latest change is still being hashed.
pub(super) fn settle(s: &mut ImageState) {
    let l = &s.live;
    if l.content.is_some() && l.content == s.deployed && !l.running && l.queued.is_empty() && !s.hashing && s.pending.is_none() {
        s.live.rolled_out();
    }
}

/// Sync results.
pub(super) fn step(state: &mut State, event: Event, out: &mut Vec<Action>) {
    match event {
        Event::Synced { image, files, deleted, missed, took, at } => {
            let Some(s) = state.images.get_mut(&image) else { return };
            let replay = std::mem::take(&mut s.live.running_replay);
            s.live.running = false;
            s.live.sending.clear();
            // What was synced into each run: the set, into those it reached (a run gone meanwhile missed it).
            let into: Vec<Incarnation> = std::mem::take(&mut s.live.sending_to).into_iter().filter(|r| !missed.contains(r)).collect();
            let pods = into.iter().map(|r| &r.uid).collect::<BTreeSet<_>>().len();
            s.live.holds.extend(into);
            s.live.missed.extend(missed);
            let total = s.live.started.take().map_or(took, |t| at.saturating_duration_since(t));
            let tag = s.deployed.clone().unwrap_or_default();
            s.live.waiting = Some(SyncSummary {
                image: image.clone(),
                files,
                deleted,
                pods,
                replay,
                debounce: std::mem::take(&mut s.live.debounce),
                sync: took,
                hash: s.live.hash,
                total,
                tag,
                synced: 0,
                content: None,
            });
            // Its content tag is being hashed: report when it is known (a few ms).
            if !s.hashing || s.hash_builds {
                let content = s.live.content.clone().or_else(|| s.deployed.clone());
                settle(s);
                s.live.report_waiting(content, out);
            }
            next(state, image, at, out);
        }
        Event::SyncFailed { image, error, unsupported, skipped, at } => {
            let Some(s) = state.images.get_mut(&image) else { return };
            s.live.running = false;
            s.live.running_replay = false;
            s.live.started = None;
            s.live.sending_to.clear();
            if std::mem::take(&mut s.live.owes_hash) {
                s.hashing = false; // it failed before putting what it read into the tree
            }
            // The build hashes what the sync was to send and what waited for it: the tree may not hold them.
            let paths = std::mem::take(&mut s.live.sending);
            fall_back(state, image, paths, error, unsupported, skipped, at, out);
        }
        _ => unreachable!("only sync results come here"),
    }
}

/// Starts the next sync, if any is owed: the paths queued meanwhile into every run, and the whole synced
/// set into runs that lack it (both at once: the synced set to every run).
fn next(state: &mut State, image: String, at: Instant, out: &mut Vec<Action>) {
    let State { images, pods, .. } = &mut *state;
    let Some(s) = images.get_mut(&image) else { return };
    let queued = std::mem::take(&mut s.live.queued);
    let lacking: Vec<Incarnation> = lacking(s, pods).collect();
    let started = s.live.queued_at.take().unwrap_or(at);
    let debounce = s.live.queued_debounce.take().unwrap_or_default();
    match (queued.is_empty(), lacking.is_empty()) {
        (true, true) => {}
        (true, false) => {
            let paths = s.live.synced.clone();
            start(s, image, paths, lacking, true, started, debounce, out);
        }
        (false, true) => to_every_run(state, image, queued, started, debounce, out),
        (false, false) => {
            let paths = s.live.synced.iter().chain(&queued).cloned().collect();
            to_every_run(state, image, paths, started, debounce, out);
        }
    }
}
