//! Rolling workloads to a new image: pick the cluster ([`connect`], refusing contexts that are not
//! allow-listed before any request), change the pod template (patch one container's image, or
//! server-side apply manifests with image references substituted — [`manifests`]), and watch the rollout
//! ([`rollout`]). devloop never deletes a pod: changing the template makes the Deployment controller roll.

pub mod helm;
pub mod images;
pub mod manifests;
pub mod namespace;
pub mod pull_secret;
pub mod rollout;
pub mod safety;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::config;

/// The field manager devloop's changes are recorded under.
pub const FIELD_MANAGER: &str = "devloop";

/// Errors deploying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The context is not allow-listed (exit code 2).
    #[error(transparent)]
    NotAllowed(#[from] safety::NotAllowed),
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
}

impl Error {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }
}

/// Command-line choices that override `[kube]`.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// `--kube-context`.
    pub context: Option<String>,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--allow-context` (repeatable).
    pub allow: Vec<String>,
}

/// A cluster and namespace devloop may deploy to.
#[derive(Clone)]
pub struct Target {
    /// The kube context.
    pub context: String,
    /// The namespace every object goes to.
    pub namespace: String,
    /// A client for that context.
    pub client: Client,
    /// Kinds already resolved by discovery: the loop applies the same manifests again and again.
    pub kinds: KindCache,
    /// When set, the cluster-scoped objects that applies through this target create are recorded here:
    /// deleting the namespace does not delete them, so `check` deletes them itself.
    pub created: Option<Created>,
}

/// Cluster-scoped objects created through a [`Target`], each recorded before its request is sent, so one
/// whose request was interrupted is still known.
pub type Created = std::sync::Arc<std::sync::Mutex<Vec<manifests::ClusterObject>>>;

/// Discovery results per kind, shared by the clones of a [`Target`].
pub type KindCache = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<kube::core::GroupVersionKind, (kube::discovery::ApiResource, kube::discovery::ApiCapabilities)>>,
>;

/// Resolves the context and namespace, checks the allow-list — before any request is sent — and builds a
/// client.
pub async fn connect(cfg: &config::Kube, opts: &KubeOptions) -> Result<Target, Error> {
    let kubeconfig = Kubeconfig::read().map_err(|e| {
        Error::Kubeconfig(format!("{e} (set KUBECONFIG; for the local stack: eval \"$(scripts/stack env)\")"))
    })?;
    let context = opts
        .context
        .clone()
        .or_else(|| cfg.context.clone())
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or_else(|| Error::Kubeconfig("no context: set [kube] context or --kube-context".into()))?;
    let mut allowed = cfg.allow_contexts.clone();
    allowed.extend(opts.allow.iter().cloned());
    safety::check(&context, &allowed)?;
    let context_ns = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone());
    let namespace = opts.namespace.clone().or_else(|| cfg.namespace.clone()).or(context_ns).unwrap_or_else(|| "default".into());
    let options = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
    let kc = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Kubeconfig(format!("context {context}: {e}")))?;
    let client = client(kc).map_err(Error::api(format!("client for context {context}")))?;
    Ok(Target { context, namespace, client, kinds: Default::default(), created: None })
}

/// A client like `Client::try_from(config)` but with TCP_NODELAY on its connections. Without it, a fresh
/// connection stalls ~40 ms (Nagle's algorithm waiting on a delayed ACK during the TLS handshake), and the
/// loop opens fresh ones all the time: every port-forward connection and every rollout's watches.
fn client(kc: kube::Config) -> Result<Client, kube::Error> {
    use kube::client::ConfigExt;
    if kc.proxy_url.is_some() {
        return Client::try_from(kc); // kube's own stack knows the proxy kinds
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = kc.rustls_https_connector_with_connector(http)?;
    // The same bounds kube's own client sets (a watch asks for 290 s, under the 295 s read timeout).
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(kc.connect_timeout);
    timeouts.set_read_timeout(kc.read_timeout);
    timeouts.set_write_timeout(kc.write_timeout);
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(timeouts);
    let service = tower::ServiceBuilder::new()
        .layer(kc.base_uri_layer())
        .option_layer(kc.auth_layer()?)
        .layer(kc.extra_headers_layer()?)
        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        .service(hyper);
    Ok(Client::new(service, kc.default_namespace))
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

/// The label selector of a Deployment's pods, as a `k=v,…` string.
pub fn selector(dep: &Deployment) -> String {
    dep.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Watches the rollout of `name` to `refs` (see [`rollout::watch`]).
pub async fn watch_rollout(t: &Target, name: &str, refs: &[String], timeout: std::time::Duration) -> Result<rollout::Verdict, Error> {
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let dep = deployments.get(name).await.map_err(Error::api(format!("reading deployment {}/{name}", t.namespace)))?;
    Ok(rollout::watch(&deployments, &pods, name, &selector(&dep), refs, timeout).await?)
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
        assert_eq!(selector(&dep), "app=a,tier=web");
    }
}
