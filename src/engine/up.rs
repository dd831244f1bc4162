//! `devloop up`: the loop. Stages are tokio tasks joined by bounded channels — the watcher and debouncer
//! feed `Changed` events, workers for hashing, building and deploying feed their results back — and every
//! event goes through the synchronous [`decide::step`], whose actions this module carries out. Ctrl-C
//! cancels everything: a running BuildKit solve is cancelled, not abandoned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Action, Event, Report};
use super::Error;
use crate::buildkit::{self, progress::Progress, BuildSpec};
use crate::config::{Config, DeployTarget};
use crate::deploy::{self, KubeOptions, Target};
use crate::filter::Filter;
use crate::ui::Ui;
use crate::{forward, registry, watch};

/// Choices for `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Context, namespace and allow-list overrides.
    pub kube: KubeOptions,
    /// JSON lines instead of text.
    pub json: bool,
    /// Delete what devloop applied (manifest mode) on exit.
    pub cleanup: bool,
    /// Show build steps and log lines.
    pub verbose: bool,
}

/// Everything the workers share.
struct Ctx {
    cfg: Config,
    target: Target,
    ui: Ui,
    verbose: bool,
    events: mpsc::Sender<Event>,
    buildkit: Mutex<Option<bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient<tonic::transport::Channel>>>,
    watcher: Arc<watch::Handle>,
    /// The reference each image was last deployed with (all of them are substituted into manifests).
    deployed: std::sync::Mutex<HashMap<String, String>>,
    /// Per-image hashing state, kept in memory for the whole run.
    caches: HashMap<String, Arc<std::sync::Mutex<Hashing>>>,
}

/// One image's hashing state in `up`: the tree kept up to date from changed paths so that a save does not
/// walk the context again, and the filter it was scanned with. (The persistent digest cache is loaded only
/// for a full scan: the tree holds every digest a later save needs.)
#[derive(Default)]
struct Hashing {
    tree: Option<crate::hash::merkle::Tree>,
    filter: Option<Filter>,
}

