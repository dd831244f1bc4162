//! `devloop.toml`: types, discovery (cwd → parents) and validation. Every error names the file, line, column
//! and key path, so a user can go straight to the mistake.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name devloop looks for in the current directory and its parents.
pub const FILE_NAME: &str = "devloop.toml";

/// Errors loading or validating the configuration. All of them exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No devloop.toml in the directory or any parent.
    #[error("no {FILE_NAME} in {0} or any parent directory (create one, or pass --config)")]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A syntax, type, unknown-key or validation error at a place in the file.
    #[error("{}", .0)]
    Invalid(Box<Located>),
}

/// An error at a place in a config file.
#[derive(Debug)]
pub struct Located {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub line_col: Option<(usize, usize)>,
    /// Dotted key path, e.g. `image[0].build-args`.
    pub key: String,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((l, c)) = self.line_col {
            write!(f, ":{l}:{c}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The loaded configuration, with paths resolved against the config file's directory and environment
/// overrides (`BUILDKIT_HOST`, `DEVLOOP_REGISTRY`) applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The devloop.toml this came from.
    pub path: PathBuf,
    /// Its directory: relative paths in the file are relative to it.
    pub root: PathBuf,
    /// How to reach BuildKit.
    pub buildkit: Buildkit,
    /// Where images are pushed.
    pub registry: Registry,
    /// The images to build, in file order.
    pub images: Vec<Image>,
    /// Which cluster and namespace.
    pub kube: Kube,
    /// Where each image is deployed, in file order.
    pub deploys: Vec<Deploy>,
    /// How `devloop up` watches.
    pub watch: WatchConfig,
    /// Port-forwards kept alive by `up` and used by `check`.
    pub forwards: Vec<Forward>,
    /// `devloop check`'s commands.
    pub check: Check,
    /// Images configured but left out of this session (`devloop up IMAGE…`): not watched, built or deployed;
    /// their workloads stay as deployed (see [`Config::only`]).
    pub left_out: Vec<String>,
}

/// `[watch]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// A batch of changes closes after this much quiet.
    pub debounce: std::time::Duration,
    /// …or this long after its first change.
    pub max_wait: std::time::Duration,
}

/// One `[[port-forward]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The kind of the workload whose pods are forwarded to (`deployment`, `statefulset` or `daemonset = …`).
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// Local port on 127.0.0.1 (0: any free port).
    pub local: u16,
    /// The pod's port.
    pub remote: u16,
}

/// A kind of workload: whose rollout is watched, or whose pods a port-forward goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    #[default]
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch/v1` Job: replaced when its template changes, waited for until it succeeds or fails.
    Job,
    /// `v1` Pod (a bare one): replaced when its images change, waited for until Running and Ready.
    Pod,
}

impl WorkloadKind {
    /// The kind a manifest's `kind` names, if its rollout is watched.
    pub fn of(kind: &str) -> Option<WorkloadKind> {
        match kind {
            "Deployment" => Some(WorkloadKind::Deployment),
            "StatefulSet" => Some(WorkloadKind::StatefulSet),
            "DaemonSet" => Some(WorkloadKind::DaemonSet),
            "Job" => Some(WorkloadKind::Job),
            "Pod" => Some(WorkloadKind::Pod),
            _ => None,
        }
    }
    /// Its name as `kind` says it.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::Pod => "Pod",
        }
    }
    /// Its name as said in lines (`deployment ns/x`), lower case as kubectl writes it.
    pub fn noun(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::Job => "job",
            WorkloadKind::Pod => "pod",
        }
    }
    /// Whether a change of its pod template is refused by the API server (immutable), so that devloop
    /// deletes and creates it anew instead of letting a controller roll it.
    pub fn replaced(self) -> bool {
        matches!(self, WorkloadKind::Job | WorkloadKind::Pod)
    }
    /// Whether its pods end by design (a Job's): an exit is its result, not a crash to watch for.
    pub fn completes(self) -> bool {
        self == WorkloadKind::Job
    }
}

/// `[check]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Shell commands run in order once everything is rolled out; `DEVLOOP_URL_<DEPLOYMENT>` is set for
    /// each port-forward.
    pub commands: Vec<String>,
    /// How long one command may run before it and every process it started are killed (and it fails).
    pub timeout: std::time::Duration,
}

