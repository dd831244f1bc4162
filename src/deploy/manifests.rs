//! Manifest mode: read YAML files (globs, several documents each), put every object in the target
//! namespace, replace the references to devloop's images with `repo:tag@digest`, and server-side apply
//! them under the `devloop` field manager. A Job or bare Pod whose images change (or whose apply is refused
//! as a change of an immutable field) is deleted, with its pods, and created anew: the API server changes
//! neither's pod template in place.

use std::path::Path;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::{images, Error, Target, FIELD_MANAGER};
use crate::cluster::ClusterObject;
use crate::config::ManifestSource;

/// One object from the manifests, ready to apply.
#[derive(Debug, Clone)]
pub struct Object {
    /// The file it came from.
    pub file: String,
    /// Its content, images substituted.
    pub value: Value,
    /// The devloop references it now carries.
    pub refs: Vec<String>,
}

impl Object {
    /// `Kind/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
    /// The object's kind.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    /// The object's name.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// The objects of a `[[deploy]]`, each with where it came from (file, or the kustomization), in order.
pub fn load(root: &Path, source: &ManifestSource) -> Result<Vec<(String, Value)>, Error> {
    match source {
        ManifestSource::Files(patterns) => load_files(root, patterns),
        ManifestSource::Kustomize(dir) => {
            let label = format!("kustomization {dir}");
            let mut out = Vec::new();
            parse_objects(&label, &render_kustomization(&root.join(dir))?, &mut out)?;
            Ok(out)
        }
    }
}

/// Every object of the files `patterns` match (relative to `root`), files in sorted order.
fn load_files(root: &Path, patterns: &[String]) -> Result<Vec<(String, Value)>, Error> {
    let mut files = Vec::new();
    for p in patterns {
        let full = root.join(p);
        let matched: Vec<_> = glob::glob(&full.to_string_lossy())
            .map_err(|e| Error::Manifest(format!("manifests pattern `{p}`: {e}")))?
            .filter_map(Result::ok)
            .collect();
        if matched.is_empty() {
            return Err(Error::Manifest(format!("manifests pattern `{p}` matches no file under {}", root.display())));
        }
        files.extend(matched);
    }
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| Error::Manifest(format!("cannot read {}: {e}", f.display())))?;
        parse_objects(&f.display().to_string(), &text, &mut out)?;
    }
    Ok(out)
}

/// The objects of a multi-document YAML text; `label` names it in errors and in the result.
fn parse_objects(label: &str, text: &str, out: &mut Vec<(String, Value)>) -> Result<(), Error> {
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| Error::Manifest(format!("{label}: {e}")))?;
        if v.is_null() {
            continue;
        }
        if v["kind"].as_str().is_none() || v["apiVersion"].as_str().is_none() || v["metadata"]["name"].as_str().is_none() {
            return Err(Error::Manifest(format!("{label}: an object without apiVersion, kind or metadata.name")));
        }
        out.push((label.to_string(), v));
    }
    Ok(())
}

/// Renders a kustomization with `kustomize build`, or kubectl's built-in copy (`kubectl kustomize`) when no
/// standalone kustomize is on PATH: either is what the user already runs, and kustomize has no Rust port.
fn render_kustomization(dir: &Path) -> Result<String, Error> {
    if !dir.is_dir() {
        return Err(Error::Manifest(format!("kustomize: {} is not a directory", dir.display())));
    }
    let tries: [(&str, &[&str]); 2] = [("kustomize", &["build"]), ("kubectl", &["kustomize"])];
    for (program, args) in tries {
        let out = match std::process::Command::new(program).args(args).arg(dir).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Manifest(format!("kustomize: cannot run {program}: {e}"))),
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Manifest(format!(
                "`{program} {} {}` failed: {}",
                args.join(" "),
                dir.display(),
                stderr.trim()
            )));
        }
        return String::from_utf8(out.stdout).map_err(|_| Error::Manifest(format!("{program} printed text that is not UTF-8")));
    }
    Err(Error::Manifest(
        "kustomize = … needs `kustomize` or `kubectl` (1.14+) on PATH to render the kustomization; install either".into(),
    ))
}

