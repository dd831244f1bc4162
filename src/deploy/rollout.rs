//! Watching a Deployment's rollout to a new image: success when the new pods are all available and no old
//! replicas remain; failure as soon as the evidence is there (pull errors, crash loops, config errors,
//! unschedulable pods, the progress deadline), with the pod, reason, message and the container's last log
//! lines. Only pods running the new image are judged, so pods that were failing before are not blamed.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;

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

/// Told (Deployment, what its rollout waits for).
pub type OnProgress = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

tokio::task_local! {
    /// Where [`watch`] tells (Deployment, what it waits for) each time that changes, when the caller set it
    /// (`up`'s status block). A task-local, so the deploy paths between `up` and the watch (manifests, patch,
    /// Helm) need not all carry it.
    pub static ON_PROGRESS: OnProgress;
}

/// Why a rollout failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The pod that shows it (none for Deployment-level failures).
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
    /// All new pods available, no old replicas left.
    Done {
        /// Pods ready.
        ready: i32,
        /// When the watch saw the first new pod reach each stage.
        timeline: Timeline,
    },
    /// It will not succeed.
    Failed(Failure),
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
}

impl Timeline {
    /// Notes what `pod` shows, if it is one of the rollout's new pods.
    fn saw(&mut self, pod: &Pod, refs: &[String], dep: Option<&Deployment>) {
        if !is_new(pod, refs, dep) || pod.metadata.deletion_timestamp.is_some() {
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
/// pull secrets of the Deployment's template (when known): adding devloop's pull secret rolls pods without
/// changing the image, and the old pods that could not pull are then not the rollout's.
fn is_new(pod: &Pod, refs: &[String], dep: Option<&Deployment>) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let runs = spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.image.as_ref().is_some_and(|i| refs.contains(i)));
    let wanted = dep.and_then(|d| d.spec.as_ref()).and_then(|s| s.template.spec.as_ref()).and_then(|s| s.image_pull_secrets.as_ref());
    let has = spec.image_pull_secrets.as_deref().unwrap_or_default();
    runs && wanted.into_iter().flatten().all(|w| has.iter().any(|h| h.name == w.name))
}

/// Judges a rollout from the Deployment and its pods. Pure, so tests drive it without a cluster.
pub fn assess(dep: &Deployment, pods: &[Pod], refs: &[String]) -> Verdict {
    assess_with(dep, pods, refs, &|_, _| false)
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
pub fn assess_with(dep: &Deployment, pods: &[Pod], refs: &[String], tolerated: &dyn Fn(&str, &str) -> bool) -> Verdict {
    let status = dep.status.clone().unwrap_or_default();
    let generation = dep.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    if observed >= generation {
        for c in status.conditions.iter().flatten() {
            if c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
                return Verdict::Failed(Failure {
                    pod: None,
                    container: None,
                    reason: "ProgressDeadlineExceeded".into(),
                    message: c.message.clone().unwrap_or_default(),
                    previous_logs: false,
                    logs: vec![],
                });
            }
        }
    }
    let mut new_pods: Vec<&Pod> =
        pods.iter().filter(|p| is_new(p, refs, Some(dep)) && p.metadata.deletion_timestamp.is_none()).collect();
    new_pods.sort_by_key(|p| p.metadata.name.clone());
    for pod in &new_pods {
        if let Some(f) = pod_failure(pod) {
            if grace(pod, &f).is_some_and(|(kind, _)| tolerated(pod.metadata.name.as_deref().unwrap_or_default(), kind)) {
                continue;
            }
            return Verdict::Failed(f);
        }
    }
    let want = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if observed < generation {
        return Verdict::Progressing("the Deployment controller has not seen the change yet".into());
    }
    if updated == want && available >= want && total == want {
        return Verdict::Done { ready: available, timeline: Timeline::default() };
    }
    Verdict::Progressing(format!(
        "{updated}/{want} pods updated, {available} available, {} old",
        (total - updated).max(0)
    ))
}

/// Where a Deployment stands, in one line: its pod template's image(s) and its replica counts, e.g.
/// `template image reg/app:1@sha256:…; 1 desired, 0 updated, 1 ready, 1 available, 2 total`. Told when a
/// rollout was interrupted, so the user knows what is running without asking kubectl.
pub fn describe(dep: &Deployment) -> String {
    let containers = dep.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|s| s.containers.as_slice()).unwrap_or_default();
    let image = |c: &k8s_openapi::api::core::v1::Container| c.image.clone().unwrap_or_else(|| "(none)".into());
    let images = match containers {
        [one] => format!("template image {}", image(one)),
        many => format!("template images {}", many.iter().map(|c| format!("{}={}", c.name, image(c))).collect::<Vec<_>>().join(", ")),
    };
    let status = dep.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let mut line = format!(
        "{images}; {} desired, {} updated, {} ready, {} available, {} total",
        dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        n(status.updated_replicas),
        n(status.ready_replicas),
        n(status.available_replicas),
        n(status.replicas),
    );
    if status.observed_generation.unwrap_or(0) < dep.metadata.generation.unwrap_or(0) {
        line.push_str(" (the controller has not seen the latest template yet)");
    }
    line
}

