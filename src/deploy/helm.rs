//! Helm releases: `helm upgrade --install` a chart with the built image in its values, find the release's
//! workloads in its manifest (to watch their rollouts), and `helm rollback` one whose rollout failed.
//! The helm binary comes from PATH; KUBECONFIG is inherited, the context is always passed explicitly.
//!
//! helm runs in a process group of its own (a Ctrl-C reaches devloop, which decides), and is never killed
//! outright: killed mid-upgrade it would leave the release `pending-upgrade`, which refuses every later
//! upgrade. When devloop stops waiting for it (`up` stopping), helm gets SIGINT and time to exit, and an
//! upgrade it leaves pending or failed is rolled back to the last deployed revision ([`stopped`]).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use serde::Deserialize as _;

use crate::config::{Helm, ImageValues, SetValue, Var};
use crate::reference::Reference;

/// Errors running helm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No helm binary on PATH.
    #[error("helm not found on PATH: install Helm v3 (https://helm.sh/docs/intro/install/)")]
    NotFound,
    /// helm could not be started.
    #[error("running helm: {0}")]
    Spawn(std::io::Error),
    /// helm exited non-zero.
    #[error("`helm {command}` for release {release} failed ({status}): {stderr}")]
    Failed { command: String, release: String, status: String, stderr: String },
    /// helm's output was not what devloop expects.
    #[error("helm {what} for release {release}: {message}")]
    Output { what: String, release: String, message: String },
    /// A `set` template has no value in this deploy (`{digest}` of an image without one, …).
    #[error("helm release {release}: `set.{key}` = \"{template}\": {message}")]
    Template { release: String, key: String, template: String, message: String },
    /// A release another image's upgrade moved on since the revision to be undone: not rolled back, since
    /// that would undo the other image's upgrade too.
    #[error("helm release {release} is at revision {now}, not {made}: another image's upgrade came after, so it is not rolled back (save a fix to roll forward)")]
    MovedOn { release: String, made: u64, now: u64 },
}

/// What `helm upgrade --install` made.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The release's revision now.
    pub revision: u64,
    /// Its workloads whose rollouts are watched (see [`Rendered`]).
    pub workloads: Vec<Rendered>,
    /// The images of every pod template in it, of any kind (containers and init containers).
    pub images: Vec<String>,
    /// Its objects of kinds Kubernetes does not build in (custom resources), as JSON, in order: judged by
    /// their `ready-when` condition when they run the image.
    pub customs: Vec<serde_json::Value>,
}

/// What the placeholders of `set` templates stand for in one deploy.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// `{registry}`: the registry host the cluster pulls from.
    pub registry: &'a str,
    /// `{name}`: the image's name.
    pub name: &'a str,
    /// `{image}`: the reference deployed; `{repository}`, `{tag}` and `{digest}` are its parts.
    pub reference: &'a str,
    /// `{hash}`: the content hash in the tag (None: the tag is not of the image's `tag` template, a `--tag`).
    pub hash: Option<&'a str>,
}

impl Vars<'_> {
    /// The value of `v`, or why there is none.
    pub fn value(&self, v: Var) -> Result<String, String> {
        let r = Reference::parse(self.reference);
        let missing = |what: &str| format!("{v}: the reference {} has no {what}", self.reference);
        match v {
            Var::Registry => Ok(self.registry.to_string()),
            Var::Name => Ok(self.name.to_string()),
            Var::Repository => Ok(r.repository.to_string()),
            Var::Tag => r.tag.map(String::from).ok_or_else(|| missing("tag")),
            Var::Digest => r.digest.map(String::from).ok_or_else(|| missing("digest (an image in Docker Engine's store has none)")),
            Var::Hash => self.hash.map(String::from).ok_or_else(|| {
                format!("{v}: the tag `{}` is not of the image's `tag` template: it holds no content hash", r.tag_or_latest())
            }),
            Var::Image => Ok(self.reference.to_string()),
        }
    }
}

