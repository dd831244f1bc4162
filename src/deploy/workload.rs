//! The workload kinds whose rollouts devloop watches, and what a rollout of each waits for: the controller
//! has observed the new template (`observedGeneration`), then the kind's own counts and revisions —
//! Deployment: updated, available and total replicas; StatefulSet: `updatedReplicas`, `readyReplicas` and
//! `updateRevision`/`currentRevision` (or the partition); DaemonSet: `updatedNumberScheduled` and
//! `numberAvailable` against `desiredNumberScheduled`. Pure over the objects, so the rollout judge
//! ([`super::rollout`]) is the same for every kind and another kind (Job, CronJob, a bare Pod, a custom
//! resource with a readiness rule) is one more arm here. The kinds devloop replaces rather than rolls (a Job,
//! a bare Pod: their pod templates are immutable) are judged in [`replaced`].

use std::collections::BTreeMap;

mod replaced;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A kind of workload whose rollout is watched: the config's (a port-forward names one too).
pub use crate::config::WorkloadKind as Kind;

/// A workload as the API server returned it.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// A Deployment.
    Deployment(Deployment),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A DaemonSet.
    DaemonSet(DaemonSet),
    /// A Job.
    Job(Job),
    /// A bare Pod.
    Pod(Pod),
}

impl From<Deployment> for Workload {
    fn from(d: Deployment) -> Self {
        Workload::Deployment(d)
    }
}
impl From<StatefulSet> for Workload {
    fn from(s: StatefulSet) -> Self {
        Workload::StatefulSet(s)
    }
}
impl From<DaemonSet> for Workload {
    fn from(d: DaemonSet) -> Self {
        Workload::DaemonSet(d)
    }
}
impl From<Job> for Workload {
    fn from(j: Job) -> Self {
        Workload::Job(j)
    }
}
impl From<Pod> for Workload {
    fn from(p: Pod) -> Self {
        Workload::Pod(p)
    }
}

/// Where a workload's rollout stands by its own status (its pods' failures are judged apart).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The controller gave up (a Deployment's ProgressDeadlineExceeded): reason and message.
    Stalled(String, String),
    /// Still going; what it waits for.
    Waiting(String),
    /// Every pod runs the new template and is available.
    Done {
        /// Pods ready.
        ready: i32,
    },
    /// The controller replaces no pod by itself (`updateStrategy: OnDelete`): what the rollout waits for.
    Manual(String),
    /// A Job reached its completions (a bare Pod exited 0 and is not restarted): how many pods succeeded.
    Complete {
        /// Pods that succeeded.
        succeeded: i32,
    },
    /// A Job failed (its condition Failed): the reason (`BackoffLimitExceeded`, `DeadlineExceeded`) and
    /// message, and its last failed pod with the container that failed, whose logs tell why.
    Failed {
        /// The Job's reason.
        reason: String,
        /// Its message, and how the pod's container ended.
        message: String,
        /// The last failed pod.
        pod: Option<String>,
        /// Its container that failed.
        container: Option<String>,
    },
}

