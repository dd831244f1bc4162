//! One build: open a session, Solve with the frontend and an image exporter that pushes, follow the status
//! stream, and report the pushed manifest digest, or the failing step with its Dockerfile line and logs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{Exporter, SolveRequest, StatusRequest};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::filesync::SyncedDir;
use super::progress::{dockerfile_line, Progress};
use super::session::{random_id, Session};
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

fn solve_request(spec: &BuildSpec<'_>, session: &str, job: &str) -> SolveRequest {
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
    let mut export: HashMap<String, String> = HashMap::new();
    export.insert("name".into(), spec.reference.clone());
    let mut exporter = "image";
    match spec.destination {
        Destination::Registry(r) => {
            export.insert("push".into(), "true".into());
            if r.insecure {
                export.insert("registry.insecure".into(), "true".into());
            }
        }
        // An OCI image written blob by blob into the content store we serve on the session.
        Destination::Containerd { .. } => {
            exporter = "oci";
            export.insert("tar".into(), "false".into());
        }
        Destination::Docker => {}
    }
    SolveRequest {
        r#ref: job.to_string(),
        session: session.to_string(),
        frontend: img.frontend.clone(),
        frontend_attrs: attrs,
        // New daemons read `exporters`; old ones only the deprecated pair.
        exporters: vec![Exporter { r#type: exporter.into(), attrs: export.clone() }],
        exporter_deprecated: exporter.into(),
        exporter_attrs_deprecated: export,
        ..Default::default()
    }
}

/// Builds and pushes one image, printing progress. On failure the error carries a report naming the
/// failing step, its Dockerfile line and its last log lines; nothing is pushed then.
pub async fn build(control: &mut ControlClient<Channel>, spec: &BuildSpec<'_>, progress: &mut Progress) -> Result<Built, Error> {
    let img = spec.image;
    if matches!(spec.destination, Destination::Docker) {
        return Err(Error::Failed { report: format!("loading images into {} is not supported yet", spec.destination.describe()) });
    }
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
    let req = solve_request(spec, &session.id, &job);
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
            let reason = std::error::Error::source(&status).map_or_else(|| status.message().to_string(), super::error_chain);
            return Err(Error::Lost { reason });
        }
        // FileSync refused a file that changed after it was listed: the context moved under the build.
        Ok(Err(_)) if !refused.is_empty() => return Err(Error::ContextChanged { refused }),
        Ok(Err(status)) => return Err(Error::Failed { report: failure_report(spec, progress, status.message()) }),
        Err(join) => return Err(Error::Failed { report: format!("the build task failed: {join}") }),
    };
    let digest = response.exporter_response.get("containerimage.digest").cloned().unwrap_or_default();
    if digest.is_empty() {
        return Err(Error::Failed { report: "BuildKit finished without reporting the pushed image's digest".into() });
    }
    let imported = match import {
        Some(i) => Some(i.finish(&spec.reference, &digest, response.exporter_response.get("containerimage.descriptor")).await?),
        None => None,
    };
    let sent_paths = std::mem::take(&mut *stats.paths.lock().expect("not poisoned"));
    Ok(Built {
        digest,
        duration,
        steps: progress.counts(),
        export: progress.export_time(),
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
            "\n  the registry refused the push of {}: check [registry] host, `insecure`, and credentials in ~/.docker/config.json",
            spec.reference
        ));
    }
    out
}
