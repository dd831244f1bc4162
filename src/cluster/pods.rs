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

/// Whether `p` carries every label of `selector` (a Deployment's `matchLabels`).
pub fn selected(p: &Pod, selector: &std::collections::BTreeMap<String, String>) -> bool {
    let labels = p.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
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
    store: kube::runtime::reflector::Store<Pod>,
    changes: tokio::sync::broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many changes a subscriber may fall behind by before it is told it lagged (and looks at the store).
const CHANGES: usize = 1024;

impl Reflector {
    /// Starts watching the pods of `t`'s namespace.
    pub fn start(t: &super::Target) -> std::sync::Arc<Reflector> {
        use futures::StreamExt;
        use kube::runtime::{reflector, watcher, WatchStreamExt};
        let (store, writer) = reflector::store();
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES);
        let api: kube::Api<Pod> = kube::Api::namespaced(t.client.clone(), &t.namespace);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let tx = changes.clone();
        let task = tokio::spawn(stream.for_each(move |ev| {
            let change = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => Some(Change::Applied(std::sync::Arc::new(p))),
                Ok(watcher::Event::Delete(p)) => Some(Change::Deleted(std::sync::Arc::new(p))),
                Ok(watcher::Event::InitDone) => Some(Change::Listed),
                Ok(watcher::Event::Init) => None,
                Err(e) => {
                    tracing::debug!("watching pods: {e}");
                    None
                }
            };
            if let Some(c) = change {
                let _ = tx.send(c); // no subscriber yet is fine: the store has it
            }
            std::future::ready(())
        }));
        std::sync::Arc::new(Reflector { store, changes, task })
    }

    /// The pods now, once the first listing is in (waiting at most 10 s for it).
    pub async fn pods(&self) -> Vec<std::sync::Arc<Pod>> {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.store.wait_until_ready()).await;
        self.store.state()
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
}
