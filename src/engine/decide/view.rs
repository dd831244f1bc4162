//! What each image is doing, as the core knows it, and the immutable [`Snapshot`] of it that `up` publishes
//! to every reader (the terminal's status block and the status page alike).
//!
//! Why in the core's state rather than in a view model of its own: an image's phase is a reading of facts
//! the core already owns — a hash, build, rollout or sync under way, the tag deployed, what is synced on top
//! of it, the last failure and whether a success came since — so [`State::snapshot`] computes it from them
//! and there is nothing to keep in step. Only what workers alone see (BuildKit's step, what a rollout waits
//! for, the Deployments it rolled) comes in, as [`Event::Progress`] about one tag, kept only while that tag
//! is the one at work: news about a build or rollout that is over is dropped, whatever order it comes in.

use super::*;

/// What one image is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a change (nothing deployed yet).
    Watching,
    /// Hashing its build inputs.
    Hashing,
    /// BuildKit runs step `step` of the `of` it knows of, named `name`.
    Building {
        /// The step started last (1-based).
        step: usize,
        /// Steps known so far.
        of: usize,
        /// BuildKit's name for it, e.g. `[2/3] RUN make`.
        name: String,
    },
    /// The image is being exported or pushed.
    Pushing,
    /// A rollout is being watched: what it waits for.
    RollingOut(String),
    /// Changed files are being copied into the running containers.
    Syncing,
    /// A build waits for a slot (`[buildkit] parallel`).
    Queued,
    /// Built; its first rollout waits for these images' first rollouts (`depends-on`).
    Waiting(Vec<String>),
    /// A manual image holds `changes` changed paths (0: everything) until a trigger.
    Held {
        /// Paths held.
        changes: usize,
    },
    /// Paused (the page's or the terminal's pause): `changes` changed paths held (0 with `held`: everything;
    /// none held when not `held`) until resumed.
    Paused {
        /// Paths held.
        changes: usize,
        /// Something changed meanwhile.
        held: bool,
    },
    /// The pods run `tag` (plus `synced` files synced since).
    Serving {
        /// The content tag deployed.
        tag: String,
        /// Files synced into the pods since.
        synced: usize,
    },
    /// The last iteration failed: why (one line).
    Failed(String),
}

impl Phase {
    /// The phase's name on the status page (`rolling-out`, `serving`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Phase::Watching => "watching",
            Phase::Hashing => "hashing",
            Phase::Building { .. } => "building",
            Phase::Pushing => "pushing",
            Phase::RollingOut(_) => "rolling-out",
            Phase::Syncing => "syncing",
            Phase::Queued => "queued",
            Phase::Waiting(_) => "waiting",
            Phase::Held { .. } => "held",
            Phase::Paused { .. } => "paused",
            Phase::Serving { .. } => "serving",
            Phase::Failed(_) => "failed",
        }
    }

    /// Whether the phase is work in progress (shown with its running time).
    pub fn busy(&self) -> bool {
        !matches!(self, Phase::Watching | Phase::Serving { .. } | Phase::Failed(_) | Phase::Held { .. } | Phase::Paused { .. })
    }
}

/// What a worker saw of the work the core gave it ([`Event::Progress`], about one tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// BuildKit started step `step` of the `of` it knows of, named `name`.
    Step {
        /// 1-based.
        step: usize,
        /// Steps known so far.
        of: usize,
        /// BuildKit's name for it.
        name: String,
    },
    /// The build is being exported or pushed.
    Pushing,
    /// The rollout waits for this (`deployment ns/x: 0/1 pods updated`).
    Waiting(String),
    /// The rollout rolled these Deployments (sent before its result).
    Rolled(Vec<String>),
}

impl Progress {
    /// Which slot the news takes while it waits for the core: a newer one in the same slot replaces it.
    pub fn slot(&self) -> u8 {
        match self {
            Progress::Step { .. } | Progress::Pushing => 0,
            Progress::Waiting(_) => 1,
            Progress::Rolled(_) => 2,
        }
    }
}

