//! The kinds devloop replaces rather than rolls, their pod templates being immutable: a Job, judged by its
//! conditions (`Failed`, `Complete`) and counts, what `kubectl wait --for=condition=complete` waits for; a
//! bare Pod, judged by its phase and Ready condition like a Deployment's pod. Pure over the objects.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;

use super::{is_ready, Progress};

/// The Job's condition `type_` when it is true.
fn condition<'a>(j: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    j.status.iter().flat_map(|s| s.conditions.iter().flatten()).find(|c| c.type_ == type_ && c.status == "True")
}

/// How many pods the Job needs to succeed (`completions`, else one).
fn completions(j: &Job) -> i32 {
    j.spec.as_ref().and_then(|s| s.completions).unwrap_or(1)
}

/// A Job: failed once its controller says so (condition Failed: the retries of `backoffLimit` are its
/// decision, not devloop's), done once the pods it needs succeeded and none runs (or condition Complete).
pub(super) fn job(j: &Job, pods: &[Pod]) -> Progress {
    let s = j.status.clone().unwrap_or_default();
    let (succeeded, active, failed) = (s.succeeded.unwrap_or(0), s.active.unwrap_or(0), s.failed.unwrap_or(0));
    if let Some(c) = condition(j, "Failed") {
        let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
        let mut message = c.message.clone().unwrap_or_default();
        let last = last_failed(pods);
        if let Some((pod, container, how)) = &last {
            message = format!("{message}; pod {pod}: container {container} {how}");
        }
        let (pod, container) = last.map(|(p, c, _)| (Some(p), Some(c))).unwrap_or_default();
        return Progress::Failed { reason, message, pod, container };
    }
    let want = completions(j);
    if condition(j, "Complete").is_some() || (succeeded >= want && active == 0) {
        return Progress::Complete { succeeded };
    }
    Progress::Waiting(format!("{succeeded}/{want} completions, {active} running, {failed} failed"))
}

/// The pod of `pods` that failed last (phase Failed, or a container that ended with a non-zero code), with
/// its failed container and how that ended (`exited with code 1 (Error)`).
fn last_failed(pods: &[Pod]) -> Option<(String, String, String)> {
    let mut found: Vec<(&Pod, String, String)> = pods
        .iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ended = status.container_statuses.iter().flatten().find_map(|c| {
                let t = c.state.as_ref().and_then(|s| s.terminated.as_ref()).filter(|t| t.exit_code != 0)?;
                Some((c.name.clone(), format!("exited with code {} ({})", t.exit_code, t.reason.clone().unwrap_or_default())))
            });
            match ended {
                Some((c, how)) => Some((p, c, how)),
                None if status.phase.as_deref() == Some("Failed") => {
                    let c = p.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone()).unwrap_or_default();
                    Some((p, c, status.reason.clone().unwrap_or_else(|| "failed".into())))
                }
                None => None,
            }
        })
        .collect();
    found.sort_by_key(|(p, _, _)| (p.metadata.creation_timestamp.clone(), p.metadata.name.clone()));
    found.pop().map(|(p, c, how)| (p.metadata.name.clone().unwrap_or_default(), c, how))
}

/// A bare Pod: done once Running and Ready (the rollout judge then watches it for an exit, as a
/// Deployment's pod); one whose containers exited 0 and are not restarted has completed.
pub(super) fn pod(p: &Pod) -> Progress {
    let status = p.status.clone().unwrap_or_default();
    match status.phase.as_deref().unwrap_or("Pending") {
        "Running" if is_ready(p) => Progress::Done { ready: 1 },
        "Running" => Progress::Waiting("the pod runs, not Ready yet".into()),
        "Succeeded" => Progress::Complete { succeeded: 1 },
        "Failed" => {
            let ended = last_failed(std::slice::from_ref(p));
            Progress::Failed {
                reason: status.reason.clone().unwrap_or_else(|| "Failed".into()),
                message: ended.as_ref().map(|(_, c, how)| format!("container {c} {how}")).or(status.message.clone()).unwrap_or_default(),
                pod: p.metadata.name.clone(),
                container: ended.map(|(_, c, _)| c),
            }
        }
        phase => Progress::Waiting(format!("the pod is {phase}")),
    }
}

/// A Job's counts and state, e.g. `1/1 completions, 0 running, 0 failed, complete`.
pub(super) fn describe_job(j: &Job) -> String {
    let s = j.status.clone().unwrap_or_default();
    let state = if let Some(c) = condition(j, "Failed") {
        format!(", failed ({})", c.reason.clone().unwrap_or_default())
    } else if condition(j, "Complete").is_some() {
        ", complete".into()
    } else {
        String::new()
    };
    format!("{}/{} completions, {} running, {} failed{state}", s.succeeded.unwrap_or(0), completions(j), s.active.unwrap_or(0), s.failed.unwrap_or(0))
}

/// A bare Pod's phase, readiness and restarts, e.g. `Running, ready, 0 restarts`.
pub(super) fn describe_pod(p: &Pod) -> String {
    let status = p.status.clone().unwrap_or_default();
    let restarts: i32 = status.container_statuses.iter().flatten().map(|c| c.restart_count).sum();
    let ready = if is_ready(p) { "ready" } else { "not ready" };
    format!("{}, {ready}, {restarts} restarts", status.phase.as_deref().unwrap_or("Pending"))
}
