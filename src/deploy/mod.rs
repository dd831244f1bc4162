//! Rolling workloads to a new image on the cluster a [`Target`] names (see [`crate::cluster`]): change the pod
//! template (patch one container's image, or
//! server-side apply manifests with image references substituted — [`manifests`]), and watch the rollout
//! ([`rollout`]) of each workload kind ([`workload`]). devloop deletes no pod to roll: changing the template
//! makes the controller roll (the exceptions: a reverted StatefulSet's pods that never became Ready, which
//! its controller would wait for forever, see [`workload::stuck_pods`]; a Job or bare Pod, whose template is
//! immutable, is replaced whole, see [`manifests::apply`]).
//! Every command reaches these through one interface, [`deployer`] (deploy, undo, cleanup per kind).

pub mod buildkitd;
pub mod custom;
pub mod deployer;
pub mod helm;
pub mod images;
pub mod manifests;
pub mod pull_secret;
pub mod rollout;
pub mod workload;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};

use crate::cluster::{Target, FIELD_MANAGER};

/// Errors deploying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The context is not allow-listed (exit code 2).
    #[error(transparent)]
    NotAllowed(#[from] crate::cluster::safety::NotAllowed),
    /// No kubeconfig, or no context to use.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    /// The Deployment's containers do not tell which one to patch.
    #[error("deployment {namespace}/{deployment}: {message}")]
    Container { namespace: String, deployment: String, message: String },
    /// A manifest file could not be used.
    #[error("{0}")]
    Manifest(String),
    /// helm is missing or failed.
    #[error(transparent)]
    Helm(#[from] helm::Error),
    /// Watching a rollout failed.
    #[error(transparent)]
    Watch(#[from] rollout::Error),
    /// The pull secret could not be made (no credentials, a failing credential helper).
    #[error("{0}")]
    PullSecret(String),
    /// What the config names is not in the cluster (a Deployment to patch): a usage error.
    #[error("{0}")]
    Usage(String),
    /// A signal stopped the deploy (what it left is already said).
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
}

impl From<crate::cluster::Error> for Error {
    fn from(e: crate::cluster::Error) -> Self {
        match e {
            crate::cluster::Error::NotAllowed(n) => Error::NotAllowed(n),
            crate::cluster::Error::Kubeconfig(m) => Error::Kubeconfig(m),
            crate::cluster::Error::Api { what, source } => Error::Api { what, source },
        }
    }
}

impl Error {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }
}

/// What patching a Deployment did.
#[derive(Debug, Clone, PartialEq)]
pub enum Patched {
    /// The container already runs this reference.
    Unchanged { container: String },
    /// The image was changed.
    Changed { container: String, previous: String },
}

/// Which container of a Deployment to patch: the named one, else the one running `image` (by repository),
/// else the only one.
pub fn pick_container(
    dep: &Deployment,
    explicit: Option<&str>,
    is_ours: &dyn Fn(&str) -> bool,
) -> Result<(String, String), String> {
    let containers = dep.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|s| s.containers.clone()).unwrap_or_default();
    let names = || containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let found = match explicit {
        Some(name) => containers.iter().find(|c| c.name == name).ok_or_else(|| format!("no container `{name}` (has: {})", names()))?,
        None => match containers.iter().filter(|c| c.image.as_deref().is_some_and(is_ours)).collect::<Vec<_>>().as_slice() {
            [one] => one,
            [] if containers.len() == 1 => &containers[0],
            [] => return Err(format!("no container runs this image; set `container` to one of: {}", names())),
            _ => return Err(format!("several containers run this image; set `container` to one of: {}", names())),
        },
    };
    Ok((found.name.clone(), found.image.clone().unwrap_or_default()))
}

/// Sets one container's image with a strategic merge patch under the `devloop` field manager. Only the Pod
/// template changes; the Deployment controller rolls the pods.
pub async fn patch_image(api: &Api<Deployment>, name: &str, container: &str, reference: &str) -> Result<(), Error> {
    patch_image_and_policy(api, name, container, reference, None, None).await
}

/// [`patch_image`], also setting the container's `imagePullPolicy` when `pull_policy` is given, and adding
/// `pull_secret` to the pod template's `imagePullSecrets` (a strategic merge by name: never twice, the
/// others kept).
pub async fn patch_image_and_policy(
    api: &Api<Deployment>,
    name: &str,
    container: &str,
    reference: &str,
    pull_policy: Option<&str>,
    pull_secret: Option<&str>,
) -> Result<(), Error> {
    let mut c = serde_json::json!({"name": container, "image": reference});
    if let Some(p) = pull_policy {
        c["imagePullPolicy"] = p.into();
    }
    let mut patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [c]}}}});
    if let Some(s) = pull_secret {
        patch["spec"]["template"]["spec"]["imagePullSecrets"] = serde_json::json!([{"name": s}]);
    }
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    api.patch(name, &params, &Patch::Strategic(&patch)).await.map_err(Error::api(format!("patching deployment {name}")))?;
    Ok(())
}

/// Whether a Deployment's pod template already references the pull secret `name`.
pub fn has_pull_secret(dep: &Deployment, name: &str) -> bool {
    let spec = dep.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    spec.and_then(|s| s.image_pull_secrets.as_ref()).is_some_and(|l| l.iter().any(|r| r.name == name))
}

