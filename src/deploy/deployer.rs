//! One interface over the ways a `[[deploy]]` puts a new image in place — patch one container of a
//! Deployment ([`patch`]), server-side apply manifests, files or a kustomization ([`apply`]), upgrade a Helm
//! release ([`release`]) — and the one route every command takes through it: `deploy`, `up`, `check`,
//! `down` and `up --cleanup`. Each deployer answers for:
//! - deploy: change the workloads and watch their rollouts ([`Deployed`]: the workloads that rolled, the
//!   references it rendered into them, the selector of their pods: the pods it owns);
//! - rollback: what puts back the state before a failed rollout ([`Undo`]: the previous image, the previous
//!   revision), where its kind has one — the deployer says what it would be, its caller decides (`up`'s
//!   core) and carries it out through [`Deployers::rollback`];
//! - cleanup: delete what it created ([`Cleaned`]); a patched Deployment existed before, it is kept.
//!
//! An enum ([`Kind`]) rather than a trait object: the kinds are a closed set the config chooses from, they
//! share most of their state (image, rollout timeout, registry, pull secret) and all of their reporting, and
//! async methods on an enum need no boxing. A signal during a rollout watch is handled in one place
//! ([`Deployer::interrupted`]).

pub mod apply;
pub mod patch;
pub mod release;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::rollout::{Failure, Timeline, Verdict};
use super::workload::Kind as Workload;
use super::{images, Error};
use crate::cluster::Target;
use crate::config::{Config, Deploy, Helm, Load, ManifestSource, TagTemplate};
use crate::deliver::Destination;
use crate::interrupt::{until, Interrupt};

/// What a `[[deploy]]` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// One container of an existing Deployment.
    Patch {
        /// The Deployment.
        deployment: String,
        /// The container (default: the one running the image, or the only one).
        container: Option<String>,
    },
    /// Manifests (files or a kustomization), server-side applied with the references substituted.
    Manifests(ManifestSource),
    /// A Helm release.
    Helm(Helm),
}

/// What every deployer of one config shares, read from the config once.
#[derive(Debug, Clone, Default, PartialEq)]
struct Env {
    /// devloop.toml's directory: manifests, charts and values files are relative to it.
    root: PathBuf,
    /// The registry host images are pushed to, and the one the cluster pulls from.
    host: String,
    pull_host: String,
    /// The pull secret the deployed pod templates reference (`[registry] pull-secret`, for a registry only).
    secret: Option<String>,
    /// The pull policy deployed containers need (images not in a registry), and where the images are.
    pull: Option<&'static str>,
    store: String,
    /// Images configured but left out of this session (`up IMAGE…`): objects running them stay as deployed.
    left_out: Vec<String>,
    /// What `{registry}` stands for in `set` templates: the pull host, or `docker.io` for an image loaded
    /// into a node's store (the name runtimes give an image loaded as `<name>:<tag>`).
    registry: String,
}

impl Env {
    fn of(cfg: &Config) -> Env {
        let reg = &cfg.registry;
        let destination = Destination::of(cfg);
        Env {
            root: cfg.root.clone(),
            host: reg.host.clone(),
            pull_host: reg.pull_host().to_string(),
            secret: (reg.load == Load::Push).then(|| reg.pull_secret.name(&reg.host)).flatten(),
            pull: destination.pull_policy(),
            store: destination.describe(),
            left_out: cfg.left_out.clone(),
            registry: match destination {
                Destination::Registry(_) => reg.pull_host().to_string(),
                Destination::Docker { .. } | Destination::Containerd { .. } => "docker.io".into(),
            },
        }
    }
    /// The image left out of this session that `reference` names, if any.
    fn left_out(&self, reference: &str) -> Option<&str> {
        self.left_out.iter().find(|i| self.ours(reference, i)).map(String::as_str)
    }
    /// Whether `reference` names `image` (in the registry, or as configured; for an image loaded into a
    /// node's store, also as the runtime names it: `docker.io/[library/]<name>`).
    fn ours(&self, reference: &str, image: &str) -> bool {
        images::is_ours(reference, image, &self.host, &self.pull_host)
            || (self.pull.is_some() && images::is_ours(reference, image, "docker.io", "docker.io/library"))
    }
}

