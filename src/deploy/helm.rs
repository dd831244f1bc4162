//! Helm releases: `helm upgrade --install` a chart with the built image in its values, find the release's
//! Deployments in its manifest (to watch their rollouts), and `helm rollback` one whose rollout failed.
//! The helm binary comes from PATH; KUBECONFIG is inherited, the context is always passed explicitly.

use std::path::Path;
use std::process::Stdio;

use serde::Deserialize as _;

use crate::config::{Helm, ImageValues, SetValue};

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
}

/// What `helm upgrade --install` made.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The release's revision now.
    pub revision: u64,
    /// Its Deployments: name and the images their containers run.
    pub deployments: Vec<(String, Vec<String>)>,
}

/// Splits `host/name:tag@digest` into (`host/name`, `tag@digest`); a reference without a tag gets the
/// digest alone as its "tag" (`@sha256:…` would not render as valid, so that case keeps `:` out).
pub fn split_reference(reference: &str) -> (String, String) {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    // The tag's colon is after the last slash (a host may have a port).
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    let tag = match (tag, digest) {
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => format!("latest@{d}"),
        (None, None) => "latest".to_string(),
    };
    (repo.to_string(), tag)
}

/// Escapes a `--set` value: helm splits on commas and treats backslashes as escapes.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

/// The arguments of `helm upgrade --install` for this release and image reference; `pull_secret` goes
/// into the chart's `image-values.pull-secrets` list, when the config names one.
pub fn upgrade_args(h: &Helm, root: &Path, namespace: &str, context: &str, reference: &str, pull_secret: Option<&str>) -> Vec<String> {
    let local = root.join(&h.chart);
    let chart = if local.exists() { local.display().to_string() } else { h.chart.clone() };
    let mut a: Vec<String> = ["upgrade", "--install", &h.release, &chart, "--namespace", namespace, "--kube-context", context]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for v in &h.values {
        a.push("-f".into());
        a.push(root.join(v).display().to_string());
    }
    for (k, v) in &h.set {
        match v {
            SetValue::String(s) => a.extend(["--set-string".into(), format!("{k}={}", escape(s))]),
            SetValue::Literal(l) => a.extend(["--set".into(), format!("{k}={l}")]),
        }
    }
    // The image last, so it wins over `set` and values files.
    match &h.image_values {
        ImageValues::Split { repository, tag } => {
            let (r, t) = split_reference(reference);
            a.extend(["--set-string".into(), format!("{repository}={}", escape(&r))]);
            a.extend(["--set-string".into(), format!("{tag}={}", escape(&t))]);
        }
        ImageValues::Full(path) => a.extend(["--set-string".into(), format!("{path}={}", escape(reference))]),
    }
    if let (Some(path), Some(secret)) = (&h.pull_secrets, pull_secret) {
        a.extend(["--set-string".into(), format!("{path}[0].name={}", escape(secret))]);
    }
    a.extend(["--output".into(), "json".into()]);
    a
}

/// Runs helm with `args`; its stdout on success.
async fn run(release: &str, args: &[String]) -> Result<String, Error> {
    run_program("helm", release, args).await
}

async fn run_program(program: &str, release: &str, args: &[String]) -> Result<String, Error> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { Error::NotFound } else { Error::Spawn(e) })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let command = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
        return Err(Error::Failed { command, release: release.into(), status: output.status.to_string(), stderr });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Installs or upgrades the release with `reference` in the chart's image values (and `pull_secret` in its
/// pull secrets value, see [`upgrade_args`]).
pub async fn upgrade(h: &Helm, root: &Path, namespace: &str, context: &str, reference: &str, pull_secret: Option<&str>) -> Result<Release, Error> {
    let out = run(&h.release, &upgrade_args(h, root, namespace, context, reference, pull_secret)).await?;
    let bad = |message: String| Error::Output { what: "upgrade --output json".into(), release: h.release.clone(), message };
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(format!("not JSON: {e}")))?;
    let revision = v["version"].as_u64().ok_or_else(|| bad("no `version`".into()))?;
    let manifest = v["manifest"].as_str().unwrap_or_default();
    let deployments = deployments(manifest).map_err(bad)?;
    Ok(Release { revision, deployments })
}