/// The `imagePullPolicy` of a Deployment's container, if set.
pub fn pull_policy_of(dep: &Deployment, container: &str) -> Option<String> {
    let spec = dep.spec.as_ref()?.template.spec.as_ref()?;
    spec.containers.iter().find(|c| c.name == container)?.image_pull_policy.clone()
}

/// Watches the rollout of the `kind` workload `name` to `refs` (see [`rollout::watch`]), its pods read from
/// the namespace's one pod watch; also returns its pod selector (its `matchLabels`).
pub async fn watch_rollout(t: &Target, kind: workload::Kind, name: &str, refs: &[String], timeout: std::time::Duration) -> Result<(std::collections::BTreeMap<String, String>, rollout::Verdict), Error> {
    match kind {
        workload::Kind::Deployment => watch_kind::<Deployment>(t, name, refs, timeout).await,
        workload::Kind::StatefulSet => watch_kind::<StatefulSet>(t, name, refs, timeout).await,
        workload::Kind::DaemonSet => watch_kind::<DaemonSet>(t, name, refs, timeout).await,
        workload::Kind::Job => watch_kind::<Job>(t, name, refs, timeout).await,
        workload::Kind::Pod => watch_kind::<Pod>(t, name, refs, timeout).await,
    }
}

/// [`watch_rollout`] for one kind `K`.
async fn watch_kind<K>(t: &Target, name: &str, refs: &[String], timeout: std::time::Duration) -> Result<(std::collections::BTreeMap<String, String>, rollout::Verdict), Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    workload::Workload: From<K>,
{
    let api: Api<K> = Api::namespaced(t.client.clone(), &t.namespace);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let what = format!("reading {} {}/{name}", K::kind(&()).to_lowercase(), t.namespace);
    let labels = workload::Workload::from(api.get(name).await.map_err(Error::api(what))?).selector_labels();
    let verdict = rollout::watch(&api, &t.pods(), &pods, name, &labels, refs, timeout).await?;
    Ok((labels, verdict))
}

/// After the template of the StatefulSet `name` went back (a rollback): deletes its pods that the failed
/// template left not Ready ([`workload::stuck_pods`]), once its controller has seen the reverted template (up
/// to 30 s), so that it makes them again from that template; says each.
pub async fn unstick(t: &Target, name: &str) -> Result<Vec<String>, Error> {
    let api: Api<StatefulSet> = Api::namespaced(t.client.clone(), &t.namespace);
    let what = format!("statefulset {}/{name}", t.namespace);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let st = loop {
        let st = api.get(name).await.map_err(Error::api(format!("reading {what}")))?;
        if workload::Workload::from(st.clone()).observed() || std::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let labels = workload::Workload::from(st.clone()).selector_labels();
    let reflector = t.pods();
    reflector.pods().await;
    let pods: Vec<Pod> = reflector.now().iter().filter(|p| crate::cluster::pods::selected(p, &labels)).map(|p| Pod::clone(p)).collect();
    let api: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let mut said = Vec::new();
    for pod in workload::stuck_pods(&st, &pods) {
        match api.delete(&pod, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Api { what: format!("deleting pod {}/{pod}", t.namespace), source: e }),
        }
        said.push(format!(
            "{what}: deleted pod {pod}: the failed template left it not Ready, and a StatefulSet's controller replaces no pod while one is not Ready"
        ));
    }
    Ok(said)
}

/// The `kind` workload `name` of `t`'s namespace.
pub async fn get_workload(t: &Target, kind: workload::Kind, name: &str) -> Result<workload::Workload, kube::Error> {
    let (client, ns) = (t.client.clone(), t.namespace.as_str());
    Ok(match kind {
        workload::Kind::Deployment => Api::<Deployment>::namespaced(client, ns).get(name).await?.into(),
        workload::Kind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns).get(name).await?.into(),
        workload::Kind::DaemonSet => Api::<DaemonSet>::namespaced(client, ns).get(name).await?.into(),
        workload::Kind::Job => Api::<Job>::namespaced(client, ns).get(name).await?.into(),
        workload::Kind::Pod => Api::<Pod>::namespaced(client, ns).get(name).await?.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_choice() {
        let dep: Deployment = serde_json::from_value(serde_json::json!({
            "spec": {"selector": {"matchLabels": {"app": "a", "tier": "web"}}, "template": {"spec": {"containers": [
                {"name": "web", "image": "reg/hello:1"}, {"name": "sidecar", "image": "envoy:1"}
            ]}}}
        }))
        .unwrap();
        let ours = |i: &str| images::is_ours(i, "hello", "reg", "reg");
        assert_eq!(pick_container(&dep, None, &ours).unwrap(), ("web".into(), "reg/hello:1".into()));
        assert_eq!(pick_container(&dep, Some("sidecar"), &ours).unwrap().0, "sidecar");
        assert!(pick_container(&dep, Some("nope"), &ours).unwrap_err().contains("has: web, sidecar"));
        let none = |_: &str| false;
        assert!(pick_container(&dep, None, &none).unwrap_err().contains("set `container`"));
    }
}
