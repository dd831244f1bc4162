//! `kube-pod://<pod>`, `kube-deployment://<name>` and `kube-statefulset://<name>` BuildKit addresses (a
//! buildkitd in the cluster, reached through port-forwards), parsed. Connecting is the builder's (`buildkit::kube`).

use crate::config::names::{is_dns_label, is_dns_subdomain};

/// The port buildkitd listens on inside the pod when the address names none.
pub const DEFAULT_PORT: u16 = 1234;

/// What a kube address points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One pod, by name.
    Pod,
    /// A Ready pod of a Deployment (or, when there is no such Deployment, a StatefulSet of that name).
    Deployment,
    /// The Ready replicas of a StatefulSet, each image on its own one.
    StatefulSet,
}

/// A parsed `kube-pod://` / `kube-deployment://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeAddr {
    /// Pod or Deployment.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// `?namespace=`; unset: the namespace devloop deploys to.
    pub namespace: Option<String>,
    /// `&port=`: buildkitd's TCP port in the pod.
    pub port: u16,
}

impl KubeAddr {
    /// None when `addr` is not a kube address at all; Some(Err(what is wrong)) when it is one but malformed.
    pub fn parse(addr: &str) -> Option<Result<KubeAddr, String>> {
        let (kind, rest) = if let Some(r) = addr.strip_prefix("kube-pod://") {
            (Kind::Pod, r)
        } else if let Some(r) = addr.strip_prefix("kube-deployment://") {
            (Kind::Deployment, r)
        } else if let Some(r) = addr.strip_prefix("kube-statefulset://") {
            (Kind::StatefulSet, r)
        } else {
            return None;
        };
        Some(parse_rest(kind, rest).map_err(|m| format!("`{addr}`: {m}")))
    }

    /// `pod ns/name`, `deployment ns/name` or `statefulset ns/name`, in `namespace` when the address names none.
    pub fn describe(&self, namespace: &str) -> String {
        format!("{} {}/{}", self.kind.word(), self.namespace.as_deref().unwrap_or(namespace), self.name)
    }
}

impl Kind {
    /// `pod`, `deployment`, `statefulset`: as the address scheme and kubectl name it.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

fn parse_rest(kind: Kind, rest: &str) -> Result<KubeAddr, String> {
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    let what = kind.word();
    if name.is_empty() {
        return Err(format!("no {what} name (kube-{what}://<name>?namespace=<namespace>)"));
    }
    if !is_dns_subdomain(name) {
        return Err(format!("`{name}` is not a valid {what} name (lowercase letters, digits, `-`, `.`)"));
    }
    let mut out = KubeAddr { kind, name: name.to_string(), namespace: None, port: DEFAULT_PORT };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "namespace" if is_dns_label(v) => out.namespace = Some(v.to_string()),
            "namespace" => return Err(format!("`{v}` is not a valid namespace name")),
            "port" => match v.parse::<u16>() {
                Ok(p) if p > 0 => out.port = p,
                _ => return Err(format!("port `{v}` is not a TCP port number")),
            },
            "context" => {
                return Err("the kube context is not part of the address: devloop uses [kube] context / \
                            --kube-context, as for deploying"
                    .into())
            }
            other => return Err(format!("unknown parameter `{other}` (known: namespace, port)")),
        }
    }
    Ok(out)
}