/// One `[[deploy]]`, ready to deploy, roll back and clean up.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployer {
    /// The `[[image]]` it deploys.
    pub image: String,
    /// What it changes.
    pub kind: Kind,
    /// The image's `tag` template (what `{hash}` is read back from).
    tag: TagTemplate,
    timeout: Duration,
    rollback_on_failure: bool,
    env: Arc<Env>,
    /// Custom resources' image paths and readiness (`image-paths`, `ready-when`), by `<group>/<Kind>`.
    custom: std::collections::BTreeMap<String, crate::config::Custom>,
}

/// A workload (Deployment, StatefulSet, DaemonSet, Job, bare Pod) that rolled (or was to roll) to the new image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rolled {
    /// Its kind.
    pub kind: Workload,
    /// Its name.
    pub name: String,
    /// The references to devloop's images the deployer rendered into its pod template.
    pub refs: Vec<String>,
    /// The label selector of its pods (the workload's `matchLabels`: the pods this deployer owns).
    pub selector: std::collections::BTreeMap<String, String>,
    /// When its first new pod reached each stage (empty if it did not roll or failed).
    pub timeline: Timeline,
    /// Why its rollout failed, as the watch judged it (`Exited (pod p, container c): exited with code 3`).
    pub failure: Option<String>,
    /// The failure's reason alone (`CrashLoopBackOff`, `ImagePullBackOff`) and its container's last log lines.
    pub reason: Option<String>,
    /// See `reason`.
    pub logs: Vec<String>,
    /// A custom resource's kind in lines (`widget`), in place of `kind`: its pods are the namespace's that
    /// run its references (its `selector` is empty), whatever owns them.
    pub custom: Option<String>,
}

impl Rolled {
    /// A workload whose rollout to `refs` was judged `v`.
    fn of(kind: Workload, name: &str, refs: &[String], selector: std::collections::BTreeMap<String, String>, v: &Verdict) -> Rolled {
        let (timeline, failure, reason, logs) = match v {
            Verdict::Failed(f) => (Timeline::default(), Some(format!("{}{}: {}", f.reason, place(f), f.message)), Some(f.reason.clone()), f.logs.clone()),
            Verdict::Progressing(w) => (Timeline::default(), Some(format!("not finished: {w}")), Some("not finished".into()), vec![]),
            Verdict::Done { timeline, .. } | Verdict::Completed { timeline, .. } => (*timeline, None, None, vec![]),
            Verdict::Manual(_) => (Timeline::default(), None, None, vec![]),
        };
        Rolled { kind, name: name.to_string(), refs: refs.to_vec(), selector, timeline, failure, reason, logs, custom: None }
    }

    /// A custom resource of kind `noun` whose rollout to `refs` was judged `v` by its condition.
    pub(super) fn custom(noun: &str, name: &str, refs: &[String], v: &Verdict) -> Rolled {
        Rolled { custom: Some(noun.to_string()), ..Rolled::of(Workload::Deployment, name, refs, Default::default(), v) }
    }

    /// `deployment`, `statefulset`, a custom resource's kind.
    pub fn noun(&self) -> &str {
        self.custom.as_deref().unwrap_or(self.kind.noun())
    }

    /// `deployment ns/name`, `statefulset ns/name`: as lines say it.
    pub fn what(&self, namespace: &str) -> String {
        format!("{} {namespace}/{}", self.noun(), self.name)
    }

    /// How the status block and the page name it: a Deployment by its name (what `[[port-forward]]` names),
    /// another kind as `kind/name`.
    pub fn shown(&self) -> String {
        match self.kind {
            Workload::Deployment if self.custom.is_none() => self.name.clone(),
            _ => format!("{}/{}", self.noun(), self.name),
        }
    }
}