/// Replaces image references in every `containers`/`initContainers` list of `v`. `subst` maps a reference
/// to devloop's, for devloop's images. Returns the references put in, and the hints for the others.
pub fn substitute(v: &mut Value, subst: &dyn Fn(&str) -> Option<String>) -> (Vec<String>, Vec<String>) {
    substitute_with_policy(v, subst, None)
}

/// The pull policy managed containers need, and where their images are (for the hint): see
/// [`images::managed_pull_policy`].
pub type Pull<'a> = Option<(&'static str, &'a str)>;

/// [`substitute`], also setting `imagePullPolicy` on the containers whose image is substituted when the
/// destination needs one.
pub fn substitute_with_policy(v: &mut Value, subst: &dyn Fn(&str) -> Option<String>, pull: Pull<'_>) -> (Vec<String>, Vec<String>) {
    let mut refs = Vec::new();
    let mut hints = Vec::new();
    walk(v, subst, pull, &mut refs, &mut hints);
    (refs, hints)
}

fn walk(v: &mut Value, subst: &dyn Fn(&str) -> Option<String>, pull: Pull<'_>, refs: &mut Vec<String>, hints: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if (k == "containers" || k == "initContainers") && child.is_array() {
                    for c in child.as_array_mut().into_iter().flatten() {
                        let policy = c["imagePullPolicy"].as_str().map(str::to_string);
                        let Some(image) = c["image"].as_str().map(str::to_string) else { continue };
                        let new = subst(&image);
                        let set = new.as_deref().and_then(|n| {
                            let (wanted, store) = pull?;
                            images::managed_pull_policy(n, policy.as_deref(), Some(wanted), store).map(|h| (wanted, h))
                        });
                        if let Some((wanted, h)) = set {
                            c["imagePullPolicy"] = Value::String(wanted.into());
                            hints.push(h);
                        } else if let Some(h) = images::hint(new.as_deref().unwrap_or(&image), policy.as_deref(), new.is_some()) {
                            hints.push(h);
                        }
                        if let Some(new) = new {
                            c["image"] = Value::String(new.clone());
                            refs.push(new);
                        }
                    }
                } else {
                    walk(child, subst, pull, refs, hints);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, subst, pull, refs, hints)),
        _ => {}
    }
}

/// What applying one object did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The object.
    pub object: Object,
    /// False when server-side apply left it as it was.
    pub changed: bool,
    /// It lives outside any namespace.
    pub cluster_scoped: bool,
    /// It was deleted and created anew (a Job, a bare Pod: see [`replace`]).
    pub replaced: bool,
}

/// How long the deletion of an object being replaced may take (its pods' grace periods).
const REPLACE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The images of `v`'s pod spec(s) under `spec` (containers and init containers), in order.
pub fn images_of(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "containers" || k == "initContainers" {
                        out.extend(child.as_array().into_iter().flatten().filter_map(|c| c["image"].as_str().map(str::to_string)));
                    } else {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&v["spec"], &mut out);
    out
}