/// One image as the status block and the page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageView {
    /// What it is doing.
    pub phase: Phase,
    /// Since when it has been in this kind of phase (a new build step keeps the build's clock).
    pub since: Instant,
    /// The content tag its pods run, if a rollout of this session succeeded (and nothing undid it since).
    pub deployed: Option<String>,
    /// The reference its last successful rollout put in place (`repo:tag@digest`): what the workloads ask for.
    pub reference: Option<String>,
    /// Paths synced on top of `deployed`.
    pub synced: usize,
    /// The Deployments its last rollout rolled.
    pub deployments: Vec<String>,
    /// Its port-forwards: each URL and the pod new connections go to now.
    pub forwards: Vec<Forward>,
    /// The containers whose spec asks for its deployed reference (running or not), from the namespace's pod
    /// watch.
    pub runs: Vec<Run>,
    /// The content tag of the tree its pods hold (the deployed tag plus what was synced), when files were
    /// synced on top of it.
    pub content: Option<String>,
    /// Its changes are held until resumed.
    pub paused: bool,
    /// Its last failure, kept after a success (the page marks it fixed).
    pub failure: Option<Failure>,
}

/// One container running an image's deployed reference: where, how it is doing, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// How often it restarted (each restart starts from the image again).
    pub restarts: i32,
    /// It is Ready.
    pub ready: bool,
    /// It runs; when it does not, why (the kubelet's reason: `CrashLoopBackOff`, `ImagePullBackOff`, …).
    pub waiting: Option<String>,
    /// The synced paths it holds on top of the image: the image's count when it has them all, 0 when it has
    /// none (nothing synced, or a replay into it is owed).
    pub synced: usize,
}

impl ImageView {
    /// Its forwarded URLs.
    pub fn urls(&self) -> Vec<&str> {
        self.forwards.iter().map(|f| f.url.as_str()).collect()
    }
}

/// One port-forward of an image's workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where it listens (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The pod new connections go to (none until the forward knows its workload's pods).
    pub pod: Option<String>,
}

/// An image's last failure, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which failure of this `up` it is (1, 2, …): a reader tells a new one from the one it has seen by it.
    pub n: u64,
    /// The tag that failed to build or roll out, if known.
    pub tag: Option<String>,
    /// Why: every line (a build failure names the step, its Dockerfile line and its last log lines).
    pub error: String,
    /// When it was first published.
    pub at: Instant,
}

/// Every image's view at one moment. Immutable once published: readers share it behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per image, in name order.
    pub images: BTreeMap<String, ImageView>,
}

impl Snapshot {
    /// Whether any image is at work.
    pub fn busy(&self) -> bool {
        self.images.values().any(|v| v.phase.busy())
    }
}

/// An image's part of the view that no other fact of the core gives.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The running build's last step, for its tag.
    build: Option<(String, Progress)>,
    /// What the running rollout waits for, for its tag.
    rollout: Option<(String, String)>,
    deployments: Vec<String>,
    /// Why the last iteration failed (one line), until something succeeds.
    failed: Option<String>,
    /// The last failure: (number, tag, every line).
    failure: Option<(u64, Option<String>, String)>,
}

/// What the view needs beyond the images.
#[derive(Debug, Default)]
pub(super) struct Views {
    /// Forwarded URLs by Deployment name.
    forwards: BTreeMap<String, String>,
    /// The pod each forward's last connection went to, by Deployment name.
    forward_pods: BTreeMap<String, String>,
    /// Failures so far.
    failures: u64,
}

impl State {
    /// `deployment` is forwarded at `url` (set up once, before the loop; shown on the rows of the images
    /// whose rollouts roll it).
    pub fn forwarded(&mut self, deployment: &str, url: &str) {
        self.views.forwards.insert(deployment.to_string(), url.to_string());
    }

    /// The port-forward of `deployment` sends its connections to `pod` now.
    pub(super) fn forwarding(&mut self, deployment: String, pod: String) {
        self.views.forward_pods.insert(deployment, pod);
    }

