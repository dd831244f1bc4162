//! Whether a pod's port answers, asked through the same kubelet port-forward the forward's connections take:
//! the kubelet reaches the pod's network once its sandbox exists, before its containers run or are Ready (a
//! pod without one yet fails the probe at once).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// How long a probe waits for the kubelet to say the port cannot be reached. The kubelet dials the port as
/// the stream opens and reports a refused dial on the stream's error channel within milliseconds; a port
/// that stays silent this long (a server waits for the client to speak first) has accepted the connection.
const SILENCE: Duration = Duration::from_millis(150);

/// The pause between probes of one pod: short while the pod is new (a save waits on it)…
const FAST: Duration = Duration::from_millis(60);
/// …and longer after [`FAST_FOR`], for a pod whose port never answers (another port, or a crash loop).
const SLOW: Duration = Duration::from_secs(1);
/// How long a pod is probed every [`FAST`].
const FAST_FOR: Duration = Duration::from_secs(30);

/// Whether `pod`'s `port` accepts a connection now: the port-forward opened, and the kubelet did not report
/// the dial failing before [`SILENCE`] passed or the pod spoke first.
pub async fn answers(pods: &Api<Pod>, pod: &str, port: u16) -> bool {
    let Ok(mut pf) = pods.portforward(pod, &[port]).await else { return false };
    let (Some(error), Some(mut stream)) = (pf.take_error(port), pf.take_stream(port)) else { return false };
    let mut first = [0u8; 1];
    let answered = tokio::select! {
        // Some(message): the dial failed; None: the forward ended without a word, so nothing is there either.
        _ = error => false,
        // A server that speaks first (a greeting) answered; a stream closed at once did not.
        n = stream.read(&mut first) => matches!(n, Ok(1)),
        _ = tokio::time::sleep(SILENCE) => true,
    };
    drop(stream);
    pf.abort();
    answered
}

/// Probes `pod`'s `port` until it answers (true) or `cancel` fires (false): every [`FAST`] at first, then
/// every [`SLOW`].
pub async fn until_answers(pods: Api<Pod>, pod: String, port: u16, cancel: CancellationToken) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        let probe = async {
            let t = tokio::time::Instant::now();
            let ok = answers(&pods, &pod, port).await;
            tracing::debug!("probe of {pod}:{port}: {} in {:?}", if ok { "answered" } else { "no answer" }, t.elapsed());
            ok
        };
        tokio::select! {
            _ = cancel.cancelled() => return false,
            ok = probe => if ok { return true },
        }
        let pause = if started.elapsed() < FAST_FOR { FAST } else { SLOW };
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