impl Workload {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Workload::Deployment(_) => Kind::Deployment,
            Workload::StatefulSet(_) => Kind::StatefulSet,
            Workload::DaemonSet(_) => Kind::DaemonSet,
            Workload::Job(_) => Kind::Job,
            Workload::Pod(_) => Kind::Pod,
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Workload::Deployment(d) => &d.metadata,
            Workload::StatefulSet(s) => &s.metadata,
            Workload::DaemonSet(d) => &d.metadata,
            Workload::Job(j) => &j.metadata,
            Workload::Pod(p) => &p.metadata,
        }
    }

    /// Its pod template (none for a bare Pod).
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Workload::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
            Workload::DaemonSet(d) => d.spec.as_ref().map(|s| &s.template),
            Workload::Job(j) => j.spec.as_ref().map(|s| &s.template),
            Workload::Pod(_) => None,
        }
    }

    /// The spec of its pods: its template's, a bare Pod's own.
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Workload::Pod(p) => p.spec.as_ref(),
            w => w.template().and_then(|t| t.spec.as_ref()),
        }
    }

    /// The labels its selector matches (`matchLabels`): its pods (a Job's: the `controller-uid` the API
    /// server put in; a bare Pod's: its own labels).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        let labels = match self {
            Workload::Deployment(d) => d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()),
            Workload::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.selector.match_labels.clone()),
            Workload::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()),
            Workload::Job(j) => j.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(|s| s.match_labels.clone()),
            Workload::Pod(p) => p.metadata.labels.clone(),
        };
        labels.unwrap_or_default()
    }

    /// How long a new pod must be Ready before it counts as available (`minReadySeconds`).
    pub fn min_ready_seconds(&self) -> i32 {
        let m = match self {
            Workload::Deployment(d) => d.spec.as_ref().and_then(|s| s.min_ready_seconds),
            Workload::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.min_ready_seconds),
            Workload::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.min_ready_seconds),
            Workload::Job(_) | Workload::Pod(_) => None,
        };
        m.unwrap_or(0)
    }

    /// Whether its controller has seen its latest template (a Job's and a Pod's are never changed: devloop
    /// makes them anew).
    pub fn observed(&self) -> bool {
        let observed = match self {
            Workload::Deployment(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            Workload::StatefulSet(s) => s.status.as_ref().and_then(|s| s.observed_generation),
            Workload::DaemonSet(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            Workload::Job(_) | Workload::Pod(_) => return true,
        };
        observed.unwrap_or(0) >= self.meta().generation.unwrap_or(0)
    }

    /// Where its rollout stands by its status; `pods`: its pods (to name those an `OnDelete` rollout waits
    /// for).
    pub fn progress(&self, pods: &[Pod]) -> Progress {
        if let Workload::Deployment(d) = self {
            // The controller's own verdict, once it has seen the latest template (a deadline the previous
            // template ran into is not this rollout's).
            let stalled = d.status.iter().flat_map(|s| s.conditions.iter().flatten()).find(|c| {
                c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
            if let Some(c) = stalled.filter(|_| self.observed()) {
                return Progress::Stalled("ProgressDeadlineExceeded".into(), c.message.clone().unwrap_or_default());
            }
        }
        if !self.observed() {
            return Progress::Waiting(format!("the {} controller has not seen the change yet", self.kind().name()));
        }
        match self {
            Workload::Deployment(d) => deployment(d),
            Workload::StatefulSet(s) => stateful_set(s, pods),
            Workload::DaemonSet(d) => daemon_set(d, pods),
            Workload::Job(j) => replaced::job(j, pods),
            Workload::Pod(p) => replaced::pod(p),
        }
    }

    /// Where it stands, in one line: its template's image(s) and its counts, e.g. `template image
    /// reg/app:1@sha256:…; 1 desired, 0 updated, 1 ready, 1 available, 2 total`.
    pub fn describe(&self) -> String {
        let containers = self.pod_spec().map(|s| s.containers.as_slice()).unwrap_or_default();
        let image = |c: &k8s_openapi::api::core::v1::Container| c.image.clone().unwrap_or_else(|| "(none)".into());
        let images = match containers {
            [one] => format!("template image {}", image(one)),
            many => format!("template images {}", many.iter().map(|c| format!("{}={}", c.name, image(c))).collect::<Vec<_>>().join(", ")),
        };
        let n = |v: Option<i32>| v.unwrap_or(0);
        let counts = match self {
            Workload::Deployment(d) => {
                let s = d.status.clone().unwrap_or_default();
                format!(
                    "{} desired, {} updated, {} ready, {} available, {} total",
                    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    n(s.updated_replicas),
                    n(s.ready_replicas),
                    n(s.available_replicas),
                    n(s.replicas)
                )
            }
            Workload::StatefulSet(st) => {
                let s = st.status.clone().unwrap_or_default();
                let revisions = match (&s.update_revision, &s.current_revision) {
                    (Some(u), Some(c)) if u != c => format!(", revision {c} rolling to {u}"),
                    (Some(u), _) => format!(", revision {u}"),
                    _ => String::new(),
                };
                format!(
                    "{} desired, {} updated, {} ready, {} total{revisions}",
                    st.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    n(s.updated_replicas),
                    n(s.ready_replicas),
                    s.replicas
                )
            }
            Workload::DaemonSet(d) => {
                let s = d.status.clone().unwrap_or_default();
                format!(
                    "{} desired, {} updated, {} ready, {} available",
                    s.desired_number_scheduled,
                    n(s.updated_number_scheduled),
                    s.number_ready,
                    n(s.number_available)
                )
            }
            Workload::Job(j) => replaced::describe_job(j),
            Workload::Pod(p) => replaced::describe_pod(p),
        };
        let mut line = format!("{images}; {counts}");
        if !self.observed() {
            line.push_str(" (the controller has not seen the latest template yet)");
        }
        line
    }
}

/// A Deployment: every replica updated and available, no old one left.
fn deployment(d: &Deployment) -> Progress {
    let status = d.status.clone().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated == want && available >= want && total == want {
        return Progress::Done { ready: available };
    }
    Progress::Waiting(format!("{updated}/{want} pods updated, {available} available, {} old", (total - updated).max(0)))
}

/// A pod's `controller-revision-hash` label: the revision of its StatefulSet or DaemonSet it was made from.
fn hash(p: &Pod) -> Option<&str> {
    p.metadata.labels.as_ref().and_then(|l| l.get("controller-revision-hash")).map(String::as_str)
}

/// Whether a pod's Ready condition is true.
fn is_ready(p: &Pod) -> bool {
    p.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The names of `pods` whose `controller-revision-hash` label is not `revision` (the pods a StatefulSet or
/// DaemonSet has not updated), sorted.
fn not_at(pods: &[Pod], revision: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| hash(p) != revision)
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// What an `OnDelete` rollout waits for: `old` pods still on the previous template.
fn on_delete(kind: Kind, old: i32, names: &[String]) -> Progress {
    let pods = if names.is_empty() { format!("{old} pod(s)") } else { format!("pod(s) {}", names.join(" ")) };
    Progress::Manual(format!(
        "updateStrategy OnDelete: the {} controller replaces no pod by itself; {pods} still run the previous template until you delete them (kubectl delete pod {})",
        kind.name(),
        if names.is_empty() { "<pod>".to_string() } else { names.join(" ") }
    ))
}

/// A StatefulSet (what `kubectl rollout status` waits for): every replica ready, then the pods from the
/// partition up updated (RollingUpdate with a partition), or the current revision become the update
/// revision; with OnDelete, pods still on the old revision are waited for by the user, and said so.
fn stateful_set(st: &StatefulSet, pods: &[Pod]) -> Progress {
    let s = st.status.clone().unwrap_or_default();
    let spec = st.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let (ready, updated) = (s.ready_replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0));
    let available = s.available_replicas.unwrap_or(ready).min(ready);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let old = (s.replicas - updated).max(0);
    if strategy.type_.as_deref() == Some("OnDelete") && old > 0 {
        // The new pods (made again after the user deleted old ones) may still be starting: waited for first.
        let revision = s.update_revision.as_deref();
        let new_ready = pods.iter().filter(|p| is_ready(p) && revision.is_some() && hash(p) == revision).count();
        if new_ready >= updated as usize {
            return on_delete(Kind::StatefulSet, old, &not_at(pods, revision));
        }
    }
    if s.replicas < want || available < want {
        return Progress::Waiting(format!("{updated}/{want} pods updated, {available} ready, {old} old"));
    }
    let partition = strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0).max(0);
    if partition > 0 {
        let to_update = (want - partition).max(0);
        if updated < to_update {
            return Progress::Waiting(format!("{updated}/{to_update} pods from ordinal {partition} up updated (partition {partition})"));
        }
        return Progress::Done { ready: available };
    }
    if s.update_revision.is_some() && s.update_revision != s.current_revision {
        return Progress::Waiting(format!("{updated}/{want} pods updated, {available} ready, {old} old"));
    }
    Progress::Done { ready: available }
}

/// A DaemonSet (what `kubectl rollout status` waits for): a pod updated and available on every node that
/// should run one; with OnDelete, pods still on the old template are waited for by the user, and said so.
fn daemon_set(d: &DaemonSet, pods: &[Pod]) -> Progress {
    let s = d.status.clone().unwrap_or_default();
    let want = s.desired_number_scheduled;
    let updated = s.updated_number_scheduled.unwrap_or(0);
    let available = s.number_available.unwrap_or(0);
    let manual = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()) == Some("OnDelete");
    if manual && updated < want && available >= want {
        // The status names no revision: the old pods are those whose images are not the template's.
        let images = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| -> Vec<Option<String>> {
            spec.map(|s| s.containers.iter().map(|c| c.image.clone()).collect()).unwrap_or_default()
        };
        let template = images(d.spec.as_ref().and_then(|s| s.template.spec.as_ref()));
        let mut names: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && images(p.spec.as_ref()) != template)
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        return on_delete(Kind::DaemonSet, want - updated, &names);
    }
    if updated < want || available < want {
        return Progress::Waiting(format!("{updated}/{want} pods updated, {available} available"));
    }
    Progress::Done { ready: available }
}

/// The pods a reverted StatefulSet will wait for forever: with `podManagementPolicy: OrderedReady` its
/// controller replaces no pod while one is not Ready, so a pod of the failed template (not on the update
/// revision) that never became Ready stays as it is after the template went back (the "forced rollback" of
/// the Kubernetes docs: delete it). Only the StatefulSet's own pods (by owner), none before its controller
/// has seen the reverted template; none with `updateStrategy: OnDelete` (the user replaces its pods).
pub fn stuck_pods(st: &StatefulSet, pods: &[Pod]) -> Vec<String> {
    let strategy = st.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref());
    if strategy == Some("OnDelete") {
        return vec![];
    }
    let w = Workload::StatefulSet(st.clone());
    let Some(revision) = st.status.as_ref().and_then(|s| s.update_revision.clone()).filter(|_| w.observed()) else { return vec![] };
    let name = st.metadata.name.as_deref().unwrap_or_default();
    let owned = |p: &Pod| p.metadata.owner_references.iter().flatten().any(|o| o.kind == "StatefulSet" && o.name == name);
    let stuck: Vec<Pod> = pods.iter().filter(|p| owned(p) && !is_ready(p)).cloned().collect();
    not_at(&stuck, Some(&revision))
}

#[cfg(test)]
mod tests;
