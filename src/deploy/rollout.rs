//! Watching a workload's rollout to a new image (a Deployment, StatefulSet or DaemonSet, a Job or bare Pod
//! made anew: what each waits for is [`super::workload`]'s): success when the new pods are all available and
//! no old ones remain (a Job's pods succeeded); failure as soon as the evidence is there (pull errors, crash
//! loops, config errors, unschedulable pods, the progress deadline, a Job's Failed condition), with the pod,
//! reason, message and the container's last log lines. Only pods running the new image are judged, so pods
//! that were failing before are not blamed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;

use super::workload::{Progress, Workload};
use crate::cluster::pods::{selected, Change, Reflector};

/// Container states that mean the rollout will not succeed by waiting.
pub const FAILING_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "RunContainerError",
    "ErrImageNeverPull",
];

/// How long a pod that carries pull secrets may show a refused pull (401/403) before it counts as failed. The
/// kubelet reads a pod's pull secrets through a cache it starts for that pod and waits at most 1 s for it;
/// then it pulls anonymously ("Unable to retrieve pull secret" in its log). On a busy node the first pod
/// referencing a Secret that devloop just created can be refused that way, and the kubelet's retry (after
/// its 10 s back-off) has the Secret.
pub const REFUSED_PULL_GRACE: Duration = Duration::from_secs(30);

/// How long a pod may be Unschedulable because of a node's taint before it counts as failed. When the control
/// plane loses touch with a kubelet (an API server restart, a busy node) the node lifecycle controller taints
/// the node `not-ready`/`unreachable`; the taint goes once the kubelet reports again (its status period is
/// 10 s), and the scheduler then places the pod. Since 1.31 the scheduler's message no longer names the
/// taint, so a taint the user set is given the same wait.
pub const TAINTED_NODE_GRACE: Duration = Duration::from_secs(60);

/// How long a new pod without a readiness probe must stay Ready, no container exited or restarted, before
/// its rollout counts as done. Without a probe Ready means only "started": a server that exits at once is
/// Ready for a moment first, and the kubelet sees the exit at its next relist of the containers (every
/// second; later on a busy node). A crash after the window is reported by [`guard`].
pub const SETTLE: Duration = Duration::from_secs(5);

/// The same for a pod whose containers all have a readiness probe: none. The probe has seen the server
/// answer, so it did start; a crash after that is caught by the watch that follows the rollout ([`guard`]),
/// and one within a minute is still taken for this rollout's failure and rolled back where configured. A
/// window here would add its length to every save's loop for the apps that did the work of a probe.
pub const SETTLE_PROBED: Duration = Duration::ZERO;

/// Told (workload, what its rollout waits for).
pub type OnProgress = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

tokio::task_local! {
    /// Where [`watch`] tells (workload, what it waits for) each time that changes, when the caller set it
    /// (`up`'s status block). A task-local, so the deploy paths between `up` and the watch (manifests, patch,
    /// Helm) need not all carry it.
    pub static ON_PROGRESS: OnProgress;
}

/// Why a rollout failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The pod that shows it (none for workload-level failures).
    pub pod: Option<String>,
    /// The failing container.
    pub container: Option<String>,
    /// Kubernetes' reason, e.g. `CrashLoopBackOff`.
    pub reason: String,
    /// Its message.
    pub message: String,
    /// The crashed instance's logs are the previous container's.
    pub previous_logs: bool,
    /// Last log lines of the failing container (filled in by [`watch`]).
    pub logs: Vec<String>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Still going; what it waits for.
    Progressing(String),
    /// All new pods available, no old ones left.
    Done {
        /// Pods ready.
        ready: i32,
        /// When the watch saw the first new pod reach each stage.
        timeline: Timeline,
    },
    /// It will not succeed.
    Failed(Failure),
    /// The template is changed but its controller replaces no pod by itself (`updateStrategy: OnDelete`):
    /// what the rollout waits for. Not a failure (nothing to roll back), not done either: said as it is.
    Manual(String),
    /// A Job's pods (a bare Pod) ran to completion.
    Completed {
        /// Pods that succeeded.
        succeeded: i32,
        /// When the watch saw its first pod reach each stage.
        timeline: Timeline,
    },
}

