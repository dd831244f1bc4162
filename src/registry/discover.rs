//! Finding the cluster's own registry: the `local-registry-hosting` ConfigMap in `kube-public` (KEP-1755),
//! which kind's, k3d's and minikube's local-registry setups publish. It says where to push from the
//! developer's machine (`host`) and how the node's runtime names the same registry
//! (`hostFromContainerRuntime`), which often differ (`localhost:5001` vs `kind-registry:5000`).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde::Deserialize;

use crate::config;

/// The ConfigMap's namespace.
pub const NAMESPACE: &str = "kube-public";
/// The ConfigMap's name.
pub const NAME: &str = "local-registry-hosting";
/// The data key of the only version of the format.
pub const KEY: &str = "localRegistryHosting.v1";

/// Errors reading the ConfigMap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed the read.
    #[error("cannot read ConfigMap {NAMESPACE}/{NAME}: {0}")]
    Api(#[source] kube::Error),
    /// The ConfigMap is there but does not say where to push.
    #[error("ConfigMap {NAMESPACE}/{NAME}, key {KEY}: {0}")]
    Invalid(String),
}

/// What the ConfigMap advertises (KEP-1755's `LocalRegistryHostingV1`).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hosting {
    /// Where to push from outside the cluster.
    pub host: Option<String>,
    /// The registry's name for the nodes' container runtime (what pods' `image:` should say).
    pub host_from_container_runtime: Option<String>,
    /// The registry's name inside the cluster network (for in-cluster builders).
    pub host_from_cluster_network: Option<String>,
    /// A page about the setup.
    pub help: Option<String>,
}

/// A registry found in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    /// Where to push.
    pub host: String,
    /// How pods name it.
    pub pull_host: String,
}

impl Discovered {
    /// One line for the user: where images go and where that came from.
    pub fn describe(&self, context: &str) -> String {
        let pull = if self.pull_host == self.host { String::new() } else { format!(", pulled as {}", self.pull_host) };
        format!("registry {}{pull} (from ConfigMap {NAMESPACE}/{NAME} in context {context})", self.host)
    }
}

/// Parses the ConfigMap's value: push to `host`; pods pull from `hostFromContainerRuntime`, else
/// `hostFromClusterNetwork`, else `host`.
pub fn parse(value: &str) -> Result<Discovered, Error> {
    let h: Hosting = serde_yaml_ng::from_str(value).map_err(|e| Error::Invalid(e.to_string()))?;
    let valid = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let host = valid(&h.host).ok_or_else(|| Error::Invalid("no `host` to push to".into()))?;
    for v in [&Some(host.clone()), &h.host_from_container_runtime, &h.host_from_cluster_network].into_iter().flatten() {
        if v.contains('/') || v.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!("`{v}` is not a registry host[:port]")));
        }
    }
    let pull_host = valid(&h.host_from_container_runtime)
        .or_else(|| valid(&h.host_from_cluster_network))
        .unwrap_or_else(|| host.clone());
    Ok(Discovered { host, pull_host })
}

/// Reads the ConfigMap; None when the cluster has none.
pub async fn read(client: kube::Client) -> Result<Option<Discovered>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), api.get_opt(NAME)).await;
    let cm = match read {
        Ok(r) => r.map_err(Error::Api)?,
        Err(_) => return Err(Error::Invalid("the API server did not answer within 10s".into())),
    };
    let Some(cm) = cm else { return Ok(None) };
    let value = cm.data.as_ref().and_then(|d| d.get(KEY)).ok_or_else(|| Error::Invalid("missing".into()))?;
    parse(value).map(Some)
}

/// Fills `[registry]` from a discovered registry. Local registries that these setups create speak plain
/// HTTP; one that answers HTTPS is used over HTTPS.
pub async fn apply(reg: &mut config::Registry, found: &Discovered) {
    reg.host = found.host.clone();
    reg.pull_host = (found.pull_host != found.host).then(|| found.pull_host.clone());
    reg.insecure = !speaks_https(&found.host).await;
}

/// Whether the registry answers `/v2/` over HTTPS (any HTTP status counts: it is the TLS that matters).
async fn speaks_https(host: &str) -> bool {
    let Ok(client) = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build() else { return false };
    client.get(format!("https://{host}/v2/")).send().await.is_ok()
}

/// The error when there is nowhere to put images (`why`: what the cluster said), with the three ways out.
pub fn nowhere(why: &str) -> String {
    format!(
        "no registry: [registry] host is not set and {why}. \
         Either\n  1. set `host = \"<registry host:port>\"` under [registry] in devloop.toml (or DEVLOOP_REGISTRY), \
         or\n  2. load images straight into the cluster's image store: `load = true` under [registry] for Docker \
         Desktop, OrbStack, Rancher Desktop (moby) or minikube's docker-env; `load = \"containerd\"` for k3s or a \
         single containerd node, or\n  3. give the cluster a local registry that advertises itself (kind, k3d and \
         minikube document one; it publishes that ConfigMap)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pull_host_is_the_runtimes_name_for_the_registry() {
        // (ConfigMap value, push host, pull host)
        let table = [
            // kind's documented local registry
            (
                "host: \"localhost:5001\"\nhelp: \"https://kind.sigs.k8s.io/docs/user/local-registry/\"\n",
                "localhost:5001",
                "localhost:5001",
            ),
            // k3d: the runtime resolves the registry container by name
            (
                "host: localhost:41953\nhostFromContainerRuntime: k3d-reg:5000\nhostFromClusterNetwork: k3d-reg:5000\n",
                "localhost:41953",
                "k3d-reg:5000",
            ),
            ("host: 10.0.0.5:5000\nhostFromClusterNetwork: registry.kube-system.svc:80\n", "10.0.0.5:5000", "registry.kube-system.svc:80"),
            ("host: \"r:1\"\nhostFromContainerRuntime: \"\"\n", "r:1", "r:1"),
        ];
        for (value, host, pull) in table {
            let d = parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!((d.host.as_str(), d.pull_host.as_str()), (host, pull), "{value}");
        }
    }

    #[test]
    fn a_configmap_without_a_usable_host_is_an_error_that_names_it() {
        for (value, says) in [
            ("help: x\n", "no `host`"),
            ("host: \"\"\n", "no `host`"),
            ("host: http://r:5000/\n", "not a registry host"),
            ("host: [1, 2]\n", "host"),
        ] {
            let e = parse(value).unwrap_err().to_string();
            assert!(e.contains("kube-public/local-registry-hosting") && e.contains(says), "{value}: {e}");
        }
    }

    #[test]
    fn the_message_names_both_hosts_and_the_source() {
        let d = Discovered { host: "localhost:5001".into(), pull_host: "kind-registry:5000".into() };
        assert_eq!(
            d.describe("kind-dev"),
            "registry localhost:5001, pulled as kind-registry:5000 (from ConfigMap kube-public/local-registry-hosting in context kind-dev)"
        );
    }
}
