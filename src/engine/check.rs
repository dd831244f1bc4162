//! `devloop check`: the pre-push local CI run. Build every image, deploy into a throwaway namespace
//! (manifest mode applies the manifests there; patch mode copies the configured Deployments there), wait for
//! every rollout, port-forward, run `[check] commands` with `DEVLOOP_URL_<NAME>` set, delete the namespace
//! and the cluster-scoped objects the manifests created — also when a signal interrupts any of it.

use std::collections::HashMap;
use std::io::Write;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::checked::{Checked, Failure, Stage, Verdict};
use super::command::{self, Ended};
use super::deploy::{deploy_image, resolve, DeployOptions};
use crate::deploy::deployer::{Deployers, Stop};
use super::Error;
use crate::forward::choice::Switch;
use crate::config::Config;
use crate::cluster::{self, Target};
use crate::deploy;
use crate::forward;
use crate::interrupt::{until, Interrupt};

/// Choices for `check`.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Context and allow-list (the namespace is always a new one).
    pub deploy: DeployOptions,
    /// Keep the namespace for debugging.
    pub keep: bool,
}

/// The environment variable carrying a forward's URL: `DEVLOOP_URL_` and the Deployment's name in upper
/// case, other characters as `_`.
pub fn url_var(deployment: &str) -> String {
    let name: String = deployment.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("DEVLOOP_URL_{name}")
}

/// Runs the check; Ok(true) only when every rollout and every command passed. A signal at any point stops
/// it: whatever it created (the namespace, cluster-scoped objects from the manifests) is deleted — unless a
/// second signal stops that, and then what is left is named — and the result is [`Error::Interrupted`].
/// `rec` is given what ran, as it ran, and what did not (skipped), whatever the result.
pub async fn check(cfg: &Config, opts: &CheckOptions, out: &mut (dyn Write + Send), intr: &Interrupt, rec: &mut Checked) -> Result<bool, Error> {
    let started = std::time::Instant::now();
    *rec = Checked::plan(&deployed_images(cfg), &cfg.check.commands);
    let result = check_in(cfg, opts, out, intr, rec).await;
    rec.close(result.as_ref().err().map(|e| e.to_string()).as_deref(), started.elapsed());
    result
}

/// The images with a `[[deploy]]`, in config order.
fn deployed_images(cfg: &Config) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for d in &cfg.deploys {
        if !images.contains(&d.image) {
            images.push(d.image.clone());
        }
    }
    images
}

/// [`check`], recording into `rec`.
async fn check_in(cfg: &Config, opts: &CheckOptions, out: &mut (dyn Write + Send), intr: &Interrupt, rec: &mut Checked) -> Result<bool, Error> {
    let base = cluster::connect(&cfg.kube, &opts.deploy.kube).await?;
    // The Deployments copied into the check's namespace: there before anything is built.
    let deployers = Deployers::of(cfg);
    deployers.check_patch_targets(&base).await?;
    let mut references = HashMap::new();
    for image in deployed_images(cfg) {
        rec.begin(Stage::Build, &image);
        let Some(resolved) = until(intr.stop(), resolve(cfg, &image, &opts.deploy, out)).await else {
            let _ = writeln!(out, "check: interrupted ({}) while building: nothing was created in the cluster", intr.name());
            return Err(Error::Interrupted(intr.name()));
        };
        match resolved {
            Ok((reference, outcome)) => {
                rec.end(Verdict::Passed, built_output(cfg, &reference, &outcome));
                references.insert(image, reference);
            }
            Err(e) => {
                rec.end(build_failure(&e), String::new());
                return Err(e);
            }
        }
    }
    let mut h = Sha256::new();
    let mut refs: Vec<&String> = references.values().collect();
    refs.sort();
    for r in refs {
        h.update(r.as_bytes());
    }
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    let ns = format!("devloop-check-{}", &hex::encode(h.finalize())[..8]);
    rec.namespace = Some(ns.clone());
    let created = cluster::Created::default();
    let target = Target { namespace: ns.clone(), created: Some(created.clone()), ..base.clone() };
    let forwards = CancellationToken::new();
    let result = run_in(cfg, &deployers, (&base, &target), &references, out, &forwards, intr, rec).await;
    forwards.cancel();
    if matches!(result, Err(Error::Interrupted(_))) {
        let _ = writeln!(out, "check: interrupted ({}): cleaning up", intr.name());
    }
    // Everything that may exist now: the cluster-scoped objects (newest first), then the namespace.
    let mut left: Vec<Leftover> = created.lock().expect("not poisoned").iter().rev().cloned().map(Leftover::Cluster).collect();
    left.push(Leftover::Namespace(ns.clone()));
    if opts.keep {
        let ids: Vec<String> = left.iter().map(Leftover::id).collect();
        let _ = writeln!(out, "check: kept {} (--keep); delete with: {}", ids.join(", "), delete_commands(&left));
    } else {
        cleanup(&target, left, intr, out).await;
    }
    let ok = result?;
    let _ = writeln!(out, "check: {}", if ok { "PASSED" } else { "FAILED" });
    Ok(ok)
}

