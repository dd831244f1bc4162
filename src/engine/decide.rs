//! The heart of `devloop up`: what to do on each event, as a synchronous function of (state, event) →
//! actions, so unit tests drive it without servers or clocks.
//!
//! The rules: a change re-hashes (at most one hash per image at a time; what changes meanwhile is kept and
//! hashed right after); a failed hash loses nothing (the next hash is a full rescan, at once if changes came
//! in while it ran); an unchanged tag does nothing at all; a new tag builds, with the filter that hashed it;
//! a newer tag while a build runs cancels it and builds the newer one; a build result that is no longer what
//! is on disk is never deployed; one rollout per image at a time, the newest built tag deployed next.
//!
//! Live update (`[[image.sync]]`, see [`live`]): a batch whose paths all match the image's sync rules, while
//! a rollout of this session runs and nothing is being built or rolled out, is copied into the running pods
//! ([`Action::Sync`]), whose own read gives the content tag the synced tree has; anything else
//! (a path no rule covers, the Dockerfile, a build arg, a rescan) builds and rolls out as above, which clears
//! the synced state.
//!
//! The namespace's pods come in from their one watch ([`Event::Pods`], see [`pods`]): the core alone knows
//! which containers run each image's deployed reference, each run apart, and what was synced into each; a
//! sync goes to the runs it names. What a rollout's end means is in [`rollout`].
//!
//! The changed paths travel only through here: [`Event::Changed`] brings them, [`Action::Hash`] hands them
//! to the hasher.
//!
//! What each image is doing (its phase, the tag it serves, its last failure) is read from this state too
//! ([`view`]): the status block and the page draw the snapshot of it that `up` publishes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::SyncRule;
use crate::deploy::deployer::Undo;
use crate::filter::Filter;
pub use crate::watch::Scope;
pub use plan::Plan;
pub use report::{PodStages, Report, Summary, SyncSummary};
pub use pods::{Incarnation, PodChange, PodFacts};
pub use view::{Phase, Progress, Snapshot};

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
    /// Inputs of these images changed (a debounced batch, or the start): what each hash must look at;
    /// `outside`: images whose inputs outside the context tree changed too (the Dockerfile).
    /// `debounce`: how long the batch waited for its burst of saves to end.
    Changed { changes: BTreeMap<String, Scope>, outside: BTreeSet<String>, at: Instant, debounce: Duration },
    /// The config was read again: `rescan` images changed (hash them afresh), `redeploy` images' deploys
    /// changed (deploy their tag even if it is the one running), `removed` images are gone; `rules`: every
    /// image's sync rules now (none: always build).
    /// `plan`: which images wait for a trigger, their order, the build limit ([`plan`]).
    Reconfigured { rescan: Vec<String>, redeploy: Vec<String>, removed: Vec<String>, rules: Rules, plan: Plan, at: Instant },
    /// Build what these images hold (none named: every image holding a change), as asked (Enter in the
    /// terminal, the page's button, `devloop trigger`).
    Trigger { images: Vec<String>, at: Instant },
    /// Look at the image's files again and build them even if their tag is deployed or in the registry, then
    /// roll that build out (the page's and the terminal's rebuild).
    Rebuild { image: String, at: Instant },
    /// Hold the image's changes until resumed (`paused`), or resume: what was held is acted on at once.
    Pause { image: String, paused: bool, at: Instant },
    /// The port-forward of `deployment` sends its connections to `pod` now (its last connection's pick).
    Forwarding { deployment: String, pod: String },
    /// An image's inputs hash to `tag`, judged by `filter`.
    Hashed { image: String, tag: String, filter: Hashed, took: Duration },
    /// Hashing failed (e.g. the Dockerfile is gone).
    HashFailed { image: String, error: String },
    /// `tag` is built and pushed (or was already in the registry).
    /// `buildkit`: the BuildKit replica that built it, when there are several.
    Built { image: String, tag: String, digest: String, took: Duration, steps: (usize, usize), cached: bool, export: Option<Duration>, buildkit: Option<String> },
    /// An image's builds moved to another BuildKit replica (its own is not Ready) or back: `message` says so.
    BuildkitMoved { image: String, message: String },
    /// Building `tag` failed or was cancelled.
    BuildFailed { image: String, tag: String, error: String, cancelled: bool },
    /// Building `tag` could not start: BuildKit or the registry did not answer (`error` says which, where).
    /// Nothing ran; the core decides when to try again.
    BuildDeferred { image: String, tag: String, error: String },
    /// Deploying `tag` could not go on: the API server did not answer (`error`). The core decides when to try
    /// again.
    DeployDeferred { image: String, tag: String, error: String },
    /// Files changed while BuildKit read them (a save mid-build): the build is void, nothing was pushed.
    BuildStale { image: String, tag: String, reason: String, at: Instant },
    /// The rollout of `tag` ended.
    /// `reference`: what the containers were set to run; `error`: why the deploy itself failed (a Helm error,
    /// a refused apply), when it did not get as far as a rollout to judge; `reason`: why the rollout failed,
    /// as its watch judged it (`Exited (pod p, container c): exited with code 3`); `undo`: what would put
    /// back the state before a failed rollout, as its deployers say (none: their kind or config has none).
    RolledOut {
        image: String,
        tag: String,
        ok: bool,
        took: Duration,
        at: Instant,
        pod: PodStages,
        reference: String,
        error: Option<String>,
        reason: Option<String>,
        undo: Vec<Undo>,
    },
    /// The [`Action::RollBack`] of the failed rollout of `tag` is done (`ok`: its own rollout succeeded).
    Undone { image: String, tag: String, ok: bool, at: Instant },
    /// A [`Action::Sync`] is done: `files` copied and `deleted` removed in the runs it named, but for
    /// `missed` (gone meanwhile).
    Synced { image: String, files: usize, deleted: usize, missed: Vec<Incarnation>, took: Duration, at: Instant },
    /// A [`Action::Sync`] failed; `unsupported`: the containers cannot take it (no `tar`), so stop syncing;
    /// `skipped`: it was not tried (too large, no container to take it), nothing was sent.
    SyncFailed { image: String, error: String, unsupported: bool, skipped: bool, at: Instant },
    /// The namespace's pods changed, as its one pod watch saw ([`pods`]).
    Pods { change: PodChange, at: Instant },
    /// A pod running `tag`, rolled out earlier, crashed (`error`: where, the exit code, its last log lines);
    /// `rollback`: the image's deploys roll a failed rollout back.
    Crashed { image: String, tag: String, error: String, at: Instant, rollback: bool },
    /// A worker's news about the build or rollout of `tag` (shown while `tag` is the one at work; see [`view`]).
    Progress { image: String, tag: String, progress: Progress },
    /// `up` is stopping (Ctrl-C), its workers stopped; `cleanup` (`--cleanup`): what this session deployed is
    /// to go.
    Stopping { cleanup: bool },
}

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hash the image's inputs, looking again at `scope`.
    Hash { image: String, scope: Scope },
    /// Build and push this tag (skipping the build when the registry has it, unless `force`), sending what
    /// `filter` allows, once `after` has passed (a retry's backoff; zero for a new build).
    Build { image: String, tag: String, filter: Hashed, after: Duration, force: bool },
    /// Cancel the image's running build.
    CancelBuild(String),
    /// The image is no longer configured: stop what runs for it (log streams, pod watch) and drop what is
    /// kept for it (its hashed tree, its deployed reference).
    Forget(String),
    /// Roll the image's workloads to this tag, once `after` has passed (a retry's backoff; zero at first).
    Deploy { image: String, tag: String, digest: String, after: Duration },
    /// A rollout to `reference` succeeded: replace the pods it left in place that run files synced earlier
    /// (by this `up` or an earlier one; they hold what no image does), and, `warm` (the image syncs), open the
    /// sync sessions into its containers now rather than at the first save.
    ReplaceStale { image: String, reference: String, warm: bool },
    /// The rollout of `tag` failed: put back what ran before it, as its deployers said how.
    RollBack { image: String, tag: String, undo: Vec<Undo> },
    /// Copy these context paths (deleting those gone from disk; a directory with what `filter` lets through
    /// below it) into the containers of these runs of the deployed reference (`replay`: the synced set, into
    /// runs that lack it). A sync that is not a replay goes to every run and is also the image's hash: it
    /// reports [`Event::Hashed`] for what it read before it sends.
    Sync { image: String, paths: BTreeSet<String>, into: Vec<Incarnation>, replay: bool, filter: Hashed },
    /// A rollout put a new image of `image` in place in a node's store: remove its images there but the
    /// `newest` ones, those containers use and those tagged with a tag in `keep` (the one the crash window
    /// would go back to, one built or building).
    Prune { image: String, newest: usize, keep: Vec<String> },
    /// Remove what this session deployed, as its deployers recorded it (`up --cleanup`, at the end).
    CleanUp,
    /// Tell the user.
    Report(Report),
}

