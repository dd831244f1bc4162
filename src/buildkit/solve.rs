//! One build: open a session, Solve with the frontend and an image exporter that pushes, follow the status
//! stream, and report the pushed manifest digest, or the failing step with its Dockerfile line and logs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard_buildkit_proto::moby::buildkit::v1::{Exporter, SolveRequest, StatusRequest};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::filesync::SyncedDir;
use super::progress::{dockerfile_line, Progress};
use super::session::Session;
use crate::util::random_id;
use super::connect::Client;
use super::Error;
use crate::config::Image;
use crate::containerd::image::Imported;
use crate::containerd::Import;
use crate::deliver::Destination;
use crate::filter::Filter;

/// What to build and where to push it.
pub struct BuildSpec<'a> {
    /// The configured image.
    pub image: &'a Image,
    /// Its filter (the one that hashed it).
    pub filter: Filter,
    /// The name the image gets (see [`Destination::build_reference`]).
    pub reference: String,
    /// Where it goes.
    pub destination: &'a Destination,
    /// The build caches it reads and writes (see [`super::cache::for_image`]).
    pub cache: super::cache::Cache,
}

/// A finished, pushed build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The pushed manifest's digest (`sha256:…`).
    pub digest: String,
    /// Wall time of the solve.
    pub duration: Duration,
    /// Build steps, and how many were cached.
    pub steps: (usize, usize),
    /// Of the duration, exporting the image and pushing it.
    pub export: Option<Duration>,
    /// Files and bytes the daemon pulled from the context.
    pub sent_files: u64,
    /// Bytes of file content sent.
    pub sent_bytes: u64,
    /// The paths sent (`context/…`, `dockerfile/…`).
    pub sent_paths: Vec<String>,
    /// For an import into containerd: what it moved.
    pub imported: Option<Imported>,
}

/// The session shared key for a context: stable per directory, so BuildKit's copy of the last context is
/// reused and only changed files are sent.
pub fn shared_key(context: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
    hex::encode(&Sha256::digest(abs.to_string_lossy().as_bytes())[..16])
}

/// How a build's image leaves BuildKit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Export {
    /// buildkitd's `image` exporter pushes to the registry itself.
    ImagePush,
    /// Docker Engine's `moby` exporter stores the image in the engine; `push` then asks the engine to push it.
    Moby { push: bool },
    /// buildkitd's `oci` exporter with `tar=false` writes into the content store devloop serves on the
    /// session, which passes what containerd lacks on to it.
    OciImport,
}

/// The export for a destination: buildkitd pushes; the engine's BuildKit (every version: the 20.10 engine
/// knows only its `moby` exporter, and newer ones with the classic store cannot push from it) stores the
/// image in the engine, which then pushes it when a registry is the destination.
pub fn export_for(engine: bool, destination: &Destination) -> Result<Export, String> {
    match (engine, destination) {
        (false, Destination::Registry(_)) => Ok(Export::ImagePush),
        (true, Destination::Registry(_)) => Ok(Export::Moby { push: true }),
        (true, Destination::Docker { .. }) => Ok(Export::Moby { push: false }),
        (false, Destination::Docker { .. }) => Err("loading images into Docker Engine (`[registry] load = true`) needs Docker \
             Engine's BuildKit: set [buildkit] addr = \"docker://\" (or docker-unix:///path/to/docker.sock)"
            .into()),
        (false, Destination::Containerd { .. }) => Ok(Export::OciImport),
        // The engine's BuildKit exports only into the engine (the 20.10 engine knows only `moby`).
        (true, Destination::Containerd { .. }) => Err("importing images into containerd (`[registry] load = \"containerd\"`) \
             needs buildkitd, not Docker Engine's BuildKit: set [buildkit] addr to buildkitd's address"
            .into()),
    }
}

/// An engine API version as (major, minor); unknown parts count as 0.
fn api_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// What the engine's embedded BuildKit cannot do for this image, by engine API version: 1.41 is Docker 20.10
/// (BuildKit 0.8, classic image store, whose `moby` exporter stores one platform per tag).
pub fn engine_limits(engine_api: &str, platform: &str) -> Result<(), String> {
    if platform.contains(',') && api_version(engine_api) < (1, 44) {
        return Err(format!(
            "platform = \"{platform}\" asks for a multi-platform image, which Docker Engine (API {engine_api}) cannot \
             store: use buildkitd for it, or Docker Engine 25+ with the containerd image store"
        ));
    }
    Ok(())
}