/// When the watch first saw a new pod (one running the rollout's image) reach each stage: where a rollout's
/// time goes (scheduling and image pull before `running`; the readiness probe between `running` and `ready`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeline {
    /// A new pod existed.
    pub created: Option<std::time::Instant>,
    /// All containers of a new pod were running.
    pub running: Option<std::time::Instant>,
    /// A new pod was Ready.
    pub ready: Option<std::time::Instant>,
    /// How long the new pods were watched after Ready before the rollout counted as done.
    pub settle: Duration,
}

impl Timeline {
    /// Notes what `pod` shows, if it is one of the rollout's new pods.
    fn saw(&mut self, pod: &Pod, refs: &[String], w: Option<&Workload>) {
        if !is_new(pod, refs, w) || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let now = std::time::Instant::now();
        self.created.get_or_insert(now);
        let Some(status) = &pod.status else { return };
        let containers = status.container_statuses.as_deref().unwrap_or_default();
        if !containers.is_empty() && containers.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())) {
            self.running.get_or_insert(now);
        }
        if status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True") {
            self.running.get_or_insert(now);
            self.ready.get_or_insert(now);
        }
    }
}

/// Whether `pod` runs one of the rollout's images (a container's spec image equals one of `refs`) with the
/// pull secrets of the workload's template (when known): adding devloop's pull secret rolls pods without
/// changing the image, and the old pods that could not pull are then not the rollout's.
fn is_new(pod: &Pod, refs: &[String], w: Option<&Workload>) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let runs = spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.image.as_ref().is_some_and(|i| refs.contains(i)));
    let wanted = w.and_then(Workload::pod_spec).and_then(|s| s.image_pull_secrets.as_ref());
    let has = spec.image_pull_secrets.as_deref().unwrap_or_default();
    runs && wanted.into_iter().flatten().all(|w| has.iter().any(|h| h.name == w.name))
}

/// Judges a rollout from the workload and its pods. Pure, so tests drive it without a cluster.
pub fn assess(w: &Workload, pods: &[Pod], refs: &[String]) -> Verdict {
    assess_with(w, pods, refs, &|_, _| false)
}

/// Whether `f` is a registry refusing the pull (401/403) of a pod that has pull secrets (see
/// [`REFUSED_PULL_GRACE`]).
fn refused_pull_with_secrets(pod: &Pod, f: &Failure) -> bool {
    let has_secrets = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.as_ref()).is_some_and(|l| !l.is_empty());
    let m = f.message.to_ascii_lowercase();
    matches!(f.reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
        && has_secrets
        && (m.contains("401 unauthorized") || m.contains("403 forbidden") || m.contains("unauthorized:"))
}

/// Failures that can clear by themselves: their kind (a refused pull shows as ErrImagePull and
/// ImagePullBackOff in turn, one grace for both) and how long they may last before they count.
fn grace(pod: &Pod, f: &Failure) -> Option<(&'static str, Duration)> {
    if refused_pull_with_secrets(pod, f) {
        Some(("refused pull", REFUSED_PULL_GRACE))
    } else if f.reason == "Unschedulable" && f.message.contains("taint") {
        Some(("tainted node", TAINTED_NODE_GRACE))
    } else {
        None
    }
}

/// [`assess`], where `tolerated(pod name, kind)` says that a failure with a [`grace`] of that kind is not one
/// yet.
pub fn assess_with(w: &Workload, pods: &[Pod], refs: &[String], tolerated: &dyn Fn(&str, &str) -> bool) -> Verdict {
    assess_from(w, pods, refs, tolerated, &Restarts::new())
}

/// Restart counts by (pod, container): those a pod had before a watch began, which are not its to blame.
pub type Restarts = HashMap<(String, String), i32>;