/// What puts back the state before a failed rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// Patch the container's previous image back.
    Image {
        /// The image (for what is said).
        image: String,
        /// The Deployment and its container.
        deployment: String,
        container: String,
        /// The reference it ran before.
        previous: String,
        /// How long the rollback's rollout may take.
        timeout: Duration,
    },
    /// `helm rollback` the release to its previous revision.
    Revision {
        /// The image (for what is said, and to find the release's Deployments that run it).
        image: String,
        /// The release.
        helm: Helm,
        /// How long each rollout may take.
        timeout: Duration,
        /// The custom kinds `ready-when` judges (the release's custom resources are waited for too).
        custom: std::collections::BTreeMap<String, crate::config::Custom>,
        /// The revision the failed (or crashing) upgrade made: the one undone.
        revision: u64,
    },
}

/// What one deploy did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deployed {
    /// Every rollout watched succeeded.
    pub ok: bool,
    /// The workloads it rolled (or tried to), in order.
    pub rolled: Vec<Rolled>,
    /// What puts back the state before a failed rollout, where the kind has one and the config asks for it
    /// (Helm: always; patch: `rollback-on-failure`). Empty when `ok`.
    pub undo: Vec<Undo>,
}

impl Deployed {
    /// The reference the rolled pods of `image`, deployed as `reference`, run: itself, or a chart's own
    /// rendering of the same build (its tag without the digest, …), which is what their specs say.
    pub fn runs(&self, image: &str, reference: &str) -> String {
        let refs: Vec<&String> = self.rolled.iter().flat_map(|r| &r.refs).collect();
        if refs.iter().any(|r| *r == reference) {
            return reference.to_string();
        }
        let named = |r: &str| {
            let repo = images::repository(r);
            repo == image || repo.ends_with(&format!("/{image}"))
        };
        refs.into_iter().find(|r| named(r.as_str()) && images::same_build(r.as_str(), reference)).cloned().unwrap_or_else(|| reference.to_string())
    }

    fn add(&mut self, other: Deployed) {
        self.ok &= other.ok;
        self.rolled.extend(other.rolled);
        self.undo.extend(other.undo);
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cleaned {
    /// The manifests' objects that existed and were deleted (`kind namespace/name`).
    Deleted(Vec<String>),
    /// The Helm release was uninstalled (false: it was not installed).
    Uninstalled(bool),
    /// A patched Deployment: devloop did not create it, so it is kept.
    Kept,
}

/// Which signal stops the wait for a rollback (the rollback itself is already asked for by then).
#[derive(Clone, Copy)]
pub enum Stop<'a> {
    /// The first: a rollback after a failed rollout.
    First(&'a Interrupt),
    /// The second: a rollback on the way out after the first.
    Second(&'a Interrupt),
}

impl Stop<'_> {
    fn token(&self) -> &CancellationToken {
        match self {
            Stop::First(i) => i.stop(),
            Stop::Second(i) => i.abort(),
        }
    }
    /// The signal's name.
    fn signal(&self) -> &'static str {
        match self {
            Stop::First(i) | Stop::Second(i) => i.name(),
        }
    }
    /// What stopped it, as said.
    fn why(&self) -> String {
        match self {
            Stop::First(i) => format!("interrupted ({})", i.name()),
            Stop::Second(_) => "second signal".into(),
        }
    }
}

impl Deployer {
    /// The deployer of `d`, whose image's tag template is `tag`, sharing `env`.
    fn new(d: &Deploy, tag: TagTemplate, env: Arc<Env>) -> Deployer {
        let kind = match &d.target {
            crate::config::DeployTarget::Patch { deployment, container } => {
                Kind::Patch { deployment: deployment.clone(), container: container.clone() }
            }
            crate::config::DeployTarget::Manifests(source) => Kind::Manifests(source.clone()),
            crate::config::DeployTarget::Helm(h) => Kind::Helm(h.clone()),
        };
        let (timeout, rollback_on_failure, custom) = (d.rollout_timeout, d.rollback_on_failure, d.custom.clone());
        Deployer { image: d.image.clone(), kind, tag, timeout, rollback_on_failure, env, custom }
    }

    /// Whether a crash soon after a successful rollout is to be rolled back as a failed rollout would be:
    /// Helm releases always, patched Deployments with `rollback-on-failure`, manifests never (nothing to go
    /// back to but what the files say).
    pub fn rolls_back(&self) -> bool {
        match self.kind {
            Kind::Helm(_) => true,
            Kind::Patch { .. } => self.rollback_on_failure,
            Kind::Manifests(_) => false,
        }
    }

