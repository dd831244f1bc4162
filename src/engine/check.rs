//! `devloop check`: the pre-push local CI run. Build every image, deploy into a throwaway namespace
//! (manifest mode applies the manifests there; patch mode copies the configured Deployments there), wait for
//! every rollout, port-forward, run `[check] commands` with `DEVLOOP_URL_<NAME>` set, delete the namespace.

use std::collections::HashMap;
use std::io::Write;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::deploy::{deploy_image, resolve_all, DeployOptions};
use super::Error;
use crate::config::{Config, DeployTarget};
use crate::deploy::{self, Target};
use crate::forward;
use crate::ui::Ui;

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

/// Runs the check; Ok(true) only when every rollout and every command passed.
pub async fn check(cfg: &Config, opts: &CheckOptions, out: &mut (dyn Write + Send)) -> Result<bool, Error> {
    let base = deploy::connect(&cfg.kube, &opts.deploy.kube).await?;
    let references = resolve_all(cfg, &opts.deploy, out).await?;
    let mut h = Sha256::new();
    let mut refs: Vec<&String> = references.values().collect();
    refs.sort();
    for r in refs {
        h.update(r.as_bytes());
    }
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    let ns = format!("devloop-check-{}", &hex::encode(h.finalize())[..8]);
    let namespaces: Api<Namespace> = Api::all(base.client.clone());
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "devloop"}}
    }))
    .expect("a namespace");
    namespaces
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("creating namespace {ns}"), source: e })?;
    let _ = writeln!(out, "check: namespace {ns} (context {})", base.context);
    let target = Target { namespace: ns.clone(), ..base.clone() };
    let stop = CancellationToken::new();
    let result = run_in(cfg, &base, &target, &references, out, &stop).await;
    stop.cancel();
    if opts.keep {
        let _ = writeln!(out, "check: kept namespace {ns} (--keep); delete it with: kubectl delete namespace {ns}");
    } else {
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
        let _ = writeln!(out, "check: deleted namespace {ns}");
    }
    let ok = result?;
    let _ = writeln!(out, "check: {}", if ok { "PASSED" } else { "FAILED" });
    Ok(ok)
}

async fn run_in(
    cfg: &Config,
    base: &Target,
    target: &Target,
    references: &HashMap<String, String>,
    out: &mut (dyn Write + Send),
    stop: &CancellationToken,
) -> Result<bool, Error> {
    for d in &cfg.deploys {
        if let DeployTarget::Patch { deployment, .. } = &d.target {
            copy_deployment(base, target, deployment).await?;
        }
    }
    let mut images: Vec<&String> = references.keys().collect();
    images.sort();
    for image in images {
        let mut rolled = Vec::new();
        if !deploy_image(cfg, target, image, references, out, &mut rolled).await? {
            return Ok(false);
        }
    }
    let mut env = Vec::new();
    let ui = Ui::new(false, Box::new(std::io::stderr()));
    for f in &cfg.forwards {
        let listener = forward::bind(&f.deployment, 0).await.map_err(|e| Error::Usage(e.to_string()))?;
        let port = listener.local_addr().map_err(|e| Error::Usage(e.to_string()))?.port();
        let url = format!("http://127.0.0.1:{port}");
        let _ = writeln!(out, "check: {}={url} -> deployment {}/{}:{}", url_var(&f.deployment), target.namespace, f.deployment, f.remote);
        env.push((url_var(&f.deployment), url));
        tokio::spawn(forward::serve(listener, target.clone(), f.deployment.clone(), f.remote, ui.clone(), stop.child_token()));
    }
    let mut ok = true;
    for cmd in &cfg.check.commands {
        let _ = writeln!(out, "check: $ {cmd}");
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&cfg.root)
            .envs(env.iter().cloned())
            .env("DEVLOOP_NAMESPACE", &target.namespace)
            .output()
            .await
            .map_err(|e| Error::Usage(format!("cannot run `{cmd}`: {e}")))?;
        let _ = out.write_all(&output.stdout);
        let _ = out.write_all(&output.stderr);
        let passed = output.status.success();
        let _ = writeln!(out, "check: {} `{cmd}` ({})", if passed { "passed" } else { "FAILED" }, output.status);
        ok &= passed;
    }
    Ok(ok)
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
    to.create(&PostParams { field_manager: Some(deploy::FIELD_MANAGER.into()), ..Default::default() }, &copy)
        .await
        .map_err(|e| deploy::Error::Api { what: format!("copying deployment {name} into {}", target.namespace), source: e })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_variables_are_shell_safe() {
        assert_eq!(super::url_var("hello"), "DEVLOOP_URL_HELLO");
        assert_eq!(super::url_var("my-app.v2"), "DEVLOOP_URL_MY_APP_V2");
    }
}
