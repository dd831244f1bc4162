//! Following the logs of the pods that run an image: every container running it, in every pod of the
//! workload, each run once — a pod that comes later (a scale-up, a replaced pod) and a container that
//! restarts (a crash) are followed too, so their last lines reach the user. Pods are read from the namespace's
//! one [`Reflector`]; nothing here watches the API server itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio_util::sync::CancellationToken;

pub use crate::cluster::pods::Incarnation;
use crate::cluster::pods::{selected, Change, Reflector};
use crate::cluster::Target;

/// The runs of containers of `reference` in `pod` that have started (and so have logs to stream), when the
/// pod carries `selector`'s labels and is not being deleted.
pub fn incarnations(pod: &Pod, selector: &BTreeMap<String, String>, reference: &str) -> Vec<Incarnation> {
    if pod.metadata.deletion_timestamp.is_some() || !selected(pod, selector) {
        return Vec::new();
    }
    let (Some(uid), Some(name)) = (pod.metadata.uid.clone(), pod.metadata.name.clone()) else { return Vec::new() };
    let ours: BTreeSet<&str> =
        pod.spec.iter().flat_map(|s| &s.containers).filter(|c| c.image.as_deref() == Some(reference)).map(|c| c.name.as_str()).collect();
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .filter(|c| ours.contains(c.name.as_str()))
        // Waiting (created, or in a restart's back-off) has no new output yet: its run is followed once it starts.
        .filter(|c| c.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()))
        .map(|c| Incarnation { uid: uid.clone(), pod: name.clone(), container: c.name.clone(), restarts: c.restart_count })
        .collect()
}

/// Streams the logs of every container running `reference` in the pods carrying `selector`'s labels, as
/// they come and restart, until `cancel`. Lines read `[pod] line`, or `[pod/container] line` when a pod runs
/// the image in more than one container.
pub async fn follow(pods: Arc<Reflector>, t: Target, selector: BTreeMap<String, String>, reference: String, say: Logged, cancel: CancellationToken) {
    let mut changes = pods.subscribe();
    let mut followed: BTreeSet<Incarnation> = BTreeSet::new();
    let start = |pod: &Pod, followed: &mut BTreeSet<Incarnation>| {
        let runs = incarnations(pod, &selector, &reference);
        let several = pod.spec.iter().flat_map(|s| &s.containers).filter(|c| c.image.as_deref() == Some(reference.as_str())).count() > 1;
        for run in runs {
            if followed.insert(run.clone()) {
                tokio::spawn(stream(t.clone(), run, several, say.clone(), cancel.clone()));
            }
        }
    };
    for pod in pods.pods().await {
        start(&pod, &mut followed);
    }
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            c = changes.recv() => c,
        };
        match change {
            Ok(Change::Applied(pod)) => start(&pod, &mut followed),
            Ok(Change::Deleted(pod)) => followed.retain(|i| Some(&i.uid) != pod.metadata.uid.as_ref()),
            Ok(Change::Listed) => {}
            // Fell behind: the store has every pod as it is now.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                for pod in pods.now() {
                    start(&pod, &mut followed);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Told each log line of a followed container: the pod, the container, whether the pod runs the image in
/// more than one container (then a line names both), the line.
pub type Logged = std::sync::Arc<dyn Fn(&str, &str, bool, &str) + Send + Sync>;

/// Streams one run's lines to `say` until it ends or `cancel`. The last minute only: a pod running for hours
/// does not replay its day.
async fn stream(t: Target, run: Incarnation, several: bool, say: Logged, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let params = LogParams { follow: true, since_seconds: Some(60), container: Some(run.container.clone()), ..Default::default() };
    let stream = match pods.log_stream(&run.pod, &params).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no logs for {}/{}: {e}", run.pod, run.container);
            return;
        }
    };
    let mut lines = stream.lines();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            l = lines.try_next() => match l {
                Ok(Some(line)) => say(&run.pod, &run.container, several, &line),
                _ => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, labels: serde_json::Value, containers: &[(&str, &str, i32, &str)], deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("p-{uid}"), "uid": uid, "labels": labels,
                         "deletionTimestamp": if deleting { Some("2026-01-01T00:00:09Z") } else { None }},
            "spec": {"containers": containers.iter().map(|(n, image, _, _)| serde_json::json!({"name": n, "image": image})).collect::<Vec<_>>()},
            "status": {"containerStatuses": containers.iter().map(|(n, image, restarts, state)| serde_json::json!({
                "name": n, "image": image, "imageID": "", "ready": false, "restartCount": restarts,
                "state": {*state: if *state == "terminated" { serde_json::json!({"exitCode": 3}) } else { serde_json::json!({}) }},
            })).collect::<Vec<_>>()},
        }))
        .unwrap()
    }

    #[test]
    fn each_started_run_of_a_container_of_the_image_in_a_selected_pod_is_followed_once() {
        let sel: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let app = serde_json::json!({"app": "web"});
        let runs = |p: &Pod| incarnations(p, &sel, "r/web:t1").into_iter().map(|i| format!("{}/{}#{}", i.pod, i.container, i.restarts)).collect::<Vec<_>>();
        // The image's container, running; a sidecar of another image is not followed.
        assert_eq!(runs(&pod("a", app.clone(), &[("web", "r/web:t1", 0, "running"), ("proxy", "envoy", 0, "running")], false)), ["p-a/web#0"]);
        // A crash, then its restart: two runs, each its own stream; back-off (waiting) has nothing new yet.
        assert_eq!(runs(&pod("a", app.clone(), &[("web", "r/web:t1", 0, "terminated")], false)), ["p-a/web#0"]);
        assert_eq!(runs(&pod("a", app.clone(), &[("web", "r/web:t1", 1, "waiting")], false)), Vec::<String>::new());
        assert_eq!(runs(&pod("a", app.clone(), &[("web", "r/web:t1", 1, "running")], false)), ["p-a/web#1"]);
        // Another tag, another workload's labels, a pod going away: none.
        assert!(runs(&pod("b", app.clone(), &[("web", "r/web:t0", 0, "running")], false)).is_empty());
        assert!(runs(&pod("c", serde_json::json!({"app": "db"}), &[("web", "r/web:t1", 0, "running")], false)).is_empty());
        assert!(runs(&pod("d", app, &[("web", "r/web:t1", 0, "running")], true)).is_empty());
    }
}
