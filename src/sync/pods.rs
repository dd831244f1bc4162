//! The containers a sync goes to, from the namespace's one pod watch ([`Reflector`]): every container that runs the image's
//! deployed reference and is running now, in a pod not being deleted (whatever workload owns it). Ready or
//! not: a pod a sync made un-Ready (the file its readiness probe reads deleted) is healed by the next sync,
//! which it can only get while not Ready. The same watch notices a container that starts running later — a
//! scale-up, an evicted pod replaced, a container restarted (its files are the image's again) — and reports
//! its pod, so the synced set is replayed into it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::cluster::pods::{Change, Reflector};

/// One image's view of the namespace's pods; dropping it stops following them.
pub struct PodWatch {
    pods: Arc<Reflector>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pod's containers that run `reference` and are running now, unless the pod is going away.
fn running(p: &Pod, reference: &str) -> Vec<String> {
    if p.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let is_running = |name: &str| statuses.iter().any(|c| c.name == name && c.state.as_ref().is_some_and(|s| s.running.is_some()));
    containers(p, reference).into_iter().filter(|c| is_running(c)).collect()
}

/// The pod's containers that run `reference`.
pub fn containers(p: &Pod, reference: &str) -> Vec<String> {
    p.spec.as_ref().map_or_else(Vec::new, |s| s.containers.iter().filter(|c| c.image.as_deref() == Some(reference)).map(|c| c.name.clone()).collect())
}

/// A pod's identity for "started running": its uid and how often its containers restarted (a restarted
/// container starts from the image again).
fn incarnation(p: &Pod) -> (String, i32) {
    let restarts = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    (p.metadata.uid.clone().unwrap_or_default(), restarts)
}

/// The (pod, containers) a sync goes to: the running containers of `reference` (`only`: in these pods).
pub fn targets<'a>(pods: impl Iterator<Item = &'a Pod>, reference: &str, only: Option<&BTreeSet<String>>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = pods
        .filter_map(|p| Some((p.metadata.name.clone()?, running(p, reference))))
        .filter(|(name, cs)| !cs.is_empty() && only.is_none_or(|o| o.contains(name)))
        .collect();
    out.sort();
    out
}

/// The incarnation seen last of each pod (by uid): a restart count above it is a container that started
/// afresh, from its image.
#[derive(Debug, Default)]
struct Incarnations(HashMap<String, i32>);

impl Incarnations {
    /// Whether `p` is an incarnation not seen before (a new pod, or a container restarted since).
    fn started(&mut self, p: &Pod) -> bool {
        let (uid, restarts) = incarnation(p);
        match self.0.get(&uid) {
            Some(&seen) if seen >= restarts => false,
            _ => {
                self.0.insert(uid, restarts);
                true
            }
        }
    }

    /// `p` was deleted.
    fn gone(&mut self, p: &Pod) {
        self.0.remove(p.metadata.uid.as_deref().unwrap_or_default());
    }
}

impl PodWatch {
    /// Follows `pods` (the namespace's one [`Reflector`]). `reference()` gives the image's deployed reference
    /// at the time; `became_ready(pod)` is called for each pod with a container running it that starts
    /// after the first listing.
    pub fn start(pods: Arc<Reflector>, reference: impl Fn() -> Option<String> + Send + 'static, became_ready: impl Fn(String) + Send + 'static) -> PodWatch {
        let mut changes = pods.subscribe();
        let reflector = pods.clone();
        let task = tokio::spawn(async move {
            let mut seen = Incarnations::default();
            // Pods already there when the watch began are not news; a listing after it (a relist) is.
            for p in reflector.pods().await {
                if reference().is_some_and(|r| !running(&p, &r).is_empty()) {
                    seen.started(&p);
                }
            }
            loop {
                match changes.recv().await {
                    Ok(Change::Applied(p)) if reference().is_some_and(|r| !running(&p, &r).is_empty()) => {
                        if seen.started(&p) {
                            if let Some(name) = p.metadata.name.clone() {
                                became_ready(name);
                            }
                        }
                    }
                    Ok(Change::Deleted(p)) => seen.gone(&p),
                    Ok(_) => {}
                    // Fell behind: what the missed changes started is in the store.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for p in reflector.pods().await {
                            if reference().is_some_and(|r| !running(&p, &r).is_empty()) && seen.started(&p) {
                                if let Some(name) = p.metadata.name.clone() {
                                    became_ready(name);
                                }
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        PodWatch { pods, task }
    }

    /// The names of every pod of the namespace the watch knows of now.
    pub async fn pods(&self) -> BTreeSet<String> {
        self.pods.pods().await.iter().filter_map(|p| p.metadata.name.clone()).collect()
    }

    /// The (pod, running containers) a sync goes to now, once the watch has listed the pods.
    pub async fn targets(&self, reference: &str, only: Option<&BTreeSet<String>>) -> Vec<(String, Vec<String>)> {
        targets(self.pods.pods().await.iter().map(|p| &**p), reference, only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `web` runs `image` and is `state` (running, waiting, terminated), Ready or not; `side` runs another
    /// image.
    fn pod(name: &str, image: &str, ready: bool, state: &str, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": name, "deletionTimestamp": if deleting { Some("2026-01-01T00:00:09Z") } else { None }},
            "spec": {"containers": [{"name": "web", "image": image}, {"name": "side", "image": "other"}]},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [
                    {"name": "web", "image": image, "imageID": "", "ready": ready, "restartCount": 0, "state": {state: {}}},
                    {"name": "side", "image": "other", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn syncs_go_to_the_running_containers_of_the_deployed_reference_ready_or_not() {
        let pods = [
            pod("a", "r/app:t1", true, "running", false),
            pod("b", "r/app:t0", true, "running", false),
            pod("c", "r/app:t1", false, "running", false),
            pod("d", "r/app:t1", true, "running", true),
            pod("e", "r/app:t1", true, "running", false),
            pod("f", "r/app:t1", false, "waiting", false),
            pod("g", "r/app:t1", false, "terminated", false),
        ];
        let web = || vec!["web".to_string()];
        assert_eq!(
            targets(pods.iter(), "r/app:t1", None),
            [("a".to_string(), web()), ("c".to_string(), web()), ("e".to_string(), web())],
            "c runs but is not Ready (a sync can heal it); d is going away; f and g do not run"
        );
        assert_eq!(targets(pods.iter(), "r/app:t1", Some(&BTreeSet::from(["e".to_string(), "b".to_string()]))), [("e".to_string(), web())]);
        assert!(targets(pods.iter(), "r/app:t9", None).is_empty());
    }

    #[test]
    fn the_incarnations_seen_are_those_of_the_pods_that_exist() {
        let mut seen = Incarnations::default();
        let with_restarts = |name: &str, n: i32| {
            let mut p = pod(name, "r/app:t1", true, "running", false);
            p.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0].restart_count = n;
            p
        };
        assert!(seen.started(&with_restarts("a", 0)), "a new pod");
        assert!(!seen.started(&with_restarts("a", 0)), "the same pod again");
        assert!(seen.started(&with_restarts("a", 1)), "its container restarted: the image's files again");
        assert!(!seen.started(&with_restarts("a", 1)));
        // A thousand pods come and go (a long session, rollouts, scale-ups): none is remembered after it goes.
        for i in 0..1000 {
            let p = with_restarts(&format!("p{i}"), 0);
            assert!(seen.started(&p));
            seen.gone(&p);
        }
        seen.gone(&with_restarts("a", 1));
        assert!(seen.0.is_empty(), "{} pods remembered", seen.0.len());
    }
}
