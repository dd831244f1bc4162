//! Docker Engine: its address forms (`docker://`, `docker-unix:///path`, `docker-tcp://host:port`; see
//! [`addr`]), finding a running engine when no
//! BuildKit address is set, choosing to load images into it for clusters that share its image store, and
//! the plain Engine API calls devloop needs (ping, image inspect, push) through `bollard`.
//! BuildKit's own gRPC goes through the engine too: see [`grpc`].

pub mod grpc;
pub mod prune;
pub mod transport;

pub use crate::config::addr::docker::{auto_engine, engine_of, Addr, Env, TlsFiles, DEFAULT_SOCKET};
pub use transport::answers;

use futures::StreamExt;

use crate::config::{Config, Load};
use crate::registry::Credentials;

/// Errors talking to Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers at the address, or the TLS files or handshake fail.
    #[error("Docker Engine is unreachable at {addr}: {reason}")]
    Unreachable { addr: Addr, reason: String },
    /// An API call failed.
    #[error("Docker Engine at {addr}: {what}: {reason}")]
    Api { addr: Addr, what: String, reason: String },
    /// The engine could not push the image.
    #[error("Docker Engine could not push {reference}: {reason}\n  check [registry] host, that the engine trusts it (`insecure-registries` in its daemon.json for a plain-HTTP registry), and credentials in ~/.docker/config.json")]
    Push { reference: String, reason: String },
}

/// Kube contexts whose node runtime reads the local Docker Engine's image store.
const SHARED_STORE_CONTEXTS: &[&str] = &["docker-desktop", "orbstack", "rancher-desktop"];

/// Whether built images should be loaded into the engine rather than pushed: only when the engine builds,
/// `[registry]` sets neither `host` nor `load`, and the cluster shares the engine's store (Docker Desktop,
/// OrbStack, Rancher Desktop in moby mode, or minikube's profile when `minikube docker-env` is in effect,
/// which sets MINIKUBE_ACTIVE_DOCKERD to that profile).
pub fn auto_load(engine_builds: bool, registry_explicit: bool, context: &str, minikube_active: Option<&str>) -> bool {
    engine_builds
        && !registry_explicit
        && (SHARED_STORE_CONTEXTS.contains(&context) || minikube_active.is_some_and(|p| !p.is_empty() && p == context))
}

/// Applies the engine to a loaded config: with no BuildKit address set, a running engine builds (said on
/// the first output line); and when the engine builds for a cluster sharing its store, images are loaded
/// into it unless `[registry]` sets `host` or `load` (said once). `text` is the config file's text;
/// `kube_context` the run's context when a flag chose it (else `[kube] context`, else the kubeconfig's).
pub fn settle(cfg: &mut Config, text: &str, kube_context: Option<&str>) {
    let env = Env::current();
    match auto_engine(&cfg.buildkit, &env, answers) {
        Ok(Some(engine)) => {
            cfg.buildkit.addr = match &engine {
                Addr::Unix(socket) => format!("docker-unix://{}", socket.display()),
                // DOCKER_HOST with its TLS files: docker:// resolves it again, from the same environment.
                Addr::Tcp { .. } => "docker://".into(),
            };
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("devloop: using Docker Engine's BuildKit at {} (no [buildkit] addr set)", engine.describe())
            });
        }
        Ok(None) => {}
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("devloop: not building with Docker Engine: {why}"));
        }
    }
    let engine_builds = matches!(engine_of(&cfg.buildkit, &env), Some(Ok(_)));
    if !engine_builds || cfg.registry.load != Load::Push {
        return;
    }
    let table: toml::Table = text.parse().unwrap_or_default();
    let load_set = table.get("registry").and_then(|r| r.get("load")).is_some();
    let explicit = load_set || !cfg.registry.host.is_empty();
    let context = kube_context.map(str::to_string).or_else(|| cfg.kube.context.clone()).or_else(|| {
        kube::config::Kubeconfig::read().ok().and_then(|k| k.current_context)
    });
    let Some(context) = context else { return };
    if auto_load(true, explicit, &context, std::env::var("MINIKUBE_ACTIVE_DOCKERD").ok().as_deref()) {
        cfg.registry.load = Load::Docker;
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "devloop: kube context {context} shares Docker Engine's image store: loading images there instead of \
                 pushing them (set [registry] host or load to choose)"
            )
        });
    }
}

/// A connected engine: its address, an API client at the negotiated version, and what it runs.
#[derive(Clone)]
pub struct Engine {
    /// Where it listens.
    pub addr: Addr,
    /// Opens further connections (BuildKit's /grpc) with the same TLS configuration.
    pub dialer: transport::Dialer,
    /// Engine API client (version negotiated with the engine).
    pub api: bollard::Docker,
    /// The engine's version (`20.10.24+dfsg1`).
    pub version: String,
    /// The API version both sides speak (`1.41`).
    pub api_version: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({}, {} API {})", self.addr, self.version, self.api_version)
    }
}

