//! `devloop deploy`: resolve each deployed image to `repo:tag@digest` (building it when the registry lacks
//! the tag), change the workloads, watch their rollouts, and roll back on failure when asked.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{build_images, hash_images, Error, Outcome};
use crate::config::{Config, Deploy, DeployTarget};
use crate::deploy::rollout::{Timeline, Verdict};
use crate::deploy::{self, images, manifests, KubeOptions, Patched, Target};
use crate::registry;

/// Choices for one deploy run.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Context, namespace and allow-list overrides.
    pub kube: KubeOptions,
    /// Deploy this tag instead of the current content tag.
    pub tag: Option<String>,
    /// Show build log lines.
    pub verbose: bool,
}

/// Deploys every `[[deploy]]`. Ok(false) when a rollout failed (reported on `out`).
pub async fn deploy_all(cfg: &Config, opts: &DeployOptions, out: &mut (dyn Write + Send)) -> Result<bool, Error> {
    if cfg.deploys.is_empty() {
        return Err(Error::Usage(format!("{} has no [[deploy]] table: nothing to deploy", cfg.path.display())));
    }
    // The allow-list is checked here, before any build, registry or API request.
    let target = deploy::connect(&cfg.kube, &opts.kube).await?;
    let references = resolve_all(cfg, opts, out).await?;
    let mut ok = true;
    let mut done = Vec::new();
    for d in &cfg.deploys {
        ok &= deploy_one(cfg, &target, d, &references, out, &mut done).await?;
    }
    Ok(ok)
}

/// Deploys every `[[deploy]]` of `image`; Ok(false) when a rollout failed. `references` maps image names to
/// the references to put in — all that are known, not just `image`'s, since one manifest may name several
/// images and applying it must not reset the others. The Deployments that rolled are appended to `rolled`.
pub async fn deploy_image(
    cfg: &Config,
    target: &Target,
    image: &str,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
) -> Result<bool, Error> {
    let mut ok = true;
    for d in cfg.deploys.iter().filter(|d| d.image == image) {
        ok &= deploy_one(cfg, target, d, references, out, rolled).await?;
    }
    Ok(ok)
}

async fn deploy_one(
    cfg: &Config,
    target: &Target,
    d: &Deploy,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
) -> Result<bool, Error> {
    match &d.target {
        DeployTarget::Patch { deployment, container } => {
            let (ok, timeline) = patch_one(cfg, target, d, deployment, container.as_deref(), &references[&d.image], out).await?;
            rolled.push(Rolled { deployment: deployment.clone(), timeline });
            Ok(ok)
        }
        DeployTarget::Manifests(patterns) => apply_manifests(cfg, target, d, patterns, references, out, rolled).await,
    }
}

/// A Deployment that rolled to the new image.
#[derive(Debug, Clone)]
pub struct Rolled {
    /// Its name.
    pub deployment: String,
    /// When its first new pod reached each stage (empty if it did not roll or failed).
    pub timeline: Timeline,
}

/// `<pull host>/<name>:<tag>@<digest>`.
pub fn reference(cfg: &Config, image: &str, tag: &str, digest: &str) -> String {
    format!("{}/{image}:{tag}@{digest}", cfg.registry.pull_host())
}

/// References for every image that has a `[[deploy]]`, building what the registry lacks.
pub async fn resolve_all(cfg: &Config, opts: &DeployOptions, out: &mut (dyn Write + Send)) -> Result<HashMap<String, String>, Error> {
    let mut references: HashMap<String, String> = HashMap::new();
    for d in &cfg.deploys {
        if !references.contains_key(&d.image) {
            let r = resolve(cfg, &d.image, opts, out).await?;
            references.insert(d.image.clone(), r);
        }
    }
    Ok(references)
}

/// `<pull host>/<name>:<tag>@<digest>` for an image, building and pushing it first if needed.
async fn resolve(cfg: &Config, name: &str, opts: &DeployOptions, out: &mut (dyn Write + Send)) -> Result<String, Error> {
    let tag = match &opts.tag {
        Some(t) => t.clone(),
        None => super::off_runtime(|| hash_images(cfg, &[name.to_string()]))?.remove(0).snapshot.tag,
    };
    let digest = match registry::manifest_digest(&cfg.registry, name, &tag).await? {
        Some(d) => d,
        None if opts.tag.is_some() => {
            return Err(Error::Usage(format!("the registry has no {}/{name}:{tag}", cfg.registry.host)));
        }
        None => match build_images(cfg, &[name.to_string()], false, opts.verbose, out).await?.remove(0) {
            Outcome::Built { built, .. } => built.digest,
            Outcome::Present { digest, .. } => digest,
        },
    };
    Ok(reference(cfg, name, &tag, &digest))
}

