//! Building images by talking to BuildKit's gRPC API directly: [`connect`] to the daemon, run a
//! [`session`] that serves our files ([`filesync`]) and credentials ([`auth`]), [`solve`] with the
//! Dockerfile (or a gateway) frontend and push, and render [`progress`].

pub mod auth;
pub mod cache;
pub mod connect;
pub mod filesync;
pub mod kube;
pub mod progress;
pub mod replicas;
pub mod session;
pub mod solve;
pub mod status;

pub use connect::{connect, Client};
pub use solve::{build, BuildSpec, Built};

/// Errors building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// buildkitd did not answer at its address.
    #[error("BuildKit is unreachable at {addr}: {reason}\n  {}", unreachable_hint(addr, reason))]
    Unreachable { addr: String, reason: String },
    /// A kube address whose context is not allow-listed (exit code 2): nothing was sent.
    #[error("BuildKit at {addr}: {source}")]
    NotAllowed { addr: String, source: crate::cluster::safety::NotAllowed },
    /// The connection to buildkitd broke while a build ran (the daemon stopped or restarted).
    #[error("BuildKit went away during the build: {reason}")]
    Lost { reason: String },
    /// Files changed between being listed and being read (an editor saved mid-build): the build would not
    /// have been of the content that was hashed. Nothing was pushed.
    #[error("the context changed while BuildKit read it ({})", .refused.join("; "))]
    ContextChanged { refused: Vec<String> },
    /// TLS settings that cannot be used.
    #[error("BuildKit TLS: {0}")]
    Tls(String),
    /// The session could not be opened.
    #[error("BuildKit session: {0}")]
    Session(String),
    /// The build failed; `report` says where and why.
    #[error("{report}")]
    Failed { report: String },
    /// Importing the image into containerd failed.
    #[error(transparent)]
    Import(#[from] crate::containerd::Error),
    /// The context or Dockerfile is not usable.
    #[error(transparent)]
    Inputs(#[from] crate::hash::Error),
}

fn unreachable_hint(addr: &str, reason: &str) -> &'static str {
    if addr.starts_with("kube-") {
        return "install one with `devloop buildkit install --namespace <namespace>`, check it with `devloop buildkit \
                status`, or point BUILDKIT_HOST / [buildkit] addr at a running BuildKit";
    }
    // Over TLS, the engine answered: starting it is not the fix, the certificates are.
    if addr.starts_with("docker") && reason.contains("(TLS with ") && !reason.contains("Connection refused") {
        "check the engine's certificates (DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem; `minikube docker-env` \
         sets it) or point BUILDKIT_HOST / [buildkit] addr at a running BuildKit"
    } else if addr.starts_with("docker") {
        "start Docker Engine (for the local stack: scripts/stack start dockerd) or point BUILDKIT_HOST / [buildkit] \
         addr at a running BuildKit"
    } else {
        "start buildkitd (for the local stack: scripts/stack up) or point BUILDKIT_HOST / [buildkit] addr at a running one"
    }
}