impl Engine {
    /// Connects to the engine at `addr`, negotiating the API version (`GET /_ping`, `/version`). Over TLS,
    /// failures name the certificate files.
    pub async fn connect(addr: &Addr) -> Result<Engine, Error> {
        let tls_note = match addr {
            Addr::Tcp { tls: Some(files), .. } => format!(" (TLS with {})", files.describe()),
            _ => String::new(),
        };
        let unreachable = |reason: String| Error::Unreachable { addr: addr.clone(), reason: format!("{reason}{tls_note}") };
        if let Addr::Tcp { tls: None, .. } = addr {
            // engine_of allows this only with `insecure = true`; say it once per run, not per connection.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: Docker Engine at {addr} is plain TCP without TLS ([buildkit] insecure = true): registry \
                     credentials and the build context cross the network unencrypted"
                )
            });
        }
        let dialer = transport::Dialer::new(addr).map_err(&unreachable)?;
        let api = dialer.api().map_err(|e| unreachable(crate::util::error_chain(&e)))?;
        let api = tokio::time::timeout(std::time::Duration::from_secs(10), api.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer to /_ping within 10s".into()))?
            .map_err(|e| unreachable(crate::util::error_chain(&e)))?;
        let v = api.version().await.map_err(|e| unreachable(crate::util::error_chain(&e)))?;
        let api_version = api.client_version().to_string();
        // /grpc and BuildKit came with Docker 18.09 (API 1.39); older engines answer 404 there.
        let (major, minor) = api_version.split_once('.').map_or((0, 0), |(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)));
        if (major, minor) < (1, 39) {
            let found = v.version.clone().unwrap_or_default();
            return Err(unreachable(format!("Docker Engine {found} (API {api_version}) has no BuildKit: 18.09 or newer is needed")));
        }
        Ok(Engine { addr: addr.clone(), dialer, api, version: v.version.unwrap_or_default(), api_version })
    }

    /// The image id of `reference` in the engine's store, if it has it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, Error> {
        match self.api.inspect_image(reference).await {
            Ok(img) => Ok(img.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.api_error(&format!("inspecting image {reference}"), &e)),
        }
    }

    /// Pushes `reference` (`host/name:tag`, already in the engine's store) and returns the registry
    /// manifest digest the engine reports. `credentials` go in X-Registry-Auth and are never printed.
    pub async fn push(&self, reference: &str, credentials: Option<Credentials>) -> Result<String, Error> {
        let push_error = |reason: String| Error::Push { reference: reference.to_string(), reason };
        let (name, tag) = split_tag(reference);
        let creds = credentials.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.username),
            password: Some(c.secret),
            serveraddress: Some(name.split('/').next().unwrap_or_default().to_string()),
            ..Default::default()
        });
        let opts = bollard::query_parameters::PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = self.api.push_image(name, Some(opts), creds);
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| push_error(crate::util::error_chain(&e)))?;
            if let Some(d) = info.status.as_deref().and_then(pushed_digest) {
                digest = Some(d);
            }
        }
        digest.ok_or_else(|| push_error("the engine finished without reporting the pushed manifest's digest".into()))
    }

    fn api_error(&self, what: &str, e: &bollard::errors::Error) -> Error {
        Error::Api { addr: self.addr.clone(), what: what.into(), reason: crate::util::error_chain(e) }
    }
}

/// `host/name:tag` → (`host/name`, `tag`); a port's colon is not a tag's.
fn split_tag(reference: &str) -> (&str, &str) {
    let r = crate::reference::Reference::parse(reference);
    (r.repository, r.tag_or_latest())
}

/// The engine's final push status line, `<tag>: digest: sha256:… size: N`, gives the manifest digest.
fn pushed_digest(status: &str) -> Option<String> {
    let rest = status.split_once("digest: ")?.1;
    let d = rest.split_whitespace().next()?;
    (d.starts_with("sha256:") && d.len() == 71).then(|| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_loaded_only_for_clusters_that_share_the_engine_store() {
        // (engine builds, registry explicit, context, MINIKUBE_ACTIVE_DOCKERD, load)
        let table = [
            (true, false, "docker-desktop", None, true),
            (true, false, "orbstack", None, true),
            (true, false, "rancher-desktop", None, true),
            (true, false, "minikube", Some("minikube"), true),
            (true, false, "minikube", None, false),
            (true, false, "minikube", Some("other-profile"), false),
            (true, false, "kind-kind", None, false),
            (true, true, "docker-desktop", None, false),
            (false, false, "docker-desktop", None, false),
        ];
        for (engine, explicit, ctx, mk, want) in table {
            assert_eq!(auto_load(engine, explicit, ctx, mk), want, "{engine} {explicit} {ctx} {mk:?}");
        }
    }

    #[test]
    fn push_status_lines_give_the_manifest_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pushed_digest(&format!("t1: digest: {d} size: 527")), Some(d));
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("digest: sha256:short size: 1"), None);
        assert_eq!(split_tag("10.0.0.1:5000/hello:t1"), ("10.0.0.1:5000/hello", "t1"));
        assert_eq!(split_tag("10.0.0.1:5000/hello"), ("10.0.0.1:5000/hello", "latest"));
    }
}
