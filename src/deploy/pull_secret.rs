//! `[registry] pull-secret`: a `kubernetes.io/dockerconfigjson` Secret in the target namespace holding the
//! registry's credentials under the name the kubelet pulls from (`pull_host`), and the `imagePullSecrets`
//! references to it in the pod templates that run devloop's images. The credential goes nowhere else: it is
//! built in memory and sent in the apply request only; messages name the Secret, never its content.

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::cluster::namespace::MANAGED_BY;
use super::{Error, Target, FIELD_MANAGER};
use crate::config;
use crate::registry::{Credentials, DockerConfig};

/// The label marking a Secret as devloop's pull secret (besides [`MANAGED_BY`]); `down` deletes those.
pub const ROLE: (&str, &str) = ("devloop.dev/role", "pull-secret");

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ensured {
    /// Created, or its content changed (new credentials).
    Applied,
    /// Already as wanted.
    Unchanged,
    /// A Secret of that name exists without devloop's label: someone else's, used as it is.
    Foreign,
}

/// The `.dockerconfigjson` content: `pull_host` mapped to `creds`. Err when the credentials are an identity
/// token, which the kubelet cannot use.
pub fn docker_config_json(pull_host: &str, host: &str, creds: &Credentials) -> Result<String, String> {
    if creds.username.is_empty() {
        return Err(format!(
            "the credentials Docker's config has for {host} are an identity token, which the kubelet cannot pull \
             with: log in with a user name and password (or token) instead"
        ));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.secret));
    let v = json!({"auths": {pull_host: {"username": creds.username, "password": creds.secret, "auth": auth}}});
    Ok(v.to_string())
}

/// Creates or updates the pull secret in the target namespace when `[registry] pull-secret` is on; returns
/// its name and what was done. The credentials are those Docker's config has for `registry.host`.
pub async fn ensure(t: &Target, reg: &config::Registry, docker: &DockerConfig) -> Result<Option<(String, Ensured)>, Error> {
    let Some(name) = reg.pull_secret.name(&reg.host) else { return Ok(None) };
    let ns = &t.namespace;
    let what = format!("pull secret {ns}/{name}");
    let api: Api<Secret> = Api::namespaced(t.client.clone(), ns);
    let before = api.get_opt(&name).await.map_err(Error::api(format!("reading {what}")))?;
    if let Some(s) = &before {
        if !is_ours(s) {
            return Ok(Some((name, Ensured::Foreign)));
        }
    }
    let creds = docker
        .credentials(&reg.host)
        .await
        .map_err(|e| Error::PullSecret(format!("{what} ([registry] pull-secret): {e}")))?
        .ok_or_else(|| {
            Error::PullSecret(format!(
                "{what}: [registry] pull-secret is on, but Docker's config has no credentials for {}: run `docker login {}` \
                 or configure a credential helper (credsStore, credHelpers)",
                reg.host, reg.host
            ))
        })?;
    let content = docker_config_json(reg.pull_host(), &reg.host, &creds).map_err(|m| Error::PullSecret(format!("{what}: {m}")))?;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {MANAGED_BY.0: MANAGED_BY.1, ROLE.0: ROLE.1}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(content)},
    });
    let after = api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(Error::api(format!("applying {what}")))?;
    let changed = before.and_then(|b| b.metadata.resource_version) != after.metadata.resource_version;
    Ok(Some((name, if changed { Ensured::Applied } else { Ensured::Unchanged })))
}

fn is_ours(s: &Secret) -> bool {
    let labels = s.metadata.labels.as_ref();
    let has = |(k, v): (&str, &str)| labels.and_then(|l| l.get(k)).is_some_and(|x| x == v);
    has(MANAGED_BY) && has(ROLE)
}

/// Deletes devloop's pull secrets from the target namespace (those carrying its labels); returns their names.
pub async fn delete_ours(t: &Target) -> Result<Vec<String>, Error> {
    let api: Api<Secret> = Api::namespaced(t.client.clone(), &t.namespace);
    let selector = format!("{}={},{}={}", MANAGED_BY.0, MANAGED_BY.1, ROLE.0, ROLE.1);
    let found = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(vec![]),
        Err(e) => return Err(Error::Api { what: format!("listing secrets in {}", t.namespace), source: e }),
    };
    let mut deleted = Vec::new();
    for s in found.items {
        let name = s.metadata.name.unwrap_or_default();
        match api.delete(&name, &Default::default()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Api { what: format!("deleting secret {}/{name}", t.namespace), source: e }),
        }
    }
    Ok(deleted)
}

