//! `devloop buildkit install`: a buildkitd Deployment in the cluster, for `kube-deployment://` addresses, or
//! with `--replicas N` (N > 1, or once a StatefulSet is installed) a StatefulSet of N, for
//! `kube-statefulset://`: stable pod names `<name>-0`… with a volume each, so every replica keeps its own
//! cache and each image goes to the same replica ([`crate::buildkit::replicas`]).
//! Server-side applied (field manager `devloop`), so running it again changes only what changed: a
//! ConfigMap with `buildkitd.toml` (registry CAs embedded, plain-HTTP registries) and a one-replica
//! Deployment (strategy Recreate: the state volume is never shared by two daemons) running rootful
//! buildkitd in a privileged container, as upstream's Kubernetes examples do. buildkitd listens on the
//! pod's loopback only (`tcp://127.0.0.1:1234`, reached by port-forwards through the API server, which
//! enter the pod's network namespace) and a unix socket for its exec readiness probe: nothing else on the
//! pod network can talk to it.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use sha2::{Digest, Sha256};

use crate::cluster::{self, Target, FIELD_MANAGER};
use crate::deploy::{self, rollout::Verdict};

/// The image installed when `--image` is not given: upstream's, the version devloop is tested with.
pub const DEFAULT_IMAGE: &str = "moby/buildkit:v0.34.2";
/// The Deployment's name when `--name` is not given.
pub const DEFAULT_NAME: &str = "buildkitd";
/// Where buildkitd's unix socket is, inside the pod (used by the readiness probe).
const SOCKET: &str = "unix:///run/buildkit/buildkitd.sock";
/// Where the ConfigMap is mounted.
const CONFIG_DIR: &str = "/etc/buildkit";

/// Errors installing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is not usable.
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// The API server refused or failed a request.
    #[error(transparent)]
    Deploy(#[from] deploy::Error),
    /// The Deployment (or StatefulSet) did not become ready.
    #[error("{kind} {namespace}/{name} did not become ready: {reason}")]
    NotReady { kind: &'static str, namespace: String, name: String, reason: String },
}

impl From<crate::cluster::Error> for Error {
    fn from(e: crate::cluster::Error) -> Self {
        Error::Deploy(e.into())
    }
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Install {
    /// Deployment (and ConfigMap prefix) name.
    pub name: String,
    /// buildkitd image (ENTRYPOINT buildkitd, buildctl at /usr/bin/buildctl, like moby/buildkit).
    pub image: String,
    /// `HOST=FILE`: a registry's CA certificate, embedded in the ConfigMap.
    pub registry_ca: Vec<String>,
    /// Registries spoken to in plain HTTP.
    pub insecure_registry: Vec<String>,
    /// A PersistentVolumeClaim of this size for BuildKit's state (its cache) instead of an emptyDir.
    pub pvc: Option<String>,
    /// buildkitd's OCI worker snapshotter (`overlayfs`, `native`…); unset: buildkitd's choice.
    pub snapshotter: Option<String>,
    /// How long to wait for the Deployment to be ready.
    pub timeout: Duration,
    /// How many BuildKit replicas; more than one makes a StatefulSet.
    pub replicas: u32,
}

/// A registry host as buildkitd.toml and file names take it: `host[:port]`, nothing that needs quoting.
fn check_host(flag: &'static str, host: &str) -> Result<(), Error> {
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Flag { flag, message: format!("`{host}` is not a registry host[:port]") })
    }
}