/// How long to wait before the `n`th try (1-based) of a build whose server did not answer: doubling from 1 s,
/// at most 32 s — soon enough to notice a restarted buildkitd, rare enough not to flood its log.
pub fn retry_after(n: u32) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(5))
}

/// The same for a deploy whose API server did not answer, at most 16 s: a restarting API server or a laptop
/// waking up is back within seconds, and the save is waiting to be served.
pub fn deploy_retry_after(n: u32) -> Duration {
    retry_after(n).min(Duration::from_secs(16))
}

/// A crash this soon after a rollout succeeded is taken for the rollout's failure (a crash after the settle
/// window: a dependency that timed out, a failing liveness probe): rolled back where a failed rollout would
/// be. Later, it is taken for a bug to debug: reported, and the pods left as they are.
pub const ROLLOUT_CRASH_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct ImageState {
    hashing: bool,
    /// What changed and is not hashed yet (while a hash runs, or after one failed).
    pending: Option<Scope>,
    /// The newest tag hashed from disk.
    disk: Option<String>,
    building: Option<String>,
    /// The filter `building` was hashed with, for a retry; and how many tries found no server.
    build_filter: Option<Hashed>,
    retries: u32,
    /// Tries of the rollout under way that found no API server.
    deploy_retries: u32,
    deploying: Option<String>,
    /// The digest of `deploying`.
    deploying_digest: Option<String>,
    /// The rollout under way puts `fallback` back after a crash.
    rolling_back: bool,
    /// The failed rollout of `deploying` is being undone ([`Action::RollBack`]).
    undoing: bool,
    /// The last (tag, digest) whose rollout succeeded and did not crash soon after, and when it rolled out;
    /// and the one before it, which a crash soon after a rollout goes back to.
    good: Option<(String, String)>,
    rolled_at: Option<Instant>,
    fallback: Option<(String, String)>,
    /// Built, waiting for the running rollout to end.
    queued: Option<(String, String)>,
    deployed: Option<String>,
    /// The reference the last successful rollout put in place: what the Deployment asks for, which pods a
    /// sync goes to, and what this image is substituted with when another image's manifests are applied.
    running: Option<String>,
    /// The iteration in flight: when its change was seen, and its figures so far.
    started: Option<Instant>,
    summary: Summary,
    /// The running hash may build; false: it only learns the content tag of a sync.
    hash_builds: bool,
    /// A change waiting in `pending` needs a build.
    pending_builds: bool,
    /// A manual image's changes since its last trigger, and whether inputs outside the context changed too.
    held: Option<Scope>,
    held_outside: bool,
    /// Built (`queued`), its first rollout waiting for these dependencies' (none: not waiting).
    gated: Vec<String>,
    /// A rollout of this session succeeded.
    served: bool,
    /// A build waiting for a slot: its tag, filter, backoff and whether it is forced.
    slot_wait: Option<(String, Hashed, Duration, bool)>,
    /// A rebuild was asked for: the next build is forced (built even if deployed or in the registry).
    force: bool,
    /// The running build is forced (a retry keeps it so).
    forcing: bool,
    /// Paused: its changes are held until resumed.
    paused: bool,
    live: live::Live,
    view: view::View,
}

