//! `devloop up`: the loop. Stages are tokio tasks joined by bounded channels — the watcher and debouncer
//! feed batches of changes, workers for hashing, building and deploying feed their results back — and every
//! event goes through the synchronous [`decide::step`], whose actions this module carries out. An edit to
//! `devloop.toml` is read again and applied without a restart (a broken one is reported and the last good
//! config kept). Ctrl-C cancels everything: a running BuildKit solve is cancelled, not abandoned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Action, Event, Hashed, Scope};
use super::out::{self, Out};
use super::Error;
use crate::buildkit::{self, progress::Progress, BuildSpec};
use crate::config::Config;
use crate::cluster::{self, KubeOptions, Target};
use crate::deploy;
use crate::deploy::deployer::Deployers;
use crate::deliver::Destination;
use crate::filter::Filter;
use crate::hash::merkle::Tree;
use crate::forward::choice::Switch;
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
    /// Ignore `[[image.sync]]`: always build.
    pub no_sync: bool,
    /// `--ui`: the status page is served on this address (bound and served by the caller; `up` says where).
    pub page: Option<std::net::SocketAddr>,
    /// `up IMAGE…`: only these images (none: all); the others stay as deployed.
    pub only: Vec<String>,
    /// Where requests come from besides the socket (the page's buttons, the terminal's keys); `up` makes its
    /// own when none is given.
    pub triggers: Option<Arc<super::control::Triggers>>,
}

/// Everything the workers share.
pub(super) struct Ctx {
    /// The config in force; replaced when devloop.toml is edited. Workers take a snapshot when they start.
    cfg: RwLock<Arc<Config>>,
    /// Its deployers, replaced with it; they keep the record of what this session deployed (`--cleanup`).
    deployers: RwLock<Arc<Deployers>>,
    pub(super) target: Target,
    /// The command line's kube choices (a BuildKit in the cluster is reached with them).
    kube: KubeOptions,
    pub(super) out: Out,
    verbose: bool,
    pub(super) events: mpsc::Sender<Event>,
    buildkit: Mutex<Option<buildkit::Client>>,
    /// Per image, the BuildKit replica its builds moved away from (not Ready), until they go back; kept
    /// across reconnects so that a move and the return are said once each.
    moved: std::sync::Mutex<BTreeMap<String, String>>,
    /// The running watcher; replaced (new one first) when the config's images change.
    watcher: std::sync::Mutex<Arc<watch::Handle>>,
    changes: mpsc::Sender<watch::Change>,
    overflowed: Arc<AtomicBool>,
    /// The reference each image's last successful rollout put in place, as the core last said (it alone
    /// keeps it: `decide::State::references`, published after every step).
    deployed: tokio::sync::watch::Receiver<BTreeMap<String, String>>,
    /// `up IMAGE…`: the images of this session (none: all), kept across reloads.
    only: Vec<String>,
    /// Per container, the shell syncs are sent to.
    pub(super) sessions: crate::sync::session::Sessions,
    /// `--no-sync`: no sync, so no shell is opened in any container either.
    pub(super) no_sync: bool,
    /// Workers' progress, on its way to the core (coalesced).
    pub(super) progress: Arc<super::progress::Latest>,
    /// Per image, the tree the hasher keeps. Only the hash worker and a sync (which puts what it sent into
    /// it) lock it: nothing on the build or deploy path waits for a scan.
    trees: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<KeptTree>>>>,
}

/// One image's hashed state in `up`: the tree kept up to date from changed paths so that a save does not walk
/// the context again, and the filter that judged it — the image's one filter, which the watcher is told of
/// and every build of a tag hashed with it receives. (The persistent digest cache is loaded only for a full
/// scan: the tree holds every digest a later save needs.)
#[derive(Default)]
pub(super) struct KeptTree {
    pub(super) tree: Option<Tree>,
    pub(super) filter: Option<Arc<Filter>>,
}