/// [`assess_with`], blaming only the restarts beyond `before`.
fn assess_from(w: &Workload, pods: &[Pod], refs: &[String], tolerated: &dyn Fn(&str, &str) -> bool, before: &Restarts) -> Verdict {
    let progress = w.progress(pods);
    if let Progress::Stalled(reason, message) = progress {
        return Verdict::Failed(Failure { pod: None, container: None, reason, message, previous_logs: false, logs: vec![] });
    }
    if let Progress::Failed { reason, message, pod, container } = progress {
        return Verdict::Failed(Failure { pod, container, reason, message, previous_logs: false, logs: vec![] });
    }
    let mut new_pods: Vec<&Pod> = pods.iter().filter(|p| is_new(p, refs, Some(w)) && p.metadata.deletion_timestamp.is_none()).collect();
    new_pods.sort_by_key(|p| p.metadata.name.clone());
    for pod in &new_pods {
        if let Some(f) = pod_failure(pod, before) {
            if w.kind().completes() && f.reason == "Exited" {
                continue; // a Job's pod exits by design; a failed one is retried or not as its Job says (Failed)
            }
            if grace(pod, &f).is_some_and(|(kind, _)| tolerated(pod.metadata.name.as_deref().unwrap_or_default(), kind)) {
                continue;
            }
            return Verdict::Failed(f);
        }
    }
    match progress {
        Progress::Done { ready } => Verdict::Done { ready, timeline: Timeline::default() },
        Progress::Manual(what) => Verdict::Manual(what),
        Progress::Complete { succeeded } => Verdict::Completed { succeeded, timeline: Timeline::default() },
        Progress::Waiting(what) | Progress::Stalled(_, what) | Progress::Failed { message: what, .. } => Verdict::Progressing(what),
    }
}

/// The first failing container of a pod, if any.
fn pod_failure(pod: &Pod, before: &Restarts) -> Option<Failure> {
    let name = pod.metadata.name.clone();
    let status = pod.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        // A PVC not bound yet is a wait (the volume controller binds it moments later, or a provisioner makes
        // its volume), not a verdict; the rollout timeout still bounds it.
        let unbound = c.message.as_deref().is_some_and(|m| m.contains("unbound immediate PersistentVolumeClaims"));
        if c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && !unbound {
            return Some(Failure {
                pod: name,
                container: None,
                reason: "Unschedulable".into(),
                message: c.message.clone().unwrap_or_default(),
                previous_logs: false,
                logs: vec![],
            });
        }
    }
    let name = name.unwrap_or_default();
    container_failure(pod, &|c| before.get(&(name.clone(), c.to_string())).copied().unwrap_or(0))
}

/// The first container of `pod` that is failing: a waiting reason in [`FAILING_REASONS`], or one that exited
/// (an init container: with a non-zero code) or was restarted more than `before(container)` times. Whatever
/// the Ready condition says: without a readiness probe a container is Ready the moment it starts.
fn container_failure(pod: &Pod, before: &dyn Fn(&str) -> i32) -> Option<Failure> {
    let status = pod.status.as_ref()?;
    let failure = |c: &str, reason: String, message: String, previous_logs: bool| Failure {
        pod: pod.metadata.name.clone(),
        container: Some(c.to_string()),
        reason,
        message,
        previous_logs,
        logs: vec![],
    };
    let exit = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
        format!("exited with code {} ({})", t.exit_code, t.reason.clone().unwrap_or_default())
    };
    let init = status.init_container_statuses.iter().flatten().map(|c| (c, true));
    for (cs, is_init) in init.chain(status.container_statuses.iter().flatten().map(|c| (c, false))) {
        let Some(state) = &cs.state else { continue };
        let last = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_default();
            if FAILING_REASONS.contains(&reason.as_str()) {
                let mut message = w.message.clone().unwrap_or_default();
                if let Some(t) = last {
                    message = format!("{}; {message}", exit(t));
                }
                let previous = reason == "CrashLoopBackOff" || last.is_some();
                return Some(failure(&cs.name, reason, message, previous));
            }
        }
        if let Some(t) = &state.terminated {
            if !is_init || t.exit_code != 0 {
                return Some(failure(&cs.name, "Exited".into(), exit(t), false));
            }
        }
        let restarts = cs.restart_count - before(&cs.name);
        if let Some(t) = last.filter(|_| restarts > 0) {
            let times = if restarts == 1 { "1 time".to_string() } else { format!("{restarts} times") };
            return Some(failure(&cs.name, "Exited".into(), format!("{}; restarted {times}", exit(t)), true));
        }
    }
    None
}