/// Something a check created.
#[derive(Debug, Clone)]
enum Leftover {
    Namespace(String),
    Cluster(cluster::ClusterObject),
}

impl Leftover {
    fn id(&self) -> String {
        match self {
            Leftover::Namespace(ns) => format!("namespace {ns}"),
            Leftover::Cluster(o) => o.id(),
        }
    }

    /// Deletes it: Ok(false) when it did not exist.
    async fn delete(&self, t: &Target) -> Result<bool, deploy::Error> {
        match self {
            Leftover::Cluster(o) => Ok(o.delete(&t.client).await?),
            Leftover::Namespace(ns) => {
                let api: Api<Namespace> = Api::all(t.client.clone());
                match api.delete(ns, &DeleteParams::default()).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
                    Err(e) => Err(deploy::Error::Api { what: format!("deleting namespace {ns}"), source: e }),
                }
            }
        }
    }
}

/// The kubectl commands that delete `left`.
fn delete_commands(left: &[Leftover]) -> String {
    left.iter()
        .map(|l| match l {
            Leftover::Namespace(ns) => format!("kubectl delete namespace {ns}"),
            Leftover::Cluster(o) => format!("kubectl delete {}", o.id()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Deletes what the check created, saying what was deleted; a second signal (or a failing request) leaves
/// the rest, which is then named with the commands that delete it.
async fn cleanup(t: &Target, left: Vec<Leftover>, intr: &Interrupt, out: &mut (dyn Write + Send)) {
    let mut remaining = Vec::new();
    let mut items = left.into_iter();
    for item in items.by_ref() {
        // Bounded, so an unreachable API server cannot hold the check forever.
        let delete = tokio::time::timeout(std::time::Duration::from_secs(20), item.delete(t));
        match until(intr.abort(), delete).await {
            None => {
                let _ = writeln!(out, "check: second signal ({}): cleanup stopped", intr.name());
                remaining.push(item);
                break;
            }
            Some(Ok(Ok(true))) => {
                let _ = writeln!(out, "check: deleted {}", item.id());
            }
            Some(Ok(Ok(false))) => {}
            Some(Ok(Err(e))) => {
                let _ = writeln!(out, "check: could not delete {}: {e}", item.id());
                remaining.push(item);
            }
            Some(Err(_)) => {
                let _ = writeln!(out, "check: could not delete {}: no answer within 20s", item.id());
                remaining.push(item);
            }
        }
    }
    remaining.extend(items);
    if !remaining.is_empty() {
        let ids: Vec<String> = remaining.iter().map(Leftover::id).collect();
        let _ = writeln!(out, "check: LEFT BEHIND: {}; delete with: {}", ids.join(", "), delete_commands(&remaining));
    }
}

/// Creates the namespace, deploys, opens the forwards and runs the commands. Everything before the commands
/// is simply dropped on a signal; a running command is ended with its whole process group.
#[allow(clippy::too_many_arguments)]
async fn run_in(
    cfg: &Config,
    deployers: &Deployers,
    (base, target): (&Target, &Target),
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    forwards: &CancellationToken,
    intr: &Interrupt,
    rec: &mut Checked,
) -> Result<bool, Error> {
    let setup = until(intr.stop(), async {
        create_namespace(target, out).await?;
        for deployment in deployers.patched() {
            copy_deployment(base, target, deployment).await?;
        }
        let mut images: Vec<&String> = references.keys().collect();
        images.sort();
        for image in images {
            rec.begin(Stage::Rollout, image);
            // A failed rollout is rolled back where its deployer says how, as `deploy` does.
            let deployed = deploy_image(cfg, deployers, target, image, references, out, None, Some(Stop::First(intr))).await?;
            rec.end(Verdict::Passed, String::new());
            record_rollouts(rec, image, &deployed);
            if !deployed.ok {
                return Ok(None);
            }
        }
        let mut env = Vec::new();
        // One pod watch for all the forwards, started with the first.
        for f in &cfg.forwards {
            let listener = forward::bind(&f.name, 0).await.map_err(|e| Error::Usage(e.to_string()))?;
            let port = listener.local_addr().map_err(|e| Error::Usage(e.to_string()))?.port();
            let url = format!("http://127.0.0.1:{port}");
            let _ = writeln!(out, "check: {}={url} -> {} {}/{}:{}", url_var(&f.name), f.kind.noun(), target.namespace, f.name, f.remote);
            env.push((url_var(&f.name), url));
            // The forward's troubles go to stderr, as `{workload}: …` lines, beside the check's own output.
            let name = f.name.clone();
            let say: forward::Say = std::sync::Arc::new(move |text: &str| eprintln!("{name}: {text}"));
            let pods = target.pods();
            let workload = forward::Workload { kind: f.kind, name: f.name.clone() };
            // The commands run once everything is rolled out: the forward goes to Ready pods only, as they test.
            tokio::spawn(forward::serve(listener, target.clone(), workload, f.remote, Switch::Ready, pods, say, None, forwards.child_token()));
        }
        env.push(("DEVLOOP_NAMESPACE".to_string(), target.namespace.clone()));
        Ok::<_, Error>(Some(env))
    })
    .await;
    let env = match setup {
        None => {
            // A helm upgrade in flight was asked to stop: it exits before the namespace is deleted.
            for said in deploy::helm::stopped().await {
                let _ = writeln!(out, "check: {said}");
            }
            return Err(Error::Interrupted(intr.name()));
        }
        Some(r) => match r? {
            None => return Ok(false),
            Some(env) => env,
        },
    };
    let mut ok = true;
    let timeout = cfg.check.timeout;
    for cmd in &cfg.check.commands {
        let _ = writeln!(out, "check: $ {cmd}");
        rec.begin(Stage::Command, cmd);
        // The command's output goes on to `out` as it comes, and is kept for the report.
        let mut tee = Tee { out: &mut *out, copy: Vec::new() };
        let ended = command::run(cmd, &cfg.root, &env, timeout, intr.stop(), &mut tee)
            .await
            .map_err(|e| Error::Usage(format!("cannot run `{cmd}`: {e}")))?;
        let said = String::from_utf8_lossy(&tee.copy).into_owned();
        match ended {
            Ended::Exited(status) => {
                let passed = status.success();
                let _ = writeln!(out, "check: {} `{cmd}` ({status})", if passed { "passed" } else { "FAILED" });
                ok &= passed;
                rec.end(if passed { Verdict::Passed } else { Verdict::Failed(exit_failure(cmd, status, &said)) }, said);
            }
            Ended::TimedOut => {
                let t = humantime::format_duration(timeout);
                let message = format!("`{cmd}` timed out after {t} ([check] timeout)");
                let _ = writeln!(out, "check: FAILED `{cmd}` (timed out after {t}, [check] timeout = \"{t}\"; it and its processes were killed)");
                ok = false;
                rec.end(Verdict::Failed(Failure { kind: "timeout".into(), detail: with_tail(&message, &said), message }), said);
            }
            Ended::Interrupted => {
                let _ = writeln!(out, "check: interrupted `{cmd}` ({}): it and its processes were killed", intr.name());
                let message = format!("interrupted by {}", intr.name());
                rec.end(Verdict::Error(Failure { kind: "interrupted".into(), detail: with_tail(&message, &said), message }), said);
                return Err(Error::Interrupted(intr.name()));
            }
        }
    }
    Ok(ok)
}

/// Copies what is written to `out` and keeps a copy.
struct Tee<'a> {
    out: &'a mut (dyn Write + Send),
    copy: Vec<u8>,
}

impl Write for Tee<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.copy.extend_from_slice(b);
        self.out.write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Lines of output a failure's text repeats (all of it is the case's output).
const TAIL_LINES: usize = 20;

/// `message`, then the last lines of `said`.
fn with_tail(message: &str, said: &str) -> String {
    let lines: Vec<&str> = said.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return message.to_string();
    }
    format!("{message}\nlast output lines:\n{}", tail.join("\n"))
}

/// A command that exited unsuccessfully: its exit code, or the signal that killed it.
fn exit_failure(cmd: &str, status: std::process::ExitStatus, said: &str) -> Failure {
    use std::os::unix::process::ExitStatusExt;
    let kind = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => status.to_string(),
    };
    let message = format!("`{cmd}` failed: {kind}");
    Failure { kind, detail: with_tail(&message, said), message }
}