impl Ctx {
    pub(super) fn config(&self) -> Arc<Config> {
        self.cfg.read().expect("not poisoned").clone()
    }
    pub(super) fn deployers(&self) -> Arc<Deployers> {
        self.deployers.read().expect("not poisoned").clone()
    }
    /// The namespace's pod watch.
    pub(super) fn pods(&self) -> Arc<crate::cluster::pods::Reflector> {
        self.target.pods()
    }
    /// The reference each image's pods run, as the core last said.
    pub(super) fn references(&self) -> HashMap<String, String> {
        self.deployed.borrow().clone().into_iter().collect()
    }
    pub(super) fn kept(&self, image: &str) -> Arc<std::sync::Mutex<KeptTree>> {
        self.trees.lock().expect("not poisoned").entry(image.to_string()).or_default().clone()
    }
    fn set_filter(&self, image: &str, filter: &Filter) {
        self.watcher.lock().expect("not poisoned").set_filter(image, filter.clone());
    }
}

/// What every configured image's inputs are, for the watcher; `lenient` puts the built-in filter in place
/// of one that cannot be built (a config reload: the hash then reports the broken ignore file).
fn watched(cfg: &Config, lenient: bool) -> Result<Vec<watch::Watched>, Error> {
    cfg.images
        .iter()
        .map(|img| {
            let filter = match img.filter() {
                Err(_) if lenient => Filter::new::<&str>(&[])?,
                f => f?,
            };
            Ok(watch::Watched::of(img, filter))
        })
        .collect()
}