/// Runs the loop until Ctrl-C (or `stop` is cancelled).
pub async fn up(cfg: Config, opts: UpOptions, stop: CancellationToken) -> Result<(), Error> {
    let target = deploy::connect(&cfg.kube, &opts.kube).await?;
    let ui = Ui::stdout(opts.json);
    ui.line("devloop", "start", &format!("context {}, namespace {}; watching {} image(s)", target.context, target.namespace, cfg.images.len()));

    let mut watched = Vec::new();
    for img in &cfg.images {
        watched.push(watch::Watched { image: img.name.clone(), root: img.context.clone(), filter: Filter::for_image(img)? });
    }
    let (change_tx, mut change_rx) = mpsc::channel(1024);
    let handle = Arc::new(watch::start(watched, change_tx).map_err(|e| Error::Usage(e.to_string()))?);
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    // Changed paths per image, waiting for that image's next hash.
    let pending: Arc<std::sync::Mutex<watch::Batch>> = Arc::default();
    let all: Vec<String> = cfg.images.iter().map(|i| i.name.clone()).collect();
    let debounce = watch::Debounce { quiet: cfg.watch.debounce, max: cfg.watch.max_wait.max(cfg.watch.debounce) };

    let mut tasks = JoinSet::new();
    {
        let (tx, overflowed, all, pending) = (events_tx.clone(), handle.overflowed.clone(), all.clone(), pending.clone());
        tasks.spawn(async move {
            while let Some(batch) = watch::next_batch(&mut change_rx, &overflowed, &all, debounce).await {
                let images = batch.keys().cloned().collect();
                watch::merge(&mut pending.lock().expect("not poisoned"), batch);
                let ev = Event::Changed { images, at: Instant::now() };
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
    }
    for f in &cfg.forwards {
        let listener = forward::bind(&f.deployment, f.local).await.map_err(|e| Error::Usage(e.to_string()))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(f.local);
        ui.line(&f.deployment, "forward", &format!("forwarding http://127.0.0.1:{port} -> deployment {}/{}:{}", target.namespace, f.deployment, f.remote));
        tasks.spawn(forward::serve(listener, target.clone(), f.deployment.clone(), f.remote, ui.clone(), stop.child_token()));
    }

    let ctx = Arc::new(Ctx {
        cfg,
        target,
        ui: ui.clone(),
        verbose: opts.verbose,
        events: events_tx.clone(),
        buildkit: Mutex::new(None),
        watcher: handle.clone(),
        deployed: Default::default(),
        caches: all.iter().map(|i| (i.clone(), Arc::new(std::sync::Mutex::new(Hashing::default())))).collect(),
    });
    let mut state = decide::State::default();
    let mut builds: HashMap<String, CancellationToken> = HashMap::new();
    let mut logs: HashMap<String, CancellationToken> = HashMap::new();
    let mut applied_manifests = false;
    let _ = events_tx.send(Event::Changed { images: all.clone(), at: Instant::now() }).await;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => break,
            ev = events.recv() => match ev { Some(ev) => ev, None => break },
        };
        if let Event::RolledOut { image, ok: true, .. } = &ev {
            applied_manifests |= ctx.cfg.deploys.iter().any(|d| &d.image == image && matches!(d.target, DeployTarget::Manifests(_)));
        }
        for action in decide::step(&mut state, ev) {
            match action {
                Action::Hash(image) => {
                    let ctx = ctx.clone();
                    let changed = pending.lock().expect("not poisoned").remove(&image).flatten();
                    tasks.spawn(async move { hash(ctx, image, changed).await });
                }
                Action::Build { image, tag } => {
                    let token = stop.child_token();
                    if let Some(old) = builds.insert(image.clone(), token.clone()) {
                        old.cancel();
                    }
                    tasks.spawn(build(ctx.clone(), image, tag, token, 0));
                }
                Action::CancelBuild(image) => {
                    if let Some(t) = builds.remove(&image) {
                        t.cancel();
                    }
                }
                Action::Deploy { image, tag, digest } => {
                    let token = stop.child_token();
                    if let Some(old) = logs.insert(image.clone(), token.clone()) {
                        old.cancel(); // the previous pods' logs
                    }
                    tasks.spawn(deploy_image(ctx.clone(), image, tag, digest, token));
                }
                Action::Report(r) => ui.report(&r),
            }
        }
    }
    // Shutting down: cancelling `stop` reaches every build (the solve call is dropped, so BuildKit cancels
    // the job), forward and log stream; the JoinSet aborts whatever is left.
    stop.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if opts.cleanup && applied_manifests {
        cleanup(&ctx).await;
    }
    ui.line("devloop", "stop", "stopped");
    Ok(())
}

/// Hashes an image: from the changed paths when it can (no walk), else with a full walk.
async fn hash(ctx: Arc<Ctx>, image: String, changed: Option<std::collections::BTreeSet<String>>) {
    let started = Instant::now();
    let worker = ctx.clone();
    let name = image.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(String, Filter), Error> {
        let img = worker.cfg.image(&name).expect("configured image");
        let mut st = worker.caches[&name].lock().expect("not poisoned");
        let st = &mut *st;
        // A changed ignore file changes the filter itself: then walk everything again.
        let ignore_changed = changed.as_ref().is_some_and(|c| c.iter().any(|p| p.ends_with(".dockerignore") || p == ".gitignore"));
        let (tree, filter) = match (st.tree.as_mut(), st.filter.as_ref(), changed) {
            (Some(tree), Some(filter), Some(paths)) if !ignore_changed => {
                tree.update(&img.context, filter, &paths).inspect_err(|_| st.tree = None)?;
                (st.tree.as_mut().expect("kept"), filter.clone())
            }
            _ => {
                let filter = Filter::for_image(img)?;
                st.tree = None; // drop the old tree before building the new one
                let mut cache = crate::hash::DigestCache::for_context(&img.context);
                let (tree, _) = crate::hash::merkle::Tree::scan(&img.context, &filter, &mut cache)?;
                cache.save();
                st.filter = Some(filter.clone());
                (st.tree.insert(tree), filter)
            }
        };
        Ok((tree.tag(img)?, filter))
    })
    .await;
    let ev = match result {
        Ok(Ok((tag, filter))) => {
            // After an ignore file changed the filter is rebuilt: the watcher takes the same one.
            ctx.watcher.set_filter(&image, filter);
            Event::Hashed { image, tag, took: started.elapsed() }
        }
        Ok(Err(e)) => {
            ctx.caches[&image].lock().expect("not poisoned").tree = None;
            Event::HashFailed { image, error: e.to_string() }
        }
        Err(e) => Event::HashFailed { image, error: e.to_string() },
    };
    let _ = ctx.events.send(ev).await;
}