    /// What its cleanup removes; two deployers with the same key share what they created (one manifest set
    /// deployed for two images, one release).
    fn key(&self) -> String {
        match &self.kind {
            Kind::Patch { deployment, .. } => format!("patch {deployment}"),
            Kind::Manifests(source) => format!("manifests {source:?}"),
            Kind::Helm(h) => format!("helm {}", h.release),
        }
    }

    /// Changes its workloads to run `references` (all images' that are known, not just its own: one
    /// manifest may name several images, and applying it must not reset the others) and watches their
    /// rollouts. With `intr`, a signal during the watch is handled by [`Deployer::interrupted`].
    pub async fn deploy(
        &self,
        t: &Target,
        references: &HashMap<String, String>,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
    ) -> Result<Deployed, Error> {
        let reference = || references.get(&self.image).cloned().unwrap_or_default();
        match &self.kind {
            Kind::Patch { deployment, container } => self.patch(t, deployment, container.as_deref(), &reference(), out, intr).await,
            Kind::Manifests(source) => self.apply(t, source, references, out, intr).await,
            Kind::Helm(h) => self.release(t, h, &reference(), out, intr).await,
        }
    }

    /// Deletes what it created from `t` (`down`, `up --cleanup`).
    pub async fn cleanup(&self, t: &Target) -> Result<Cleaned, Error> {
        match &self.kind {
            Kind::Patch { .. } => Ok(Cleaned::Kept),
            Kind::Manifests(source) => {
                let objects = crate::util::off_runtime(|| super::manifests::load(&self.env.root, source))?;
                Ok(Cleaned::Deleted(super::manifests::delete(t, &objects).await?))
            }
            Kind::Helm(h) => Ok(Cleaned::Uninstalled(super::helm::uninstall(h, &helm_scope(t)).await?)),
        }
    }

    /// Watches the rollout of the `kind` workload `name` to `refs`: the pods' selector and the verdict; None
    /// when `intr`'s first signal comes first (the watch is dropped).
    async fn watch(&self, t: &Target, kind: Workload, name: &str, refs: &[String], intr: Option<&Interrupt>) -> Result<Option<(std::collections::BTreeMap<String, String>, Verdict)>, Error> {
        let watch = super::watch_rollout(t, kind, name, refs, self.timeout);
        match intr {
            Some(i) => until(i.stop(), watch).await.transpose(),
            None => Ok(Some(watch.await?)),
        }
    }

    /// A signal came while the rollout of `pending[0]` was watched: its new image is not verified, nor that
    /// of the workloads after it that were still to be watched. `undo` (a patch with
    /// `rollback-on-failure`) is carried out, until a second signal; then each one's state is said.
    async fn interrupted(&self, t: &Target, pending: &[(Workload, String)], undo: Option<Undo>, out: &mut (dyn Write + Send), intr: &Interrupt) -> Error {
        let image = &self.image;
        let (kind, first) = pending.first().map(|(k, n)| (k.noun(), n.as_str())).unwrap_or_default();
        let _ = writeln!(out, "{image}: interrupted ({}) while watching the rollout of {kind} {}/{first}: the new image is not verified", intr.name(), t.namespace);
        let mut note = "";
        if let Some(undo) = undo {
            note = match rollback(&self.env, t, &undo, out, Some(&Stop::Second(intr))).await {
                Ok(Some(true)) => "; rollback finished",
                Ok(Some(false)) => "; rollback NOT finished",
                Ok(None) => return Error::Interrupted(intr.name()), // its state is said
                Err(e) => {
                    let _ = writeln!(out, "{image}: rolling back failed: {e}");
                    "; rollback NOT finished"
                }
            };
        }
        for (kind, name) in pending {
            let _ = writeln!(out, "{image}: {}{note}", state_of(t, *kind, name).await);
        }
        Error::Interrupted(intr.name())
    }
}

/// Every `[[deploy]]` of one config, and what they were started for (so `up --cleanup` removes exactly
/// what this session deployed, whichever config was in force then).
#[derive(Debug, Clone, Default)]
pub struct Deployers {
    list: Vec<Deployer>,
    env: Option<Arc<Env>>,
    started: Arc<Mutex<Vec<Deployer>>>,
}

impl Deployers {
    /// The deployers of `cfg`'s `[[deploy]]` tables, in order.
    pub fn of(cfg: &Config) -> Deployers {
        let env = Arc::new(Env::of(cfg));
        let tag = |d: &Deploy| cfg.image(&d.image).map(|i| i.tag.clone()).unwrap_or_default();
        let list = cfg.deploys.iter().map(|d| Deployer::new(d, tag(d), env.clone())).collect();
        Deployers { list, env: Some(env), started: Default::default() }
    }