/// The first failing container of a pod, if any.
fn pod_failure(pod: &Pod) -> Option<Failure> {
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
    let statuses = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for cs in statuses {
        let Some(state) = &cs.state else { continue };
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_default();
            if FAILING_REASONS.contains(&reason.as_str()) {
                let mut message = w.message.clone().unwrap_or_default();
                let last = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref());
                if let Some(t) = last {
                    message = format!("exited with code {} ({}); {message}", t.exit_code, t.reason.clone().unwrap_or_default());
                }
                return Some(Failure {
                    pod: name,
                    container: Some(cs.name.clone()),
                    previous_logs: reason == "CrashLoopBackOff" || last.is_some(),
                    reason,
                    message,
                    logs: vec![],
                });
            }
        }
    }
    None
}

/// Errors watching a rollout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watch itself failed.
    #[error("watching deployment {0}: {1}")]
    Watch(String, String),
}

/// Watches `namespace/name` until the rollout to `refs` is done or failed, or `timeout` passes (a failure
/// with reason `Timeout`). Uses watch streams, not polling.
pub async fn watch(
    deployments: &Api<Deployment>,
    pods_api: &Api<Pod>,
    name: &str,
    selector: &str,
    refs: &[String],
    timeout: Duration,
) -> Result<Verdict, Error> {
    let werr = |e: watcher::Error| Error::Watch(name.to_string(), e.to_string());
    let dep_stream = watcher(deployments.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")));
    let pod_stream = watcher(pods_api.clone(), watcher::Config::default().labels(selector));
    futures::pin_mut!(dep_stream, pod_stream);
    let mut dep: Option<Deployment> = None;
    let mut pods: HashMap<String, Pod> = HashMap::new();
    let mut last = String::from("waiting for the first status");
    let mut timeline = Timeline::default();
    // When each pod was first seen with a failure that may clear by itself (see [`grace`]), by pod and kind.
    let mut waiting: HashMap<(String, &'static str), (std::time::Instant, Duration)> = HashMap::new();
    // Nothing may change while a grace runs out (an unschedulable pod gets no new events): judge again each second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let judged = async {
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                ev = dep_stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) => dep = Some(d),
                    Some(Ok(watcher::Event::Delete(_))) => dep = None,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(werr(e)),
                    None => return Err(Error::Watch(name.into(), "the watch ended".into())),
                },
                ev = pod_stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                        timeline.saw(&p, refs, dep.as_ref());
                        pods.insert(p.metadata.name.clone().unwrap_or_default(), p);
                    }
                    Some(Ok(watcher::Event::Delete(p))) => {
                        pods.remove(p.metadata.name.as_deref().unwrap_or_default());
                    }
                    Some(Ok(watcher::Event::Init)) => pods.clear(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(werr(e)),
                    None => return Err(Error::Watch(name.into(), "the pod watch ended".into())),
                },
            }
            let Some(d) = &dep else { continue };
            let list: Vec<Pod> = pods.values().cloned().collect();
            for p in &list {
                let Some(f) = pod_failure(p) else { continue };
                let Some((kind, g)) = grace(p, &f) else { continue };
                let pod = p.metadata.name.clone().unwrap_or_default();
                waiting.entry((pod.clone(), kind)).or_insert_with(|| {
                    tracing::info!(pod, reason = f.reason, "{}; waiting up to {} for it to clear", f.message, humantime::format_duration(g));
                    (std::time::Instant::now(), g)
                });
            }
            let tolerated = |pod: &str, kind: &str| {
                waiting.iter().any(|((p, k), (t, g))| p == pod && *k == kind && t.elapsed() < *g)
            };
            match assess_with(d, &list, refs, &tolerated) {
                Verdict::Progressing(what) => {
                    if what != last {
                        tracing::info!(deployment = name, "{what}");
                        let _ = ON_PROGRESS.try_with(|f| f(name, &what));
                        last = what;
                    }
                }
                Verdict::Done { ready, .. } => return Ok(Verdict::Done { ready, timeline }),
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

/// The failing container's last log lines (the crashed instance's after a restart). Best effort.
async fn last_logs(pods: &Api<Pod>, f: &Failure) -> Vec<String> {
    let (Some(pod), Some(container)) = (&f.pod, &f.container) else { return vec![] };
    let params = LogParams {
        container: Some(container.clone()),
        tail_lines: Some(20),
        previous: f.previous_logs,
        ..Default::default()
    };
    match pods.logs(pod, &params).await {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) => vec![format!("(no logs: {e})")],
    }
}

#[cfg(test)]
mod tests;
