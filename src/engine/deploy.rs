//! `devloop deploy`: resolve each deployed image to `repo:tag@digest` (building it when the registry lacks
//! the tag), change the workloads, watch their rollouts, and roll back on failure when asked. And `up`'s
//! workers that go through the same deployers: deploy, roll back (as the core decides), watch for a crash,
//! follow the new pods' logs, and clean up on exit (`--cleanup`).

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::Duration;

use super::decide::{self, Event};
use super::out::Out;
use super::up::Ctx;
use super::{build_images, hash_images, Error, Outcome};
use crate::cluster::{self, KubeOptions, Target};
use crate::config::Config;
use crate::deliver::Destination;
use crate::deploy::deployer::{place, Cleaned, Deployed, Deployers, Kind, Rolled, Stop, Undo};
use crate::deploy::{self, pull_secret, rollout};
use crate::forward;
use crate::interrupt::{until, Interrupt};

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
        // The config cannot do what was asked: a usage error (exit 2), said before anything runs.
        return Err(Error::BadFlag(format!("{} has no [[deploy]] table: nothing to deploy", cfg.path.display())));
    }
    // The allow-list is checked here, before any build, registry or API request.
    let target = cluster::connect(&cfg.kube, &opts.kube).await?;
    let deployers = Deployers::of(cfg);
    deployers.check_patch_targets(&target).await?;
    let Some(references) = until(intr.stop(), resolve_all(cfg, opts, out)).await else {
        let _ = writeln!(out, "deploy: interrupted ({}) before any workload was changed", intr.name());
        return Err(Error::Interrupted(intr.name()));
    };
    let references = references?;
    // After the builds: a failed build leaves no namespace behind.
    if let Some(created) = cluster::namespace::ensure(&target, "deploy").await? {
        let _ = writeln!(out, "deploy: {created}");
    }
    let mut ok = true;
    let mut images: Vec<&str> = Vec::new();
    for d in &cfg.deploys {
        if !images.contains(&d.image.as_str()) {
            images.push(&d.image);
        }
    }
    pull_access(cfg, &target, out).await?;
    for image in images {
        let rolled = deployers.deploy(&target, image, &references, out, Some(intr), Some(&Stop::First(intr))).await?.ok;
        if rolled {
            prune_after(cfg, image, references.get(image), out).await;
        }
        ok &= rolled;
    }
    Ok(ok)
}

/// After `deploy` rolled `image` out to `reference`: its older copies in the node's store go, as after
/// `up`'s iterations (`[registry] keep`; never one a container runs, nor the one just deployed). A failure is
/// said, never fatal: the images only take room.
async fn prune_after(cfg: &Config, image: &str, reference: Option<&String>, out: &mut (dyn Write + Send)) {
    let (destination, newest) = (Destination::of(cfg), cfg.registry.keep());
    if !destination.prunes() || newest == 0 {
        return;
    }
    let tags: Vec<String> = reference.and_then(|r| crate::reference::Reference::parse(r).tag.map(str::to_string)).into_iter().collect();
    if let Some(line) = destination.prune_said(image, newest, &tags).await {
        let _ = writeln!(out, "{image}: {line}");
    }
}