/// Runs the loop until Ctrl-C (or `stop` is cancelled).
/// Everything it has to say goes to `ui`.
pub async fn up(cfg: Config, opts: UpOptions, ui: Out, stop: CancellationToken) -> Result<(), Error> {
    let cfg = cfg.only(&opts.only).map_err(Error::BadFlag)?;
    let target = cluster::connect(&cfg.kube, &opts.kube).await?;
    let left = match cfg.left_out.len() {
        0 => String::new(),
        _ => format!(" (left as deployed: {})", cfg.left_out.join(", ")),
    };
    ui.line("devloop", "start", &format!("context {}, namespace {}; watching {} image(s){left}", target.context, target.namespace, cfg.images.len()));
    let mut tasks = JoinSet::new();
    if let Some(addr) = opts.page {
        ui.page_url(&format!("http://{addr}/"));
        if !addr.ip().is_loopback() {
            ui.line("devloop", "ui", &format!("the status page is read-only, but anyone who can reach {addr} can read it (build logs included)"));
        }
    }
    // Before the first build: a Deployment to patch that is not there (or not the expected shape) stops `up`.
    // An API server that does not answer does not (see below).
    let deployers = Deployers::of(&cfg);
    let checked = deployers.check_patch_targets(&target).await.map_err(Error::from);
    if let Err(e @ (Error::Usage(_) | Error::Deploy(deploy::Error::Container { .. }))) = checked {
        return Err(e);
    }
    if !cfg.deploys.is_empty() {
        // Not fatal: the loop outlives an API server that is down now; the apply then reports the error.
        match cluster::namespace::ensure(&target, "up").await {
            Ok(Some(created)) => ui.line("devloop", "namespace", &created),
            Ok(None) => {}
            Err(e) => ui.line("devloop", "namespace", &format!("could not make sure namespace {} exists: {e}", target.namespace)),
        }
    }

    let (change_tx, mut change_rx) = mpsc::channel(1024);
    let overflowed = Arc::new(AtomicBool::new(false));
    let handle = watch::start(watched(&cfg, false)?, &cfg.path, change_tx.clone(), overflowed.clone()).map_err(|e| Error::Usage(e.to_string()))?;
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    let (batch_tx, mut batches) = mpsc::channel::<watch::Batch>(16);
    let debounce = watch::Debounce { quiet: cfg.watch.debounce, max: cfg.watch.max_wait.max(cfg.watch.debounce), quick: watch::QUICK };
    // The one watch on the namespace's pods, read by the port-forwards, live update, rollouts and logs.
    let pods = target.pods();
    let mut forwarded = Vec::new();
    // A new pod takes the connections once its port answers, before it is Ready; DEVLOOP_FORWARD_WAIT_READY=1
    // keeps the old way (only Ready pods), for comparing the two in benches/forward.rs.
    let switch = if std::env::var_os("DEVLOOP_FORWARD_WAIT_READY").is_some_and(|v| v == "1") { Switch::Ready } else { Switch::Answering };
    for f in &cfg.forwards {
        let listener = forward::bind(&f.name, f.local).await.map_err(|e| Error::Usage(e.to_string()))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(f.local);
        ui.line(&f.name, "forward", &format!("forwarding http://127.0.0.1:{port} -> {} {}/{}:{}", f.kind.noun(), target.namespace, f.name, f.remote));
        let workload = forward::Workload { kind: f.kind, name: f.name.clone() };
        forwarded.push((workload.shown(), format!("http://127.0.0.1:{port}")));
        let say = out::say(&ui, &f.name, "forward");
        // The core learns where the connections go (the page shows it beside the URL).
        let picked: forward::Picked = {
            let (tx, deployment) = (events_tx.clone(), workload.shown());
            Arc::new(move |pod: &str| {
                let (tx, ev) = (tx.clone(), Event::Forwarding { deployment: deployment.clone(), pod: pod.to_string() });
                tokio::spawn(async move { tx.send(ev).await });
            })
        };
        tasks.spawn(forward::serve(listener, target.clone(), workload, f.remote, switch, pods.clone(), say, Some(picked), stop.child_token()));
    }

    let all: BTreeMap<String, Scope> = cfg.images.iter().map(|i| (i.name.clone(), Scope::Rescan)).collect();
    let (deployed_tx, deployed_rx) = tokio::sync::watch::channel(BTreeMap::new());
    let ctx = Arc::new(Ctx {
        cfg: RwLock::new(Arc::new(cfg)),
        deployers: RwLock::new(Arc::new(deployers)),
        target,
        kube: opts.kube.clone(),
        out: ui.clone(),
        verbose: opts.verbose,
        events: events_tx.clone(),
        buildkit: Mutex::new(None),
        moved: Default::default(),
        watcher: std::sync::Mutex::new(Arc::new(handle)),
        changes: change_tx,
        overflowed,
        deployed: deployed_rx,
        sessions: Default::default(),
        no_sync: opts.no_sync,
        only: opts.only.clone(),
        progress: Default::default(),
        trees: Default::default(),
    });
    {
        let (ctx, overflowed) = (ctx.clone(), ctx.overflowed.clone());
        tasks.spawn(async move {
            let early = |b: &watch::Batch| super::live::closes_early(&ctx, b);
            while let Some(batch) = watch::next_batch(&mut change_rx, &overflowed, debounce, early).await {
                if batch_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
    }
    // The core learns the namespace's pods from their one watch: which containers run each image.
    tasks.spawn(super::live::feed_pods(ctx.pods(), events_tx.clone(), stop.child_token()));
    // Requests: the page's (if any), the terminal's keys (ui::keys, started by the caller), `devloop trigger`
    // through the project's socket.
    let triggers = opts.triggers.clone().unwrap_or_else(super::control::Triggers::new);
    let mut asked = triggers.take().ok_or_else(|| Error::Usage("the trigger queue is taken".into()))?;
    let known: super::control::Known = {
        let ctx = ctx.clone();
        Arc::new(move |image: &str| known_image(&ctx.config(), image))
    };
    {
        let (config, say, known, triggers, stop) = (ctx.config().path.clone(), out::say(&ui, "devloop", "trigger"), known, triggers.clone(), stop.child_token());
        tasks.spawn(async move {
            if let Err(e) = super::control::serve(&config, known, triggers, stop).await {
                say(&format!("`devloop trigger` cannot reach this `up`: {e}"));
            }
        });
    }
    let mut state = decide::State::new(rules(&ctx.config(), opts.no_sync));
    state.plan(plan(&ctx.config()));
    for (deployment, url) in &forwarded {
        state.forwarded(deployment, url);
    }
    // What the status block and the page show: the core's view, published after every step that changed it.
    let mut shown = out::Publisher::default();
    let mut builds: HashMap<String, CancellationToken> = HashMap::new();
    let mut logs: HashMap<String, CancellationToken> = HashMap::new();
    let _ = events_tx.send(Event::Changed { changes: all, outside: Default::default(), at: Instant::now(), debounce: Duration::ZERO }).await;
    loop {
        let evs = tokio::select! {
            _ = stop.cancelled() => break,
            b = batches.recv() => match b {
                Some(b) => {
                    on_batch(&ctx, b).await
                }
                None => break,
            },
            ev = events.recv() => match ev { Some(ev) => vec![ev], None => break },
            Some(request) = asked.recv() => vec![asked_for(request)],
            _ = ctx.progress.told() => vec![],
            // Reap finished workers, so a long session does not pile up their results.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        // Progress first: a worker tells it before it sends its result.
        for ev in ctx.progress.take().into_iter().chain(evs) {
            let actions = decide::step(&mut state, ev);
            // What the core says is deployed, published before its actions run (a sync it asks for reads it).
            deployed_tx.send_if_modified(|published| {
                let now = state.references();
                if *published == now {
                    return false;
                }
                *published = now;
                true
            });
            shown.publish(&state, &*ui);
            for action in actions {
                match action {
                    Action::Hash { image, scope } => {
                        tasks.spawn(hash_worker(ctx.clone(), image, scope));
                    }
                    Action::Build { image, tag, filter, after, force } => {
                        let token = stop.child_token();
                        if let Some(old) = builds.insert(image.clone(), token.clone()) {
                            old.cancel();
                        }
                        tasks.spawn(build_worker(ctx.clone(), Work { image, tag, filter, force }, token, after));
                    }
                    Action::Forget(image) => {
                        for token in [builds.remove(&image), logs.remove(&image)].into_iter().flatten() {
                            token.cancel();
                        }
                        ctx.trees.lock().expect("not poisoned").remove(&image);
                    }
                    Action::CancelBuild(image) => {
                        if let Some(t) = builds.remove(&image) {
                            t.cancel();
                        }
                    }
                    Action::Deploy { image, tag, digest, after } => {
                        let token = stop.child_token();
                        if let Some(old) = logs.insert(image.clone(), token.clone()) {
                            old.cancel(); // the previous pods' logs
                        }
                        tasks.spawn(super::deploy::deploy_worker(ctx.clone(), image, tag, digest, token, after));
                    }
                    Action::ReplaceStale { image, reference, warm } => {
                        tasks.spawn(super::live::replace_stale(ctx.clone(), image.clone(), reference.clone()));
                        if warm {
                            tasks.spawn(super::live::warm(ctx.clone(), reference));
                        }
                    }
                    Action::RollBack { image, tag, undo } => {
                        tasks.spawn(super::deploy::rollback_worker(ctx.clone(), image, tag, undo));
                    }
                    Action::Sync { image, paths, into, replay, filter } => {
                        tasks.spawn(super::live::sync_worker(ctx.clone(), image, paths, into, replay, filter.0));
                    }
                    Action::Prune { image, newest, keep } => {
                        tasks.spawn(super::deploy::prune_worker(ctx.clone(), image, newest, keep));
                    }
                    Action::Report(r) => ui.report(&r),
                    Action::CleanUp => {} // only at the end, below
                }
            }
        }
    }
    // Shutting down: cancelling `stop` reaches every build (the solve call is dropped, so BuildKit cancels
    // the job), forward and log stream; the JoinSet aborts whatever is left.
    stop.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // A helm upgrade in flight was asked to stop: wait for it, so that its release is not left pending.
    for said in deploy::helm::stopped().await {
        ui.line("devloop", "helm", &said);
    }
    for action in decide::step(&mut state, Event::Stopping { cleanup: opts.cleanup }) {
        match action {
            Action::CleanUp => super::deploy::cleanup(&ctx).await,
            Action::Report(r) => ui.report(&r),
            _ => {}
        }
    }
    ui.line("devloop", "stop", "stopped");
    Ok(())
}

/// A debounced batch as events for the core: the config read again first when it changed (or when changes
/// were dropped), then the images' changes.
async fn on_batch(ctx: &Ctx, batch: watch::Batch) -> Vec<Event> {
    let at = Instant::now();
    let mut out = Vec::new();
    if batch.config || batch.everything {
        out.extend(reload(ctx).await);
    }
    let cfg = ctx.config();
    let mut changes = batch.images;
    if batch.everything {
        changes = cfg.images.iter().map(|i| (i.name.clone(), Scope::Rescan)).collect();
    }
    // The watcher of an older config may still have reported an image that is gone.
    changes.retain(|image, _| cfg.image(image).is_some());
    if !changes.is_empty() {
        out.push(Event::Changed { changes, outside: batch.outside, at, debounce: batch.waited });
    }
    out
}

/// Reads devloop.toml again. A broken file is reported (file, line, key) and the config in force kept. A
/// good one takes effect for everything started from now on; `[kube]`, `[watch]` and port-forwards need a
/// restart (said so), since running streams and the cluster safety check were set up with them.
async fn reload(ctx: &Ctx) -> Option<Event> {
    let old = ctx.config();
    let path = old.path.clone();
    let context = ctx.target.context.clone();
    let last = old.clone();
    let only = ctx.only.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<(Config, Vec<watch::Watched>), String> {
        let cfg = crate::resolve::reload(&path, &context, &last).map_err(|e| e.to_string())?;
        // The session's images, as `up IMAGE…` chose them; one removed from the file is just gone.
        let names: Vec<String> = only.iter().filter(|n| cfg.image(n).is_some()).cloned().collect();
        if !only.is_empty() && names.is_empty() {
            return Err(format!("none of the images this `up` runs ({}) is configured any more", only.join(", ")));
        }
        let cfg = cfg.only(&names)?;
        let w = watched(&cfg, true).map_err(|e| e.to_string())?;
        Ok((cfg, w))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let (mut new, watched) = match loaded {
        Ok(v) => v,
        Err(e) => {
            ctx.out.line("devloop", "config", &format!("{e}\ndevloop: keeping the last good config"));
            return None;
        }
    };
    let mut restart = Vec::new();
    if new.kube != old.kube {
        restart.push("[kube]");
        new.kube = old.kube.clone();
    }
    if new.forwards != old.forwards {
        restart.push("[[port-forward]]");
        new.forwards = old.forwards.clone();
    }
    if new.watch != old.watch {
        restart.push("[watch]");
        new.watch = old.watch.clone();
    }
    if !restart.is_empty() {
        ctx.out.line("devloop", "config", &format!("{} changed: restart devloop up to apply", restart.join(", ")));
    }
    if new == *old {
        return None;
    }
    let everything = new.registry != old.registry || !new.buildkit.same_server(&old.buildkit);
    if !new.buildkit.same_server(&old.buildkit) {
        *ctx.buildkit.lock().await = None;
    }
    let deploys = |cfg: &Config, image: &str| cfg.deploys.iter().filter(|d| d.image == image).cloned().collect::<Vec<_>>();
    let (mut rescan, mut redeploy, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for img in &new.images {
        let deploys_changed = deploys(&old, &img.name) != deploys(&new, &img.name);
        if everything || deploys_changed || old.image(&img.name) != Some(img) {
            rescan.push(img.name.clone());
        }
        if everything || deploys_changed {
            redeploy.push(img.name.clone());
        }
    }
    for img in old.images.iter().filter(|i| new.image(&i.name).is_none()) {
        removed.push(img.name.clone());
    }
    // Watch the new set of inputs before the old watcher stops, so no event falls between the two.
    match watch::start(watched, &new.path, ctx.changes.clone(), ctx.overflowed.clone()) {
        Ok(h) => *ctx.watcher.lock().expect("not poisoned") = Arc::new(h),
        Err(e) => ctx.out.line("devloop", "config", &format!("{e}; still watching what the last config named")),
    }
    ctx.out.line("devloop", "config", &format!("{} reloaded; {} image(s)", new.path.display(), new.images.len()));
    let deployers = Deployers::of(&new).after(&ctx.deployers());
    *ctx.deployers.write().expect("not poisoned") = Arc::new(deployers);
    *ctx.cfg.write().expect("not poisoned") = Arc::new(new);
    let (rules, plan) = (rules(&ctx.config(), ctx.no_sync), plan(&ctx.config()));
    Some(Event::Reconfigured { rescan, redeploy, removed, rules, plan, at: Instant::now() })
}

/// Each image's sync rules, as the core is to apply them (`--no-sync`: none, always build).
fn rules(cfg: &Config, no_sync: bool) -> decide::Rules {
    cfg.images.iter().map(|i| (i.name.clone(), if no_sync { Vec::new() } else { i.sync.clone() })).collect()
}

/// Whether `image` can be triggered in this session: an error names the images that can.
fn known_image(cfg: &Config, image: &str) -> Result<(), String> {
    if cfg.image(image).is_some() {
        return Ok(());
    }
    let known = cfg.images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
    if cfg.left_out.iter().any(|i| i == image) {
        return Err(format!("image `{image}` is left out of this `devloop up` (it runs: {known})"));
    }
    Err(Error::UnknownImage { name: image.to_string(), config: cfg.path.display().to_string(), known }.to_string())
}

/// The images' triggers, first-rollout order (among this session's images: one left out stays as deployed)
/// and the build limit, as the core is to apply them.
fn plan(cfg: &Config) -> decide::Plan {
    let manual = cfg.images.iter().filter(|i| i.trigger == crate::config::Trigger::Manual).map(|i| i.name.clone()).collect();
    let depends = cfg
        .images
        .iter()
        .map(|i| (i.name.clone(), i.depends_on.iter().filter(|d| cfg.image(d).is_some()).cloned().collect::<Vec<_>>()))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    let keep = if Destination::of(cfg).prunes() { cfg.registry.keep() } else { 0 };
    decide::Plan { manual, depends, parallel: cfg.buildkit.parallel(), keep }
}

/// Hashes an image: only `scope`'s paths in the kept tree when it can (no walk), else a full scan with a
/// freshly read filter.
async fn hash_worker(ctx: Arc<Ctx>, image: String, scope: Scope) {
    let started = Instant::now();
    let cfg = ctx.config();
    let kept = ctx.kept(&image);
    let worker = ctx.clone();
    let name = image.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(String, Arc<Filter>), Error> {
        let img = cfg.image(&name).ok_or_else(|| Error::Usage(format!("image {name} is no longer configured")))?;
        let mut kept = kept.lock().expect("not poisoned");
        let kept = &mut *kept;
        match (kept.tree.as_mut(), kept.filter.as_ref(), &scope) {
            (Some(tree), Some(filter), Scope::Paths(paths)) => {
                // A failure leaves the tree half-updated: drop it (the core asks for a rescan next).
                tree.update(&img.context, filter, paths).inspect_err(|_| kept.tree = None)?;
            }
            _ => {
                kept.tree = None; // free the old tree before building the new one
                let filter = Arc::new(img.filter()?);
                // The watcher judges by the new filter before the disk is read, so no change falls between.
                worker.set_filter(&name, &filter);
                kept.filter = Some(filter.clone());
                let mut cache = crate::hash::DigestCache::for_context(&img.context);
                let (tree, _) = Tree::scan(&img.context, &filter, &mut cache)?;
                cache.save();
                kept.tree = Some(tree);
            }
        }
        let tag = kept.tree.as_mut().expect("kept").tag(img)?;
        Ok((tag, kept.filter.clone().expect("set with the tree")))
    })
    .await;
    let ev = match result {
        Ok(Ok((tag, filter))) => Event::Hashed { image, tag, filter: Hashed(filter), took: started.elapsed() },
        Ok(Err(e)) => Event::HashFailed { image, error: e.to_string() },
        Err(e) => Event::HashFailed { image, error: e.to_string() },
    };
    let _ = ctx.events.send(ev).await;
}

/// Builds `tag` unless the registry has it, once `after` has passed. A server that does not answer
/// (BuildKit, the registry) is reported to the core, which decides when to try again.
/// The core's event for what someone asked.
fn asked_for(request: super::control::Request) -> Event {
    use super::control::Request;
    let at = Instant::now();
    match request {
        Request::Trigger(images) => Event::Trigger { images, at },
        Request::Rebuild(image) => Event::Rebuild { image, at },
        Request::Pause(image, paused) => Event::Pause { image, paused, at },
    }
}

/// One build to run: the image, its tag, the filter that hashed it, and whether it is forced (built even
/// when the registry has the tag).
struct Work {
    image: String,
    tag: String,
    filter: Hashed,
    force: bool,
}

async fn build_worker(ctx: Arc<Ctx>, work: Work, cancel: CancellationToken, after: Duration) {
    let started = Instant::now();
    let Work { image, tag, filter, force } = work;
    let work = async {
        tokio::time::sleep(after).await;
        build_inner(&ctx, &image, &tag, &filter, force).await
    };
    let result = tokio::select! {
        _ = cancel.cancelled() => {
            let _ = ctx.events.send(Event::BuildFailed { image, tag, error: "cancelled".into(), cancelled: true }).await;
            return;
        }
        r = work => r,
    };
    let ev = match result {
        Ok((digest, steps, cached, export, buildkit)) => {
            Event::Built { image, tag, digest, took: started.elapsed().saturating_sub(after), steps, cached, export, buildkit }
        }
        Err(e @ Error::Buildkit(buildkit::Error::Unreachable { .. } | buildkit::Error::Lost { .. }))
        | Err(e @ Error::Registry(registry::Error::Unreachable { .. })) => {
            // A server is down: connect afresh next time.
            *ctx.buildkit.lock().await = None;
            let error = match &e {
                Error::Buildkit(buildkit::Error::Lost { .. }) => format!("{e} (at {})", ctx.config().buildkit.addr),
                _ => e.to_string(),
            };
            Event::BuildDeferred { image, tag, error }
        }
        Err(Error::Buildkit(buildkit::Error::ContextChanged { refused })) => {
            Event::BuildStale { image, tag, reason: refused.join("; "), at: Instant::now() }
        }
        Err(e) => {
            // The daemon may have gone away mid-build: connect afresh next time.
            *ctx.buildkit.lock().await = None;
            Event::BuildFailed { image, tag, error: e.to_string(), cancelled: false }
        }
    };
    let _ = ctx.events.send(ev).await;
}

/// (digest, steps, registry hit, export time, the BuildKit replica when there are several)
type BuildResult = (String, (usize, usize), bool, Option<Duration>, Option<String>);

async fn build_inner(ctx: &Ctx, image: &str, tag: &str, filter: &Hashed, force: bool) -> Result<BuildResult, Error> {
    let cfg = ctx.config();
    let destination = Destination::of(&cfg);
    if !force {
        if let Some(digest) = destination.present(image, tag).await? {
            return Ok((digest, (0, 0), true, None, None));
        }
    }
    let img = cfg.image(image).ok_or_else(|| Error::Usage(format!("image {image} is no longer configured")))?;
    // The filter that hashed this tag decides what BuildKit may see (one filter).
    let filter = Filter::clone(&filter.0);
    let client = {
        let mut guard = ctx.buildkit.lock().await;
        match guard.as_ref() {
            Some(c) => c.clone(),
            None => {
                let cluster = buildkit::kube::Cluster { kube: &cfg.kube, opts: &ctx.kube };
                guard.insert(buildkit::connect(&cfg.buildkit, cluster).await?).clone()
            }
        }
    };
    // Several BuildKit replicas: this image's own, or another while it is not Ready (said once per move).
    let (mut client, placement) = client.for_image(image).await?;
    if let Some(p) = &placement {
        let said = buildkit::replicas::notice(image, &mut ctx.moved.lock().expect("not poisoned"), p);
        if let Some(message) = said {
            let _ = ctx.events.send(Event::BuildkitMoved { image: image.to_string(), message }).await;
        }
    }
    // Every step and its output go to the page's pane; to stderr too with -v.
    let out = Box::new(out::DetailWriter::new(ctx.out.clone(), image, "build", ctx.verbose));
    let (latest, name, built) = (ctx.progress.clone(), image.to_string(), tag.to_string());
    let mut progress = Progress::new(out, "", true).on_start(Box::new(move |step, of, what| {
        let export = what.starts_with("exporting") || what.starts_with("pushing");
        latest.tell(&name, &built, if export { decide::Progress::Pushing } else { decide::Progress::Step { step, of, name: what.to_string() } });
    }));
    // A first build on a fresh BuildKit starts from the configured cache-from; cache-to only when configured
    // (an export per save costs time).
    let cache = buildkit::cache::for_image(img, &cfg.registry, &Default::default()).map_err(Error::BadFlag)?;
    let spec = BuildSpec { image: img, filter, reference: destination.build_reference(image, tag), destination: &destination, cache };
    let built = buildkit::build(&mut client, &spec, &mut progress).await?;
    Ok((built.digest, built.steps, false, built.export, placement.map(|p| p.on)))
}