/// Per image, its sync rules.
pub type Rules = BTreeMap<String, Vec<SyncRule>>;

/// All images' state.
#[derive(Debug, Default)]
pub struct State {
    images: BTreeMap<String, ImageState>,
    /// Per image, its sync rules (none: always build).
    rules: BTreeMap<String, Arc<Vec<SyncRule>>>,
    /// The namespace's pods, as its pod watch last said.
    pods: pods::Pods,
    views: view::Views,
    /// Triggers, order and build limit.
    plan: Plan,
    /// Images whose build holds a slot, and those waiting for one, first come first.
    slots: BTreeSet<String>,
    waiting: std::collections::VecDeque<String>,
}

impl State {
    /// The tag deployed for `image`, if any.
    pub fn deployed(&self, image: &str) -> Option<&str> {
        self.images.get(image).and_then(|s| s.deployed.as_deref())
    }
    /// Per image, the reference its last successful rollout put in place. The core alone keeps it; workers
    /// read it from the snapshot `up` publishes after every step.
    pub fn references(&self) -> BTreeMap<String, String> {
        self.images.iter().filter_map(|(i, s)| Some((i.clone(), s.running.clone()?))).collect()
    }
    /// The state at the start: nothing hashed, built or deployed yet; each image's sync rules (none: always
    /// build). A reload brings new rules as [`Event::Reconfigured`].
    pub fn new(rules: Rules) -> State {
        let mut s = State::default();
        s.set_rules(rules);
        s
    }
    /// Sets the triggers, order and build limit (at the start; a reload brings them in
    /// [`Event::Reconfigured`]).
    pub fn plan(&mut self, plan: Plan) {
        self.plan = plan;
    }
    fn set_rules(&mut self, rules: Rules) {
        self.rules = rules.into_iter().filter(|(_, r)| !r.is_empty()).map(|(i, r)| (i, Arc::new(r))).collect();
    }
    /// Images whose pods run files synced on top of their image: (image, deployed tag, synced paths,
    /// content tag).
    pub fn live(&self) -> Vec<(String, String, usize, Option<String>)> {
        self.images
            .iter()
            .filter(|(_, s)| !s.live.synced.is_empty())
            .filter_map(|(i, s)| Some((i.clone(), s.deployed.clone()?, s.live.synced.len(), s.live.content.clone())))
            .collect()
    }
    /// The pods whose containers hold the files synced on top of `image`, by name.
    pub fn holding(&self, image: &str) -> Vec<String> {
        let holds = self.images.get(image).filter(|s| !s.live.synced.is_empty()).map(|s| &s.live.holds);
        let pods: BTreeSet<String> = holds.into_iter().flatten().map(|r| r.pod.clone()).collect();
        pods.into_iter().collect()
    }
    /// Whether anything is under way.
    pub fn busy(&self) -> bool {
        self.images.values().any(|s| s.hashing || s.building.is_some() || s.deploying.is_some() || s.live.running)
    }
}