/// Splits `host/name:tag@digest` into (`host/name`, `tag@digest`); a reference without a tag gets the
/// digest alone as its "tag" (`@sha256:…` would not render as valid, so that case keeps `:` out).
pub fn split_reference(reference: &str) -> (String, String) {
    let r = crate::reference::Reference::parse(reference);
    let tag = match r.digest {
        Some(d) => format!("{}@{d}", r.tag_or_latest()),
        None => r.tag_or_latest().to_string(),
    };
    (r.repository.to_string(), tag)
}

/// Escapes a `--set` value: helm splits on commas and treats backslashes as escapes.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

/// The arguments of `helm upgrade --install` for this release and the image `vars` describe (the reference
/// into the chart's image values, the placeholders of `set` expanded); `pull_secret` goes into the chart's
/// `image-values.pull-secrets` list, when the config names one.
pub fn upgrade_args(h: &Helm, root: &Path, scope: &Scope, vars: &Vars, pull_secret: Option<&str>) -> Result<Vec<String>, Error> {
    let local = root.join(&h.chart);
    let chart = if local.exists() { local.display().to_string() } else { h.chart.clone() };
    let mut a = scope.args(&["upgrade", "--install", &h.release, &chart]);
    if h.shared {
        // The chart's defaults, then the release's values (the other images'), then this upgrade's.
        a.push("--reset-then-reuse-values".into());
    }
    for v in &h.values {
        a.push("-f".into());
        a.push(root.join(v).display().to_string());
    }
    for (k, v) in &h.set {
        match v {
            SetValue::String(s) => a.extend(["--set-string".into(), format!("{k}={}", escape(s))]),
            SetValue::Template(t) => {
                let bad = |message| Error::Template { release: h.release.clone(), key: k.clone(), template: t.to_string(), message };
                let s = t.expand(&|v| vars.value(v)).map_err(bad)?;
                a.extend(["--set-string".into(), format!("{k}={}", escape(&s))]);
            }
            SetValue::Literal(l) => a.extend(["--set".into(), format!("{k}={l}")]),
        }
    }
    // The image last, so it wins over `set` and values files.
    let reference = vars.reference;
    match &h.image_values {
        ImageValues::Split { repository, tag } => {
            let (r, t) = split_reference(reference);
            a.extend(["--set-string".into(), format!("{repository}={}", escape(&r))]);
            a.extend(["--set-string".into(), format!("{tag}={}", escape(&t))]);
        }
        ImageValues::Full(path) => a.extend(["--set-string".into(), format!("{path}={}", escape(reference))]),
        ImageValues::InSet => {}
    }
    if let (Some(path), Some(secret)) = (&h.pull_secrets, pull_secret) {
        a.extend(["--set-string".into(), format!("{path}[0].name={}", escape(secret))]);
    }
    a.extend(["--output".into(), "json".into()]);
    Ok(a)
}

/// Each release's turn: one upgrade or rollback of it at a time in this process.
static TURNS: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>> = Mutex::new(BTreeMap::new());

/// Waits for `release`'s turn (in `scope`); the turn ends when the guard is dropped. Two images' upgrades
/// of one release at once: helm would refuse the second ("another operation is in progress"), and a
/// rollback must undo only its own image's revision.
pub async fn turn(scope: &Scope, release: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let key = format!("{}/{}/{release}", scope.context, scope.namespace);
    let lock = TURNS.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
    lock.lock_owned().await
}

/// How long helm gets to exit after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long putting a stopped upgrade's release back may take.
const RECOVER_BOUND: Duration = Duration::from_secs(60);

/// What a helm process left behind once devloop stopped waiting for it: said to the user by [`stopped`].
type Recovery = Pin<Box<dyn Future<Output = String> + Send>>;

/// The helm processes started, each watched by a task of its own that outlives a caller who stops waiting
/// (`up` aborts its workers): [`stopped`] waits for them.
static RUNNING: Mutex<Vec<JoinHandle<Option<String>>>> = Mutex::new(Vec::new());