    /// The deployers of a new config that keep the record of what `old`'s started (a config reload).
    pub fn after(self, old: &Deployers) -> Deployers {
        Deployers { started: old.started.clone(), ..self }
    }

    /// All of them, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Deployer> {
        self.list.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The deployers of `image`.
    pub fn of_image<'a>(&'a self, image: &'a str) -> impl Iterator<Item = &'a Deployer> {
        self.list.iter().filter(move |d| d.image == image)
    }

    /// Whether a crash of `image`'s pods soon after a rollout rolls back (see [`Deployer::rolls_back`]).
    pub fn rolls_back(&self, image: &str) -> bool {
        self.of_image(image).any(Deployer::rolls_back)
    }

    /// The patched Deployments' names.
    pub fn patched(&self) -> impl Iterator<Item = &str> {
        self.list.iter().filter_map(|d| match &d.kind {
            Kind::Patch { deployment, .. } => Some(deployment.as_str()),
            _ => None,
        })
    }

    /// Deploys every deployer of `image` (see [`Deployer::deploy`]), noting each as started first (a first
    /// rollout that fails still created what it applied). With `undo_now`, a failed rollout's [`Undo`] is
    /// carried out right after it (and not returned); a stop while waiting for it is
    /// [`Error::Interrupted`] with its signal.
    pub async fn deploy(
        &self,
        t: &Target,
        image: &str,
        references: &HashMap<String, String>,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
        undo_now: Option<&Stop<'_>>,
    ) -> Result<Deployed, Error> {
        let mut all = Deployed { ok: true, ..Default::default() };
        self.note(image);
        for d in self.of_image(image) {
            let mut deployed = d.deploy(t, references, out, intr).await?;
            if let Some(stop) = undo_now {
                for undo in std::mem::take(&mut deployed.undo) {
                    if self.rollback(t, &undo, out, Some(stop)).await?.is_none() {
                        return Err(Error::Interrupted(stop.signal()));
                    }
                }
            }
            all.add(deployed);
        }
        Ok(all)
    }

    /// Notes `image`'s deployers as started (once each), for [`Deployers::started`].
    fn note(&self, image: &str) {
        let mut started = self.started.lock().expect("not poisoned");
        for d in self.of_image(image) {
            if !started.iter().any(|s| s.key() == d.key()) {
                started.push(d.clone());
            }
        }
    }

    /// Carries out `undo` and watches the rollout it causes, until `stop`: Some(true) when the state before
    /// is back (said so), Some(false) when that rollout failed too (reported), None when `stop` came first
    /// (the rollback is asked for, not verified; said so with the Deployment's state).
    pub async fn rollback(&self, t: &Target, undo: &Undo, out: &mut (dyn Write + Send), stop: Option<&Stop<'_>>) -> Result<Option<bool>, Error> {
        let env = self.env.clone().unwrap_or_default();
        rollback(&env, t, undo, out, stop).await
    }

    /// The deployers whose cleanup removes something, once per thing removed (`down`), in config order.
    pub fn distinct(&self) -> Vec<&Deployer> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for d in &self.list {
            let key = d.key();
            if !seen.contains(&key) {
                seen.push(key);
                out.push(d);
            }
        }
        out
    }

