//! The one-shot runs behind the CLI: `hash` (content tags), `build` (skip what the registry has, build and
//! push the rest) and [`deploy`]. The watch loop of `devloop up` will drive the same pieces.

pub mod check;
pub mod checked;
pub mod command;
pub mod control;
pub mod decide;
pub mod deploy;
pub mod down;
mod live;
pub mod out;
pub mod progress;
pub mod up;

use std::io::Write;

use crate::buildkit::{self, progress::Progress, BuildSpec, Built};
use crate::config::{Config, Image};
use crate::deliver::{self, Destination};
use crate::filter::Filter;
use crate::hash::{self, DigestCache, Snapshot};
use crate::registry;

/// Errors of a one-shot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image name on the command line that the config does not define.
    #[error("no image named `{name}` in {config} (configured: {known})")]
    UnknownImage { name: String, config: String, known: String },
    /// The filter (`.dockerignore`, `ignore`) is invalid.
    #[error(transparent)]
    Filter(#[from] crate::filter::Error),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] hash::Error),
    /// The registry check failed.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The build failed.
    #[error(transparent)]
    Buildkit(#[from] buildkit::Error),
    /// Deploying failed before a rollout could be judged.
    #[error(transparent)]
    Deploy(crate::deploy::Error),
    /// The cluster's `local-registry-hosting` ConfigMap could not be read or used.
    #[error(transparent)]
    Discovery(#[from] registry::discover::Error),
    /// Images have nowhere to go: no `[registry] host`, no `load`, no registry advertised by the cluster.
    #[error("{0}")]
    NoRegistry(String),
    /// A command-line value, or a config without what the command needs, that cannot be used (exit code 2).
    #[error("{0}")]
    BadFlag(String),
    /// `deploy` needs something the config or registry does not have.
    #[error("{0}")]
    Usage(String),
    /// A signal stopped the run (what it left is already reported); exits 128 + the signal's number.
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
}

impl From<crate::cluster::Error> for Error {
    fn from(e: crate::cluster::Error) -> Self {
        // Reported (and mapped to exit codes) as deploying's: the same context and allow-list.
        Error::Deploy(e.into())
    }
}

impl From<crate::resolve::Error> for Error {
    fn from(e: crate::resolve::Error) -> Self {
        match e {
            crate::resolve::Error::NoRegistry(m) => Error::NoRegistry(m),
            crate::resolve::Error::Discovery(d) => Error::Discovery(d),
        }
    }
}

impl From<crate::deploy::Error> for Error {
    fn from(e: crate::deploy::Error) -> Self {
        match e {
            // The deployers' usage errors and interruptions are the run's own (their exit codes).
            crate::deploy::Error::Usage(m) => Error::Usage(m),
            crate::deploy::Error::Interrupted(signal) => Error::Interrupted(signal),
            e => Error::Deploy(e),
        }
    }
}

impl From<deliver::Error> for Error {
    fn from(e: deliver::Error) -> Self {
        match e {
            // Kept as a registry error: `up` retries an unreachable registry.
            deliver::Error::Registry(r) => Error::Registry(r),
            // An engine that does not answer is reported (and retried by `up`) like an unreachable BuildKit.
            deliver::Error::Docker(crate::docker::Error::Unreachable { addr, reason }) => {
                Error::Buildkit(buildkit::Error::Unreachable { addr: addr.buildkit_form(), reason })
            }
            deliver::Error::Docker(d) => Error::Buildkit(buildkit::Error::Failed { report: d.to_string() }),
            deliver::Error::Containerd(c) => Error::Buildkit(buildkit::Error::Import(c)),
        }
    }
}

pub use crate::util::off_runtime;

/// An image with its filter and current content snapshot.
pub struct Hashed<'a> {
    /// The configured image.
    pub image: &'a Image,
    /// Its one filter.
    pub filter: Filter,
    /// Its inputs now.
    pub snapshot: Snapshot,
    /// The name the image is built as (`<registry host>/<name>:<tag>` for a registry).
    pub reference: String,
}

/// The images named on the command line (all when none), in config order.
pub fn select<'a>(cfg: &'a Config, names: &[String]) -> Result<Vec<&'a Image>, Error> {
    if names.is_empty() {
        return Ok(cfg.images.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            cfg.image(n).ok_or_else(|| Error::UnknownImage {
                name: n.clone(),
                config: cfg.path.display().to_string(),
                known: cfg.images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Hashes the selected images, through the persistent digest cache.
pub fn hash_images<'a>(cfg: &'a Config, names: &[String]) -> Result<Vec<Hashed<'a>>, Error> {
    let mut out = Vec::new();
    for image in select(cfg, names)? {
        let mut cache = DigestCache::for_context(&image.context);
        out.push(hash_image(cfg, image, &mut cache)?);
        cache.save();
    }
    Ok(out)
}

/// Hashes one image through `cache` (`up` keeps one per image in memory for its whole run).
pub fn hash_image<'a>(cfg: &Config, image: &'a Image, cache: &mut DigestCache) -> Result<Hashed<'a>, Error> {
    let filter = image.filter()?;
    let snapshot = hash::snapshot(image, &filter, cache)?;
    let reference = Destination::of(cfg).build_reference(&image.name, &snapshot.tag);
    Ok(Hashed { image, filter, snapshot, reference })
}