/// Waits for the helm processes that devloop stopped waiting for to exit (SIGINT, then SIGKILL after a grace)
/// and for their releases to be put back; returns what was done, one line each. Called before devloop exits,
/// so that no helm outlives it and no release is left pending.
pub async fn stopped() -> Vec<String> {
    let running = std::mem::take(&mut *RUNNING.lock().expect("not poisoned"));
    let mut said = Vec::new();
    for task in running {
        if let Ok(Some(s)) = task.await {
            said.push(s);
        }
    }
    said
}

/// Runs helm with `args`; its stdout on success.
async fn run(release: &str, args: &[String]) -> Result<String, Error> {
    run_program("helm", release, args, None).await
}

/// Runs `program` with `args`; its stdout on success. Dropping the future does not kill it: it gets SIGINT,
/// [`STOP_GRACE`] to exit, then SIGKILL; then `recover` runs (bounded) and what it says goes to [`stopped`].
async fn run_program(program: &str, release: &str, args: &[String], recover: Option<Recovery>) -> Result<String, Error> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { Error::NotFound } else { Error::Spawn(e) })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let (mut tx, rx) = tokio::sync::oneshot::channel();
    let name = release.to_string();
    let watcher = tokio::spawn(async move {
        let mut output = std::pin::pin!(child.wait_with_output());
        tokio::select! {
            out = &mut output => {
                let _ = tx.send(out);
                None
            }
            _ = tx.closed() => {
                // SAFETY: kill(2) with a pid this task's child still holds: not reaped yet, it is not reused.
                let signal = |sig| pid.map(|p| unsafe { libc::kill(p, sig) });
                signal(libc::SIGINT);
                if tokio::time::timeout(STOP_GRACE, &mut output).await.is_err() {
                    signal(libc::SIGKILL);
                    let _ = output.await;
                }
                let recover = recover?;
                Some(tokio::time::timeout(RECOVER_BOUND, recover).await.unwrap_or_else(|_| {
                    format!("helm release {name}: putting it back took over {}s: see `helm history {name}`", RECOVER_BOUND.as_secs())
                }))
            }
        }
    });
    {
        let mut running = RUNNING.lock().expect("not poisoned");
        running.retain(|t| !t.is_finished());
        running.push(watcher);
    }
    let output = rx.await.map_err(|_| Error::Spawn(std::io::Error::other("helm's watcher ended early")))?.map_err(Error::Spawn)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let command = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
        return Err(Error::Failed { command, release: release.into(), status: output.status.to_string(), stderr });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The namespace and kube context every helm command of a release runs in. [`Scope::args`] is the one place
/// that turns them into arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `--namespace`.
    pub namespace: String,
    /// `--kube-context` (always passed: helm must never fall back to the kubeconfig's current context).
    pub context: String,
}

impl Scope {
    /// `cmd`, then `--namespace` and `--kube-context`.
    pub fn args(&self, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.extend(["--namespace".into(), self.namespace.clone(), "--kube-context".into(), self.context.clone()]);
        a
    }
}

/// After an upgrade was stopped: a release whose last revision is pending or failed is rolled back to its
/// last deployed one, so that the next upgrade is not refused. Returns what it found and did.
async fn recover(release: String, scope: Scope) -> String {
    let namespace = &scope.namespace;
    let what = format!("helm release {namespace}/{release}: upgrade stopped");
    let history = match run(&release, &scope.args(&["history", &release, "--max", "20", "--output", "json"])).await {
        Ok(h) => h,
        Err(Error::Failed { stderr, .. }) if stderr.contains("not found") => return format!("{what} before the release was created"),
        Err(e) => return format!("{what}; its state is unknown: {e}"),
    };
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap_or_default();
    let revision = |e: &serde_json::Value| e["revision"].as_u64().unwrap_or(0);
    let Some(last) = entries.iter().max_by_key(|e| revision(e)) else { return format!("{what}; helm has no history for it") };
    let (rev, status) = (revision(last), last["status"].as_str().unwrap_or("unknown"));
    if !(status.starts_with("pending-") || status == "failed") {
        return format!("{what}; revision {rev} is {status}");
    }
    let deployed = entries.iter().filter(|e| e["status"] == "deployed").map(revision).max();
    let Some(good) = deployed else {
        return format!("{what}; revision {rev} is {status}, with no deployed revision to go back to: `helm uninstall {release} -n {namespace}`");
    };
    match run(&release, &scope.args(&["rollback", &release, &good.to_string()])).await {
        Ok(_) => format!("{what}; revision {rev} was left {status}: rolled back to revision {good}"),
        Err(e) => format!("{what}; revision {rev} is {status} and rolling back to revision {good} failed: {e}"),
    }
}