/// Deploys every `[[deploy]]` of `image` through its deployers (the one route of `deploy`, `up` and
/// `check`). `references` maps image names to the references to put in — all that are known, not just
/// `image`'s, since one manifest may name several images and applying it must not reset the others. With
/// `intr`, a signal during a rollout watch is handled ([`Error::Interrupted`]); with `undo_now`, a failed
/// rollout is rolled back at once where its deployer says how (else that is returned, for `up`'s core).
#[allow(clippy::too_many_arguments)]
pub async fn deploy_image(
    cfg: &Config,
    deployers: &Deployers,
    target: &Target,
    image: &str,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    intr: Option<&Interrupt>,
    undo_now: Option<Stop<'_>>,
) -> Result<Deployed, Error> {
    if deployers.of_image(image).next().is_some() {
        pull_access(cfg, target, out).await?;
    }
    Ok(deployers.deploy(target, image, references, out, intr, undo_now.as_ref()).await?)
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

/// What deployed containers run (`<pull host>/<name>:<tag>@<digest>` for a registry).
pub fn reference(cfg: &Config, image: &str, tag: &str, digest: &str) -> String {
    Destination::of(cfg).deploy_reference(image, tag, digest)
}

/// References for every image that has a `[[deploy]]`, building what the registry lacks.
pub async fn resolve_all(cfg: &Config, opts: &DeployOptions, out: &mut (dyn Write + Send)) -> Result<HashMap<String, String>, Error> {
    let mut references: HashMap<String, String> = HashMap::new();
    for d in &cfg.deploys {
        if !references.contains_key(&d.image) {
            let (r, _) = resolve(cfg, &d.image, opts, out).await?;
            references.insert(d.image.clone(), r);
        }
    }
    Ok(references)
}

/// `<pull host>/<name>:<tag>@<digest>` for an image, building and pushing it first if needed, and how it was
/// had (built, or present already).
pub(super) async fn resolve(cfg: &Config, name: &str, opts: &DeployOptions, out: &mut (dyn Write + Send)) -> Result<(String, Outcome), Error> {
    let tag = match &opts.tag {
        Some(t) => t.clone(),
        None => super::off_runtime(|| hash_images(cfg, &[name.to_string()]))?.remove(0).snapshot.tag,
    };
    let destination = Destination::of(cfg);
    let outcome = match destination.present(name, &tag).await? {
        Some(digest) => Outcome::Present { reference: destination.build_reference(name, &tag), digest },
        None if opts.tag.is_some() => {
            return Err(Error::Usage(format!("{} has no {name}:{tag}", destination.describe())));
        }
        None => build_images(cfg, &[name.to_string()], false, opts.verbose, &opts.kube, &Default::default(), out).await?.remove(0),
    };
    let digest = match &outcome {
        Outcome::Built { built, .. } => &built.digest,
        Outcome::Present { digest, .. } => digest,
    };
    Ok((reference(cfg, name, &tag, digest), outcome))
}

/// `up`, after the rollout of `image` at `tag` to `rolled` (begun at `since`) succeeded: watches its pods
/// running `reference` until one crashes ([`crate::deploy::rollout::guard`]), then tells the core
/// ([`Event::Crashed`], with whether the image's deployers roll a failed rollout back); or until `stop` (the
/// image's next rollout, or the end of `up`).
#[allow(clippy::too_many_arguments)]
pub async fn watch_for_crash(
    t: Target,
    rolled: Rolled,
    image: String,
    tag: String,
    reference: String,
    rollback: bool,
    since: k8s_openapi::jiff::Timestamp,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let what = rolled.what(&t.namespace);
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let refs = [reference];
    // The namespace's pod watch reconnects by itself (an API server restart): nothing to retry here.
    let failure = match until(&stop, rollout::guard(&t.pods(), &pods, &rolled.selector, &refs, since)).await {
        None => return,
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            tracing::info!("watching the pods of {what} for a crash: {e}");
            return;
        }
    };
    let mut error = format!("{what}: {}{}: {}", failure.reason, place(&failure), failure.message);
    if !failure.logs.is_empty() {
        error.push_str("\n  last log lines:");
        for l in &failure.logs {
            error.push_str(&format!("\n    {l}"));
        }
    }
    let _ = events.send(Event::Crashed { image, tag, error, at: Instant::now(), rollback }).await;
}

/// `up`'s worker for [`decide::Action::Deploy`]: once `after` has passed, deploys `tag` through the image's
/// deployers and reports [`Event::RolledOut`] (with what would undo a failed rollout), or
/// [`Event::DeployDeferred`] when the API server did not answer (the core decides when to try again); after a
/// good rollout, follows the new pods' logs and watches them for a crash.
pub(super) async fn deploy_worker(ctx: Arc<Ctx>, image: String, tag: String, digest: String, logs: CancellationToken, after: Duration) {
    if until(&logs, tokio::time::sleep(after)).await.is_none() {
        return; // `up` is stopping, or the image is gone
    }
    let started = Instant::now();
    let began = k8s_openapi::jiff::Timestamp::now();
    let (cfg, deployers) = (ctx.config(), ctx.deployers());
    let reference = reference(&cfg, &image, &tag, &digest);
    let mut references = ctx.references();
    references.insert(image.clone(), reference.clone());
    let (latest, name, rolling) = (ctx.progress.clone(), image.clone(), tag.clone());
    let progress: deploy::rollout::OnProgress =
        Arc::new(move |deployment, what| latest.tell(&name, &rolling, decide::Progress::Waiting(format!("{deployment}: {what}"))));
    // The rollout watch tells the core what it waits for (the status block and the page show it).
    let deploying = async {
        let mut lines = LineWriter { ui: ctx.out.clone(), image: image.clone(), buf: Vec::new() };
        // A failed rollout is not undone here: its undo goes to the core, which decides.
        deploy_image(&cfg, &deployers, &ctx.target, &image, &references, &mut lines, None, None).await
    };
    let result = deploy::rollout::ON_PROGRESS.scope(progress, deploying).await;
    if let Err(e) = &result {
        if api_unreachable(e) && !logs.is_cancelled() {
            // The API server is down (restarting, a laptop waking up): nothing was judged.
            let error = format!("the API server is unreachable ({e})");
            let _ = ctx.events.send(Event::DeployDeferred { image, tag, error }).await;
            return;
        }
    }
    // The core reports a deploy's own error (once, whole) with the rollout's result.
    let (deployed, error) = match result {
        Ok(d) => (d, None),
        Err(e) => (Default::default(), Some(e.to_string())),
    };
    // What the pods run: a chart may write the reference its own way (`set` templates: no digest).
    let reference = deployed.runs(&image, &reference);
    let rolled = deployed.rolled;
    ctx.progress.tell(&image, &tag, decide::Progress::Rolled(rolled.iter().map(|r| r.shown()).collect()));
    let ok = deployed.ok && error.is_none();
    let (took, at) = (started.elapsed(), Instant::now());
    let since = |i: Option<Instant>| i.map(|i| i.saturating_duration_since(started));
    let pod = rolled.first().map_or_else(Default::default, |r| decide::PodStages {
        created: since(r.timeline.created),
        running: since(r.timeline.running),
        ready: since(r.timeline.ready),
    });
    // The result first: following the new pods' logs costs two API calls the summary need not wait for.
    let reason = rolled.iter().find_map(|r| r.failure.clone()).filter(|_| !ok);
    let undo = deployed.undo;
    let ev = Event::RolledOut { image: image.clone(), tag: tag.clone(), ok, took, at, pod, reference: reference.clone(), error, reason, undo };
    let _ = ctx.events.send(ev).await;
    if ok {
        let rollback = deployers.rolls_back(&image);
        // A Job's pods have ended: their exit is its result, not a crash to watch for.
        for r in rolled.into_iter().filter(|r| !r.kind.completes()) {
            // A crash after the rollout is told too (a line, the status block, the page) and handled by the core.
            follow_logs(&ctx, &r, &image, &reference, &logs);
            let (t, events) = (ctx.target.clone(), ctx.events.clone());
            let crash = watch_for_crash(t, r, image.clone(), tag.clone(), reference.clone(), rollback, began, events, logs.clone());
            tokio::spawn(crash);
        }
    }
}

