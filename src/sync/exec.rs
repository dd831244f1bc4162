//! One sync into one container through the exec API (a WebSocket through the API server to the kubelet):
//! the sync's one script ([`super::command`]) with the tar stream on stdin.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Error, Prepared, NO_SUPERVISOR, NO_TAR, RUN_FAILED};
use crate::cluster::Target;

/// What became of one container's sync.
#[derive(Debug)]
pub enum Outcome {
    /// Done.
    Done,
    /// The pod is gone (deleted since it was chosen): nothing to sync.
    Gone,
}

/// Runs the sync in `container` of `pod`.
pub async fn into_container(t: &Target, pod: &str, container: &str, p: &Prepared) -> Result<Outcome, Error> {
    let t0 = std::time::Instant::now();
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let params = AttachParams::default().container(container).stdin(p.files > 0).stdout(false).stderr(true);
    let fail = |message: String| Error::Exec { pod: pod.to_string(), message };
    let mut proc = match pods.exec(pod, super::command(p), &params).await {
        Ok(proc) => proc,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Outcome::Gone),
        Err(e) => {
            let text = e.to_string();
            // The runtime could not start `sh`: nothing in this image can unpack a tar.
            if text.contains("executable file not found") {
                return Err(Error::NoTar { pod: pod.into(), container: container.into() });
            }
            return Err(fail(format!("exec: {text}")));
        }
    };
    let connected = t0.elapsed();
    let status = proc.take_status();
    let mut stderr = proc.stderr();
    let read_err = async move {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let stdin = proc.stdin();
    let write = async move {
        if let Some(mut stdin) = stdin {
            stdin.write_all(&p.tar).await.map_err(|e| fail(format!("sending the files: {e}")))?;
            stdin.shutdown().await.map_err(|e| fail(format!("sending the files: {e}")))?;
        }
        Ok::<_, Error>(())
    };
    // The process may end without reading all of stdin (no `sh` at all: the runtime fails the exec), and then
    // a write would wait forever — the stream's other end is never closed. So its status is awaited
    // alongside: once it has come, what is left of the streams gets a moment to drain, and no more.
    let status = async move {
        match status {
            Some(s) => s.await,
            None => std::future::pending().await,
        }
    };
    let (written, stderr, status) = {
        let io = async { tokio::join!(write, read_err) };
        tokio::pin!(io, status);
        tokio::select! {
            (w, e) = &mut io => (w, e, status.await),
            st = &mut status => match tokio::time::timeout(std::time::Duration::from_millis(200), &mut io).await {
                Ok((w, e)) => (w, e, st),
                Err(_) => (Ok(()), Vec::new(), st),
            },
        }
    };
    let _ = proc.join().await;
    // Where a sync's time goes: the exec stream's setup (API server → kubelet → runtime) against the script.
    tracing::debug!(pod, container, connect_ms = connected.as_millis() as u64, total_ms = t0.elapsed().as_millis() as u64, bytes = p.tar.len(), "sync exec");
    written?;
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    let Some(status) = status else { return Err(fail(format!("the exec ended without a status{}", with(&stderr)))) };
    if status.status.as_deref() == Some("Success") {
        return Ok(Outcome::Done);
    }
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref()?.parse::<i32>().ok());
    Err(match code {
        Some(NO_TAR) => Error::NoTar { pod: pod.into(), container: container.into() },
        Some(NO_SUPERVISOR) => Error::NoSupervisor { pod: pod.into(), container: container.into() },
        Some(RUN_FAILED) => Error::Run { pod: pod.into(), output: stderr },
        Some(c) => fail(format!("the sync script exited with {c}{}", with(&stderr))),
        // The runtime could not start `sh` (reported on the status channel, with no exit code).
        None if status.message.as_deref().is_some_and(|m| m.contains("executable file not found")) => {
            Error::NoTar { pod: pod.into(), container: container.into() }
        }
        None => fail(format!("{}{}", status.message.unwrap_or_default(), with(&stderr))),
    })
}

fn with(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}