/// `[check] timeout` when unset.
pub const DEFAULT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl Default for Check {
    fn default() -> Self {
        Check { commands: vec![], timeout: DEFAULT_CHECK_TIMEOUT }
    }
}

/// `[kube]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Kube {
    /// Kube context (default: the kubeconfig's current context).
    pub context: Option<String>,
    /// Namespace (default: the context's, else `default`).
    pub namespace: Option<String>,
    /// Contexts allowed besides the built-in local names (`*` wildcards allowed).
    #[serde(default)]
    pub allow_contexts: Vec<String>,
}

/// One `[[deploy]]`: where an image goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Deploy {
    /// The `[[image]]` deployed.
    pub image: String,
    /// How it is deployed.
    pub target: DeployTarget,
    /// How long a rollout may take before it is reported as failed.
    pub rollout_timeout: std::time::Duration,
    /// Put the previous image back when a rollout fails.
    pub rollback_on_failure: bool,
    /// Custom resources' image paths and readiness, by `<group>/<Kind>` (`image-paths`, `ready-when`).
    pub custom: BTreeMap<String, Custom>,
}

/// Patch an existing Deployment, or apply manifests.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployTarget {
    /// Patch the image of one container of an existing Deployment.
    Patch {
        /// Deployment name.
        deployment: String,
        /// Container name (default: the one using this image, or the only one).
        container: Option<String>,
    },
    /// Server-side apply these objects, image references substituted.
    Manifests(ManifestSource),
    /// `helm upgrade --install` a chart with the image in its values.
    Helm(Helm),
}

/// Where a `[[deploy]]`'s objects come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManifestSource {
    /// `manifests = [...]`: YAML files (globs, relative to devloop.toml).
    Files(Vec<String>),
    /// `kustomize = "dir"`: a kustomization directory (relative to devloop.toml), rendered by kustomize.
    Kustomize(String),
}

impl fmt::Display for ManifestSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestSource::Files(patterns) => write!(f, "{}", patterns.join(", ")),
            ManifestSource::Kustomize(dir) => write!(f, "kustomization {dir}"),
        }
    }
}

/// `[buildkit]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Buildkit {
    /// `unix:///path`, `tcp://host:port`, or Docker Engine's BuildKit: `docker://` (DOCKER_HOST with
    /// DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, else /var/run/docker.sock), `docker-unix:///path` or
    /// `docker-tcp://host:port` (TLS), or in the cluster through the API server: `kube-pod://<pod>?namespace=<ns>`,
    /// `kube-deployment://<name>?namespace=<ns>` (`&port=`, default 1234). Left unset, a Docker Engine answering at DOCKER_HOST or
    /// /var/run/docker.sock is used, else the default buildkitd socket.
    #[serde(default)]
    pub addr: String,
    /// Whether `addr` came from the file or BUILDKIT_HOST (false: the default, or the engine found running).
    #[serde(skip)]
    pub addr_set: bool,
    /// CA bundle for a TLS tcp address (as buildctl's --tlscacert).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (as --tlscert).
    pub tls_cert: Option<PathBuf>,
    /// Client key (as --tlskey).
    pub tls_key: Option<PathBuf>,
    /// Server name to verify, when it differs from the address's host.
    pub tls_server_name: Option<String>,
    /// Accept a plain `tcp://` address without TLS (credentials and the context then travel in the clear).
    #[serde(default)]
    pub insecure: bool,
    /// At most this many builds at once (default [`DEFAULT_PARALLEL`]); more wait for a slot, first come
    /// first served.
    pub parallel: Option<usize>,
}

/// `[buildkit] parallel` when unset: see BENCHMARKS.md §6 for the measurement behind it.
pub const DEFAULT_PARALLEL: usize = 4;