/// Prints a verdict; true when the rollout succeeded.
fn report(out: &mut (dyn Write + Send), image: &str, what: &str, started: Instant, v: &Verdict) -> bool {
    match v {
        Verdict::Done { ready, timeline } => {
            let after = |i: Option<Instant>| i.map(|i| format!("{:.2}s", i.saturating_duration_since(started).as_secs_f64()));
            let stages: Vec<String> = [("pod created", timeline.created), ("running", timeline.running), ("ready", timeline.ready)]
                .into_iter()
                .filter_map(|(what, at)| after(at).map(|t| format!("{what} {t}")))
                .collect();
            let stages = if stages.is_empty() { String::new() } else { format!("; {}", stages.join(", ")) };
            let _ = writeln!(out, "{image}: rollout of {what} done in {:.1}s ({ready} ready{stages})", started.elapsed().as_secs_f64());
            true
        }
        Verdict::Failed(f) => {
            let place = match (&f.pod, &f.container) {
                (Some(p), Some(c)) => format!(" (pod {p}, container {c})"),
                (Some(p), None) => format!(" (pod {p})"),
                _ => String::new(),
            };
            let _ = writeln!(out, "{image}: rollout of {what} FAILED after {:.1}s: {}{place}: {}", started.elapsed().as_secs_f64(), f.reason, f.message);
            if !f.logs.is_empty() {
                let _ = writeln!(out, "{image}:   last log lines:");
                for l in &f.logs {
                    let _ = writeln!(out, "{image}:     {l}");
                }
            }
            false
        }
        Verdict::Progressing(w) => {
            let _ = writeln!(out, "{image}: rollout of {what} not finished: {w}");
            false
        }
    }
}

async fn patch_one(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    name: &str,
    container: Option<&str>,
    reference: &str,
    out: &mut (dyn Write + Send),
) -> Result<(bool, Timeline), Error> {
    let ns = &t.namespace;
    let what = format!("deployment {ns}/{name}");
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), ns);
    let dep = api
        .get_opt(name)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("reading {what}"), source: e })?
        .ok_or_else(|| Error::Usage(format!("{what} does not exist in context {}: create it, or use `manifests`", t.context)))?;
    let reg = &cfg.registry;
    let ours = |i: &str| images::is_ours(i, &d.image, &reg.host, reg.pull_host());
    let (container, current) = deploy::pick_container(&dep, container, &ours)
        .map_err(|message| deploy::Error::Container { namespace: ns.clone(), deployment: name.into(), message })?;
    let outcome = if current == reference {
        Patched::Unchanged { container }
    } else {
        deploy::patch_image(&api, name, &container, reference).await?;
        Patched::Changed { container, previous: current }
    };
    let Patched::Changed { container, previous } = outcome else {
        let _ = writeln!(out, "{}: {what} already runs {reference}, nothing to do", d.image);
        return Ok((true, Timeline::default()));
    };
    let _ = writeln!(out, "{}: {what} container {container}: {previous} -> {reference}", d.image);
    let started = Instant::now();
    let verdict = deploy::watch_rollout(t, name, &[reference.to_string()], d.rollout_timeout).await?;
    if report(out, &d.image, &what, started, &verdict) {
        return Ok((true, timeline_of(&verdict)));
    }
    if d.rollback_on_failure && !previous.is_empty() {
        let _ = writeln!(out, "{}: rolling {what} back to {previous}", d.image);
        deploy::patch_image(&api, name, &container, &previous).await?;
        let started = Instant::now();
        let back = deploy::watch_rollout(t, name, &[previous.clone()], d.rollout_timeout).await?;
        if report(out, &d.image, &format!("{what} (rollback)"), started, &back) {
            let _ = writeln!(out, "{}: {what} is back on {previous}", d.image);
        }
    }
    Ok((false, Timeline::default()))
}

fn timeline_of(v: &Verdict) -> Timeline {
    match v {
        Verdict::Done { timeline, .. } => *timeline,
        _ => Timeline::default(),
    }
}

async fn apply_manifests(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    patterns: &[String],
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
) -> Result<bool, Error> {
    let reg = &cfg.registry;
    let subst = |image: &str| {
        references.iter().find(|(name, _)| images::is_ours(image, name, &reg.host, reg.pull_host())).map(|(_, r)| r.clone())
    };
    let mut objects = Vec::new();
    for (file, mut value) in super::off_runtime(|| manifests::load(&cfg.root, patterns))? {
        let (refs, hints) = manifests::substitute(&mut value, &subst);
        for h in hints {
            let _ = writeln!(out, "{}: hint: {h}", d.image);
        }
        objects.push(manifests::Object { file, value, refs });
    }
    let applied = manifests::apply(t, objects).await?;
    let mut ok = true;
    for a in &applied {
        let what = format!("{} {}/{}", a.object.kind().to_lowercase(), t.namespace, a.object.name());
        let state = if a.changed { "applied" } else { "unchanged" };
        let _ = writeln!(out, "{}: {what} {state} (server-side apply, field manager devloop)", d.image);
        if a.changed && a.object.kind() == "Deployment" && !a.object.refs.is_empty() {
            let started = Instant::now();
            let v = deploy::watch_rollout(t, a.object.name(), &a.object.refs, d.rollout_timeout).await?;
            ok &= report(out, &d.image, &what, started, &v);
            rolled.push(Rolled { deployment: a.object.name().to_string(), timeline: timeline_of(&v) });
        }
    }
    Ok(ok)
}

/// Deletes the objects of these manifests from the target namespace (`up --cleanup`, `check`).
pub async fn delete_manifests(cfg: &Config, t: &Target, patterns: &[String]) -> Result<usize, Error> {
    let objects = super::off_runtime(|| manifests::load(&cfg.root, patterns))?;
    Ok(manifests::delete(t, &objects).await?)
}
