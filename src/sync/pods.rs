//! The pods a sync goes to, from a watch on the namespace's pods: every Ready pod, not being deleted, with
//! containers that run the image's deployed reference (whatever workload owns them). The same watch notices
//! a pod that becomes Ready later — a scale-up, an evicted pod replaced, a container restarted (its files are
//! the image's again) — and reports it, so the synced set is replayed into it.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};

use crate::cluster::Target;

/// A running watch; dropping it stops it.
pub struct PodWatch {
    store: reflector::Store<Pod>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the pod is Ready and not going away.
fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's containers that run `reference`.
pub fn containers(p: &Pod, reference: &str) -> Vec<String> {
    p.spec.as_ref().map_or_else(Vec::new, |s| s.containers.iter().filter(|c| c.image.as_deref() == Some(reference)).map(|c| c.name.clone()).collect())
}

/// A pod's identity for "became Ready": its uid and how often its containers restarted (a restarted
/// container starts from the image again).
fn incarnation(p: &Pod) -> (String, i32) {
    let restarts = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    (p.metadata.uid.clone().unwrap_or_default(), restarts)
}

/// The (pod, containers) a sync goes to: Ready pods running `reference` (`only`: just these).
pub fn targets<'a>(pods: impl Iterator<Item = &'a Pod>, reference: &str, only: Option<&BTreeSet<String>>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = pods
        .filter(|p| ready(p))
        .filter_map(|p| Some((p.metadata.name.clone()?, containers(p, reference))))
        .filter(|(name, cs)| !cs.is_empty() && only.is_none_or(|o| o.contains(name)))
        .collect();
    out.sort();
    out
}

impl PodWatch {
    /// Starts watching the namespace's pods. `reference()` gives the image's deployed reference at the
    /// time; `became_ready(pod)` is called for each pod running it that becomes Ready after the watch's
    /// first listing.
    pub fn start(t: &Target, reference: impl Fn() -> Option<String> + Send + 'static, became_ready: impl Fn(String) + Send + 'static) -> PodWatch {
        let (store, writer) = reflector::store();
        let api: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let mut listed = false;
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let task = tokio::spawn(stream.for_each(move |ev| {
            match ev {
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) if ready(&p) => {
                    let new = seen.lock().expect("not poisoned").insert(incarnation(&p));
                    let runs = reference().is_some_and(|r| !containers(&p, &r).is_empty());
                    if new && listed && runs {
                        if let Some(name) = p.metadata.name.clone() {
                            became_ready(name);
                        }
                    }
                }
                _ => {}
            }
            std::future::ready(())
        }));
        PodWatch { store, task }
    }

    /// The (pod, containers) a sync goes to now, once the watch has listed the pods.
    pub async fn targets(&self, reference: &str, only: Option<&BTreeSet<String>>) -> Vec<(String, Vec<String>)> {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.store.wait_until_ready()).await;
        targets(self.store.state().iter().map(|p| &**p), reference, only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, image: &str, ready: bool, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": name, "deletionTimestamp": if deleting { Some("2026-01-01T00:00:09Z") } else { None }},
            "spec": {"containers": [{"name": "web", "image": image}, {"name": "side", "image": "other"}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn syncs_go_to_ready_pods_running_the_deployed_reference_in_the_containers_that_run_it() {
        let pods = [pod("a", "r/app:t1", true, false), pod("b", "r/app:t0", true, false), pod("c", "r/app:t1", false, false), pod("d", "r/app:t1", true, true), pod("e", "r/app:t1", true, false)];
        let web = || vec!["web".to_string()];
        assert_eq!(targets(pods.iter(), "r/app:t1", None), [("a".to_string(), web()), ("e".to_string(), web())]);
        assert_eq!(targets(pods.iter(), "r/app:t1", Some(&BTreeSet::from(["e".to_string(), "b".to_string()]))), [("e".to_string(), web())]);
        assert!(targets(pods.iter(), "r/app:t9", None).is_empty());
    }
}