/// Removes old images of `image` from the node's store ([`Action::Prune`](super::decide::Action::Prune)).
/// A failure is a line: the images stay, and the next rollout tries again.
pub(super) async fn prune_worker(ctx: Arc<Ctx>, image: String, newest: usize, keep: Vec<String>) {
    if let Some(line) = Destination::of(&ctx.config()).prune_said(&image, newest, &keep).await {
        ctx.out.line(&image, "prune", &line);
    }
}

/// Carries out the core's [`Action::RollBack`] of the failed rollout of `tag` through the deployers, saying
/// what it does as `deploy` lines, and tells the core when it is done.
pub(super) async fn rollback_worker(ctx: Arc<Ctx>, image: String, tag: String, undo: Vec<Undo>) {
    let deployers = ctx.deployers();
    let mut lines = LineWriter { ui: ctx.out.clone(), image: image.clone(), buf: Vec::new() };
    let mut ok = true;
    for u in &undo {
        match deployers.rollback(&ctx.target, u, &mut lines, None).await {
            Ok(back) => ok &= back == Some(true),
            Err(e) => {
                ctx.out.line(&image, "deploy", &format!("rolling back failed: {e}"));
                ok = false;
            }
        }
    }
    let _ = ctx.events.send(Event::Undone { image, tag, ok, at: Instant::now() }).await;
}

/// Turns the deploy's text output into `deploy` events as each line completes.
struct LineWriter {
    ui: Out,
    image: String,
    buf: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let text = line.strip_prefix(&format!("{}: ", self.image)).unwrap_or(line);
            self.ui.line(&self.image, "deploy", text);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a deploy error means the API server could not be reached (as opposed to it refusing something).
fn api_unreachable(e: &Error) -> bool {
    let source = match e {
        Error::Deploy(deploy::Error::Api { source, .. }) => source,
        Error::Deploy(deploy::Error::Watch(_)) => return true,
        _ => return false,
    };
    !matches!(source, kube::Error::Api(_))
}

/// Follows the logs of the rolled Deployment's pods (by its selector: the pods its deployer owns) that run
/// `reference`, as they come and restart, read from the namespace's one pod watch.
fn follow_logs(ctx: &Ctx, rolled: &deploy::deployer::Rolled, image: &str, reference: &str, cancel: &CancellationToken) {
    let (t, selector) = (&ctx.target, rolled.selector.clone());
    let (out, image) = (ctx.out.clone(), image.to_string());
    let say: forward::logs::Logged = Arc::new(move |pod: &str, container: &str, several: bool, line: &str| out.pod_log(&image, pod, container, several, line));
    tokio::spawn(forward::logs::follow(t.pods(), t.clone(), selector, reference.to_string(), say, cancel.clone()));
}

/// `--cleanup`: each deployer this session started deletes what it created (every manifest set applied,
/// every Helm release), whether or not its rollout succeeded (a crashing first rollout still created them).
pub(super) async fn cleanup(ctx: &Ctx) {
    let ns = &ctx.target.namespace;
    for d in ctx.deployers().started() {
        let line = match (d.cleanup(&ctx.target).await, &d.kind) {
            (Ok(Cleaned::Uninstalled(true)), Kind::Helm(h)) => format!("helm release {ns}/{} uninstalled", h.release),
            (Ok(Cleaned::Uninstalled(false)), Kind::Helm(h)) => format!("helm release {ns}/{} was not installed", h.release),
            (Err(e), Kind::Helm(h)) => format!("uninstalling helm release {ns}/{} failed: {e}", h.release),
            (Ok(Cleaned::Deleted(deleted)), Kind::Manifests(source)) => {
                format!("deleted {} object(s) of {source} from namespace {ns}", deleted.len())
            }
            (Err(e), Kind::Manifests(source)) => format!("cleanup of {source} failed: {e}"),
            _ => continue,
        };
        ctx.out.line("devloop", "cleanup", &line);
    }
}