/// The ConfigMap's files: `buildkitd.toml` and one CA file per `--registry-ca`. Reads the CA files.
pub fn config_files(spec: &Install) -> Result<BTreeMap<String, String>, Error> {
    let n = &spec.name;
    if !crate::config::names::is_dns_label(n) {
        return Err(Error::Flag { flag: "--name", message: format!("`{n}` is not a valid name (lowercase letters, digits, `-`)") });
    }
    if spec.replicas == 0 {
        return Err(Error::Flag { flag: "--replicas", message: "at least 1".into() });
    }
    let mut files = BTreeMap::new();
    let mut toml = String::from("# Written by `devloop buildkit install`; changes are overwritten by the next install.\n");
    toml.push_str("[worker.oci]\n  enabled = true\n");
    if let Some(s) = &spec.snapshotter {
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || s.is_empty() {
            return Err(Error::Flag { flag: "--snapshotter", message: format!("`{s}` is not a snapshotter name") });
        }
        toml.push_str(&format!("  snapshotter = \"{s}\"\n"));
    }
    toml.push_str("[worker.containerd]\n  enabled = false\n");
    let mut registries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &spec.insecure_registry {
        check_host("--insecure-registry", host)?;
        registries.entry(host.clone()).or_default().push("  http = true".into());
    }
    for pair in &spec.registry_ca {
        let flag = "--registry-ca";
        let (host, file) = pair.split_once('=').ok_or_else(|| Error::Flag { flag, message: format!("`{pair}`: expected HOST=FILE") })?;
        check_host(flag, host)?;
        let pem = std::fs::read_to_string(file).map_err(|e| Error::Flag { flag, message: format!("cannot read {file}: {e}") })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::Flag { flag, message: format!("{file} holds no PEM certificate") });
        }
        let key = format!("ca-{}.crt", host.replace([':', '[', ']'], "-"));
        registries.entry(host.to_string()).or_default().push(format!("  ca = [\"{CONFIG_DIR}/{key}\"]"));
        files.insert(key, pem);
    }
    for (host, lines) in registries {
        toml.push_str(&format!("[registry.\"{host}\"]\n{}\n", lines.join("\n")));
    }
    files.insert("buildkitd.toml".into(), toml);
    Ok(files)
}

fn labels(name: &str) -> serde_json::Value {
    serde_json::json!({
        "app.kubernetes.io/name": "buildkitd",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "devloop",
    })
}

/// The pod template, as both workloads run it. `config_hash` changes it when the ConfigMap changes (buildkitd
/// reads its config only at start). `state`: the volume of BuildKit's state, when not a claim template.
fn pod_template(spec: &Install, config_hash: &str, state: Option<serde_json::Value>) -> serde_json::Value {
    let name = &spec.name;
    let probe = |delay: u32, period: u32, failures: u32| {
        serde_json::json!({
            "exec": {"command": ["buildctl", "--addr", SOCKET, "debug", "workers"]},
            "initialDelaySeconds": delay, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    let mut volumes = vec![serde_json::json!({"name": "config", "configMap": {"name": format!("{name}-config")}})];
    volumes.extend(state);
    serde_json::json!({
        "metadata": {"labels": labels(name), "annotations": {"devloop.dev/config-hash": config_hash}},
        "spec": {
            // SIGTERM does not end running builds sooner; a restart need not wait the default 30 s.
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "buildkitd",
                "image": spec.image,
                "args": ["--addr", SOCKET, "--addr", "tcp://127.0.0.1:1234", "--config", format!("{CONFIG_DIR}/buildkitd.toml")],
                "securityContext": {"privileged": true},
                "readinessProbe": probe(2, 5, 3),
                "livenessProbe": probe(30, 20, 3),
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
                    {"name": "state", "mountPath": "/var/lib/buildkit"},
                ],
            }],
            "volumes": volumes,
        },
    })
}

fn selector(name: &str) -> serde_json::Value {
    serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "buildkitd", "app.kubernetes.io/instance": name}})
}

/// The Deployment (one replica), as applied.
pub fn deployment(spec: &Install, namespace: &str, config_hash: &str) -> serde_json::Value {
    let name = &spec.name;
    let state = match &spec.pvc {
        Some(_) => serde_json::json!({"name": "state", "persistentVolumeClaim": {"claimName": format!("{name}-state")}}),
        None => serde_json::json!({"name": "state", "emptyDir": {}}),
    };
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": selector(name),
            "template": pod_template(spec, config_hash, Some(state)),
        },
    })
}

/// The StatefulSet of `spec.replicas`, as applied: pods `<name>-0`…, each with its own state volume (an
/// emptyDir, or with `--pvc` a claim `state-<name>-<i>` that outlives the pod). Pods start and restart in
/// parallel: a replica need not wait for the others.
pub fn statefulset(spec: &Install, namespace: &str, config_hash: &str) -> serde_json::Value {
    let name = &spec.name;
    let (state, claims) = match &spec.pvc {
        Some(size) => (None, serde_json::json!([{
            "metadata": {"name": "state", "labels": labels(name)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        }])),
        None => (Some(serde_json::json!({"name": "state", "emptyDir": {}})), serde_json::json!([])),
    };
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "replicas": spec.replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": selector(name),
            "template": pod_template(spec, config_hash, state),
            "volumeClaimTemplates": claims,
        },
    })
}