/// What a build case says: where the image went and how much was cached.
fn built_output(cfg: &Config, reference: &str, outcome: &super::Outcome) -> String {
    let destination = crate::deliver::Destination::of(cfg);
    match outcome {
        super::Outcome::Built { reference: built_as, built } => {
            format!("{}\ndeployed as {reference}\n", super::result_line(built_as, built, &destination))
        }
        super::Outcome::Present { reference: had, digest } => {
            format!("{had} is already in {} ({digest}): not built\ndeployed as {reference}\n", destination.describe())
        }
    }
}

/// A build's error as a case: a build that failed is a failure (its report the text); not reaching
/// BuildKit or the registry is an error.
fn build_failure(e: &Error) -> Verdict {
    let text = e.to_string();
    let message = text.lines().next().unwrap_or_default().to_string();
    match e {
        Error::Buildkit(crate::buildkit::Error::Failed { .. }) => Verdict::Failed(Failure { kind: "build failed".into(), message, detail: text }),
        Error::Interrupted(_) => Verdict::Error(Failure { kind: "interrupted".into(), message, detail: text }),
        _ => Verdict::Error(Failure { kind: "error".into(), message, detail: text }),
    }
}

/// Records each workload `image`'s deploy rolled, in place of the image's own case just ended (whose time
/// each one takes): its verdict, the reason and the failing container's last log lines.
fn record_rollouts(rec: &mut Checked, image: &str, deployed: &deploy::deployer::Deployed) {
    let Some(case) = rec.cases.pop() else { return };
    let mut failed = false;
    for r in &deployed.rolled {
        let mut output = format!("runs {}\n", r.refs.join(", "));
        let verdict = match (&r.failure, deployed.ok) {
            (Some(failure), false) => {
                failed = true;
                let mut detail = failure.clone();
                if !r.logs.is_empty() {
                    let logs = r.logs.join("\n");
                    detail.push_str(&format!("\nlast log lines:\n{logs}"));
                    output.push_str(&format!("last log lines:\n{logs}\n"));
                }
                let kind = r.reason.clone().unwrap_or_else(|| "rollout failed".into());
                Verdict::Failed(Failure { kind, message: failure.clone(), detail })
            }
            _ => Verdict::Passed,
        };
        rec.add(Stage::Rollout, &format!("{image}: {}/{}", r.noun(), r.name), case.time, verdict, output);
    }
    if !deployed.ok && !failed {
        let f = Failure { kind: "rollout failed".into(), message: format!("the rollout of {image} failed"), detail: String::new() };
        rec.add(Stage::Rollout, image, case.time, Verdict::Failed(f), String::new());
    } else if deployed.rolled.is_empty() {
        rec.cases.push(case);
    }
}