/// The settle window of a new pod: [`SETTLE`], or [`SETTLE_PROBED`] (none) when every container has a readiness
/// probe, or the workload's `minReadySeconds` when longer.
fn settle_for(pod: &Pod, w: &Workload) -> Duration {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let probed = !containers.is_empty() && containers.iter().all(|c| c.readiness_probe.is_some());
    let min_ready = w.min_ready_seconds().max(0) as u64;
    (if probed { SETTLE_PROBED } else { SETTLE }).max(Duration::from_secs(min_ready))
}

/// The judgement over time, fed each state the watch sees: [`assess_with`] with the graces of passing
/// failures counted from when each was first seen, and `Done` only once every new pod has been Ready for
/// its settle window ([`settle_for`]). Pure: the caller gives the clock.
#[derive(Debug, Default)]
pub struct Judge {
    /// When each pod was first seen with a failure that may clear by itself (see [`grace`]), by pod and kind.
    waiting: HashMap<(String, &'static str), (Instant, Duration)>,
    /// When each new pod was Ready from.
    ready: HashMap<String, Instant>,
    /// The restarts of the pods there before the watch.
    before: Restarts,
    /// The first judgement's time: a pod Ready a settle window before it was not waited for.
    start: Option<Instant>,
}

impl Judge {
    /// `pod` was there when the watch began: its restarts so far are not the rollout's (a rollback to pods
    /// still running, a change that does not roll them).
    pub fn existed(&mut self, pod: &Pod) {
        record_restarts(&mut self.before, pod);
    }

    /// Where the rollout stands at `now` (`wall`: the same moment in the API server's time, to read how long
    /// a pod was Ready before the watch saw it).
    pub fn judge(&mut self, w: &Workload, pods: &[Pod], refs: &[String], now: Instant, wall: Timestamp) -> Verdict {
        let start = *self.start.get_or_insert(now);
        for p in pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some((f, (kind, g))) = pod_failure(p, &self.before).and_then(|f| grace(p, &f).map(|k| (f, k))) {
                self.waiting.entry((name.clone(), kind)).or_insert_with(|| {
                    tracing::info!(pod = name, reason = f.reason, "{}; waiting up to {} for it to clear", f.message, humantime::format_duration(g));
                    (now, g)
                });
            }
            let ready = p.status.iter().flat_map(|s| s.conditions.iter().flatten()).find(|c| c.type_ == "Ready" && c.status == "True");
            if let (Some(c), true) = (ready, is_new(p, refs, Some(w))) {
                // Ready before the watch saw it (a rollback to pods still running): by the API server's clock,
                // less the second its timestamps are cut to.
                let before: Duration = c.last_transition_time.as_ref().and_then(|t| wall.duration_since(t.0).try_into().ok()).unwrap_or_default();
                let since = now.checked_sub(before.saturating_sub(Duration::from_secs(1))).unwrap_or(now);
                self.ready.entry(name).or_insert(since);
            }
        }
        let tolerated = |pod: &str, kind: &str| {
            self.waiting.iter().any(|((p, k), (t, g))| p == pod && *k == kind && now.saturating_duration_since(*t) < *g)
        };
        let (ready, mut timeline) = match assess_from(w, pods, refs, &tolerated, &self.before) {
            Verdict::Done { ready, timeline } => (ready, timeline),
            other => return other,
        };
        let mut new: Vec<&Pod> = pods.iter().filter(|p| is_new(p, refs, Some(w)) && p.metadata.deletion_timestamp.is_none()).collect();
        new.sort_by_key(|p| p.metadata.name.clone());
        for p in new {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let window = settle_for(p, w);
            let Some(since) = self.ready.get(name) else {
                return Verdict::Progressing(format!("pod {name} is available but not seen Ready yet"));
            };
            if *since + window > start {
                timeline.settle = timeline.settle.max(window);
            }
            if now.saturating_duration_since(*since) < window {
                let why = if window == SETTLE { " (no readiness probe: Ready only means it started)" } else { "" };
                return Verdict::Progressing(format!("pod {name} is Ready; watching it {} for an exit{why}", humantime::format_duration(window)));
            }
        }
        Verdict::Done { ready, timeline }
    }
}