/// Rolls the release back to its previous revision; then its Deployments as `helm get manifest` shows them.
pub async fn rollback(h: &Helm, namespace: &str, context: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    let ns = |cmd: &[&str]| {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.extend(["--namespace".into(), namespace.into(), "--kube-context".into(), context.into()]);
        a
    };
    run(&h.release, &ns(&["rollback", &h.release])).await?;
    let manifest = run(&h.release, &ns(&["get", "manifest", &h.release])).await?;
    deployments(&manifest).map_err(|message| Error::Output { what: "get manifest".into(), release: h.release.clone(), message })
}

/// Uninstalls the release (`devloop down`); false when there was none.
pub async fn uninstall(h: &Helm, namespace: &str, context: &str) -> Result<bool, Error> {
    let args: Vec<String> =
        ["uninstall", &h.release, "--namespace", namespace, "--kube-context", context].iter().map(|s| s.to_string()).collect();
    // (helm's --ignore-not-found reports "uninstalled" either way: its error is what tells them apart.)
    match run(&h.release, &args).await {
        Ok(_) => Ok(true),
        Err(Error::Failed { stderr, .. }) if stderr.contains("not found") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The Deployments in a rendered manifest (YAML documents), each with its containers' images.
pub fn deployments(manifest: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut found = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(manifest) {
        let v = serde_yaml_ng::Value::deserialize(doc).map_err(|e| format!("the manifest is not YAML: {e}"))?;
        if v.get("kind").and_then(|k| k.as_str()) != Some("Deployment") {
            continue;
        }
        let Some(name) = v.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()) else { continue };
        let images = v
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("spec"))
            .and_then(|s| s.get("containers"))
            .and_then(|c| c.as_sequence())
            .map(|cs| cs.iter().filter_map(|c| c.get("image").and_then(|i| i.as_str()).map(String::from)).collect())
            .unwrap_or_default();
        found.push((name.to_string(), images));
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
        };
        let a = upgrade_args(&h, Path::new("/p"), "ns", "ctx", "reg/hello:t@sha256:1", Some("s")).join(" ");
        assert_eq!(
            a,
            "upgrade --install web chart --namespace ns --kube-context ctx -f /p/dev.yaml --set-string greeting=hi\\, there \
             --set replicas=2 --set-string image.repository=reg/hello --set-string image.tag=t@sha256:1 --output json"
        );
        let full = Helm { image_values: ImageValues::Full("image.ref".into()), ..h.clone() };
        assert!(upgrade_args(&full, Path::new("/p"), "ns", "ctx", "r/h:t@d", None).join(" ").contains("--set-string image.ref=r/h:t@d"));
        // The pull secret goes in only where the chart takes it, and only when there is one.
        let with = Helm { pull_secrets: Some("imagePullSecrets".into()), ..h };
        let a = upgrade_args(&with, Path::new("/p"), "ns", "ctx", "r/h:t@d", Some("devloop-registry-r")).join(" ");
        assert!(a.ends_with("--set-string imagePullSecrets[0].name=devloop-registry-r --output json"), "{a}");
        assert!(!upgrade_args(&with, Path::new("/p"), "ns", "ctx", "r/h:t@d", None).join(" ").contains("imagePullSecrets"));
    }

    #[tokio::test]
    async fn a_missing_binary_says_what_to_install() {
        let e = run_program("devloop-test-no-such-helm", "r", &[]).await.unwrap_err();
        assert!(matches!(e, Error::NotFound), "{e:?}");
        assert_eq!(e.to_string(), "helm not found on PATH: install Helm v3 (https://helm.sh/docs/intro/install/)");
    }

    #[test]
    fn deployments_from_a_manifest() {
        let m = "---\n# Source: c/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      \
                 - {name: a, image: 'reg/hello:t@sha256:1'}\n      - {name: b, image: envoy}\n";
        assert_eq!(deployments(m).unwrap(), vec![("web".to_string(), vec!["reg/hello:t@sha256:1".to_string(), "envoy".to_string()])]);
    }
}