/// Installs or upgrades the release with the image `vars` describe in the chart's values (and `pull_secret`
/// in its pull secrets value, see [`upgrade_args`]).
pub async fn upgrade(h: &Helm, root: &Path, scope: &Scope, vars: &Vars<'_>, pull_secret: Option<&str>) -> Result<Release, Error> {
    let args = upgrade_args(h, root, scope, vars, pull_secret)?;
    let recovery: Recovery = Box::pin(recover(h.release.clone(), scope.clone()));
    let out = run_program("helm", &h.release, &args, Some(recovery)).await?;
    let bad = |message: String| Error::Output { what: "upgrade --output json".into(), release: h.release.clone(), message };
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(format!("not JSON: {e}")))?;
    let revision = v["version"].as_u64().ok_or_else(|| bad("no `version`".into()))?;
    let manifest = v["manifest"].as_str().unwrap_or_default();
    let workloads = workloads(manifest).map_err(bad)?;
    Ok(Release { revision, workloads, images: pod_images(manifest), customs: customs(manifest) })
}

/// Rolls the release back from revision `made` to the one before; then its workloads and custom resources
/// (see [`customs`]) as `helm get manifest` shows them. A release that another image's upgrade moved on
/// since `made` is left as it is ([`Error::MovedOn`]).
pub async fn rollback(h: &Helm, scope: &Scope, made: u64) -> Result<(Vec<Rendered>, Vec<serde_json::Value>), Error> {
    let _turn = turn(scope, &h.release).await;
    if h.shared {
        let status = run(&h.release, &scope.args(&["status", &h.release, "--output", "json"])).await?;
        let now = serde_json::from_str::<serde_json::Value>(&status).ok().and_then(|v| v["version"].as_u64());
        let now = now.ok_or_else(|| Error::Output { what: "status --output json".into(), release: h.release.clone(), message: "no `version`".into() })?;
        if now != made {
            return Err(Error::MovedOn { release: h.release.clone(), made, now });
        }
    }
    let before = made.saturating_sub(1).max(1).to_string();
    run(&h.release, &scope.args(&["rollback", &h.release, &before])).await?;
    let manifest = run(&h.release, &scope.args(&["get", "manifest", &h.release])).await?;
    let workloads = workloads(&manifest).map_err(|message| Error::Output { what: "get manifest".into(), release: h.release.clone(), message })?;
    Ok((workloads, customs(&manifest)))
}