/// Decides what to do about `event`.
pub fn step(state: &mut State, event: Event) -> Vec<Action> {
    let mut out = decide(state, event);
    plan::admit(state, &mut out);
    view::note(state, &out);
    out
}

fn decide(state: &mut State, event: Event) -> Vec<Action> {
    let mut out = Vec::new();
    match event {
        Event::Progress { image, tag, progress } => view::progress(state, image, tag, progress),
        Event::Changed { changes, outside, at, debounce } => {
            for (image, scope) in changes {
                let outside = outside.contains(&image);
                if plan::holds(state, &image) {
                    plan::hold(state, image, scope, outside, &mut out);
                } else {
                    change(state, image, scope, outside, at, debounce, &mut out);
                }
            }
        }
        Event::Trigger { images, at } => {
            for (image, scope, outside) in plan::trigger(state, images, &mut out) {
                change(state, image, scope, outside, at, Duration::ZERO, &mut out);
            }
        }
        Event::Rebuild { image, at } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            s.force = true;
            out.push(Action::Report(Report::Rebuilding { image: image.clone() }));
            // What was held (paused, manual) is in this build too: a rescan looks at everything.
            plan::take_held(s);
            changed(state, image, Scope::Rescan, at, Duration::ZERO, &mut out);
        }
        Event::Pause { image, paused, at } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.paused == paused {
                return out;
            }
            s.paused = paused;
            let manual = state.plan.manual.contains(&image);
            // A resumed image acts on what it held, unless it is manual (then a trigger still does).
            let released = (!paused && !manual).then(|| plan::take_held(s)).flatten();
            out.push(Action::Report(Report::Paused { image: image.clone(), paused, released: released.as_ref().map(|r| r.2) }));
            if let Some((scope, outside, _)) = released {
                change(state, image, scope, outside, at, Duration::ZERO, &mut out);
            }
        }
        Event::Forwarding { deployment, pod } => state.forwarding(deployment, pod),
        Event::Synced { .. } | Event::SyncFailed { .. } => live::step(state, event, &mut out),
        Event::Pods { change, at } => pods::changed(state, change, at, &mut out),
        Event::Stopping { cleanup: true } => out.push(Action::CleanUp),
        Event::Stopping { cleanup: false } => {
            // Without a cleanup the pods stay as they are: say which hold what no image does.
            for (image, tag, synced, content) in state.live() {
                let pods = state.holding(&image);
                out.push(Action::Report(Report::LeftSynced { image, tag, synced, content, pods }));
            }
        }
        Event::Reconfigured { rescan, redeploy, removed, rules, plan, at } => {
            state.set_rules(rules);
            for (image, scope, outside) in plan::replan(state, plan) {
                change(state, image, scope, outside, at, Duration::ZERO, &mut out);
            }
            for image in removed {
                if state.images.remove(&image).is_some_and(|s| s.building.is_some()) {
                    out.push(Action::CancelBuild(image.clone()));
                }
                out.push(Action::Forget(image));
            }
            for image in redeploy {
                if let Some(s) = state.images.get_mut(&image) {
                    s.deployed = None;
                }
            }
            for image in rescan {
                if plan::holds(state, &image) {
                    plan::hold(state, image, Scope::Rescan, false, &mut out);
                } else {
                    changed(state, image, Scope::Rescan, at, Duration::ZERO, &mut out);
                }
            }
            plan::release(state, at, &mut out); // a dependency may be gone
        }
        Event::Hashed { image, tag, filter, took } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            s.hashing = false;
            s.live.hashed();
            s.live.filter = Some(filter.clone());
            if let Some(scope) = s.pending.take() {
                // More changes came while hashing: only the newest content counts.
                s.summary.hash += took;
                s.hashing = true;
                s.hash_builds |= std::mem::take(&mut s.pending_builds);
                out.push(Action::Hash { image, scope });
                return out;
            }
            s.disk = Some(tag.clone());
            if !s.hash_builds {
                live::hashed(s, &image, tag, took, &mut out);
                return out;
            }
            s.summary.hash += took;
            let in_flight = s.building.as_ref() == Some(&tag)
                || s.deploying.as_ref() == Some(&tag)
                || s.queued.as_ref().is_some_and(|(t, _)| *t == tag);
            if in_flight {
                s.force = false;
                return out;
            }
            if let Some(old) = s.building.take() {
                out.push(Action::CancelBuild(image.clone()));
                out.push(Action::Report(Report::Superseded { image: image.clone(), old, new: tag.clone() }));
            }
            s.queued = None;
            let force = std::mem::take(&mut s.force);
            if s.deployed.as_ref() == Some(&tag) && s.deploying.is_none() && !s.live.reroll && !force {
                s.started = None;
                s.summary = Summary::default();
                s.live.content = Some(tag.clone());
                live::settle(s);
                out.push(Action::Report(Report::Unchanged { image, tag }));
                return out;
            }
            s.building = Some(tag.clone());
            s.build_filter = Some(filter.clone());
            s.retries = 0;
            s.forcing = force;
            out.push(Action::Report(Report::Building { image: image.clone(), tag: tag.clone() }));
            out.push(Action::Build { image, tag, filter, after: Duration::ZERO, force });
        }
        Event::HashFailed { image, error } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            s.hashing = false;
            if !s.hash_builds {
                s.live.report_waiting(None, &mut out); // a sync waiting for its content tag: without it
            }
            // The hasher's tree is no longer known to match the disk: whatever comes next is a full rescan.
            let came_meanwhile = s.pending.replace(Scope::Rescan).is_some();
            if came_meanwhile {
                // The failure may be a moment of a larger change (a directory gone mid-checkout) that has
                // since gone on: look again now rather than wait for a change that may never come.
                s.hashing = true;
                s.hash_builds |= std::mem::take(&mut s.pending_builds);
                out.push(Action::Hash { image: image.clone(), scope: s.pending.take().expect("just set") });
            } else {
                s.started = None;
                s.summary = Summary::default();
            }
            out.push(Action::Report(Report::Failed { image, tag: None, error }));
        }
        Event::BuildkitMoved { image, message } => out.push(Action::Report(Report::BuildkitMoved { image, message })),
        Event::Built { image, tag, digest, took, steps, cached, export, buildkit } => {
            let waits = plan::waits_for(state, &image);
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
            s.summary.buildkit = buildkit;
            if s.deploying.is_some() {
                s.queued = Some((tag, digest));
            } else if !waits.is_empty() {
                // Its first rollout comes after its dependencies' ([`plan::release`]).
                (s.queued, s.gated) = (Some((tag.clone(), digest)), waits.clone());
                out.push(Action::Report(Report::WaitsFor { image, tag, on: waits }));
            } else {
                rollout::deploy(s, image, tag, digest, &mut out);
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
        Event::BuildDeferred { image, tag, error } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            let Some(filter) = s.build_filter.clone().filter(|_| s.building.as_ref() == Some(&tag)) else { return out };
            // Still the build this image wants: keep it (a newer change supersedes it as any build), later.
            s.retries += 1;
            let after = retry_after(s.retries);
            out.push(Action::Report(Report::Retrying { image: image.clone(), error, after }));
            out.push(Action::Build { image, tag, filter, after, force: s.forcing });
        }
        Event::DeployDeferred { image, tag, error } => {
            let Some(s) = state.images.get_mut(&image) else { return out };
            if s.deploying.as_ref() != Some(&tag) || s.undoing {
                return out;
            }
            let Some(digest) = s.deploying_digest.clone() else { return out };
            s.deploy_retries += 1;
            let after = deploy_retry_after(s.deploy_retries);
            out.push(Action::Report(Report::Retrying { image: image.clone(), error, after }));
            out.push(Action::Deploy { image, tag, digest, after });
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
            changed(state, image, Scope::Paths(Default::default()), at, Duration::ZERO, &mut out);
        }
        Event::Undone { .. } | Event::RolledOut { .. } | Event::Crashed { .. } => {
            rollout::step(state, event, &mut out);
            plan::release(state, Instant::now(), &mut out);
        }
    }
    out
}

