//! `devloop deploy`: resolve each deployed image to `repo:tag@digest` (building it when the registry lacks
//! the tag), change the workloads, watch their rollouts, and roll back on failure when asked.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{build_images, hash_images, Error, Outcome};
use crate::config::{Config, Deploy, DeployTarget, Helm, ManifestSource};
use super::decide::Event;
use crate::cluster::{self, KubeOptions, Target};
use crate::deploy::rollout::{self, Failure, Timeline, Verdict};
use crate::deploy::{self, helm, images, manifests, pull_secret, Patched};
use crate::interrupt::{until, Interrupt};
use crate::deliver::Destination;

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

/// Deploys every `[[deploy]]`. Ok(false) when a rollout failed (reported on `out`). A signal while a
/// rollout is watched leaves it unverified: with `rollback-on-failure` the previous image is put back (a
/// second signal stops waiting for that); either way the Deployment's state is reported and the result is
/// [`Error::Interrupted`].
pub async fn deploy_all(cfg: &Config, opts: &DeployOptions, out: &mut (dyn Write + Send), intr: &Interrupt) -> Result<bool, Error> {
    if cfg.deploys.is_empty() {
        return Err(Error::Usage(format!("{} has no [[deploy]] table: nothing to deploy", cfg.path.display())));
    }
    // The allow-list is checked here, before any build, registry or API request.
    let target = cluster::connect(&cfg.kube, &opts.kube).await?;
    check_patch_targets(cfg, &target).await?;
    let Some(references) = until(intr.stop(), resolve_all(cfg, opts, out)).await else {
        let _ = writeln!(out, "deploy: interrupted ({}) before any workload was changed", intr.name());
        return Err(Error::Interrupted(intr.name()));
    };
    let references = references?;
    // After the builds: a failed build leaves no namespace behind.
    if let Some(created) = cluster::namespace::ensure(&target, "deploy").await? {
        let _ = writeln!(out, "deploy: {created}");
    }
    pull_access(cfg, &target, out).await?;
    let mut ok = true;
    let mut done = Vec::new();
    for d in &cfg.deploys {
        ok &= deploy_one(cfg, &target, d, &references, out, &mut done, Some(intr)).await?;
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
    if cfg.deploys.iter().any(|d| d.image == image) {
        pull_access(cfg, target, out).await?;
    }
    let mut ok = true;
    for d in cfg.deploys.iter().filter(|d| d.image == image) {
        ok &= deploy_one(cfg, target, d, references, out, rolled, None).await?;
    }
    Ok(ok)
}

/// The pull secret the deployed pod templates reference (`[registry] pull-secret`, for a registry only).
fn pull_secret_name(cfg: &Config) -> Option<String> {
    (cfg.registry.load == crate::config::Load::Push).then(|| cfg.registry.pull_secret.name(&cfg.registry.host)).flatten()
}

/// Makes sure the kubelet can pull: creates or updates the pull secret when configured (saying so when it
/// changed), or hints once when the registry wants credentials and none is configured.
async fn pull_access(cfg: &Config, t: &Target, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    if pull_secret_name(cfg).is_none() {
        if let Some(h) = pull_secret::hint(&cfg.registry) {
            let _ = writeln!(out, "devloop: {h}");
        }
        return Ok(());
    }
    let docker = crate::registry::DockerConfig::load();
    let ns = &t.namespace;
    match pull_secret::ensure(t, &cfg.registry, &docker).await? {
        Some((name, pull_secret::Ensured::Applied)) => {
            let _ = writeln!(out, "deploy: pull secret {ns}/{name} applied (kubernetes.io/dockerconfigjson for {})", cfg.registry.pull_host());
        }
        Some((name, pull_secret::Ensured::Foreign)) => {
            let _ = writeln!(out, "deploy: pull secret {ns}/{name} exists and devloop did not create it: used as it is");
        }
        Some((_, pull_secret::Ensured::Unchanged)) | None => {}
    }
    Ok(())
}

async fn deploy_one(
    cfg: &Config,
    target: &Target,
    d: &Deploy,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
    intr: Option<&Interrupt>,
) -> Result<bool, Error> {
    match &d.target {
        DeployTarget::Patch { deployment, container } => {
            let (ok, timeline, failure) = patch_one(cfg, target, d, deployment, container.as_deref(), &references[&d.image], out, intr).await?;
            rolled.push(Rolled { deployment: deployment.clone(), timeline, failure });
            Ok(ok)
        }
        DeployTarget::Manifests(source) => apply_manifests(cfg, target, d, source, references, out, rolled, intr).await,
        DeployTarget::Helm(h) => helm_release(cfg, target, d, h, &references[&d.image], out, rolled, intr).await,
    }
}

/// Watches a rollout; with `intr`, None when its first signal comes first (the watch is dropped).
async fn watch_unless_stopped(
    t: &Target,
    name: &str,
    refs: &[String],
    timeout: std::time::Duration,
    intr: Option<&Interrupt>,
) -> Result<Option<Verdict>, Error> {
    let watch = deploy::watch_rollout(t, name, refs, timeout);
    match intr {
        Some(i) => until(i.stop(), watch).await.transpose().map_err(Error::from),
        None => Ok(Some(watch.await?)),
    }
}

/// `deployment ns/name: <its state>` (see [`crate::deploy::rollout::describe`]), or why it is unknown.
async fn state_of(t: &Target, name: &str) -> String {
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let what = format!("deployment {}/{name}", t.namespace);
    // Bounded: this is said on the way out, and the API server may be what is failing.
    match tokio::time::timeout(std::time::Duration::from_secs(10), api.get(name)).await {
        Ok(Ok(dep)) => format!("{what}: {}", crate::deploy::rollout::describe(&dep)),
        Ok(Err(e)) => format!("{what}: state unknown ({e})"),
        Err(_) => format!("{what}: state unknown (the API server did not answer within 10s)"),
    }
}

/// A Deployment that rolled to the new image.
#[derive(Debug, Clone)]
pub struct Rolled {
    /// Its name.
    pub deployment: String,
    /// When its first new pod reached each stage (empty if it did not roll or failed).
    pub timeline: Timeline,
    /// Why its rollout failed, as the watch judged it (`Exited (pod p, container c): exited with code 3`).
    pub failure: Option<String>,
}

impl Rolled {
    /// A Deployment whose rollout was judged `v`.
    fn of(deployment: &str, v: &Verdict) -> Rolled {
        let failure = match v {
            Verdict::Failed(f) => Some(format!("{}{}: {}", f.reason, place(f), f.message)),
            Verdict::Progressing(w) => Some(format!("not finished: {w}")),
            Verdict::Done { .. } => None,
        };
        Rolled { deployment: deployment.to_string(), timeline: timeline_of(v), failure }
    }
}

/// What deployed containers run (`<pull host>/<name>:<tag>@<digest>` for a registry).
pub fn reference(cfg: &Config, image: &str, tag: &str, digest: &str) -> String {
    Destination::of(cfg).deploy_reference(image, tag, digest)
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
    let destination = Destination::of(cfg);
    let digest = match destination.present(name, &tag).await? {
        Some(d) => d,
        None if opts.tag.is_some() => {
            return Err(Error::Usage(format!("{} has no {name}:{tag}", destination.describe())));
        }
        None => match build_images(cfg, &[name.to_string()], false, opts.verbose, &opts.kube, out).await?.remove(0) {
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
            let settle = if timeline.settle.is_zero() {
                String::new()
            } else {
                format!("; no exit in the {} after ready", humantime::format_duration(timeline.settle))
            };
            let _ = writeln!(out, "{image}: rollout of {what} done in {:.1}s ({ready} ready{stages}{settle})", started.elapsed().as_secs_f64());
            true
        }
        Verdict::Failed(f) => {
            let place = place(f);
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

/// Before any build: every Deployment a `[[deploy]]` patches exists in `t`'s namespace and has the container
/// to patch — else the build and push would be for nothing. Not when the config also applies manifests or a
/// chart (one of them may create it). A missing one is [`Error::Usage`], a container that cannot be told
/// [`deploy::Error::Container`]; an API error is itself.
pub async fn check_patch_targets(cfg: &Config, t: &Target) -> Result<(), Error> {
    if cfg.deploys.iter().any(|d| !matches!(d.target, DeployTarget::Patch { .. })) {
        return Ok(());
    }
    for d in &cfg.deploys {
        if let DeployTarget::Patch { deployment, container } = &d.target {
            patch_target(cfg, t, d, deployment, container.as_deref()).await?;
        }
    }
    Ok(())
}

/// The Deployment `name` that `d` patches, the container to patch and its current image.
async fn patch_target(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    name: &str,
    container: Option<&str>,
) -> Result<(Deployment, String, String), Error> {
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
    Ok((dep, container, current))
}

/// ` (pod p, container c)`: where a failure shows.
fn place(f: &Failure) -> String {
    match (&f.pod, &f.container) {
        (Some(p), Some(c)) => format!(" (pod {p}, container {c})"),
        (Some(p), None) => format!(" (pod {p})"),
        _ => String::new(),
    }
}

/// `up`, after the rollout of `image` at `tag` to `deployment` (begun at `since`) succeeded: watches its pods
/// running `reference` until one crashes ([`crate::deploy::rollout::guard`]), then tells the core
/// ([`Event::Crashed`]); or until `stop` (the image's next rollout, or the end of `up`).
#[allow(clippy::too_many_arguments)]
pub async fn watch_for_crash(
    cfg: Arc<Config>,
    t: Target,
    deployment: String,
    image: String,
    tag: String,
    reference: String,
    since: k8s_openapi::jiff::Timestamp,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let what = format!("deployment {}/{deployment}", t.namespace);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let refs = [reference];
    let failure = loop {
        let watched = async {
            let dep = deployments.get(&deployment).await.map_err(|e| e.to_string())?;
            rollout::guard(&pods, &cluster::selector(&dep), &refs, since).await.map_err(|e| e.to_string())
        };
        match until(&stop, watched).await {
            None => return,
            Some(Ok(f)) => break f,
            Some(Err(e)) => {
                // The API server went away for a moment: watch again (restarts meanwhile count from then).
                tracing::info!("watching the pods of {what} for a crash: {e}; again in 2s");
                if until(&stop, tokio::time::sleep(std::time::Duration::from_secs(2))).await.is_none() {
                    return;
                }
            }
        }
    };
    let mut error = format!("{what}: {}{}: {}", failure.reason, place(&failure), failure.message);
    if !failure.logs.is_empty() {
        error.push_str("\n  last log lines:");
        for l in &failure.logs {
            error.push_str(&format!("\n    {l}"));
        }
    }
    // As a failed rollout would be: Helm releases always, patched Deployments with rollback-on-failure.
    let rolls_back = |d: &Deploy| match d.target {
        DeployTarget::Helm(_) => true,
        DeployTarget::Patch { .. } => d.rollback_on_failure,
        DeployTarget::Manifests(_) => false,
    };
    let rollback = cfg.deploys.iter().filter(|d| d.image == image).any(rolls_back);
    let _ = events.send(Event::Crashed { image, tag, error, at: Instant::now(), rollback }).await;
}

#[allow(clippy::too_many_arguments)]
async fn patch_one(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    name: &str,
    container: Option<&str>,
    reference: &str,
    out: &mut (dyn Write + Send),
    intr: Option<&Interrupt>,
) -> Result<(bool, Timeline, Option<String>), Error> {
    let ns = &t.namespace;
    let what = format!("deployment {ns}/{name}");
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), ns);
    let (dep, container, current) = patch_target(cfg, t, d, name, container).await?;
    let destination = Destination::of(cfg);
    let policy = deploy::pull_policy_of(&dep, &container);
    let set_policy =
        images::managed_pull_policy(reference, policy.as_deref(), destination.pull_policy(), &destination.describe());
    let secret = pull_secret_name(cfg).filter(|s| !deploy::has_pull_secret(&dep, s));
    let outcome = if current == reference && set_policy.is_none() && secret.is_none() {
        Patched::Unchanged { container }
    } else {
        if let Some(h) = &set_policy {
            let _ = writeln!(out, "{}: hint: {h}", d.image);
        }
        let wanted = set_policy.is_some().then(|| destination.pull_policy()).flatten();
        deploy::patch_image_and_policy(&api, name, &container, reference, wanted, secret.as_deref()).await?;
        if let Some(s) = &secret {
            let _ = writeln!(out, "{}: {what}: imagePullSecrets += {s}", d.image);
        }
        Patched::Changed { container, previous: current }
    };
    let Patched::Changed { container, previous } = outcome else {
        let _ = writeln!(out, "{}: {what} already runs {reference}, nothing to do", d.image);
        return Ok((true, Timeline::default(), None));
    };
    let _ = writeln!(out, "{}: {what} container {container}: {previous} -> {reference}", d.image);
    let started = Instant::now();
    let Some(verdict) = watch_unless_stopped(t, name, &[reference.to_string()], d.rollout_timeout, intr).await? else {
        let intr = intr.expect("only a watch with an Interrupt stops early");
        return Err(interrupted_patch(t, d, &api, name, &container, &previous, out, intr).await);
    };
    if report(out, &d.image, &what, started, &verdict) {
        return Ok((true, timeline_of(&verdict), None));
    }
    let failure = Rolled::of(name, &verdict).failure;
    if d.rollback_on_failure && !previous.is_empty() {
        let _ = writeln!(out, "{}: rolling {what} back to {previous}", d.image);
        // A signal while this rollback is watched stops the waiting (the rollback itself is already asked for).
        let never = tokio_util::sync::CancellationToken::new();
        if roll_back(t, d, &api, name, &container, &previous, out, intr.map_or(&never, Interrupt::stop)).await?.is_none() {
            let intr = intr.expect("only a watch with an Interrupt stops early");
            let _ = writeln!(out, "{}: interrupted ({}): stopped waiting for the rollback of {what}", d.image, intr.name());
            let _ = writeln!(out, "{}: {}; rollback NOT finished", d.image, state_of(t, name).await);
            return Err(Error::Interrupted(intr.name()));
        }
    }
    Ok((false, Timeline::default(), failure))
}

/// Puts `previous` back into the Deployment's container and watches that rollout until `stop`: Some(true)
/// when it is back (said so), Some(false) when that rollout failed too (reported), None when `stop` came
/// first (the rollback is asked for, not verified).
#[allow(clippy::too_many_arguments)]
async fn roll_back(
    t: &Target,
    d: &Deploy,
    api: &Api<Deployment>,
    name: &str,
    container: &str,
    previous: &str,
    out: &mut (dyn Write + Send),
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Option<bool>, Error> {
    let what = format!("deployment {}/{name}", t.namespace);
    deploy::patch_image(api, name, container, previous).await?;
    let started = Instant::now();
    let refs = [previous.to_string()];
    let Some(verdict) = until(stop, deploy::watch_rollout(t, name, &refs, d.rollout_timeout)).await.transpose()? else {
        return Ok(None);
    };
    let back = report(out, &d.image, &format!("{what} (rollback)"), started, &verdict);
    if back {
        let _ = writeln!(out, "{}: {what} rolled back: it is back on {previous}", d.image);
    }
    Ok(Some(back))
}

/// A signal came while a patched Deployment's rollout was watched: the new image is unverified. With
/// `rollback-on-failure`, put the previous image back and wait for it (until a second signal); then say what
/// state the Deployment is in.
#[allow(clippy::too_many_arguments)]
async fn interrupted_patch(
    t: &Target,
    d: &Deploy,
    api: &Api<Deployment>,
    name: &str,
    container: &str,
    previous: &str,
    out: &mut (dyn Write + Send),
    intr: &Interrupt,
) -> Error {
    let what = format!("deployment {}/{name}", t.namespace);
    let image = &d.image;
    let _ = writeln!(out, "{image}: interrupted ({}) while watching the rollout of {what}: the new image is not verified", intr.name());
    let mut rollback = "";
    if d.rollback_on_failure && !previous.is_empty() {
        let _ = writeln!(out, "{image}: rolling {what} back to {previous} (a second signal stops waiting)");
        rollback = match roll_back(t, d, api, name, container, previous, out, intr.abort()).await {
            Ok(Some(true)) => "; rollback finished",
            Ok(Some(false)) => "; rollback NOT finished",
            Err(e) => {
                let _ = writeln!(out, "{image}: rolling {what} back failed: {e}");
                "; rollback NOT finished"
            }
            Ok(None) => {
                let _ = writeln!(out, "{image}: second signal: stopped waiting for the rollback of {what}");
                "; rollback NOT finished"
            }
        };
    }
    let _ = writeln!(out, "{image}: {}{rollback}", state_of(t, name).await);
    Error::Interrupted(intr.name())
}

fn timeline_of(v: &Verdict) -> Timeline {
    match v {
        Verdict::Done { timeline, .. } => *timeline,
        _ => Timeline::default(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_manifests(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    source: &ManifestSource,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
    intr: Option<&Interrupt>,
) -> Result<bool, Error> {
    let reg = &cfg.registry;
    let subst = |image: &str| {
        references.iter().find(|(name, _)| images::is_ours(image, name, &reg.host, reg.pull_host())).map(|(_, r)| r.clone())
    };
    let destination = Destination::of(cfg);
    let store = destination.describe();
    let pull = destination.pull_policy().map(|p| (p, store.as_str()));
    let secret = pull_secret_name(cfg);
    let mut objects = Vec::new();
    for (file, mut value) in super::off_runtime(|| manifests::load(&cfg.root, source))? {
        let (refs, hints) = manifests::substitute_with_policy(&mut value, &subst, pull);
        for h in hints {
            let _ = writeln!(out, "{}: hint: {h}", d.image);
        }
        if let Some(s) = &secret {
            // After substitution: the pod specs that now run one of devloop's references.
            pull_secret::add_to_pod_specs(&mut value, s, &|i| refs.iter().any(|r| r == i));
        }
        objects.push(manifests::Object { file, value, refs });
    }
    let applied = manifests::apply(t, objects).await?;
    let mut ok = true;
    let rolls = |a: &manifests::Applied| a.changed && a.object.kind() == "Deployment" && !a.object.refs.is_empty();
    for (i, a) in applied.iter().enumerate() {
        let scope = if a.cluster_scoped { String::new() } else { format!("{}/", t.namespace) };
        let what = format!("{} {scope}{}", a.object.kind().to_lowercase(), a.object.name());
        let state = if a.changed { "applied" } else { "unchanged" };
        let _ = writeln!(out, "{}: {what} {state} (server-side apply, field manager devloop)", d.image);
        if rolls(a) {
            let started = Instant::now();
            let Some(v) = watch_unless_stopped(t, a.object.name(), &a.object.refs, d.rollout_timeout, intr).await? else {
                let intr = intr.expect("only a watch with an Interrupt stops early");
                let _ = writeln!(out, "{}: interrupted ({}) while watching the rollout of {what}: not verified", d.image, intr.name());
                // This Deployment and the ones applied after it that were still to be watched.
                for later in applied[i..].iter().filter(|a| rolls(a)) {
                    let _ = writeln!(out, "{}: {}", d.image, state_of(t, later.object.name()).await);
                }
                return Err(Error::Interrupted(intr.name()));
            };
            ok &= report(out, &d.image, &what, started, &v);
            rolled.push(Rolled::of(a.object.name(), &v));
        }
    }
    Ok(ok)
}

/// Deletes the objects of these manifests from the target namespace (`up --cleanup`, `down`); returns the
/// deleted ones (see [`manifests::delete`]).
pub async fn delete_manifests(cfg: &Config, t: &Target, source: &ManifestSource) -> Result<Vec<String>, Error> {
    let objects = super::off_runtime(|| manifests::load(&cfg.root, source))?;
    Ok(manifests::delete(t, &objects).await?)
}

/// `helm upgrade --install` the release with `reference`, then watch its Deployments that run our image.
/// A failed rollout rolls the release back to its previous revision (like `helm --atomic`, but judged by
/// devloop's own rollout watch so the failure has its reason).
#[allow(clippy::too_many_arguments)]
async fn helm_release(
    cfg: &Config,
    t: &Target,
    d: &Deploy,
    h: &Helm,
    reference: &str,
    out: &mut (dyn Write + Send),
    rolled: &mut Vec<Rolled>,
    intr: Option<&Interrupt>,
) -> Result<bool, Error> {
    let secret = pull_secret_name(cfg);
    let what = format!("helm release {}/{}", t.namespace, h.release);
    let upgrade = helm::upgrade(h, &cfg.root, &t.namespace, &t.context, reference, secret.as_deref());
    let upgraded = match intr {
        Some(i) => until(i.stop(), upgrade).await,
        None => Some(upgrade.await),
    };
    let Some(release) = upgraded else {
        let intr = intr.expect("only an upgrade with an Interrupt stops early");
        let _ = writeln!(out, "{}: interrupted ({}) during the upgrade of {what}: stopping helm", d.image, intr.name());
        for said in helm::stopped().await {
            let _ = writeln!(out, "{}: {said}", d.image);
        }
        return Err(Error::Interrupted(intr.name()));
    };
    let release = release.map_err(deploy::Error::from)?;
    let _ = writeln!(out, "{}: {what} upgraded to revision {} ({reference})", d.image, release.revision);
    let reg = &cfg.registry;
    // The release's Deployments that run this image, each with its references to it.
    let ours = |deployments: &[(String, Vec<String>)]| -> Vec<(String, Vec<String>)> {
        deployments
            .iter()
            .filter_map(|(name, imgs)| {
                let refs: Vec<String> =
                    imgs.iter().filter(|i| images::is_ours(i, &d.image, &reg.host, reg.pull_host())).cloned().collect();
                (!refs.is_empty()).then(|| (name.clone(), refs))
            })
            .collect()
    };
    let mut ok = true;
    for (name, refs) in &ours(&release.deployments) {
        let dep = format!("deployment {}/{name}", t.namespace);
        let started = Instant::now();
        let Some(v) = watch_unless_stopped(t, name, refs, d.rollout_timeout, intr).await? else {
            let intr = intr.expect("only a watch with an Interrupt stops early");
            let _ = writeln!(out, "{}: interrupted ({}) while watching the rollout of {dep}: not verified", d.image, intr.name());
            let _ = writeln!(out, "{}: {}", d.image, state_of(t, name).await);
            return Err(Error::Interrupted(intr.name()));
        };
        let good = report(out, &d.image, &dep, started, &v);
        rolled.push(Rolled::of(name, &v));
        ok &= good;
        if !good {
            break;
        }
    }
    if ok {
        return Ok(true);
    }
    if release.revision <= 1 {
        let _ = writeln!(out, "{}: {what} has no previous revision to roll back to", d.image);
        return Ok(false);
    }
    let _ = writeln!(out, "{}: rolling {what} back to its previous revision (helm rollback)", d.image);
    let back = helm::rollback(h, &t.namespace, &t.context).await.map_err(deploy::Error::from)?;
    for (name, refs) in &ours(&back) {
        let dep = format!("deployment {}/{name} (rollback)", t.namespace);
        let started = Instant::now();
        // Bounded by the rollout timeout; a signal stops only the waiting (the rollback is already done).
        let Some(v) = watch_unless_stopped(t, name, refs, d.rollout_timeout, intr).await? else {
            let intr = intr.expect("only a watch with an Interrupt stops early");
            let _ = writeln!(out, "{}: interrupted ({}): stopped waiting for the rollback of {what}", d.image, intr.name());
            return Err(Error::Interrupted(intr.name()));
        };
        if report(out, &d.image, &dep, started, &v) {
            let _ = writeln!(out, "{}: {what} rolled back: deployment {name} is back on {}", d.image, refs.join(", "));
        }
    }
    Ok(false)
}
