//! What the engine tells the people and programs watching it. The engine decides and reports; a [`Sink`]
//! (the `ui` layer: lines, JSON, the status block, the page) shows. The engine knows nothing of how: it
//! holds an [`Out`], which `main` wires to the terminal and the page.

use std::sync::Arc;

use super::decide::Report;

/// What one image is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a change.
    Watching,
    /// Hashing its build inputs.
    Hashing,
    /// BuildKit runs step `step` of the `of` it knows of, named `name`.
    Building {
        /// The step started last (1-based).
        step: usize,
        /// Steps known so far.
        of: usize,
        /// BuildKit's name for it, e.g. `[2/3] RUN make`.
        name: String,
    },
    /// The image is being exported or pushed.
    Pushing,
    /// A rollout is being watched: what it waits for.
    RollingOut(String),
    /// Changed files are being copied into the running containers.
    Syncing,
    /// The pods run `tag` (plus `synced` files synced since).
    Serving {
        /// The content tag deployed.
        tag: String,
        /// Files synced into the pods since.
        synced: usize,
    },
    /// The last iteration failed: why.
    Failed(String),
}

impl Phase {
    /// The phase's name on the status page (`rolling-out`, `serving`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Phase::Watching => "watching",
            Phase::Hashing => "hashing",
            Phase::Building { .. } => "building",
            Phase::Pushing => "pushing",
            Phase::RollingOut(_) => "rolling-out",
            Phase::Syncing => "syncing",
            Phase::Serving { .. } => "serving",
            Phase::Failed(_) => "failed",
        }
    }

    /// Whether the phase is work in progress (shown with its running time, and undone by "unchanged").
    pub fn busy(&self) -> bool {
        !matches!(self, Phase::Watching | Phase::Serving { .. } | Phase::Failed(_))
    }
}

/// Where the engine's news goes. Every method returns at once: a sink that writes to a reader that may stall
/// (a paused terminal, an editor not reading `--json`) queues or drops, and never makes the engine wait.
pub trait Sink: Send + Sync {
    /// A free-form line about an image (`kind`: deploy steps, log lines, forwards…).
    fn line(&self, image: &str, kind: &str, text: &str);
    /// A decision's report.
    fn report(&self, r: &Report);
    /// `image` is now in `phase`.
    fn phase(&self, image: &str, phase: Phase);
    /// `image` is being hashed (shown unless it is busy with a build or rollout).
    fn hashing(&self, image: &str);
    /// `image`'s last rollout rolled these Deployments.
    fn deployments(&self, image: &str, deployments: &[String]);
    /// `deployment` is forwarded at `url`.
    fn forward_url(&self, deployment: &str, url: &str);
    /// The status page is served at `url`.
    fn page_url(&self, url: &str);
}

/// The engine's handle on its sink.
pub type Out = Arc<dyn Sink>;

/// A `forward::Say` that tells `out` a line of `kind` about `image`.
pub fn say(out: &Out, image: &str, kind: &'static str) -> crate::forward::Say {
    let (out, image) = (out.clone(), image.to_string());
    Arc::new(move |text: &str| out.line(&image, kind, text))
}