impl Buildkit {
    /// How many builds may run at once.
    pub fn parallel(&self) -> usize {
        self.parallel.unwrap_or(DEFAULT_PARALLEL).max(1)
    }
    /// The same BuildKit, whatever the number of builds at once (a reload that changes only that keeps the
    /// connection and hashes nothing again).
    pub fn same_server(&self, other: &Buildkit) -> bool {
        Buildkit { parallel: None, ..self.clone() } == Buildkit { parallel: None, ..other.clone() }
    }
    /// A `tcp://` address without TLS (neither `tls-ca` nor `tls-cert`).
    pub fn plain_tcp(&self) -> bool {
        self.addr.starts_with("tcp://") && self.tls_ca.is_none() && self.tls_cert.is_none()
    }
}

/// No [buildkit] table: the address is not set (see `Buildkit::addr_set`).
fn unset_buildkit() -> Buildkit {
    Buildkit { addr: String::new(), ..Buildkit::default() }
}

fn default_buildkit_addr() -> String {
    "unix:///run/buildkit/buildkitd.sock".into()
}

impl Default for Buildkit {
    fn default() -> Self {
        Buildkit {
            addr: default_buildkit_addr(),
            addr_set: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            insecure: false,
            parallel: None,
        }
    }
}

/// `[registry]`: where built images go. Every key is optional: without `host`, devloop reads the cluster's
/// `local-registry-hosting` ConfigMap (registry discovery, a layer up).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Registry {
    /// `host[:port]` images are pushed to; empty until set here, by `DEVLOOP_REGISTRY` or by discovery.
    #[serde(default)]
    pub host: String,
    /// Plain HTTP (a local registry).
    #[serde(default)]
    pub insecure: bool,
    /// The registry's name as the cluster sees it, if it differs from `host`.
    pub pull_host: Option<String>,
    /// Token servers (host names) besides the registry's own host that may receive its credentials when the
    /// registry's Bearer challenge names them as the realm.
    #[serde(default)]
    pub auth_hosts: Vec<String>,
    /// Push (the default), or load into an image store the cluster's nodes read directly.
    #[serde(default)]
    pub load: Load,
    /// containerd's socket for `load = "containerd"`.
    #[serde(default = "default_containerd_socket")]
    pub containerd_socket: PathBuf,
    /// The containerd namespace the kubelet's runtime uses (CRI: `k8s.io`).
    #[serde(default = "default_containerd_namespace")]
    pub containerd_namespace: String,
    /// With `load`: how many images of each name to keep in the node's store (the newest, plus any a
    /// container uses); older ones are removed after a rollout. 0: never remove any.
    /// Unset: [`Registry::keep`]'s default.
    pub keep: Option<usize>,
    /// A PEM file of CA certificates devloop's own HTTPS calls to the registry trust (a private CA);
    /// relative to devloop.toml.
    pub ca: Option<PathBuf>,
    /// Whether deployed pods pull with an imagePullSecret devloop keeps in the namespace.
    #[serde(default)]
    pub pull_secret: PullSecret,
    /// The Docker Engine a `load = true` image is loaded into: not a key, found once when the config is
    /// resolved (`resolve::load`), so that every consumer reads the same engine.
    #[serde(skip)]
    pub engine: Option<addr::docker::Addr>,
}

fn default_containerd_socket() -> PathBuf {
    PathBuf::from("/run/containerd/containerd.sock")
}
fn default_containerd_namespace() -> String {
    "k8s.io".into()
}

impl Registry {
    /// Images of each name kept in a node's store (`keep`). Unset: 5 — enough to go back a few edits without
    /// a build (a reverted save finds its image still there), few enough that a day of saves does not fill
    /// the node's disk.
    pub fn keep(&self) -> usize {
        self.keep.unwrap_or(5)
    }
    /// The host the cluster pulls from.
    pub fn pull_host(&self) -> &str {
        self.pull_host.as_deref().unwrap_or(&self.host)
    }
}

/// `[registry] load`: how a built image reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Load {
    /// Push to the registry (`load = false`, or unset).
    #[default]
    Push,
    /// Load into Docker Engine's image store (`load = true` or `"docker"`), for clusters that share it.
    Docker,
    /// Import into the node's containerd (`load = "containerd"`), for single-node containerd clusters.
    Containerd,
}

/// A key that takes `true`, `false` or a name (`load`, `pull-secret`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum BoolOrName {
    Bool(bool),
    Name(String),
}