/// Creates the check's namespace. Its name is known before the request, so an interrupt during it still
/// leads to its deletion.
async fn create_namespace(target: &Target, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let ns = &target.namespace;
    let namespaces: Api<Namespace> = Api::all(target.client.clone());
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "devloop"}}
    }))
    .expect("a namespace");
    namespaces
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("creating namespace {ns}"), source: e })?;
    let _ = writeln!(out, "check: namespace {ns} (context {})", target.context);
    Ok(())
}

/// Copies a Deployment from the base namespace into the check's, keeping only its spec, labels and
/// annotations (the image is set by the deploy that follows).
async fn copy_deployment(base: &Target, target: &Target, name: &str) -> Result<(), Error> {
    let from: Api<Deployment> = Api::namespaced(base.client.clone(), &base.namespace);
    let dep = from
        .get(name)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("reading deployment {}/{name} to copy", base.namespace), source: e })?;
    let mut copy = Deployment { spec: dep.spec, ..Default::default() };
    copy.metadata.name = Some(name.to_string());
    copy.metadata.namespace = Some(target.namespace.clone());
    copy.metadata.labels = dep.metadata.labels;
    copy.metadata.annotations = dep.metadata.annotations.map(|a| {
        a.into_iter().filter(|(k, _)| !k.starts_with("deployment.kubernetes.io/") && !k.starts_with("kubectl.kubernetes.io/")).collect()
    });
    let to: Api<Deployment> = Api::namespaced(target.client.clone(), &target.namespace);
    to.create(&PostParams { field_manager: Some(cluster::FIELD_MANAGER.into()), ..Default::default() }, &copy)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("copying deployment {name} into {}", target.namespace), source: e })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variables_are_shell_safe() {
        assert_eq!(url_var("hello"), "DEVLOOP_URL_HELLO");
        assert_eq!(url_var("my-app.v2"), "DEVLOOP_URL_MY_APP_V2");
    }

    #[tokio::test]
    async fn a_second_signal_stops_the_cleanup_and_names_what_is_left() {
        // An API server that never answers: the first delete hangs until the second signal.
        let never = tower::service_fn(|_: http::Request<kube::client::Body>| {
            std::future::pending::<Result<http::Response<kube::client::Body>, std::convert::Infallible>>()
        });
        let ns = "devloop-check-00000000";
        let t = Target { context: "test".into(), namespace: ns.into(), client: kube::Client::new(never, ns), kinds: Default::default(), created: None, reflectors: Default::default() };
        let role = cluster::ClusterObject {
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
            name: "devloop-e2e-role".into(),
        };
        let intr = Interrupt::new();
        intr.raise(crate::interrupt::SIGINT);
        let second = intr.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            second.raise(crate::interrupt::SIGINT);
        });
        let mut out = Vec::new();
        cleanup(&t, vec![Leftover::Cluster(role), Leftover::Namespace(ns.into())], &intr, &mut out).await;
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("check: second signal (SIGINT): cleanup stopped\n"), "{out}");
        assert!(
            out.contains(&format!(
                "check: LEFT BEHIND: clusterrole/devloop-e2e-role, namespace {ns}; \
                 delete with: kubectl delete clusterrole/devloop-e2e-role; kubectl delete namespace {ns}\n"
            )),
            "{out}"
        );
        assert!(!out.contains("deleted"), "{out}");
    }
}