/// Adds `{name: secret}` to `imagePullSecrets` of every pod spec in `v` (an object as applied: Deployment,
/// StatefulSet, Job, CronJob, Pod, …) with a container or init container whose image satisfies `ours`;
/// references already there are not repeated. Returns how many pod specs got it.
pub fn add_to_pod_specs(v: &mut Value, secret: &str, ours: &dyn Fn(&str) -> bool) -> usize {
    match v {
        Value::Object(map) => {
            let runs_ours = ["containers", "initContainers"].iter().any(|k| {
                map.get(*k).and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["image"].as_str().is_some_and(ours)))
            });
            if runs_ours {
                let list = map.entry("imagePullSecrets").or_insert_with(|| Value::Array(vec![]));
                if !list.is_array() {
                    *list = Value::Array(vec![]);
                }
                let items = list.as_array_mut().expect("an array");
                if items.iter().any(|i| i["name"] == secret) {
                    return 0;
                }
                items.push(json!({"name": secret}));
                return 1;
            }
            map.values_mut().map(|c| add_to_pod_specs(c, secret, ours)).sum()
        }
        Value::Array(items) => items.iter_mut().map(|i| add_to_pod_specs(i, secret, ours)).sum(),
        _ => 0,
    }
}

static HINTED: AtomicBool = AtomicBool::new(false);

/// Once per process: when the registry asked devloop for credentials to read a manifest but no pull secret
/// is configured, the kubelet (which pulls anonymously) will likely be refused too.
pub fn hint(reg: &config::Registry) -> Option<String> {
    if reg.pull_secret != config::PullSecret::Off || reg.load != config::Load::Push || !crate::registry::asked_for_credentials(&reg.host) {
        return None;
    }
    if HINTED.swap(true, Ordering::Relaxed) {
        return None;
    }
    Some(format!(
        "hint: registry {} asks for credentials, and the kubelet pulls anonymously unless the pod has an \
         imagePullSecret: set `pull-secret = true` under [registry] (devloop then keeps one in the namespace), \
         or give the nodes or the service account credentials",
        reg.host
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_maps_the_pull_host_to_the_credentials() {
        let c = Credentials { username: "dev".into(), secret: "pw:1".into() };
        let v: Value = serde_json::from_str(&docker_config_json("127.0.0.1:5443", "10.0.0.2:5443", &c).unwrap()).unwrap();
        let e = &v["auths"]["127.0.0.1:5443"];
        assert_eq!((e["username"].as_str(), e["password"].as_str()), (Some("dev"), Some("pw:1")));
        assert_eq!(e["auth"], "ZGV2OnB3OjE=");
        assert_eq!(v["auths"].as_object().unwrap().len(), 1, "only the pull host");
        let token = Credentials { username: String::new(), secret: "t0k".into() };
        let err = docker_config_json("h", "h", &token).unwrap_err();
        assert!(err.contains("identity token") && !err.contains("t0k"), "{err}");
    }

    #[test]
    fn pod_specs_running_our_image_reference_the_secret_once() {
        let mut v: Value = serde_yaml_ng::from_str(
            "kind: Deployment\nspec:\n  template:\n    spec:\n      imagePullSecrets: [{name: other}]\n      \
             containers: [{name: web, image: 'reg/hello:t@sha256:1'}]\n",
        )
        .unwrap();
        let ours = |i: &str| crate::deploy::images::is_ours(i, "hello", "reg", "reg");
        assert_eq!(add_to_pod_specs(&mut v, "s", &ours), 1);
        assert_eq!(add_to_pod_specs(&mut v, "s", &ours), 0, "no duplicate");
        assert_eq!(v["spec"]["template"]["spec"]["imagePullSecrets"], json!([{"name": "other"}, {"name": "s"}]));

        let mut cron: Value = serde_yaml_ng::from_str(
            "kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          \
             initContainers: [{name: i, image: hello}]\n          containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
        assert_eq!(add_to_pod_specs(&mut cron, "s", &ours), 1);
        assert_eq!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["imagePullSecrets"], json!([{"name": "s"}]));

        let mut theirs: Value =
            serde_yaml_ng::from_str("kind: Deployment\nspec:\n  template:\n    spec:\n      containers: [{name: db, image: postgres}]\n").unwrap();
        assert_eq!(add_to_pod_specs(&mut theirs, "s", &ours), 0);
        assert!(theirs["spec"]["template"]["spec"].get("imagePullSecrets").is_none());
    }
}