impl<'de> Deserialize<'de> for Load {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || serde::de::Error::custom("expected true, false, \"docker\" or \"containerd\"");
        match BoolOrName::deserialize(d).map_err(|_| bad())? {
            BoolOrName::Bool(false) => Ok(Load::Push),
            BoolOrName::Bool(true) => Ok(Load::Docker),
            BoolOrName::Name(n) => match n.as_str() {
                "docker" => Ok(Load::Docker),
                "containerd" => Ok(Load::Containerd),
                "push" => Ok(Load::Push),
                _ => Err(bad()),
            },
        }
    }
}

/// One `[[image]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Repository name under the registry host.
    pub name: String,
    /// The build context directory (absolute).
    pub context: PathBuf,
    /// The Dockerfile (absolute); it may live outside the context.
    pub dockerfile: PathBuf,
    /// Multi-stage target, empty for the last stage.
    pub target: String,
    /// Target platform, empty for the daemon's.
    pub platform: String,
    /// Build arguments.
    pub build_args: BTreeMap<String, String>,
    /// Patterns (`.dockerignore` syntax) excluded on top of `.dockerignore`.
    pub ignore: Vec<String>,
    /// Also exclude what the context's `.gitignore` ignores (off by default).
    pub gitignore: bool,
    /// BuildKit frontend: `dockerfile.v0` or `gateway.v0`.
    pub frontend: String,
    /// Gateway frontend image (`frontend = "gateway.v0"`).
    pub frontend_source: String,
    /// Extra frontend options (`frontend-opts`), passed as frontend attributes.
    pub frontend_opts: BTreeMap<String, String>,
    /// `[[image.sync]]` live-update rules, in file order.
    pub sync: Vec<SyncRule>,
    /// The tag it is pushed and deployed under, made of its content hash (`tag`; default `{hash}`).
    pub tag: TagTemplate,
    /// When a change is built: at once, or when asked (`trigger = "manual"`).
    pub trigger: Trigger,
    /// Images whose first rollout of a session comes before this one's (`depends-on`).
    pub depends_on: Vec<String>,
    /// Build caches read before building (`cache-from`); not part of the content tag.
    pub cache_from: Vec<CacheSpec>,
    /// Build caches written after building (`cache-to`); not part of the content tag.
    pub cache_to: Vec<CacheSpec>,
}

/// `[[image]] trigger`: what a change to the image's inputs starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Hash, build (or sync) and roll out at once (the default).
    #[default]
    Auto,
    /// Note the change and show it; build when asked (Enter in `up`'s terminal, the page's button,
    /// `devloop trigger IMAGE`). The first build of a session still comes by itself.
    Manual,
}

impl Image {
    /// The image's one filter: what is watched, hashed and sent to BuildKit.
    pub fn filter(&self) -> Result<crate::filter::Filter, crate::filter::Error> {
        crate::filter::Filter::for_image(&self.context, &self.dockerfile, &self.ignore, self.gitignore)
    }

    /// An image with every optional key at its default: `<context>/Dockerfile`, the Dockerfile frontend.
    pub fn new(name: &str, context: &Path) -> Image {
        Image {
            name: name.to_string(),
            context: context.to_path_buf(),
            dockerfile: context.join("Dockerfile"),
            target: String::new(),
            platform: String::new(),
            build_args: BTreeMap::new(),
            ignore: vec![],
            gitignore: false,
            frontend: "dockerfile.v0".into(),
            frontend_source: String::new(),
            frontend_opts: BTreeMap::new(),
            sync: vec![],
            tag: TagTemplate::default(),
            trigger: Trigger::Auto,
            depends_on: vec![],
            cache_from: vec![],
            cache_to: vec![],
        }
    }
}

