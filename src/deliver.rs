//! Where a built image goes — a registry, Docker Engine's image store or a node's containerd — and how the
//! cluster then names it and pulls it.

use std::path::PathBuf;

use crate::config::{self, Load};
use crate::{docker, registry};

/// Errors finding out whether a destination already has an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be asked.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Docker Engine could not be asked.
    #[error(transparent)]
    Docker(#[from] docker::Error),
    /// containerd could not be asked.
    #[error(transparent)]
    Containerd(#[from] crate::containerd::Error),
}

/// The destination of built images, from `[registry]` (once discovery has filled in a missing host).
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// Pushed to a registry the cluster pulls from.
    Registry(config::Registry),
    /// Loaded into Docker Engine's image store, which the cluster's node runtime shares.
    Docker {
        /// The engine BuildKit is reached through (its embedded BuildKit builds, then the image is there).
        engine: docker::Addr,
    },
    /// Imported into the node's containerd.
    Containerd {
        /// containerd's socket.
        socket: PathBuf,
        /// The namespace the kubelet's runtime reads (`k8s.io`).
        namespace: String,
    },
}

impl Destination {
    /// The destination `[registry]` asks for, as resolved: no environment is read here.
    pub fn of(cfg: &config::Config) -> Destination {
        let r = &cfg.registry;
        match r.load {
            Load::Push => Destination::Registry(r.clone()),
            // Resolved once (`resolve::load`, which refuses `load = true` without an engine); a config that was
            // never resolved (a unit test's) loads into the default socket's engine.
            Load::Docker => Destination::Docker {
                engine: r.engine.clone().unwrap_or_else(|| docker::Addr::Unix(docker::DEFAULT_SOCKET.into())),
            },
            Load::Containerd => {
                Destination::Containerd { socket: r.containerd_socket.clone(), namespace: r.containerd_namespace.clone() }
            }
        }
    }

    /// The name BuildKit gives the image: `<host>/<name>:<tag>` for a registry, `<name>:<tag>` otherwise.
    pub fn build_reference(&self, name: &str, tag: &str) -> String {
        match self {
            // No host yet (`devloop hash` does not look for one): the bare name.
            Destination::Registry(r) if r.host.is_empty() => format!("{name}:{tag}"),
            Destination::Registry(r) => format!("{}/{name}:{tag}", r.host),
            Destination::Docker { .. } | Destination::Containerd { .. } => format!("{name}:{tag}"),
        }
    }

    /// What deployed containers run. A registry's image is pinned by digest at the cluster's pull host; an
    /// image in the engine's store is named by its (content) tag, since the store has no registry digest.
    pub fn deploy_reference(&self, name: &str, tag: &str, digest: &str) -> String {
        match self {
            Destination::Registry(r) => format!("{}/{name}:{tag}@{digest}", r.pull_host()),
            Destination::Docker { .. } => format!("{name}:{tag}"),
            Destination::Containerd { .. } => format!("{name}:{tag}@{digest}"),
        }
    }

    /// The `imagePullPolicy` devloop sets on the containers it manages: an image that is only in the node's
    /// store must never be pulled (there is nowhere to pull it from). None: leave the manifest's own.
    pub fn pull_policy(&self) -> Option<&'static str> {
        match self {
            Destination::Registry(_) => None,
            Destination::Docker { .. } => Some("Never"),
            Destination::Containerd { .. } => Some("IfNotPresent"),
        }
    }

    /// Where images go, for messages: `registry 10.0.0.1:5000`, `Docker Engine's image store`, …
    pub fn describe(&self) -> String {
        match self {
            Destination::Registry(r) => format!("the registry {}", r.host),
            Destination::Docker { engine } => format!("the image store of Docker Engine at {engine}"),
            Destination::Containerd { socket, namespace } => {
                format!("the containerd at {} (namespace {namespace})", socket.display())
            }
        }
    }

    /// Whether devloop prunes old images here (a node's store it fills one image per iteration).
    pub fn prunes(&self) -> bool {
        matches!(self, Destination::Containerd { .. } | Destination::Docker { .. })
    }

    /// Removes the images of `name` but the `newest`, those in use and those tagged with one of `tags`; the
    /// line to report. None: nothing was removed (no line for every save), or this destination is not pruned.
    pub async fn prune(&self, name: &str, newest: usize, tags: &[String]) -> Result<Option<String>, Error> {
        match self {
            Destination::Containerd { socket, namespace } => {
                let p = crate::containerd::Containerd::connect(socket, namespace).await?.prune(name, newest, tags).await?;
                Ok((p.removed > 0).then(|| format!("pruned {} old image(s) of {name} from the node's containerd; kept {}", p.removed, p.kept)))
            }
            Destination::Docker { engine } => {
                let p = docker::Engine::connect(engine).await?.prune(name, newest, tags).await?;
                Ok((p.removed > 0).then(|| format!("pruned {} old image(s) of {name} from Docker Engine's image store; kept {}", p.removed, p.kept)))
            }
            Destination::Registry(_) => Ok(None),
        }
    }

    /// [`Destination::prune`] as the line to say, if any: what was removed, or that pruning failed (never
    /// fatal: the images only take room, and the next rollout tries again).
    pub async fn prune_said(&self, name: &str, newest: usize, tags: &[String]) -> Option<String> {
        match self.prune(name, newest, tags).await {
            Ok(line) => line,
            Err(e) => Some(format!("pruning old images failed (they stay): {e}")),
        }
    }

    /// The digest of `name:tag` when the destination already has it (then there is nothing to build).
    pub async fn present(&self, name: &str, tag: &str) -> Result<Option<String>, Error> {
        match self {
            Destination::Registry(r) => Ok(registry::manifest_digest(r, name, tag).await?),
            Destination::Docker { engine } => {
                let engine = docker::Engine::connect(engine).await?;
                Ok(engine.image_id(&format!("{name}:{tag}")).await?)
            }
            Destination::Containerd { socket, namespace } => {
                Ok(crate::containerd::Containerd::connect(socket, namespace).await?.present(name, tag).await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_pull_policies_follow_the_destination() {
        let reg = config::Registry { host: "r:5000".into(), pull_host: Some("p:5000".into()), ..Default::default() };
        let ctrd = Destination::Containerd { socket: "/s".into(), namespace: "k8s.io".into() };
        // (destination, built as, deployed as, pull policy)
        let table = [
            (Destination::Registry(reg), "r:5000/hello:t1", "p:5000/hello:t1@sha256:d", None),
            (Destination::Docker { engine: crate::docker::Addr::Unix("/d.sock".into()) }, "hello:t1", "hello:t1", Some("Never")),
            (ctrd, "hello:t1", "hello:t1@sha256:d", Some("IfNotPresent")),
        ];
        for (dest, built, deployed, policy) in table {
            assert_eq!(dest.build_reference("hello", "t1"), built);
            assert_eq!(dest.deploy_reference("hello", "t1", "sha256:d"), deployed);
            assert_eq!(dest.pull_policy(), policy, "{dest:?}");
        }
    }
}