/// A hint for a Dockerfile the engine's built-in frontend cannot parse: Docker 20.10's (API 1.41) predates
/// heredocs, `COPY --link`, `RUN --mount` options added since, and so on.
pub fn old_frontend_hint(engine_api: &str, message: &str) -> Option<String> {
    let unparsed = ["unknown flag", "unknown instruction", "dockerfile parse error", "unexpected"].iter().any(|m| message.contains(m));
    (unparsed && api_version(engine_api) <= (1, 41)).then(|| {
        format!(
            "Docker Engine API {engine_api} (Docker 20.10) has an old built-in Dockerfile frontend: a newer Dockerfile \
             feature needs `# syntax=docker/dockerfile:1` on the first line (the engine then pulls that frontend), \
             a newer engine, or buildkitd"
        )
    })
}

fn solve_request(spec: &BuildSpec<'_>, export_kind: Export, session: &str, job: &str) -> SolveRequest {
    let img = spec.image;
    let mut attrs: HashMap<String, String> = HashMap::new();
    let filename = img.dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    attrs.insert("filename".into(), filename);
    if !img.target.is_empty() {
        attrs.insert("target".into(), img.target.clone());
    }
    if !img.platform.is_empty() {
        attrs.insert("platform".into(), img.platform.clone());
    }
    for (k, v) in &img.build_args {
        attrs.insert(format!("build-arg:{k}"), v.clone());
    }
    if img.frontend == "gateway.v0" {
        attrs.insert("source".into(), img.frontend_source.clone());
    }
    for (k, v) in &img.frontend_opts {
        attrs.insert(k.clone(), v.clone());
    }
    attrs.extend(spec.cache.frontend_attrs());
    let mut export: HashMap<String, String> = HashMap::new();
    export.insert("name".into(), spec.reference.clone());
    let exporter = match export_kind {
        Export::ImagePush => {
            export.insert("push".into(), "true".into());
            if let Destination::Registry(r) = spec.destination {
                if r.insecure {
                    export.insert("registry.insecure".into(), "true".into());
                }
            }
            "image"
        }
        Export::Moby { .. } => "moby",
        // An OCI image written blob by blob into the content store we serve on the session.
        Export::OciImport => {
            export.insert("tar".into(), "false".into());
            "oci"
        }
    };
    SolveRequest {
        r#ref: job.to_string(),
        session: session.to_string(),
        frontend: img.frontend.clone(),
        frontend_attrs: attrs,
        // New daemons read `exporters`; old ones only the deprecated pair.
        exporters: vec![Exporter { r#type: exporter.into(), attrs: export.clone() }],
        exporter_deprecated: exporter.into(),
        exporter_attrs_deprecated: export,
        cache: spec.cache.options(),
        ..Default::default()
    }
}

/// Builds and pushes one image, printing progress. On failure the error carries a report naming the
/// failing step, its Dockerfile line and its last log lines; nothing is pushed then.
pub async fn build(client: &mut Client, spec: &BuildSpec<'_>, progress: &mut Progress) -> Result<Built, Error> {
    let img = spec.image;
    let export = export_for(client.engine.is_some(), spec.destination).map_err(|report| Error::Failed { report })?;
    if let Some(engine) = &client.engine {
        engine_limits(&engine.api_version, &img.platform).map_err(|report| Error::Failed { report })?;
    }
    let control = &mut client.control;
    if !img.context.is_dir() {
        return Err(crate::tree::Error::MissingContext(img.context.clone())).map_err(|e| Error::Inputs(e.into()));
    }
    if img.frontend == "dockerfile.v0" && !img.dockerfile.is_file() {
        return Err(Error::Inputs(crate::hash::Error::MissingDockerfile(img.dockerfile.clone())));
    }
    let mut dirs = HashMap::new();
    dirs.insert("context".to_string(), SyncedDir::context(&img.context, spec.filter.clone()));
    dirs.insert("dockerfile".to_string(), SyncedDir::dockerfile(&img.dockerfile).map_err(|e| Error::Session(e.to_string()))?);
    let import = match spec.destination {
        Destination::Containerd { socket, namespace } => Some(Import::start(socket, namespace).await?),
        _ => None,
    };
    let session = Session::start(control, &shared_key(&img.context), dirs, import.as_ref().map(Import::store)).await?;
    let job = random_id();
    let started = Instant::now();

    let mut solver = control.clone();
    let req = solve_request(spec, export, &session.id, &job);
    // Aborted if this future is dropped (a superseded build, Ctrl-C): dropping the call cancels the job in
    // BuildKit rather than leaving it running.
    let mut solve = AbortOnDrop(tokio::spawn(async move { solver.solve(req).await }));
    // The daemon waits a few seconds for the job named in a Status call to appear, so ask right away.
    let mut status = control.clone();
    let mut updates = match status.status(StatusRequest { r#ref: job.clone() }).await {
        Ok(s) => Some(s.into_inner()),
        Err(e) => {
            tracing::debug!("no status stream: {}", e.message());
            None
        }
    };
    let result = loop {
        let Some(stream) = updates.as_mut() else { break (&mut solve.0).await };
        tokio::select! {
            // The solve's answer is what counts; the status stream may trail behind it.
            r = &mut solve.0 => {
                // Take what status is already there (the failing step's logs), without waiting long.
                let drain = async { while let Some(Ok(resp)) = stream.next().await { progress.update(&resp) } };
                let _ = tokio::time::timeout(std::time::Duration::from_millis(100), drain).await;
                break r;
            }
            msg = stream.next() => match msg {
                Some(Ok(resp)) => progress.update(&resp),
                Some(Err(e)) => {
                    tracing::debug!("status stream ended: {}", e.message());
                    updates = None;
                }
                None => updates = None,
            },
        }
    };
    let duration = started.elapsed();
    let stats = session.stats.clone();
    session.close().await;
    let refused = std::mem::take(&mut *stats.refused.lock().expect("not poisoned"));
    let response = match result {
        Ok(Ok(r)) => r.into_inner(),
        // A status with a transport error behind it is the connection failing, not the build: the daemon is
        // gone, and the build should be tried again once it is back.
        Ok(Err(status)) if std::error::Error::source(&status).is_some() || status.code() == tonic::Code::Unavailable => {
            let mut reason = std::error::Error::source(&status).map_or_else(|| status.message().to_string(), crate::util::error_chain);
            // In the cluster, say which pod it was: the stream ends when that pod stops (deleted, evicted).
            if let Some(pod) = client.via.as_ref().and_then(|v| v.pod()) {
                reason = format!("the port-forward to {pod} ended (was the pod deleted or restarted?): {reason}");
            }
            return Err(Error::Lost { reason });
        }
        // FileSync refused a file that changed after it was listed: the context moved under the build.
        Ok(Err(_)) if !refused.is_empty() => return Err(Error::ContextChanged { refused }),
        Ok(Err(status)) => {
            let mut report = failure_report(spec, progress, status.message());
            if let Some(h) = client.engine.as_ref().and_then(|e| old_frontend_hint(&e.api_version, status.message())) {
                report.push_str(&format!("\n  {h}"));
            }
            return Err(Error::Failed { report });
        }
        Err(join) => return Err(Error::Failed { report: format!("the build task failed: {join}") }),
    };
    let mut digest = response.exporter_response.get("containerimage.digest").cloned().unwrap_or_default();
    if digest.is_empty() {
        return Err(Error::Failed { report: "BuildKit finished without reporting the pushed image's digest".into() });
    }
    let mut pushed_in = None;
    if let (Export::Moby { push: true }, Some(engine), Destination::Registry(r)) = (export, &client.engine, spec.destination) {
        // The moby exporter's digest is the engine's image id; what is deployed is the registry's manifest.
        let creds = crate::registry::DockerConfig::load()
            .credentials(&r.host)
            .await
            .map_err(|e| Error::Failed { report: e.to_string() })?;
        let pushing = Instant::now();
        digest = engine.push(&spec.reference, creds).await.map_err(|e| Error::Failed { report: e.to_string() })?;
        pushed_in = Some(pushing.elapsed());
    }
    let imported = match import {
        Some(i) => Some(i.finish(&spec.reference, &digest, response.exporter_response.get("containerimage.descriptor")).await?),
        None => None,
    };
    // Labelling, unpacking and naming the imported image count in the build's time and its export+import.
    if let Some(i) = &imported {
        pushed_in = Some(i.finish);
    }
    let sent_paths = std::mem::take(&mut *stats.paths.lock().expect("not poisoned"));
    Ok(Built {
        digest,
        // The engine's push is part of the build's time and of its export+push time.
        duration: duration + pushed_in.unwrap_or_default(),
        steps: progress.counts(),
        export: progress.export_time().map(|e| e + pushed_in.unwrap_or_default()),
        sent_files: stats.files.load(Ordering::Relaxed),
        sent_bytes: stats.bytes.load(Ordering::Relaxed),
        sent_paths,
        imported,
    })
}

/// A task handle that aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The failing step, its Dockerfile line and last log lines, then BuildKit's own message.
fn failure_report(spec: &BuildSpec<'_>, progress: &Progress, message: &str) -> String {
    let img = spec.image;
    let mut out = format!("build of {} failed", img.name);
    let failed = progress.failed();
    if let Some(f) = &failed {
        out.push_str(&format!(" at step {}", f.name));
    }
    let dockerfile = std::fs::read_to_string(&img.dockerfile).unwrap_or_default();
    let step_name = failed.as_ref().map_or("", |f| f.name.as_str());
    if let Some((n, line)) = dockerfile_line(&dockerfile, step_name, message) {
        out.push_str(&format!("\n  {}:{n}: {line}", img.dockerfile.display()));
    }
    if let Some(f) = &failed {
        if !f.logs.is_empty() {
            out.push_str("\n  last log lines:");
            for l in &f.logs {
                out.push_str(&format!("\n    {l}"));
            }
        }
    }
    out.push_str(&format!("\n  buildkit: {message}"));
    if message.contains("push") || message.contains("401") || message.contains("denied") {
        out.push_str(&format!(
            "\n  the registry refused the push of {}: check [registry] host, `insecure`, and the credentials in Docker's config ($DOCKER_CONFIG or ~/.docker: auths, credsStore, credHelpers)",
            spec.reference
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_follows_the_builder_and_the_destination() {
        let reg = Destination::Registry(crate::config::Registry { host: "r:5000".into(), ..Default::default() });
        let docker = Destination::Docker { engine: crate::docker::Addr::Unix("/d.sock".into()) };
        assert_eq!(export_for(false, &reg), Ok(Export::ImagePush));
        assert_eq!(export_for(true, &reg), Ok(Export::Moby { push: true }));
        assert_eq!(export_for(true, &docker), Ok(Export::Moby { push: false }));
        assert!(export_for(false, &docker).unwrap_err().contains("addr = \"docker://\""));
        let ctrd = Destination::Containerd { socket: "/c.sock".into(), namespace: "k8s.io".into() };
        assert_eq!(export_for(false, &ctrd), Ok(Export::OciImport));
        assert!(export_for(true, &ctrd).unwrap_err().contains("needs buildkitd"));
    }

    #[test]
    fn the_solve_request_carries_the_image_caches() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = Image::new("api", dir.path());
        image.cache_from = vec![crate::config::CacheSpec::parse("{registry}/cache/{name}", crate::config::cache::Direction::From).unwrap()];
        image.cache_to = vec![crate::config::CacheSpec::parse("type=registry,ref={registry}/cache/{name},mode=max", crate::config::cache::Direction::To).unwrap()];
        let registry = crate::config::Registry { host: "r:5000".into(), ..Default::default() };
        let cache = super::super::cache::for_image(&image, &registry, &Default::default()).unwrap();
        let destination = Destination::Registry(registry);
        let filter = image.filter().unwrap();
        let spec = BuildSpec { image: &image, filter, reference: "r:5000/api:1".into(), destination: &destination, cache };
        let req = solve_request(&spec, Export::ImagePush, "s", "j");
        let c = req.cache.expect("cache options");
        assert_eq!(c.imports.len(), 1);
        assert_eq!((c.imports[0].r#type.as_str(), c.imports[0].attrs["ref"].as_str()), ("registry", "r:5000/cache/api"));
        assert_eq!((c.exports[0].attrs["ref"].as_str(), c.exports[0].attrs["mode"].as_str()), ("r:5000/cache/api", "max"));
        assert!(req.frontend_attrs["cache-imports"].contains("r:5000/cache/api"), "{:?}", req.frontend_attrs);
        // No cache configured: none asked for.
        let plain = Image::new("api", dir.path());
        let spec = BuildSpec { image: &plain, filter: plain.filter().unwrap(), reference: "r:5000/api:1".into(), destination: &destination, cache: Default::default() };
        let req = solve_request(&spec, Export::ImagePush, "s", "j");
        assert!(req.cache.is_none() && !req.frontend_attrs.contains_key("cache-imports"));
    }

    #[test]
    fn old_engines_name_what_they_cannot_do() {
        assert!(engine_limits("1.41", "linux/amd64,linux/arm64").unwrap_err().contains("multi-platform"));
        assert_eq!(engine_limits("1.41", "linux/amd64"), Ok(()));
        assert_eq!(engine_limits("1.45", "linux/amd64,linux/arm64"), Ok(()));
        let parse_error = "failed to create LLB definition: dockerfile parse error line 3: unknown flag: link";
        assert!(old_frontend_hint("1.41", parse_error).unwrap().contains("# syntax=docker/dockerfile:1"));
        assert_eq!(old_frontend_hint("1.47", parse_error), None);
        assert_eq!(old_frontend_hint("1.41", "process \"/bin/sh -c false\" did not complete successfully"), None);
        assert_eq!(api_version("1.41"), (1, 41));
        assert!(api_version("1.9") < api_version("1.41"));
    }
}
