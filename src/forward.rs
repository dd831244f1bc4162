//! Port-forwards that follow rollouts, in-process through the API server: a local listener on 127.0.0.1,
//! and for every connection a stream to a Ready pod of the Deployment chosen at that moment, so after a
//! rollout new connections reach the new pod, and a broken stream is simply re-opened by the next one.
//! Also: streaming the logs of a rollout's new pods.

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::deploy::{selector, Target};
use crate::ui::Ui;

/// Errors of a forward.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local port could not be bound.
    #[error("port-forward to deployment {deployment}: cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { deployment: String, port: u16, source: std::io::Error },
}

/// Binds 127.0.0.1:`port` (0 picks a free port).
pub async fn bind(deployment: &str, port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| Error::Bind { deployment: deployment.into(), port, source })
}

/// The newest Ready pod of a Deployment that is not being deleted.
pub async fn ready_pod(t: &Target, deployment: &str) -> Result<String, String> {
    let deps: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let dep = deps.get(deployment).await.map_err(|e| format!("deployment {}/{deployment}: {e}", t.namespace))?;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let list = pods.list(&ListParams::default().labels(&selector(&dep))).await.map_err(|e| e.to_string())?;
    let mut ready: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by(|a, b| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp));
    ready.first().and_then(|p| p.metadata.name.clone()).ok_or_else(|| format!("no Ready pod of deployment {}/{deployment}", t.namespace))
}

/// Serves connections on `listener` until cancelled, each forwarded to a Ready pod's `remote` port.
pub async fn serve(listener: TcpListener, t: Target, deployment: String, remote: u16, ui: Ui, cancel: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((mut conn, _)) = conn else { continue };
        let (t, deployment, ui, cancel) = (t.clone(), deployment.clone(), ui.clone(), cancel.clone());
        tokio::spawn(async move {
            let pod = match ready_pod(&t, &deployment).await {
                Ok(p) => p,
                Err(e) => {
                    ui.line(&deployment, "forward", &format!("port-forward: {e}"));
                    return;
                }
            };
            let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
            let mut pf = match pods.portforward(&pod, &[remote]).await {
                Ok(pf) => pf,
                Err(e) => {
                    ui.line(&deployment, "forward", &format!("port-forward to pod {}/{pod}: {e}", t.namespace));
                    return;
                }
            };
            let Some(mut upstream) = pf.take_stream(remote) else { return };
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {
                    if let Err(e) = r {
                        tracing::debug!("port-forward connection to {pod} ended: {e}");
                    }
                }
            }
            drop(upstream);
            let _ = pf.join().await;
        });
    }
}

/// Streams a pod's logs, each line prefixed by the pod's name, until the pod ends or `cancel`.
pub async fn stream_logs(t: Target, pod: String, image: String, ui: Ui, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let params = LogParams { follow: true, since_seconds: Some(60), ..Default::default() };
    let stream = match pods.log_stream(&pod, &params).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no logs for {pod}: {e}");
            return;
        }
    };
    let mut lines = stream.lines();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            l = lines.try_next() => match l {
                Ok(Some(line)) => ui.line(&image, "log", &format!("[{pod}] {line}")),
                _ => return,
            },
        }
    }
}