    /// The deployers started so far that created something to delete: Helm releases first (a chart may use
    /// what the manifests made), then the manifest sets in order.
    pub fn started(&self) -> Vec<Deployer> {
        let started = self.started.lock().expect("not poisoned");
        let of = |helm: bool| started.iter().filter(move |d| matches!(d.kind, Kind::Helm(_)) == helm);
        let mut out: Vec<Deployer> = of(true).cloned().collect();
        let mut manifests: Vec<Deployer> = of(false).filter(|d| matches!(d.kind, Kind::Manifests(_))).cloned().collect();
        manifests.sort_by(|a, b| match (&a.kind, &b.kind) {
            (Kind::Manifests(x), Kind::Manifests(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        out.extend(manifests);
        out
    }
}

/// See [`Deployers::rollback`].
async fn rollback(env: &Env, t: &Target, undo: &Undo, out: &mut (dyn Write + Send), stop: Option<&Stop<'_>>) -> Result<Option<bool>, Error> {
    match undo {
        Undo::Image { image, deployment, container, previous, timeout } => {
            patch::roll_back(t, image, deployment, container, previous, *timeout, out, stop).await
        }
        Undo::Revision { image, helm, timeout, custom, revision } => release::roll_back(env, t, (image, custom), (helm, *revision), *timeout, out, stop).await,
    }
}

/// Before the rollout of the `kind` workload `name` is watched: a StatefulSet's pods that a failed template
/// left not Ready are deleted and said (see [`super::unstick`]), or the fix (or the rollback) would never roll.
async fn unstick(t: &Target, kind: Workload, name: &str, image: &str, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    if kind == Workload::StatefulSet {
        for said in super::unstick(t, name).await? {
            let _ = writeln!(out, "{image}: {said}");
        }
    }
    Ok(())
}

/// Says that `stop` ended the wait for the rollback of `what` (it is asked for, not verified).
fn stopped_waiting(out: &mut (dyn Write + Send), image: &str, stop: Option<&Stop<'_>>, what: &str) {
    let why = stop.map(Stop::why).unwrap_or_default();
    let _ = writeln!(out, "{image}: {why}: stopped waiting for the rollback of {what}");
}

/// Waits for `fut` unless `stop` comes first.
async fn unless<T>(stop: Option<&Stop<'_>>, fut: impl std::future::Future<Output = T>) -> Option<T> {
    match stop {
        Some(s) => until(s.token(), fut).await,
        None => Some(fut.await),
    }
}

/// The scope every helm command of a release in `t` runs in.
pub fn helm_scope(t: &Target) -> super::helm::Scope {
    super::helm::Scope { namespace: t.namespace.clone(), context: t.context.clone() }
}

/// `deployment ns/name: <its state>` (see [`super::workload::Workload::describe`]), or why it is unknown.
pub async fn state_of(t: &Target, kind: Workload, name: &str) -> String {
    let what = format!("{} {}/{name}", kind.noun(), t.namespace);
    // Bounded: this is said on the way out, and the API server may be what is failing.
    match tokio::time::timeout(Duration::from_secs(10), super::get_workload(t, kind, name)).await {
        Ok(Ok(w)) => format!("{what}: {}", w.describe()),
        Ok(Err(e)) => format!("{what}: state unknown ({e})"),
        Err(_) => format!("{what}: state unknown (the API server did not answer within 10s)"),
    }
}

/// ` (pod p, container c)`: where a failure shows.
pub fn place(f: &Failure) -> String {
    match (&f.pod, &f.container) {
        (Some(p), Some(c)) => format!(" (pod {p}, container {c})"),
        (Some(p), None) => format!(" (pod {p})"),
        _ => String::new(),
    }
}

/// Says a verdict on the rollout of `what`; true when it succeeded.
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
        Verdict::Completed { succeeded, timeline } => {
            let after = |i: Option<Instant>| i.map(|i| format!("{:.2}s", i.saturating_duration_since(started).as_secs_f64()));
            let stages: Vec<String> =
                [("pod created", timeline.created), ("running", timeline.running)].into_iter().filter_map(|(what, at)| after(at).map(|t| format!(", {what} {t}"))).collect();
            let _ = writeln!(out, "{image}: {what} succeeded in {:.1}s ({succeeded} pod(s) succeeded{})", started.elapsed().as_secs_f64(), stages.concat());
            true
        }
        Verdict::Manual(w) => {
            let _ = writeln!(out, "{image}: {what}: template updated after {:.1}s, pods not rolled: {w}", started.elapsed().as_secs_f64());
            true
        }
    }
}

#[cfg(test)]
mod tests;