/// A change to act on now: synced when the image's sync rules cover it (and nothing outside the context
/// changed), else hashed to build.
fn change(state: &mut State, image: String, scope: Scope, outside: bool, at: Instant, debounce: Duration, out: &mut Vec<Action>) {
    if !outside && live::covered(state, &image, &scope) {
        live::sync(state, image, scope, at, debounce, out);
    } else {
        changed(state, image, scope, at, debounce, out);
    }
}

/// An image's inputs changed and need a build: hash now, or after the running hash (the changes wait in
/// `pending`).
/// `debounce` is the batch's wait, counted in the iteration it starts.
fn changed(state: &mut State, image: String, mut scope: Scope, at: Instant, debounce: Duration, out: &mut Vec<Action>) {
    let s = state.images.entry(image.clone()).or_default();
    live::fold_queued(s, &mut scope);
    if s.started.is_none() {
        s.summary.debounce = debounce;
    }
    s.started.get_or_insert(at);
    s.pending_builds = true;
    hash(s, image, scope, out);
}

/// Hashes `scope` now, or after the running hash.
fn hash(s: &mut ImageState, image: String, scope: Scope, out: &mut Vec<Action>) {
    match &mut s.pending {
        Some(p) => p.merge(scope),
        None => s.pending = Some(scope),
    }
    if !s.hashing {
        s.hashing = true;
        s.hash_builds = std::mem::take(&mut s.pending_builds);
        out.push(Action::Hash { image, scope: s.pending.take().expect("just set") });
    }
}

mod live;
pub mod plan;
mod report;
pub mod pods;
mod rollout;
pub mod view;

#[cfg(test)]
mod tests;