/// The address of the installed BuildKit (a Deployment), as devloop.toml takes it.
pub fn addr(name: &str, namespace: &str) -> String {
    format!("kube-deployment://{name}?namespace={namespace}")
}

/// The address of an installed StatefulSet of BuildKit replicas.
pub fn statefulset_addr(name: &str, namespace: &str) -> String {
    format!("kube-statefulset://{name}?namespace={namespace}")
}

/// Applies the ConfigMap, the state claim (with `--pvc`) and the Deployment into `t`'s namespace, waits for
/// the rollout, and says what to put in devloop.toml.
pub async fn install(t: &Target, spec: &Install, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let files = config_files(spec)?;
    let ns = &t.namespace;
    let name = &spec.name;
    if let Some(created) = cluster::namespace::ensure(t, "buildkit install").await? {
        let _ = writeln!(out, "buildkit: {created}");
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut h = Sha256::new();
    for (k, v) in &files {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let config_hash = hex::encode(&h.finalize()[..8]);
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config"), "namespace": ns, "labels": labels(name)},
        "data": files,
    });
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), ns);
    cms.patch(&format!("{name}-config"), &params, &Patch::Apply(&cm))
        .await
        .map_err(|source| deploy::Error::Api { what: format!("applying configmap {ns}/{name}-config"), source })?;
    let _ = writeln!(out, "buildkit: configmap {ns}/{name}-config applied ({} file(s))", files.len());
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(t.client.clone(), ns);
    let api = |what: String| move |source| deploy::Error::Api { what, source };
    // Once a StatefulSet, always one (its replicas keep their names and caches when N goes back to 1).
    let sharded = spec.replicas > 1 || sets.get_opt(name).await.map_err(api(format!("reading statefulset {ns}/{name}")))?.is_some();
    let (kind, word) = if sharded { (deploy::workload::Kind::StatefulSet, "statefulset") } else { (deploy::workload::Kind::Deployment, "deployment") };
    if let (Some(size), false) = (&spec.pvc, sharded) {
        let pvc = serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("{name}-state"), "namespace": ns, "labels": labels(name)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        });
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), ns);
        pvcs.patch(&format!("{name}-state"), &params, &Patch::Apply(&pvc))
            .await
            .map_err(api(format!("applying persistentvolumeclaim {ns}/{name}-state")))?;
        let _ = writeln!(out, "buildkit: persistentvolumeclaim {ns}/{name}-state applied ({size})");
    }
    if sharded {
        // Two BuildKits of one name would answer one address: the single-replica install goes.
        if deployments.get_opt(name).await.map_err(api(format!("reading deployment {ns}/{name}")))?.is_some() {
            deployments.delete(name, &DeleteParams::default()).await.map_err(api(format!("deleting deployment {ns}/{name}")))?;
            let _ = writeln!(out, "buildkit: deployment {ns}/{name} deleted: statefulset {ns}/{name} replaces it (kube-deployment://{name} finds it too)");
        }
        sets.patch(name, &params, &Patch::Apply(&statefulset(spec, ns, &config_hash))).await.map_err(api(format!("applying statefulset {ns}/{name}")))?;
        let _ = writeln!(out, "buildkit: statefulset {ns}/{name} applied ({} replica(s), image {}); waiting for it to be ready", spec.replicas, spec.image);
    } else {
        deployments
            .patch(name, &params, &Patch::Apply(&deployment(spec, ns, &config_hash)))
            .await
            .map_err(api(format!("applying deployment {ns}/{name}")))?;
        let _ = writeln!(out, "buildkit: deployment {ns}/{name} applied (image {}); waiting for it to be ready", spec.image);
    }
    let started = Instant::now();
    match deploy::watch_rollout(t, kind, name, std::slice::from_ref(&spec.image), spec.timeout).await?.1 {
        Verdict::Done { .. } | Verdict::Completed { .. } => {}
        Verdict::Failed(f) => {
            let pod = f.pod.map(|p| format!("pod {p}: ")).unwrap_or_default();
            let logs = if f.logs.is_empty() { String::new() } else { format!("\n  {}", f.logs.join("\n  ")) };
            return Err(Error::NotReady { kind: word, namespace: ns.clone(), name: name.clone(), reason: format!("{pod}{}: {}{logs}", f.reason, f.message) });
        }
        Verdict::Progressing(p) | Verdict::Manual(p) => return Err(Error::NotReady { kind: word, namespace: ns.clone(), name: name.clone(), reason: p }),
    }
    let _ = writeln!(out, "buildkit: {word} {ns}/{name} ready in {:.1}s", started.elapsed().as_secs_f64());
    let _ = writeln!(out, "put this in devloop.toml (the context is [kube] context / --kube-context, as for deploying):");
    let addr = if sharded { statefulset_addr(name, ns) } else { addr(name, ns) };
    let _ = writeln!(out, "[buildkit]\naddr = \"{addr}\"");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Install {
        Install {
            name: "buildkitd".into(),
            image: DEFAULT_IMAGE.into(),
            registry_ca: vec![],
            insecure_registry: vec![],
            pvc: None,
            snapshotter: None,
            timeout: Duration::from_secs(1),
            replicas: 1,
        }
    }

    #[test]
    fn registries_become_buildkitd_toml_entries_with_the_ca_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let s = Install {
            registry_ca: vec![format!("10.201.0.2:5443={}", ca.display())],
            insecure_registry: vec!["10.201.0.2:5000".into()],
            snapshotter: Some("native".into()),
            ..spec()
        };
        let files = config_files(&s).unwrap();
        let toml_text = &files["buildkitd.toml"];
        let parsed: toml::Value = toml::from_str(toml_text).unwrap();
        assert_eq!(parsed["registry"]["10.201.0.2:5000"]["http"].as_bool(), Some(true), "{toml_text}");
        assert_eq!(parsed["registry"]["10.201.0.2:5443"]["ca"][0].as_str(), Some("/etc/buildkit/ca-10.201.0.2-5443.crt"));
        assert_eq!(parsed["worker"]["oci"]["snapshotter"].as_str(), Some("native"));
        assert!(files["ca-10.201.0.2-5443.crt"].contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn bad_flags_are_named() {
        let cases: &[(Install, &str)] = &[
            (Install { registry_ca: vec!["reg:5443".into()], ..spec() }, "--registry-ca: `reg:5443`: expected HOST=FILE"),
            (Install { registry_ca: vec!["reg=/nonexistent/ca.pem".into()], ..spec() }, "--registry-ca: cannot read /nonexistent/ca.pem"),
            (Install { insecure_registry: vec!["reg\"]\nx".into()], ..spec() }, "--insecure-registry: "),
            (Install { snapshotter: Some("a b".into()), ..spec() }, "--snapshotter: "),
            (Install { name: "BuildKit".into(), ..spec() }, "--name: `BuildKit` is not a valid name"),
        ];
        for (s, want) in cases {
            let e = config_files(s).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn the_deployment_listens_on_loopback_only_and_probes_by_exec() {
        let d = deployment(&Install { pvc: Some("10Gi".into()), ..spec() }, "build", "abc");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.contains(&"tcp://127.0.0.1:1234") && !args.iter().any(|a| a.contains("0.0.0.0")), "{args:?}");
        assert_eq!(c["readinessProbe"]["exec"]["command"][0], "buildctl");
        assert_eq!(c["securityContext"]["privileged"], true);
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
        assert_eq!(d["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"], "buildkitd-state");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"], "devloop");
        assert_eq!(addr("buildkitd", "build"), "kube-deployment://buildkitd?namespace=build");
    }

    #[test]
    fn replicas_make_a_statefulset_with_a_volume_per_pod() {
        let s = statefulset(&Install { replicas: 3, ..spec() }, "build", "abc");
        assert_eq!(s["kind"], "StatefulSet");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["spec"]["podManagementPolicy"], "Parallel", "a replica does not wait for the others");
        assert_eq!(s["spec"]["template"]["spec"]["volumes"][1]["emptyDir"], serde_json::json!({}));
        let s = statefulset(&Install { replicas: 2, pvc: Some("5Gi".into()), ..spec() }, "build", "abc");
        assert_eq!(s["spec"]["template"]["spec"]["volumes"].as_array().unwrap().len(), 1, "the claim template gives the state volume");
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "state");
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "5Gi");
        assert_eq!(statefulset_addr("buildkitd", "build"), "kube-statefulset://buildkitd?namespace=build");
        let e = config_files(&Install { replicas: 0, ..spec() }).unwrap_err().to_string();
        assert!(e.starts_with("--replicas: "), "{e}");
    }
}
