//! The pods a workload runs, as the layers above pick them.

use k8s_openapi::api::core::v1::Pod;

/// The newest of `pods` that is Ready and not being deleted.
pub fn newest_ready<'a>(pods: impl Iterator<Item = &'a Pod>) -> Option<String> {
    pods.filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .max_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
        .and_then(|p| p.metadata.name.clone())
}

/// The newest Ready pod (as [`newest_ready`] chooses) among those of `pods` that `selector` selects: how
/// BuildKit's in-cluster connector picks the pod of a Deployment (a port-forward has a choice of its own).
pub fn newest_ready_selected(pods: &[std::sync::Arc<Pod>], selector: &std::collections::BTreeMap<String, String>) -> Option<String> {
    newest_ready(pods.iter().map(|p| &**p).filter(|p| selected(p, selector)))
}

/// Whether `p` carries every label of `selector` (a Deployment's `matchLabels`).
pub fn selected(p: &Pod, selector: &std::collections::BTreeMap<String, String>) -> bool {
    let labels = p.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// One run of one container of a pod: a restart starts another (from the image again, with its own logs),
/// and a pod replaced under the same name is another pod (another uid).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation {
    /// The pod's uid.
    pub uid: String,
    /// The pod's name.
    pub pod: String,
    /// The container.
    pub container: String,
    /// Its restart count when this run started.
    pub restarts: i32,
}

/// What the layers above need to know of a pod, as plain data: which containers run which image, and how
/// each is doing. The core keeps these (not the API objects), so it is unit-tested without a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// Its uid.
    pub uid: String,
    /// Its name.
    pub name: String,
    /// It is being deleted: nothing new goes into it.
    pub deleting: bool,
    /// Its containers, in spec order.
    pub containers: Vec<ContainerFacts>,
}

/// One container of a [`PodFacts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Its name.
    pub name: String,
    /// The image reference its spec asks for.
    pub image: String,
    /// It runs now.
    pub running: bool,
    /// It is Ready.
    pub ready: bool,
    /// How often it restarted.
    pub restarts: i32,
    /// Why it does not run, when it does not: the kubelet's reason (`CrashLoopBackOff`, `ImagePullBackOff`,
    /// `ContainerCreating`, `Error`), else `waiting` or `terminated`.
    pub waiting: Option<String>,
}

impl PodFacts {
    /// The facts of `p`; none for a pod without a name or uid (not one the API server returned).
    pub fn of(p: &Pod) -> Option<PodFacts> {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let containers = p.spec.iter().flat_map(|s| &s.containers).map(|c| {
            let status = statuses.iter().find(|s| s.name == c.name);
            ContainerFacts {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                running: status.and_then(|s| s.state.as_ref()).is_some_and(|s| s.running.is_some()),
                ready: status.is_some_and(|s| s.ready),
                restarts: status.map_or(0, |s| s.restart_count),
                waiting: status.and_then(|s| s.state.as_ref()).and_then(|s| {
                    let reason = |r: &Option<String>, or: &str| r.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| or.to_string());
                    match (&s.waiting, &s.terminated) {
                        (Some(w), _) => Some(reason(&w.reason, "waiting")),
                        (None, Some(t)) => Some(reason(&t.reason, "terminated")),
                        _ => None,
                    }
                }),
            }
        });
        Some(PodFacts {
            uid: p.metadata.uid.clone()?,
            name: p.metadata.name.clone()?,
            deleting: p.metadata.deletion_timestamp.is_some(),
            containers: containers.collect(),
        })
    }

    /// The containers whose spec asks for `reference`, running or not, unless the pod is going away.
    pub fn of_reference<'a>(&'a self, reference: &'a str) -> impl Iterator<Item = &'a ContainerFacts> + 'a {
        self.containers.iter().filter(move |c| !self.deleting && c.image == reference)
    }

    /// The runs of the containers that run `reference` now, unless the pod is going away. Ready or not: a
    /// pod a sync made un-Ready (the file its readiness probe reads deleted) is healed by the next sync.
    pub fn running<'a>(&'a self, reference: &'a str) -> impl Iterator<Item = (Incarnation, &'a ContainerFacts)> + 'a {
        self.containers.iter().filter(move |c| !self.deleting && c.running && c.image == reference).map(|c| {
            let run = Incarnation { uid: self.uid.clone(), pod: self.name.clone(), container: c.name.clone(), restarts: c.restarts };
            (run, c)
        })
    }
}

/// What happened to one of a namespace's pods, as the [`Reflector`] tells its subscribers.
#[derive(Debug, Clone)]
pub enum Change {
    /// It was created or changed (or listed, on a first listing or a relist).
    Applied(std::sync::Arc<Pod>),
    /// It is gone.
    Deleted(std::sync::Arc<Pod>),
    /// The listing is complete: what was applied before it is what existed.
    Listed,
}