/// Uninstalls the release (`devloop down`); false when there was none.
pub async fn uninstall(h: &Helm, scope: &Scope) -> Result<bool, Error> {
    // (helm's --ignore-not-found reports "uninstalled" either way: its error is what tells them apart.)
    match run(&h.release, &scope.args(&["uninstall", &h.release])).await {
        Ok(_) => Ok(true),
        Err(Error::Failed { stderr, .. }) if stderr.contains("not found") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The images of every container and init container in a rendered manifest (YAML documents), wherever the
/// pod template sits (Deployment, StatefulSet, CronJob, Pod, a custom resource's…), in order.
pub fn pod_images(manifest: &str) -> Vec<String> {
    fn walk(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, sub) in m {
                    let list = matches!(k.as_str(), Some("containers" | "initContainers")).then(|| sub.as_sequence()).flatten();
                    for c in list.into_iter().flatten() {
                        if let Some(i) = c.get("image").and_then(|i| i.as_str()) {
                            out.push(i.to_string());
                        }
                    }
                    walk(sub, out);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|x| walk(x, out)),
            serde_yaml_ng::Value::Tagged(t) => walk(&t.value, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(manifest) {
        if let Ok(v) = serde_yaml_ng::Value::deserialize(doc) {
            walk(&v, &mut out);
        }
    }
    out
}

/// The objects of a rendered manifest whose API group has a dot (as every custom resource's does; of the
/// built-in kinds, only some of `*.k8s.io`), as JSON: what `image-paths` and `ready-when` may name.
pub fn customs(manifest: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(manifest)
        .filter_map(|doc| serde_json::Value::deserialize(doc).ok())
        .filter(|v| {
            let group = v["apiVersion"].as_str().and_then(|a| a.split_once('/')).map_or("", |(g, _)| g);
            group.contains('.') && v["metadata"]["name"].is_string()
        })
        .collect()
}

/// A workload of a rendered manifest: its kind, name and its containers' images.
pub type Rendered = (super::workload::Kind, String, Vec<String>);

/// The workloads (Deployments, StatefulSets, DaemonSets) in a rendered manifest (YAML documents), each with
/// its containers' images.
pub fn workloads(manifest: &str) -> Result<Vec<Rendered>, String> {
    let mut found = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(manifest) {
        let v = serde_yaml_ng::Value::deserialize(doc).map_err(|e| format!("the manifest is not YAML: {e}"))?;
        // A chart's Job or Pod is not replaced by devloop (helm upgrade refuses a changed one; charts run
        // Jobs as hooks): not watched.
        let Some(kind) = v.get("kind").and_then(|k| k.as_str()).and_then(super::workload::Kind::of).filter(|k| !k.replaced()) else { continue };
        let Some(name) = v.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()) else { continue };
        let images = v
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("spec"))
            .and_then(|s| s.get("containers"))
            .and_then(|c| c.as_sequence())
            .map(|cs| cs.iter().filter_map(|c| c.get("image").and_then(|i| i.as_str()).map(String::from)).collect())
            .unwrap_or_default();
        found.push((kind, name.to_string(), images));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        let (r, t) = split_reference("10.0.0.1:5000/hello:abc@sha256:01");
        assert_eq!((r.as_str(), t.as_str()), ("10.0.0.1:5000/hello", "abc@sha256:01"));
        // Rendered back as `{{ repository }}:{{ tag }}` it is the same reference.
        assert_eq!(format!("{r}:{t}"), "10.0.0.1:5000/hello:abc@sha256:01");
        assert_eq!(split_reference("reg:5000/a/b"), ("reg:5000/a/b".into(), "latest".into()));
    }

    /// `helm upgrade`'s arguments for image `hello` deployed as `reference`, joined.
    fn args(h: &Helm, reference: &str, secret: Option<&str>) -> String {
        let scope = Scope { namespace: "ns".into(), context: "ctx".into() };
        let vars = Vars { registry: "reg", name: "hello", reference, hash: None };
        upgrade_args(h, Path::new("/p"), &scope, &vars, secret).unwrap().join(" ")
    }

    /// The book's chart takes its image as three values and a fixed suffix: the templates fill them, and
    /// devloop sets no `image.*` value of its own.
    #[test]
    fn set_templates_expand_per_deploy() {
        let t = |s: &str| SetValue::Template(crate::config::Template::parse(s, &Var::ALL).unwrap());
        let mut set = std::collections::BTreeMap::new();
        set.insert("registryServer".to_string(), t("{registry}"));
        set.insert("registryUser".to_string(), SetValue::String("kiamol".into()));
        set.insert("imageBuildNumber".to_string(), t("{hash}"));
        set.insert("note".to_string(), t("{image}, {digest}"));
        let h = Helm { chart: "c".into(), release: "bb".into(), values: vec![], set, image_values: ImageValues::InSet, pull_secrets: None, shared: false };
        let scope = Scope { namespace: "ns".into(), context: "ctx".into() };
        let reference = "10.0.0.1:5000/kiamol/bulletin-board:abc-kiamol@sha256:1";
        let vars = Vars { registry: "10.0.0.1:5000", name: "kiamol/bulletin-board", reference, hash: Some("abc") };
        let a = upgrade_args(&h, Path::new("/p"), &scope, &vars, None).unwrap().join(" ");
        assert_eq!(
            a,
            "upgrade --install bb c --namespace ns --kube-context ctx --set-string imageBuildNumber=abc \
             --set-string note=10.0.0.1:5000/kiamol/bulletin-board:abc-kiamol@sha256:1\\, sha256:1 \
             --set-string registryServer=10.0.0.1:5000 --set-string registryUser=kiamol --output json"
        );
        // A value that this deploy does not have is an error naming the key, before helm runs.
        let by_hand = Vars { hash: None, reference: "hello:mine", ..vars };
        let e = upgrade_args(&h, Path::new("/p"), &scope, &by_hand, None).unwrap_err().to_string();
        assert_eq!(e, "helm release bb: `set.imageBuildNumber` = \"{hash}\": {hash}: the tag `mine` is not of the image's `tag` template: it holds no content hash");
        let mut only_digest = h.clone();
        only_digest.set.retain(|k, _| k == "note");
        let e = upgrade_args(&only_digest, Path::new("/p"), &scope, &by_hand, None).unwrap_err().to_string();
        assert!(e.contains("`set.note`") && e.contains("{digest}: the reference hello:mine has no digest"), "{e}");
        let repo = Vars { reference: "r:5/a/b:t", ..vars };
        assert_eq!(repo.value(Var::Repository).unwrap(), "r:5/a/b");
        assert_eq!(repo.value(Var::Tag).unwrap(), "t");
        assert_eq!(repo.value(Var::Name).unwrap(), "kiamol/bulletin-board");
    }

    #[test]
    fn pod_images_of_every_kind() {
        let m = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      \
                 initContainers: [{name: i, image: init:1}]\n      containers: [{name: a, image: 'reg/db:t'}]\n---\n\
                 apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        \
                 spec:\n          containers: [{name: j, image: job:2}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n\
                 data: {containers: x}\n";
        assert_eq!(pod_images(m), ["init:1", "reg/db:t", "job:2"]);
    }

    #[test]
    fn upgrade_arguments() {
        let mut set = std::collections::BTreeMap::new();
        set.insert("replicas".to_string(), SetValue::Literal("2".into()));
        set.insert("greeting".to_string(), SetValue::String("hi, there".into()));
        let h = Helm {
            chart: "chart".into(),
            release: "web".into(),
            values: vec!["dev.yaml".into()],
            set,
            image_values: ImageValues::default(),
            pull_secrets: None,
            shared: false,
        };
        let a = args(&h, "reg/hello:t@sha256:1", Some("s"));
        assert_eq!(
            a,
            "upgrade --install web chart --namespace ns --kube-context ctx -f /p/dev.yaml --set-string greeting=hi\\, there \
             --set replicas=2 --set-string image.repository=reg/hello --set-string image.tag=t@sha256:1 --output json"
        );
        let full = Helm { image_values: ImageValues::Full("image.ref".into()), ..h.clone() };
        assert!(args(&full, "r/h:t@d", None).contains("--set-string image.ref=r/h:t@d"));
        // The pull secret goes in only where the chart takes it, and only when there is one.
        let with = Helm { pull_secrets: Some("imagePullSecrets".into()), ..h };
        let a = args(&with, "r/h:t@d", Some("devloop-registry-r"));
        assert!(a.ends_with("--set-string imagePullSecrets[0].name=devloop-registry-r --output json"), "{a}");
        assert!(!args(&with, "r/h:t@d", None).contains("imagePullSecrets"));
        // A release two images share keeps the other's values; one of its own does not keep stale ones.
        assert!(!args(&with, "r/h:t@d", None).contains("reuse"));
        let shared = Helm { shared: true, ..with };
        assert!(args(&shared, "r/h:t@d", None).starts_with("upgrade --install web chart --namespace ns --kube-context ctx --reset-then-reuse-values -f"));
    }

    /// Every helm command names the namespace and the context once each, from the one [`Scope`].
    #[test]
    fn every_command_is_scoped_once() {
        let scope = Scope { namespace: "ns".into(), context: "ctx".into() };
        let h = Helm {
            chart: "chart".into(),
            release: "web".into(),
            values: vec![],
            set: Default::default(),
            image_values: ImageValues::default(),
            pull_secrets: None,
            shared: false,
        };
        let vars = Vars { registry: "r", name: "h", reference: "r/h:t", hash: None };
        let upgrade = upgrade_args(&h, Path::new("/p"), &scope, &vars, None).unwrap();
        let others = [["rollback", "web"], ["get", "manifest"], ["uninstall", "web"], ["history", "web"]].map(|c| scope.args(&c));
        for a in std::iter::once(&upgrade).chain(others.iter()) {
            for (flag, value) in [("--namespace", "ns"), ("--kube-context", "ctx")] {
                assert_eq!(a.iter().filter(|x| *x == flag).count(), 1, "{a:?}");
                let at = a.iter().position(|x| x == flag).unwrap();
                assert_eq!(a[at + 1], value, "{a:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_missing_binary_says_what_to_install() {
        let e = run_program("devloop-test-no-such-helm", "r", &[], None).await.unwrap_err();
        assert!(matches!(e, Error::NotFound), "{e:?}");
        assert_eq!(e.to_string(), "helm not found on PATH: install Helm v3 (https://helm.sh/docs/intro/install/)");
    }

    #[tokio::test]
    async fn helm_given_up_on_gets_sigint_and_then_its_release_is_put_back() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("helm");
        let said = d.path().join("said");
        // Like helm: SIGINT makes it end its operation and exit non-zero.
        let script = format!("#!/bin/sh\ntrap 'kill $!; echo interrupted > {}; exit 1' INT\nsleep 30 &\nwait\n", said.display());
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let recovery: Recovery = Box::pin(async { "rolled back".to_string() });
        let run = run_program(fake.to_str().unwrap(), "r", &[], Some(recovery));
        assert!(tokio::time::timeout(Duration::from_millis(500), run).await.is_err(), "the fake helm runs until stopped");
        assert_eq!(stopped().await, ["rolled back"]);
        assert_eq!(std::fs::read_to_string(&said).unwrap(), "interrupted\n", "helm was asked to stop, not killed");
    }

    #[test]
    fn workloads_from_a_manifest() {
        use crate::deploy::workload::Kind;
        let m = "---\n# Source: c/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      \
                 - {name: a, image: 'reg/hello:t@sha256:1'}\n      - {name: b, image: envoy}\n---\n\
                 apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      containers:\n      \
                 - {name: a, image: 'reg/db:t'}\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\n";
        let web = (Kind::Deployment, "web".to_string(), vec!["reg/hello:t@sha256:1".to_string(), "envoy".to_string()]);
        assert_eq!(workloads(m).unwrap(), vec![web, (Kind::StatefulSet, "db".to_string(), vec!["reg/db:t".to_string()])], "a Job is not watched yet");
        assert!(customs(m).is_empty(), "built-in kinds are not custom resources");
        let crs = format!("{m}---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: web}}\nspec: {{image: x}}\n---\napiVersion: example.com/v1\nkind: Nameless\n");
        let found = customs(&crs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0]["kind"].as_str(), found[0]["spec"]["image"].as_str()), (Some("Rollout"), Some("x")));
    }
}