/// Deletes `name` (its dependents too: a Job's pods, in the foreground so that they are gone first) and waits
/// until it is gone, so that it can be created anew under the same name.
async fn replace(api: &Api<DynamicObject>, name: &str, what: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::Api { what: format!("deleting {what} to replace it"), source: e }),
    }
    let deadline = std::time::Instant::now() + REPLACE_TIMEOUT;
    while api.get_opt(name).await.map_err(super::Error::api(format!("reading {what}")))?.is_some() {
        if std::time::Instant::now() > deadline {
            return Err(Error::Manifest(format!("{what}: still being deleted after {}: not replaced", humantime::format_duration(REPLACE_TIMEOUT))));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The API of `obj`'s kind (in the target namespace when the kind is namespaced).
pub async fn api_for(t: &Target, obj: &Object) -> Result<Api<DynamicObject>, Error> {
    Ok(api_and_caps(t, obj).await?.0)
}

async fn api_and_caps(t: &Target, obj: &Object) -> Result<(Api<DynamicObject>, ApiCapabilities, ApiResource), Error> {
    let api_version = obj.value["apiVersion"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, obj.kind());
    let (ar, caps) = resolve_kind(t, &gvk)
        .await
        .map_err(super::Error::api(format!("{}: unknown kind {api_version}/{}", obj.file, obj.kind())))?;
    let api = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(t.client.clone(), &t.namespace, &ar),
        Scope::Cluster => Api::all_with(t.client.clone(), &ar),
    };
    Ok((api, caps, ar))
}

/// Server-side applies `objects` into the target namespace (namespaced kinds), in order.
pub async fn apply(t: &Target, objects: Vec<Object>) -> Result<Vec<Applied>, Error> {
    let mut out = Vec::new();
    for mut obj in objects {
        let (api, caps, ar) = api_and_caps(t, &obj).await?;
        if caps.scope == Scope::Namespaced {
            obj.value["metadata"]["namespace"] = Value::String(t.namespace.clone());
        }
        let name = obj.name().to_string();
        let before = api.get_opt(&name).await.map_err(super::Error::api(format!("reading {}", obj.id())))?;
        if let (Scope::Cluster, None, Some(created)) = (&caps.scope, &before, &t.created) {
            created.lock().expect("not poisoned").push(ClusterObject { resource: ar.clone(), name: name.clone() });
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let what = format!("{} {}/{name}", obj.kind().to_lowercase(), t.namespace);
        // A Job's or Pod's pod template cannot change in place (a Pod's image can, but then its container
        // restarts in the old pod, which is not what a new build should get): replaced when its images change.
        let replaceable = caps.scope == Scope::Namespaced && super::workload::Kind::of(obj.kind()).is_some_and(super::workload::Kind::replaced);
        let mut replaced = false;
        if let Some(b) = before.as_ref().filter(|_| replaceable) {
            if images_of(&serde_json::to_value(b).unwrap_or_default()) != images_of(&obj.value) {
                replace(&api, &name, &what).await?;
                replaced = true;
            }
        }
        let applying = || format!("applying {} from {}", obj.id(), obj.file);
        let after = match api.patch(&name, &params, &Patch::Apply(&obj.value)).await {
            // Another change of an immutable field (a Job's command): replaced too.
            Err(kube::Error::Api(e)) if e.code == 422 && replaceable && !replaced && before.is_some() => {
                tracing::info!("{what}: {}; replacing it", e.message);
                replace(&api, &name, &what).await?;
                replaced = true;
                api.patch(&name, &params, &Patch::Apply(&obj.value)).await.map_err(super::Error::api(applying()))?
            }
            r => r.map_err(super::Error::api(applying()))?,
        };
        let changed = replaced || before.and_then(|b| b.metadata.resource_version) != after.metadata.resource_version;
        out.push(Applied { object: obj, changed, cluster_scoped: caps.scope == Scope::Cluster, replaced });
    }
    Ok(out)
}

/// A kind's API resource, from the target's cache or discovery.
async fn resolve_kind(t: &Target, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
    if let Some(hit) = t.kinds.lock().expect("not poisoned").get(gvk) {
        return Ok(hit.clone());
    }
    let found = discovery::pinned_kind(&t.client, gvk).await?;
    t.kinds.lock().expect("not poisoned").insert(gvk.clone(), found.clone());
    Ok(found)
}

/// Deletes `objects` (those that exist) from the target, last first; returns the deleted ones as
/// `kind namespace/name` (`kind name` when cluster-scoped).
pub async fn delete(t: &Target, objects: &[(String, Value)]) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for (file, v) in objects.iter().rev() {
        let api_version = v["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = v["kind"].as_str().unwrap_or_default();
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        let (ar, caps) = resolve_kind(t, &GroupVersionKind::gvk(group, version, kind))
            .await
            .map_err(super::Error::api(format!("{file}: unknown kind {api_version}/{kind}")))?;
        let namespaced = caps.scope == Scope::Namespaced;
        let api: Api<DynamicObject> =
            if namespaced { Api::namespaced_with(t.client.clone(), &t.namespace, &ar) } else { Api::all_with(t.client.clone(), &ar) };
        // In the background, as kubectl does: a Job deleted with the API's default would leave its pods.
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) if namespaced => deleted.push(format!("{} {}/{name}", kind.to_lowercase(), t.namespace)),
            Ok(_) => deleted.push(format!("{} {name}", kind.to_lowercase())),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(super::Error::Api { what: format!("deleting {kind}/{name}"), source: e }),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_substituted_in_every_pod_template_and_others_get_hints() {
        let mut v: Value = serde_yaml_ng::from_str(
            "kind: Deployment\nspec:\n  template:\n    spec:\n      initContainers: [{name: init, image: hello}]\n      \
             containers:\n      - {name: web, image: 'reg:5000/hello:old', imagePullPolicy: Always}\n      \
             - {name: cache, image: redis}\n      - {name: db, image: 'postgres:16'}\n",
        )
        .unwrap();
        let subst = |i: &str| images::is_ours(i, "hello", "reg:5000", "reg:5000").then(|| "reg:5000/hello:t@sha256:1".to_string());
        let (refs, hints) = substitute(&mut v, &subst);
        assert_eq!(refs.len(), 2);
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "reg:5000/hello:t@sha256:1");
        assert_eq!(v["spec"]["template"]["spec"]["initContainers"][0]["image"], "reg:5000/hello:t@sha256:1");
        assert_eq!(v["spec"]["template"]["spec"]["containers"][2]["image"], "postgres:16");
        assert_eq!(hints.len(), 2, "{hints:?}"); // Always on ours; redis without a tag
        assert!(hints.iter().any(|h| h.starts_with("redis: `:latest`")));
    }

    #[test]
    fn a_destination_without_a_registry_sets_the_pull_policy_of_managed_containers_only() {
        let mut v: Value = serde_yaml_ng::from_str(
            "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      \
             - {name: web, image: 'hello:old', imagePullPolicy: Always}\n      - {name: db, image: 'postgres:16', imagePullPolicy: Always}\n",
        )
        .unwrap();
        let subst = |i: &str| images::is_ours(i, "hello", "", "").then(|| "hello:t".to_string());
        let (_, hints) = substitute_with_policy(&mut v, &subst, Some(("Never", "Docker Engine's image store")));
        let containers = &v["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["imagePullPolicy"], "Never");
        assert_eq!(containers[1]["imagePullPolicy"], "Always", "not devloop's image: left alone");
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(hints[0].starts_with("hello:t: imagePullPolicy Always -> Never"), "{hints:?}");
    }

    /// A CronJob's pod template is nested under its jobTemplate, a bare Pod's spec is its own: both reached;
    /// a Job or Pod is replaced when these images differ from the live object's.
    #[test]
    fn a_cron_jobs_nested_template_and_a_bare_pods_spec_are_substituted_and_their_images_compared() {
        let subst = |i: &str| (i == "hello").then(|| "reg/hello:t@sha256:1".to_string());
        let mut cron: Value = serde_yaml_ng::from_str(
            "kind: CronJob\nspec:\n  schedule: '0 0 1 1 *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: hello}]\n",
        )
        .unwrap();
        assert_eq!(substitute(&mut cron, &subst).0, ["reg/hello:t@sha256:1"]);
        assert_eq!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"], "reg/hello:t@sha256:1");
        let mut pod: Value = serde_yaml_ng::from_str("kind: Pod\nspec:\n  initContainers: [{name: i, image: busybox}]\n  containers: [{name: c, image: hello}]\n").unwrap();
        let live: Value = serde_json::json!({"kind": "Pod", "spec": {"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "c", "image": "hello"}]},
            "status": {"containerStatuses": [{"image": "docker.io/library/hello:latest"}]}});
        assert_eq!(images_of(&live), images_of(&pod), "the status' images are not the spec's");
        substitute(&mut pod, &subst);
        assert_eq!(images_of(&pod), ["reg/hello:t@sha256:1", "busybox"]);
        assert_ne!(images_of(&live), images_of(&pod), "a new build: replaced");
    }

    #[test]
    fn load_reads_globs_and_documents_and_names_bad_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("k8s")).unwrap();
        std::fs::write(d.path().join("k8s/b.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n").unwrap();
        std::fs::write(d.path().join("k8s/a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
        let objs = load(d.path(), &ManifestSource::Files(vec!["k8s/*.yaml".into()])).unwrap();
        let kinds: Vec<&str> = objs.iter().map(|(_, v)| v["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ConfigMap", "Service", "Deployment"]);
        assert!(load(d.path(), &ManifestSource::Files(vec!["none/*.yaml".into()])).unwrap_err().to_string().contains("matches no file"));
        std::fs::write(d.path().join("k8s/c.yaml"), "kind: [oops\n").unwrap();
        assert!(load(d.path(), &ManifestSource::Files(vec!["k8s/*.yaml".into()])).unwrap_err().to_string().contains("c.yaml"));
    }
}