/// What `build` did for one image.
pub enum Outcome {
    /// The registry already had the tag.
    Present { reference: String, digest: String },
    /// Built and pushed.
    Built { reference: String, built: Built },
}

/// Builds and pushes the selected images whose tag the registry lacks (all of them with `force`).
/// Progress goes to stderr; one result line per image to `out`.
pub async fn build_images(
    cfg: &Config,
    names: &[String],
    force: bool,
    verbose: bool,
    kube: &crate::cluster::KubeOptions,
    cache: &buildkit::cache::Flags,
    out: &mut (dyn Write + Send),
) -> Result<Vec<Outcome>, Error> {
    let hashed = off_runtime(|| hash_images(cfg, names))?;
    let destination = Destination::of(cfg);
    let mut control = None;
    let mut outcomes = Vec::new();
    for h in hashed {
        let name = &h.image.name;
        if !force {
            if let Some(digest) = destination.present(name, &h.snapshot.tag).await? {
                // A registry shared by a team is its build cache: say so, since a teammate may have pushed it.
                let whose = if matches!(destination, Destination::Registry(_)) { " (pushed earlier by you or a teammate)" } else { "" };
                let _ = writeln!(
                    out,
                    "{name}: {} is already in {}{whose} ({digest}), nothing to build",
                    h.reference,
                    destination.describe()
                );
                outcomes.push(Outcome::Present { reference: h.reference, digest });
                continue;
            }
        }
        let cache = buildkit::cache::for_image(h.image, &cfg.registry, cache).map_err(Error::BadFlag)?;
        let client = match control.as_mut() {
            Some(c) => c,
            None => control.insert(buildkit::connect(&cfg.buildkit, buildkit::kube::Cluster { kube: &cfg.kube, opts: kube }).await?),
        };
        // Several BuildKit replicas: the image's own (or, while that is not Ready, another: said).
        let (mut client, placement) = client.for_image(name).await?;
        if let Some(said) = placement.as_ref().and_then(|p| buildkit::replicas::notice(name, &mut Default::default(), p)) {
            eprintln!("{said}");
        }
        let on = placement.map(|p| format!(" on {}", p.on)).unwrap_or_default();
        eprintln!("{name}: building {}{on} ({} files, {} bytes of context)", h.reference, h.snapshot.entries, h.snapshot.bytes);
        let mut progress = Progress::new(Box::new(std::io::stderr()), &format!("{name}: "), verbose);
        let spec = BuildSpec { image: h.image, filter: h.filter, reference: h.reference.clone(), destination: &destination, cache };
        let built = buildkit::build(&mut client, &spec, &mut progress).await?;
        if verbose {
            for p in &built.sent_paths {
                eprintln!("{name}: sent {p}");
            }
        }
        let _ = writeln!(out, "{name}: {}", result_line(&h.reference, &built, &destination));
        outcomes.push(Outcome::Built { reference: h.reference, built });
    }
    Ok(outcomes)
}

/// The line `build` prints for a built image: where it went, how long it took, what it moved.
pub fn result_line(reference: &str, built: &Built, destination: &Destination) -> String {
    let sent = format!("{}/{} steps cached; sent {} files, {} bytes", built.steps.1, built.steps.0, built.sent_files, built.sent_bytes);
    if let Some(i) = &built.imported {
        return format!(
            "imported {reference}@{} into containerd in {:.1}s, export+import {:.2}s ({} bytes of {} new: {} of {} blobs; unpacked {} of {} layers; {sent})",
            built.digest,
            built.duration.as_secs_f64(),
            built.export.unwrap_or_default().as_secs_f64(),
            i.written,
            i.image_bytes,
            i.new_blobs,
            i.blobs,
            i.unpacked,
            i.layers,
        );
    }
    let pushed = matches!(destination, Destination::Registry(_));
    format!(
        "{} {reference}@{} in {:.1}s{} ({sent})",
        if pushed { "pushed" } else { "loaded" },
        built.digest,
        built.duration.as_secs_f64(),
        built.export.map(|e| format!(", export{} {:.2}s", if pushed { "+push" } else { "" }, e.as_secs_f64())).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// One async worker: a task doing blocking file work through `off_runtime` must not stop the others
    /// (the watcher's batches, port-forwards, rollout watches) from running meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn blocking_work_leaves_the_async_workers_free() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let during = ticks.clone();
        let blocked = tokio::spawn(async move {
            let before = during.load(Ordering::Relaxed);
            super::off_runtime(|| std::thread::sleep(Duration::from_millis(400)));
            during.load(Ordering::Relaxed) - before
        });
        let ticked = blocked.await.unwrap();
        ticker.abort();
        assert!(ticked >= 5, "the other task ticked {ticked} times in 400 ms of blocking work");
    }
}