impl Config {
    /// The image named `name`, if configured.
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name == name)
    }

    /// This config for a session of only the images `names` (`devloop up IMAGE…`; none: all of them): the
    /// others and their `[[deploy]]` tables are left out and named in [`Config::left_out`], so their
    /// workloads stay as deployed. An unknown name is an error naming the configured ones.
    pub fn only(mut self, names: &[String]) -> Result<Config, String> {
        if names.is_empty() {
            return Ok(self);
        }
        if let Some(unknown) = names.iter().find(|n| self.image(n).is_none()) {
            let known: Vec<&str> = self.images.iter().map(|i| i.name.as_str()).collect();
            return Err(format!("no [[image]] named `{unknown}` in {} (configured: {})", self.path.display(), known.join(", ")));
        }
        let (kept, out): (Vec<Image>, Vec<Image>) = self.images.into_iter().partition(|i| names.contains(&i.name));
        self.images = kept;
        self.left_out = out.into_iter().map(|i| i.name).collect();
        self.deploys.retain(|d| names.contains(&d.image));
        Ok(self)
    }
}

/// Finds devloop.toml in `start` or the nearest parent, as cargo finds Cargo.toml.
pub fn discover(start: &Path) -> Result<PathBuf, Error> {
    start
        .ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NotFound(start.to_path_buf()))
}

/// Reads and validates a config file, then applies the environment overrides (`BUILDKIT_HOST`,
/// `DEVLOOP_REGISTRY`). What depends on the world beyond the file (a CA to read, a Docker Engine to find, the
/// git user to ask) is resolved a layer up, by `resolve::load`.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
    load_text(path, &text, |k| std::env::var(k).ok())
}

/// [`load`] on config text, with `env` standing in for the process environment.
pub fn load_text(path: &Path, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let mut cfg = parse(path, text)?;
    let mut addr_from = "";
    if let Some(addr) = env("BUILDKIT_HOST").filter(|a| !a.is_empty()) {
        validate_addr(&addr).map_err(|m| located(path, "buildkit.addr", format!("{m} (from BUILDKIT_HOST)")))?;
        cfg.buildkit.addr = addr;
        cfg.buildkit.addr_set = true;
        addr_from = " (from BUILDKIT_HOST)";
    }
    if let Some(host) = env("DEVLOOP_REGISTRY").filter(|h| !h.is_empty()) {
        cfg.registry.host = host;
    }
    // After the override: an address from the environment is held to the same rule.
    if cfg.buildkit.plain_tcp() && !cfg.buildkit.insecure {
        return Err(located(
            path,
            "buildkit.addr",
            format!(
                "`{}`{addr_from} is plain TCP: registry credentials and the build context would cross the network in \
                 the clear. Configure TLS (tls-ca, tls-cert, tls-key under [buildkit]), or accept that with \
                 `insecure = true` under [buildkit]",
                cfg.buildkit.addr
            ),
        ));
    }
    Ok(cfg)
}

/// An error about `key` of the file at `path` (for checks made after parsing, which know no line).
pub fn located(path: &Path, key: &str, message: String) -> Error {
    Error::Invalid(Box::new(Located { path: path.to_path_buf(), line_col: None, key: key.into(), message }))
}

/// [`located`] at the place of `table.key` in `text` when the text sets it (it may come from a default or
/// the environment instead).
pub fn located_in(path: &Path, text: &str, table: &str, key: &str, message: String) -> Error {
    let at = toml::de::DeTable::parse(text).ok().and_then(|doc| {
        let doc = doc.into_inner();
        let (_, t) = doc.iter().find(|(k, _)| k.get_ref() == table)?;
        let toml::de::DeValue::Table(t) = t.get_ref() else { return None };
        let (k, _) = t.iter().find(|(k, _)| k.get_ref() == key)?;
        Some(line_col(text, k.span().start))
    });
    let key = format!("{table}.{key}");
    Error::Invalid(Box::new(Located { path: path.to_path_buf(), line_col: at, key, message }))
}

#[cfg(test)]
mod tests;

pub mod addr;
pub mod cache;
pub use cache::CacheSpec;
pub mod contexts;
pub mod names;
mod parse;
pub use parse::parse;
use parse::{line_col, validate_addr};
pub mod custom;
pub use custom::{Custom, FieldPath};
mod helm;
pub use helm::{Helm, ImageValues, SetValue};
mod registry;
pub use registry::PullSecret;
pub mod template;
pub use template::{TagTemplate, Template, Var, HASH_LEN};
mod sync;
pub use sync::{route as sync_route, RunStep, SyncRule};