/// One watch on a namespace's pods, shared by everything that asks about them (every image's live update,
/// and the pods a sync goes to): a store of the pods as they are now, and a stream of changes to subscribe
/// to. Dropping the last handle stops the watch.
pub struct Reflector {
    namespace: String,
    store: kube::runtime::reflector::Store<Pod>,
    changes: tokio::sync::broadcast::Sender<Change>,
    /// The watch's last error, until a listing completes: what [`Reflector::listed`] says when there is none
    /// (a user allowed to port-forward but not to list pods would otherwise be told of no pods at all).
    failed: tokio::sync::watch::Sender<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A watch error in a line: the API server's own message when it answered (its status carries it again, in
/// debug form, in the error's text).
fn said(e: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(kube::Error::Api(s)) | W::WatchStartFailed(kube::Error::Api(s)) | W::WatchFailed(kube::Error::Api(s)) => {
            s.message.clone()
        }
        W::WatchError(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// How many changes a subscriber may fall behind by before it is told it lagged (and looks at the store).
const CHANGES: usize = 1024;

impl Reflector {
    /// Starts watching the pods of `t`'s namespace. Within a [`super::Target`], use [`super::Target::pods`]:
    /// it starts one per namespace.
    pub fn start(t: &super::Target) -> std::sync::Arc<Reflector> {
        Reflector::watch(t.client.clone(), &t.namespace)
    }

    /// Starts watching the pods of `namespace` through `client` (for a namespace no [`super::Target`] deploys
    /// to: BuildKit's).
    pub fn watch(client: kube::Client, namespace: &str) -> std::sync::Arc<Reflector> {
        use futures::StreamExt;
        use kube::runtime::{reflector, watcher, WatchStreamExt};
        let (store, writer) = reflector::store();
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES);
        let (failed, _) = tokio::sync::watch::channel(None);
        let api: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let tx = changes.clone();
        let fail = failed.clone();
        let task = tokio::spawn(stream.for_each(move |ev| {
            let change = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => Some(Change::Applied(std::sync::Arc::new(p))),
                Ok(watcher::Event::Delete(p)) => Some(Change::Deleted(std::sync::Arc::new(p))),
                Ok(watcher::Event::InitDone) => {
                    fail.send_replace(None);
                    Some(Change::Listed)
                }
                Ok(watcher::Event::Init) => None,
                Err(e) => {
                    tracing::debug!("watching pods: {e}");
                    fail.send_replace(Some(said(&e)));
                    None
                }
            };
            if let Some(c) = change {
                let _ = tx.send(c); // no subscriber yet is fine: the store has it
            }
            std::future::ready(())
        }));
        std::sync::Arc::new(Reflector { namespace: namespace.to_string(), store, changes, failed, task })
    }

    /// The pods now, once the first listing is in (waiting at most 10 s for it).
    pub async fn pods(&self) -> Vec<std::sync::Arc<Pod>> {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.store.wait_until_ready()).await;
        self.store.state()
    }

    /// The pods now, once the first listing is in: waiting at most 10 s for it, and not at all once the watch
    /// has failed before it (then the failure is the error, e.g. a user not allowed to list or watch pods).
    pub async fn listed(&self) -> Result<Vec<std::sync::Arc<Pod>>, String> {
        let mut failed = self.failed.subscribe();
        let ns = &self.namespace;
        let wait = async {
            tokio::select! {
                biased;
                _ = self.store.wait_until_ready() => Ok(()),
                e = failed.wait_for(|e| e.is_some()) => Err(e.map(|e| e.clone().unwrap_or_default()).unwrap_or_default()),
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), wait).await {
            Ok(Ok(())) => Ok(self.store.state()),
            Ok(Err(e)) => Err(format!("cannot watch the pods in namespace {ns}: {e}")),
            Err(_) => Err(format!("the pods in namespace {ns} were not listed within 10 s")),
        }
    }