/// After a rollout: the first failure of a pod running one of `refs` (not being deleted), counting only the
/// restarts beyond `before[(pod, container)]` (those from before the watch). See [`guard`].
pub fn crashed(pod: &Pod, refs: &[String], before: &Restarts) -> Option<Failure> {
    if !is_new(pod, refs, None) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod_failure(pod, before).filter(|f| f.container.is_some())
}

/// Notes `pod`'s restart counts in `before`.
fn record_restarts(before: &mut Restarts, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    for c in pod.status.iter().flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten())) {
        before.insert((name.clone(), c.name.clone()), c.restart_count);
    }
}

/// Errors watching a rollout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watch itself failed.
    #[error("watching {0}: {1}")]
    Watch(String, String),
}

/// The pods of `selector` among the namespace's, by name.
fn selected_pods(pods: &Reflector, selector: &BTreeMap<String, String>) -> HashMap<String, Pod> {
    pods.now().iter().filter(|p| selected(p, selector)).map(|p| (p.metadata.name.clone().unwrap_or_default(), Pod::clone(p))).collect()
}

/// Watches the workload `name` of `api`'s kind until the rollout to `refs` is done or failed, or `timeout`
/// passes (a failure with reason `Timeout`): the workload through a watch of its own, its pods (those
/// `selector` selects) as the namespace's one pod watch sees them. `pods_api` reads a failing container's
/// last lines.
pub async fn watch<K>(
    api: &Api<K>,
    pods: &Reflector,
    pods_api: &Api<Pod>,
    name: &str,
    selector: &BTreeMap<String, String>,
    refs: &[String],
    timeout: Duration,
) -> Result<Verdict, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    Workload: From<K>,
{
    let kind = K::kind(&Default::default()).to_string();
    let label = format!("{} {name}", kind.to_lowercase());
    // Told as `up` told it for Deployments (the name); another kind with its kind.
    let shown = if kind == "Deployment" { name.to_string() } else { label.clone() };
    let werr = |e: watcher::Error| Error::Watch(label.clone(), e.to_string());
    let dep_stream = watcher(api.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")));
    futures::pin_mut!(dep_stream);
    let mut dep: Option<Workload> = None;
    let mut seen: HashMap<String, Pod> = HashMap::new();
    let mut last = String::from("waiting for the first status");
    let mut timeline = Timeline::default();
    let mut judge = Judge::default();
    // Nothing may change while a grace or a settle window runs out (an unschedulable pod, a Ready pod get no
    // new events): judge again every 250 ms.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let judged = async {
        // Subscribed before the store is read, so that no change falls between the two.
        let mut changes = pods.subscribe();
        pods.pods().await;
        seen = selected_pods(pods, selector);
        for p in seen.values() {
            judge.existed(p);
            timeline.saw(p, refs, None);
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                ev = dep_stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) => {
                        let w = Workload::from(d);
                        if let Workload::Pod(p) = &w {
                            timeline.saw(p, refs, None);
                        }
                        dep = Some(w);
                    }
                    Some(Ok(watcher::Event::Delete(_))) => dep = None,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(werr(e)),
                    None => return Err(Error::Watch(label.clone(), "the watch ended".into())),
                },
                ch = changes.recv() => match ch {
                    Ok(Change::Applied(p)) => {
                        let key = p.metadata.name.clone().unwrap_or_default();
                        if selected(&p, selector) {
                            timeline.saw(&p, refs, dep.as_ref());
                            seen.insert(key, Pod::clone(&p));
                        } else {
                            seen.remove(&key); // relabelled out of the workload
                        }
                    }
                    Ok(Change::Deleted(p)) => {
                        seen.remove(p.metadata.name.as_deref().unwrap_or_default());
                    }
                    // A relist (the watch reconnected) or a lag: the store is the truth now.
                    Ok(Change::Listed) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        seen = selected_pods(pods, selector);
                        for p in seen.values() {
                            timeline.saw(p, refs, dep.as_ref());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Err(Error::Watch(label.clone(), "the pod watch ended".into())),
                },
            }
            let Some(d) = &dep else { continue };
            // A bare Pod is its own pod: others with its labels are not judged with it.
            let list: Vec<Pod> = match d {
                Workload::Pod(p) => vec![p.clone()],
                _ => seen.values().cloned().collect(),
            };
            match judge.judge(d, &list, refs, Instant::now(), Timestamp::now()) {
                Verdict::Progressing(what) => {
                    if what != last {
                        tracing::info!(workload = name, "{what}");
                        let _ = ON_PROGRESS.try_with(|f| f(&shown, &what));
                        last = what;
                    }
                }
                Verdict::Done { ready, timeline: judged } => return Ok(Verdict::Done { ready, timeline: Timeline { settle: judged.settle, ..timeline } }),
                Verdict::Completed { succeeded, .. } => return Ok(Verdict::Completed { succeeded, timeline }),
                other => return Ok(other),
            }
        }
    };
    let verdict = match tokio::time::timeout(timeout, judged).await {
        Ok(v) => v?,
        Err(_) => Verdict::Failed(Failure {
            pod: None,
            container: None,
            reason: "Timeout".into(),
            message: format!("not done after {}: {last}", humantime::format_duration(timeout)),
            previous_logs: false,
            logs: vec![],
        }),
    };
    Ok(match verdict {
        Verdict::Failed(mut f) => {
            f.logs = last_logs(pods_api, &f).await;
            Verdict::Failed(f)
        }
        v => v,
    })
}