/// Builds `tag` unless the registry has it. BuildKit being down is retried with backoff.
async fn build(ctx: Arc<Ctx>, image: String, tag: String, cancel: CancellationToken, attempt: u32) {
    let started = Instant::now();
    let work = build_inner(&ctx, &image, &tag);
    let result = tokio::select! {
        _ = cancel.cancelled() => {
            let _ = ctx.events.send(Event::BuildFailed { image, tag, error: "cancelled".into(), cancelled: true }).await;
            return;
        }
        r = work => r,
    };
    let ev = match result {
        Ok((digest, steps, cached, export)) => Event::Built { image, tag, digest, took: started.elapsed(), steps, cached, export },
        Err(Error::Buildkit(buildkit::Error::Unreachable { addr, reason })) | Err(Error::Registry(registry::Error::Unreachable { host: addr, reason })) => {
            // A server is down: say so, keep the loop alive, try again later.
            *ctx.buildkit.lock().await = None;
            let wait = Duration::from_secs(1 << attempt.min(5));
            ctx.ui.line(&image, "retry", &format!("{addr} is unreachable ({reason}); retrying in {}s", wait.as_secs()));
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            return Box::pin(build(ctx, image, tag, cancel, attempt + 1)).await;
        }
        Err(e) => {
            // The daemon may have gone away mid-build: connect afresh next time.
            *ctx.buildkit.lock().await = None;
            Event::BuildFailed { image, tag, error: e.to_string(), cancelled: false }
        }
    };
    let _ = ctx.events.send(ev).await;
}

/// (digest, steps, registry hit, export time)
type BuildResult = (String, (usize, usize), bool, Option<Duration>);

async fn build_inner(ctx: &Ctx, image: &str, tag: &str) -> Result<BuildResult, Error> {
    let cfg = &ctx.cfg;
    if let Some(digest) = registry::manifest_digest(&cfg.registry, image, tag).await? {
        return Ok((digest, (0, 0), true, None));
    }
    let img = cfg.image(image).expect("configured image");
    // The filter that hashed this tag decides what BuildKit may see (one filter).
    let filter = match ctx.caches[image].lock().expect("not poisoned").filter.clone() {
        Some(f) => f,
        None => Filter::for_image(img)?,
    };
    let mut client = {
        let mut guard = ctx.buildkit.lock().await;
        match guard.as_ref() {
            Some(c) => c.clone(),
            None => guard.insert(buildkit::connect(&cfg.buildkit).await?).clone(),
        }
    };
    let out: Box<dyn std::io::Write + Send> = if ctx.verbose { Box::new(std::io::stderr()) } else { Box::new(std::io::sink()) };
    let mut progress = Progress::new(out, &format!("{image}: "), ctx.verbose);
    let spec = BuildSpec { image: img, filter, reference: format!("{}/{image}:{tag}", cfg.registry.host), insecure: cfg.registry.insecure };
    let built = buildkit::build(&mut client, &spec, &mut progress).await?;
    Ok((built.digest, built.steps, false, built.export))
}