    /// The pods now, without waiting for the first listing (empty before it).
    pub fn now(&self) -> Vec<std::sync::Arc<Pod>> {
        self.store.state()
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_selected_when_it_carries_every_label_of_the_selector() {
        let pod = |labels: serde_json::Value| -> Pod { serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "labels": labels}})).unwrap() };
        let sel: std::collections::BTreeMap<String, String> = [("app".to_string(), "hello".to_string()), ("tier".to_string(), "web".to_string())].into();
        assert!(selected(&pod(serde_json::json!({"app": "hello", "tier": "web", "pod-template-hash": "x"})), &sel));
        assert!(!selected(&pod(serde_json::json!({"app": "hello"})), &sel), "a label missing");
        assert!(!selected(&pod(serde_json::json!({"app": "hello", "tier": "db"})), &sel), "a label with another value");
        assert!(!selected(&pod(serde_json::Value::Null), &sel), "no labels");
    }

    /// `web` runs `image` in `state`, after `restarts` restarts; `side` runs another image.
    fn with_web(image: &str, state: &str, restarts: i32, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1", "deletionTimestamp": if deleting { Some("2026-01-01T00:00:09Z") } else { None }},
            "spec": {"containers": [{"name": "web", "image": image}, {"name": "side", "image": "other"}]},
            "status": {"containerStatuses": [
                {"name": "side", "image": "other", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "web", "image": image, "imageID": "", "ready": state == "running", "restartCount": restarts, "state": {state: {}}},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn the_runs_of_a_reference_are_its_running_containers_each_restart_another_run() {
        let runs = |p: &Pod, r: &str| PodFacts::of(p).unwrap().running(r).map(|(i, _)| format!("{}/{}#{}", i.pod, i.container, i.restarts)).collect::<Vec<_>>();
        assert_eq!(runs(&with_web("r/app:t1", "running", 0, false), "r/app:t1"), ["p/web#0"], "the sidecar of another image is not one");
        assert_eq!(runs(&with_web("r/app:t1", "running", 2, false), "r/app:t1"), ["p/web#2"], "a restart is another run");
        assert!(runs(&with_web("r/app:t1", "waiting", 0, false), "r/app:t1").is_empty(), "not running");
        assert!(runs(&with_web("r/app:t1", "running", 0, true), "r/app:t1").is_empty(), "going away");
        assert!(runs(&with_web("r/app:t0", "running", 0, false), "r/app:t1").is_empty(), "another reference");
        let facts = PodFacts::of(&with_web("r/app:t1", "running", 0, false)).unwrap();
        assert_eq!((facts.containers[0].name.as_str(), facts.containers[0].ready), ("web", true), "spec order, statuses matched by name");
    }

    #[test]
    fn a_container_that_does_not_run_says_why_with_the_kubelet_s_reason() {
        let why = |state: serde_json::Value| {
            let mut pod = with_web("r/app:t1", "running", 0, false);
            let statuses = pod.status.as_mut().unwrap().container_statuses.as_mut().unwrap();
            statuses[1].state = Some(serde_json::from_value(state).unwrap());
            PodFacts::of(&pod).unwrap().containers[0].waiting.clone()
        };
        assert_eq!(why(serde_json::json!({"running": {}})), None);
        assert_eq!(why(serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}})).as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(why(serde_json::json!({"waiting": {}})).as_deref(), Some("waiting"));
        assert_eq!(why(serde_json::json!({"terminated": {"reason": "Error", "exitCode": 1}})).as_deref(), Some("Error"));
        let facts = PodFacts::of(&with_web("r/app:t1", "waiting", 0, false)).unwrap();
        assert_eq!(facts.of_reference("r/app:t1").map(|c| c.name.as_str()).collect::<Vec<_>>(), ["web"], "listed though it does not run");
    }

    /// A pod labelled `app`, created at second `created` of a day, Ready or not, being deleted or not.
    fn pod(name: &str, app: &str, created: u32, ready: bool, deleting: bool) -> std::sync::Arc<Pod> {
        let status = serde_json::json!({"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]});
        crate::test_util::labelled_pod(name, app, created, deleting, status)
    }

    #[test]
    fn the_pick_is_the_newest_ready_pod_of_the_selector_that_is_not_going_away() {
        let old = pod("old", "web", 1, true, false);
        let new = pod("new", "web", 3, true, false);
        let starting = pod("starting", "web", 5, false, false);
        let leaving = pod("leaving", "web", 7, true, true);
        let other = pod("other", "db", 9, true, false);
        let web: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        // (pods, chosen)
        let cases: &[(&[&std::sync::Arc<Pod>], Option<&str>)] = &[
            (&[&old, &starting], Some("old")),
            (&[&old, &new, &starting, &leaving], Some("new")),
            (&[&old, &new, &other], Some("new")),
            (&[&starting, &leaving, &other], None),
            (&[], None),
        ];
        for (pods, want) in cases {
            let pods: Vec<std::sync::Arc<Pod>> = pods.iter().map(|p| (*p).clone()).collect();
            let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
            assert_eq!(newest_ready_selected(&pods, &web).as_deref(), *want, "{names:?}");
            // Without a selector the same rule holds over every pod (the newest Ready one of any workload).
            let any = newest_ready(pods.iter().map(|p| &**p));
            let want_any = if names.iter().any(|n| n == "other") { Some("other") } else { *want };
            assert_eq!(any.as_deref(), want_any, "{names:?}");
        }
    }
}
