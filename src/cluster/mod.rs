//! The cluster devloop talks to: the kube context and namespace ([`connect`], refusing contexts that are
//! not allow-listed before any request is sent — [`safety`]), per-developer namespaces ([`namespace`]),
//! and the pods a workload runs ([`pods`]). Every layer above (builders reaching a BuildKit in the cluster,
//! deployers, sync, port-forwards) gets its client and namespace from one [`Target`].

pub mod namespace;
pub mod pods;
pub mod safety;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ApiResource;
use kube::Client;

/// The field manager devloop's changes are recorded under.
pub const FIELD_MANAGER: &str = "devloop";

/// Errors reaching the cluster.
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
}

impl Error {
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
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
    /// No person answers (CI, `--non-interactive`, no terminal): a kubeconfig's exec credential plugin is run
    /// with `interactiveMode: Never`, so that it fails rather than waits for a login prompt nobody sees.
    pub no_prompt: bool,
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
    /// The one pod watch per namespace, shared by every clone of this target (see [`Target::pods`]).
    pub reflectors: Reflectors,
}

/// Per namespace, its pod watch: started by the first [`Target::pods`] for it, dropped with the last target.
pub type Reflectors = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<pods::Reflector>>>>;

impl Target {
    /// The pods of this target's namespace: the one watch every reader shares (rollouts, the crash watch,
    /// logs, port-forwards, live update), started on first use. Must be called within the runtime.
    pub fn pods(&self) -> std::sync::Arc<pods::Reflector> {
        let mut all = self.reflectors.lock().expect("not poisoned");
        all.entry(self.namespace.clone()).or_insert_with(|| pods::Reflector::start(self)).clone()
    }
}

/// Cluster-scoped objects created through a [`Target`], each recorded before its request is sent, so one
/// whose request was interrupted is still known.
pub type Created = std::sync::Arc<std::sync::Mutex<Vec<ClusterObject>>>;

/// Discovery results per kind, shared by the clones of a [`Target`].
pub type KindCache = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<kube::core::GroupVersionKind, (kube::discovery::ApiResource, kube::discovery::ApiCapabilities)>>,
>;

/// A cluster-scoped object (a ClusterRole, a Namespace, …) that an apply created.
#[derive(Debug, Clone)]
pub struct ClusterObject {
    /// Its kind's API resource.
    pub resource: ApiResource,
    /// Its name.
    pub name: String,
}

impl ClusterObject {
    /// `kind/name` in lower case, as kubectl takes it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.resource.kind.to_lowercase(), self.name)
    }

    /// Deletes it; false when it was already gone.
    pub async fn delete(&self, client: &Client) -> Result<bool, Error> {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &self.resource);
        match api.delete(&self.name, &Default::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(Error::Api { what: format!("deleting {}", self.id()), source: e }),
        }
    }
}

/// Resolves the context and namespace, checks the allow-list — before any request is sent — and builds a
/// client.
pub async fn connect(cfg: &crate::config::Kube, opts: &KubeOptions) -> Result<Target, Error> {
    let mut kubeconfig = Kubeconfig::read().map_err(|e| {
        Error::Kubeconfig(format!("{e} (set KUBECONFIG; for the local stack: eval \"$(scripts/stack env)\")"))
    })?;
    if opts.no_prompt {
        // kube-rs lends a plugin the terminal unless told Never (kubectl asks whether stdin is one).
        for exec in kubeconfig.auth_infos.iter_mut().filter_map(|a| a.auth_info.as_mut()?.exec.as_mut()) {
            exec.interactive_mode = Some(kube::config::ExecInteractiveMode::Never);
        }
    }
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
    Ok(Target { context, namespace, client, kinds: Default::default(), created: None, reflectors: Default::default() })
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

/// The label selector of a Deployment's pods (its `matchLabels`).
pub fn selector_labels(dep: &Deployment) -> std::collections::BTreeMap<String, String> {
    dep.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default()
}