async fn deploy_image(ctx: Arc<Ctx>, image: String, tag: String, digest: String, logs: CancellationToken) {
    let started = Instant::now();
    let reference = super::deploy::reference(&ctx.cfg, &image, &tag, &digest);
    let mut references = ctx.deployed.lock().expect("not poisoned").clone();
    references.insert(image.clone(), reference.clone());
    let mut rolled = Vec::new();
    let mut attempt = 0;
    let result = loop {
        let mut lines = LineWriter { ui: ctx.ui.clone(), image: image.clone(), buf: Vec::new() };
        let r = super::deploy::deploy_image(&ctx.cfg, &ctx.target, &image, &references, &mut lines, &mut rolled).await;
        match r {
            Err(ref e) if api_unreachable(e) && !logs.is_cancelled() => {
                // The API server is down (restarting, a laptop waking up): wait and try again.
                let wait = Duration::from_secs(1 << attempt.min(4));
                ctx.ui.line(&image, "retry", &format!("the API server is unreachable ({e}); retrying in {}s", wait.as_secs()));
                tokio::select! {
                    _ = logs.cancelled() => break r,
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
                rolled.clear();
            }
            r => break r,
        }
    };
    let ok = match result {
        Ok(ok) => ok,
        Err(e) => {
            ctx.ui.report(&Report::Failed { image: image.clone(), tag: Some(tag.clone()), error: e.to_string() });
            false
        }
    };
    let (took, at) = (started.elapsed(), Instant::now());
    let since = |i: Option<Instant>| i.map(|i| i.saturating_duration_since(started));
    let pod = rolled.first().map_or_else(Default::default, |r| decide::PodStages {
        created: since(r.timeline.created),
        running: since(r.timeline.running),
        ready: since(r.timeline.ready),
    });
    if ok {
        ctx.deployed.lock().expect("not poisoned").insert(image.clone(), reference.clone());
    }
    // The result first: following the new pods' logs costs two API calls the summary need not wait for.
    let _ = ctx.events.send(Event::RolledOut { image: image.clone(), tag, ok, took, at, pod }).await;
    if ok {
        for r in rolled {
            follow_logs(&ctx, &r.deployment, &image, &reference, &logs).await;
        }
    }
}

/// Turns the deploy's text output into `deploy` events as each line completes.
struct LineWriter {
    ui: Ui,
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

/// Streams the logs of the Deployment's pods that run `reference`.
async fn follow_logs(ctx: &Ctx, deployment: &str, image: &str, reference: &str, cancel: &CancellationToken) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let t = &ctx.target;
    let Ok(dep) = Api::<Deployment>::namespaced(t.client.clone(), &t.namespace).get(deployment).await else { return };
    let pods = Api::<Pod>::namespaced(t.client.clone(), &t.namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(&deploy::selector(&dep))).await else { return };
    for p in list.items {
        let runs = p.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.image.as_deref() == Some(reference)));
        if runs && p.metadata.deletion_timestamp.is_none() {
            let name = p.metadata.name.clone().unwrap_or_default();
            tokio::spawn(forward::stream_logs(t.clone(), name, image.to_string(), ctx.ui.clone(), cancel.clone()));
        }
    }
}

/// `--cleanup`: delete the objects of every manifest-mode deploy.
async fn cleanup(ctx: &Ctx) {
    for d in &ctx.cfg.deploys {
        let DeployTarget::Manifests(patterns) = &d.target else { continue };
        match super::deploy::delete_manifests(&ctx.cfg, &ctx.target, patterns).await {
            Ok(n) => ctx.ui.line(&d.image, "cleanup", &format!("deleted {n} object(s) from namespace {}", ctx.target.namespace)),
            Err(e) => ctx.ui.line(&d.image, "cleanup", &format!("cleanup failed: {e}")),
        }
    }
}