    /// The view now; `prev` (the last one published) keeps the clocks of phases that go on and the time of
    /// failures already seen, `now` starts the others.
    pub fn snapshot(&self, prev: &Snapshot, now: Instant) -> Snapshot {
        let images = self.images.iter().map(|(image, s)| {
            let old = prev.images.get(image);
            let phase = phase(s);
            let since = old.filter(|o| o.phase.kind() == phase.kind()).map_or(now, |o| o.since);
            let failure = s.view.failure.as_ref().map(|(n, tag, error)| {
                let at = old.and_then(|o| o.failure.as_ref()).filter(|f| f.n == *n).map_or(now, |f| f.at);
                Failure { n: *n, tag: tag.clone(), error: error.clone(), at }
            });
            let forwards = s.view.deployments.iter().filter_map(|d| {
                Some(Forward { url: self.views.forwards.get(d)?.clone(), pod: self.views.forward_pods.get(d).cloned() })
            });
            let holds = |pod: &PodFacts, c: &crate::cluster::pods::ContainerFacts| {
                let run = Incarnation { uid: pod.uid.clone(), pod: pod.name.clone(), container: c.name.clone(), restarts: c.restarts };
                if c.running && s.live.holds.contains(&run) { s.live.synced.len() } else { 0 }
            };
            let runs = s.running.as_deref().into_iter().flat_map(|r| self.pods.of_reference(r));
            let runs = runs
                .map(|(p, c)| Run {
                    synced: holds(p, c),
                    pod: p.name.clone(),
                    container: c.name.clone(),
                    restarts: c.restarts,
                    ready: c.ready,
                    waiting: if c.running { None } else { Some(c.waiting.clone().unwrap_or_else(|| "not running".into())) },
                })
                .collect();
            let view = ImageView {
                phase,
                since,
                deployed: s.deployed.clone(),
                reference: s.running.clone(),
                synced: s.live.synced.len(),
                deployments: s.view.deployments.clone(),
                forwards: forwards.collect(),
                runs,
                content: s.live.content.clone().filter(|_| !s.live.synced.is_empty()),
                paused: s.paused,
                failure,
            };
            (image.clone(), view)
        });
        Snapshot { images: images.collect() }
    }
}

/// The phase, read from the image's state: the work under way first (a build before a rollout, which the
/// build's own rollout will follow), then how the last iteration ended.
fn phase(s: &ImageState) -> Phase {
    if s.slot_wait.is_some() {
        return Phase::Queued;
    }
    if let Some(tag) = &s.building {
        return match &s.view.build {
            Some((t, Progress::Step { step, of, name })) if t == tag => Phase::Building { step: *step, of: *of, name: name.clone() },
            Some((t, Progress::Pushing)) if t == tag => Phase::Pushing,
            _ => Phase::Building { step: 0, of: 0, name: String::new() },
        };
    }
    if let Some(tag) = s.deploying.as_ref().filter(|_| s.undoing) {
        return Phase::RollingOut(format!("rolling back the failed {}", &tag[..tag.len().min(6)]));
    }
    if let Some(tag) = &s.deploying {
        let what = s.view.rollout.as_ref().filter(|(t, _)| t == tag).map(|(_, w)| w.clone());
        return Phase::RollingOut(what.unwrap_or_default());
    }
    // A hash that only learns a sync's content tag is part of the sync.
    if s.live.running || (s.hashing && !s.hash_builds) {
        return Phase::Syncing;
    }
    if s.hashing {
        return Phase::Hashing;
    }
    if !s.gated.is_empty() {
        return Phase::Waiting(s.gated.clone());
    }
    if s.paused {
        return Phase::Paused { changes: plan::held_count(s), held: s.held.is_some() };
    }
    if s.held.is_some() {
        return Phase::Held { changes: plan::held_count(s) };
    }
    match (&s.view.failed, &s.deployed) {
        (Some(why), _) => Phase::Failed(why.clone()),
        (None, Some(tag)) => Phase::Serving { tag: tag.clone(), synced: s.live.synced.len() },
        (None, None) => Phase::Watching,
    }
}

/// A worker's news about `tag`: kept if `tag` is still the one it is about, else dropped.
pub(super) fn progress(state: &mut State, image: String, tag: String, progress: Progress) {
    let Some(s) = state.images.get_mut(&image) else { return };
    match progress {
        Progress::Step { .. } | Progress::Pushing if s.building.as_ref() == Some(&tag) => s.view.build = Some((tag, progress)),
        Progress::Waiting(what) if s.deploying.as_ref() == Some(&tag) => s.view.rollout = Some((tag, what)),
        Progress::Rolled(deployments) if s.deploying.as_ref() == Some(&tag) => s.view.deployments = deployments,
        _ => {}
    }
}

