//! `devloop init [DIR] [--force]`: looks at a project folder and the cluster and writes a commented
//! `devloop.toml` that loads, saying in it (and on stderr) what it could not decide. It asks nothing: the
//! folder and the kubeconfig say enough for a first config, and a file is quicker to fix than prompts.
//!
//! [`scan`] finds Dockerfiles, manifests, charts and kustomizations; [`chart`] renders each chart (`helm
//! template`) to learn where it takes the image and what it runs; [`plan`] pairs them; [`render`] writes
//! the text; [`probe`] asks the kubeconfig and the cluster (the registry, discovered as `up` does).

pub mod chart;
pub mod plan;
pub mod render;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::config;

/// Errors of `devloop init`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is there and `--force` was not given (exit 2).
    #[error("{0} exists: pass --force to overwrite it")]
    Exists(PathBuf),
    /// The folder is not a directory (exit 2).
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// Reading the folder or writing the file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The generated text does not load: a bug in init, reported rather than written.
    #[error("the generated config does not load ({0}); this is a bug in devloop init")]
    Generated(String),
}

impl Error {
    /// The process exit code: 2 for what the user can fix by how they call it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Exists(_) | Error::NotADirectory(_) => 2,
            _ => 1,
        }
    }
}

/// Where BuildKit is, as far as init can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Buildkit {
    /// BUILDKIT_HOST was set.
    FromEnv(String),
    /// Nothing said: devloop's own default applies.
    Unset,
}

/// Where images go.
#[derive(Debug, Clone, PartialEq)]
pub enum Registry {
    /// A registry to push to; `from` says where it was found.
    Found { host: String, pull_host: Option<String>, insecure: bool, from: String },
    /// The context shares Docker Engine's image store (devloop loads into it by itself).
    EngineStore(String),
    /// None found, and why.
    None(String),
}

/// What init learnt outside the folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The current context and whether devloop deploys to it without an allow-list entry.
    pub context: Option<(String, bool)>,
    /// The registry.
    pub registry: Registry,
    /// BuildKit.
    pub buildkit: Buildkit,
}

/// What `init` wrote.
#[derive(Debug)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// The plan it came from.
    pub plan: plan::Plan,
}

/// The file init writes in `dir`.
pub fn target(dir: &Path) -> PathBuf {
    dir.join(config::FILE_NAME)
}

/// Refuses early (before any scan or cluster call) when the file exists and `force` is false.
pub fn check_target(dir: &Path, force: bool) -> Result<PathBuf, Error> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory(dir.to_path_buf()));
    }
    let path = target(dir);
    if path.exists() && !force {
        return Err(Error::Exists(path));
    }
    Ok(path)
}

/// Scans `dir`, renders the config for `cluster`, checks that devloop's own loader accepts it, and writes it.
pub fn generate(dir: &Path, force: bool, cluster: &Cluster) -> Result<Written, Error> {
    let path = check_target(dir, force)?;
    let found = scan::scan(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let folder = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rendered: Vec<Option<Result<chart::Rendered, String>>> = found
        .charts
        .iter()
        .map(|c| {
            let last = c.dir.rsplit('/').next().unwrap_or(&c.dir);
            Some(chart::render(&dir.join(&c.dir), &plan::release(&c.name), &c.values, &[c.name.as_str(), last, folder.as_str()]))
        })
        .collect();
    let plan = plan::plan(&found, &folder, &rendered);
    let text = render::render(&plan, cluster);
    config::parse(&path, &text).map_err(|e| Error::Generated(e.to_string()))?;
    std::fs::write(&path, &text).map_err(|source| Error::Io { path: path.clone(), source })?;
    Ok(Written { path, text, plan })
}

/// Contexts whose cluster shares Docker Engine's image store (devloop loads into it, no registry).
const ENGINE_CONTEXTS: &[&str] = &["docker-desktop", "orbstack", "rancher-desktop"];

/// Reads the kubeconfig's current context, and finds the registry as `up` does: `DEVLOOP_REGISTRY`, else the
/// cluster's `kube-public/local-registry-hosting` ConfigMap (asked only of a context devloop may deploy to).
pub async fn probe(env: impl Fn(&str) -> Option<String>) -> Cluster {
    let buildkit = env("BUILDKIT_HOST").filter(|a| !a.is_empty()).map_or(Buildkit::Unset, Buildkit::FromEnv);
    let context = kube::config::Kubeconfig::read().ok().and_then(|k| k.current_context).filter(|c| !c.is_empty());
    let context = context.map(|c| {
        let local = crate::cluster::safety::check(&c, &[]).is_ok();
        (c, local)
    });
    let registry = match (env("DEVLOOP_REGISTRY").filter(|h| !h.is_empty()), &context) {
        (Some(host), _) => {
            let mut reg = config::Registry::default();
            let found = crate::registry::discover::Discovered { host: host.clone(), pull_host: host.clone() };
            crate::registry::discover::apply(&mut reg, &found).await;
            Registry::Found { host, pull_host: None, insecure: reg.insecure, from: "From DEVLOOP_REGISTRY at init".into() }
        }
        (None, Some((ctx, _))) if ENGINE_CONTEXTS.contains(&ctx.as_str()) => Registry::EngineStore(ctx.clone()),
        (None, Some((ctx, true))) => discover(ctx).await,
        (None, Some((ctx, false))) => Registry::None(format!("context {ctx} is not allow-listed, so it was not asked")),
        (None, None) => Registry::None("no kubeconfig context to ask".into()),
    };
    Cluster { context, registry, buildkit }
}

async fn discover(ctx: &str) -> Registry {
    use crate::registry::discover;
    let kube = config::Kube { context: Some(ctx.to_string()), ..Default::default() };
    let target = match crate::cluster::connect(&kube, &Default::default()).await {
        Ok(t) => t,
        Err(e) => return Registry::None(format!("context {ctx} could not be asked: {e}")),
    };
    match discover::read(target.client.clone()).await {
        Ok(Some(found)) => {
            let mut reg = config::Registry::default();
            discover::apply(&mut reg, &found).await;
            Registry::Found {
                host: reg.host.clone(),
                pull_host: reg.pull_host.clone(),
                insecure: reg.insecure,
                from: format!("Advertised by context {ctx} (ConfigMap {}/{})", discover::NAMESPACE, discover::NAME),
            }
        }
        Ok(None) => Registry::None(format!("context {ctx} has no ConfigMap {}/{}", discover::NAMESPACE, discover::NAME)),
        Err(e) => Registry::None(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