/// The failing container's last log lines (the crashed instance's after a restart; the current one's when
/// there is no previous, or the restart came after the verdict). Best effort.
async fn last_logs(pods: &Api<Pod>, f: &Failure) -> Vec<String> {
    let (Some(pod), Some(container)) = (&f.pod, &f.container) else { return vec![] };
    let params = |previous| LogParams { container: Some(container.clone()), tail_lines: Some(20), previous, ..Default::default() };
    let first = pods.logs(pod, &params(f.previous_logs)).await;
    let result = match first {
        Ok(text) if !text.trim().is_empty() => Ok(text),
        first => pods.logs(pod, &params(!f.previous_logs)).await.ok().filter(|t| !t.trim().is_empty()).map_or(first, Ok),
    };
    match result {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) => vec![format!("(no logs: {e})")],
    }
}

/// After a rollout succeeded: watches the pods that `selector` selects and that run one of `refs` (as the
/// namespace's one pod watch sees them) until a container of one exits, restarts or fails to start again
/// ([`crashed`]), and returns that failure with its last log lines. Restarts counted when the watch begins
/// are not blamed (they came before), except a last one that ended after `since` (the rollout's start: it
/// came between the verdict and this watch).
pub async fn guard(pods: &Reflector, pods_api: &Api<Pod>, selector: &BTreeMap<String, String>, refs: &[String], since: Timestamp) -> Result<Failure, Error> {
    let mut changes = pods.subscribe();
    let mut before = Restarts::new();
    let check = |p: &Pod, before: &Restarts| crashed(p, refs, before);
    pods.pods().await;
    let now = pods.now();
    for p in now.iter().filter(|p| selected(p, selector)) {
        record_restarts(&mut before, p);
        let name = p.metadata.name.clone().unwrap_or_default();
        for c in p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
            let ended = c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).and_then(|t| t.finished_at.as_ref());
            if ended.is_some_and(|t| t.0 >= since) {
                before.entry((name.clone(), c.name.clone())).and_modify(|n| *n -= 1);
            }
        }
    }
    let mut found = now.iter().filter(|p| selected(p, selector)).find_map(|p| check(p, &before));
    while found.is_none() {
        found = match changes.recv().await {
            Ok(Change::Applied(p)) if selected(&p, selector) => check(&p, &before),
            Ok(_) => None,
            // Fell behind: look at every pod as it is now.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                pods.now().iter().filter(|p| selected(p, selector)).find_map(|p| check(p, &before))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Err(Error::Watch(format!("{selector:?}"), "the pod watch ended".into())),
        };
    }
    let mut f = found.expect("the loop ends on a failure");
    f.logs = last_logs(pods_api, &f).await;
    Ok(f)
}

#[cfg(test)]
mod tests;