/// What the step's actions change in the view: a new build or rollout starts without the last one's news;
/// a failure is kept whole; a success (or content that is what the pods run again) ends the failed state.
pub(super) fn note(state: &mut State, actions: &[Action]) {
    let short = |t: &str| t[..t.len().min(6)].to_string();
    let first = |e: &str| e.lines().next().unwrap_or("").to_string();
    for a in actions {
        let report = match a {
            Action::Deploy { image, .. } => {
                if let Some(s) = state.images.get_mut(image) {
                    s.view.rollout = None;
                }
                continue;
            }
            Action::Report(r) => r,
            _ => continue,
        };
        // (image, on a failure: its one line, its tag, all of it)
        let (image, failed) = match report {
            Report::Building { image, .. } => {
                if let Some(s) = state.images.get_mut(image) {
                    s.view.build = None;
                }
                continue;
            }
            Report::Stale { .. } | Report::Superseded { .. } | Report::SyncFallback { .. } | Report::Retrying { .. } | Report::LeftSynced { .. } | Report::BuildkitMoved { .. } => continue,
            // Phases of their own, read from the state.
            Report::Held { .. } | Report::Triggered { .. } | Report::NothingToTrigger | Report::QueuedBuild { .. } | Report::WaitsFor { .. } => continue,
            Report::Paused { .. } | Report::Rebuilding { .. } => continue,
            Report::Failed { image, tag, error } => (image, Some((first(error), tag.clone(), error.clone()))),
            Report::RolloutFailed { image, tag, reason: Some(why) } => (image, Some((format!("rollout: {why}"), Some(tag.clone()), why.clone()))),
            Report::RolloutFailed { image, tag, reason: None } => {
                let why = format!("rollout of {} failed", short(tag));
                (image, Some((why.clone(), Some(tag.clone()), why)))
            }
            Report::Crashed { image, tag, error, .. } => (image, Some((format!("crashed: {}", first(error)), Some(tag.clone()), error.clone()))),
            Report::Iteration(s) => (&s.image, None),
            Report::Synced(s) => (&s.image, None),
            Report::RolledBack { image, .. } | Report::Unchanged { image, .. } => (image, None),
        };
        let n = state.views.failures + 1;
        let Some(s) = state.images.get_mut(image) else { continue };
        match failed {
            Some((line, tag, error)) => {
                state.views.failures = n;
                s.view.failed = Some(line);
                s.view.failure = Some((n, tag, error));
            }
            None => s.view.failed = None,
        }
    }
}

/// Events as workers send them, for tests of the core's view and of what reads it.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// `images` changed (one path each).
    pub(crate) fn changed(images: &[&str]) -> Event {
        let changes = images.iter().map(|i| (i.to_string(), Scope::Paths(BTreeSet::from(["x".to_string()])))).collect();
        Event::Changed { changes, outside: BTreeSet::new(), at: Instant::now(), debounce: Duration::ZERO }
    }
    /// `image` hashed to `tag`.
    pub(crate) fn hashed(image: &str, tag: &str) -> Event {
        let filter = Hashed(Arc::new(Filter::new::<&str>(&[]).unwrap()));
        Event::Hashed { image: image.into(), tag: tag.into(), filter, took: Duration::from_millis(3) }
    }
    /// `tag` built.
    pub(crate) fn built(image: &str, tag: &str) -> Event {
        let (took, export) = (Duration::from_millis(500), Some(Duration::from_millis(120)));
        Event::Built { image: image.into(), tag: tag.into(), digest: format!("sha256:{tag}"), took, steps: (5, 3), cached: false, export, buildkit: None }
    }
    /// Pod `pod`'s container `web` runs `image`'s `tag` (as [`rolled`] deploys it).
    pub(crate) fn runs(image: &str, tag: &str, pod: &str) -> Event {
        let web = crate::cluster::pods::ContainerFacts { name: "web".into(), image: format!("reg/{image}:{tag}"), running: true, ready: true, restarts: 0, waiting: None };
        let facts = PodFacts { uid: format!("uid-{pod}"), name: pod.into(), deleting: false, containers: vec![web] };
        Event::Pods { change: PodChange::Applied(facts), at: Instant::now() }
    }
    /// The rollout of `tag` ended.
    pub(crate) fn rolled(image: &str, tag: &str, ok: bool) -> Event {
        let reference = format!("reg/{image}:{tag}");
        let (took, pod) = (Duration::from_secs(1), PodStages::default());
        Event::RolledOut { image: image.into(), tag: tag.into(), ok, took, at: Instant::now(), pod, reference, error: None, reason: None, undo: vec![] }
    }
    /// A worker's news about `tag`.
    pub(crate) fn progress(image: &str, tag: &str, progress: Progress) -> Event {
        Event::Progress { image: image.into(), tag: tag.into(), progress }
    }
}

#[cfg(test)]
mod tests;
