//! Port-forwards that follow rollouts, in-process through the API server: a local listener on 127.0.0.1,
//! and for every connection a stream to the newest Ready pod of the Deployment at that moment (kept by a
//! watch), so after a rollout new connections reach the new pod, and a broken stream is simply re-opened by
//! the next one.
//! Also: following the logs of the pods that run a rollout's image ([`logs`]).

pub mod logs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::pods::{newest_ready_selected, Reflector};
use crate::cluster::{selector_labels, Target};

/// Where a forward or a log stream tells what happened to it: one line at a time, never waiting.
pub type Say = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

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

/// The pod selector of a Deployment, asked of the API server.
async fn deployment_selector(t: &Target, deployment: &str) -> Result<BTreeMap<String, String>, String> {
    let deps: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let dep = deps.get(deployment).await.map_err(|e| match e {
        kube::Error::Api(ae) if ae.code == 404 => {
            format!("deployment {}/{deployment} does not exist yet (it will once the first rollout is done)", t.namespace)
        }
        e => format!("deployment {}/{deployment}: {e}", t.namespace),
    })?;
    Ok(selector_labels(&dep))
}

/// Chooses the pod for each new connection from the namespace's one pod watch (so a connection costs no API
/// round trip: a browser opens many), by the Deployment's selector. The selector is read once, and again
/// whenever no Ready pod matches it (the Deployment may have been deleted or replaced since).
struct Picker {
    t: Target,
    deployment: String,
    pods: Arc<Reflector>,
    selector: tokio::sync::Mutex<Option<BTreeMap<String, String>>>,
}

impl Picker {
    async fn pick(&self) -> Result<String, String> {
        let mut selector = self.selector.lock().await;
        if let Some(sel) = selector.as_ref() {
            if let Some(pod) = newest_ready_selected(&self.pods.now(), sel) {
                return Ok(pod);
            }
        }
        let sel = deployment_selector(&self.t, &self.deployment).await?;
        // The watch may not have listed yet (a connection right after `up` started): wait for its listing.
        let pods = self.pods.listed().await?;
        let pod = newest_ready_selected(&pods, &sel);
        *selector = Some(sel);
        pod.ok_or_else(|| format!("no Ready pod of deployment {}/{}", self.t.namespace, self.deployment))
    }
}

/// The pause after a failed `accept`: a persistent error (EMFILE when out of file descriptors) fails again
/// at once, so retrying immediately would spin a core. 10 ms, doubling up to 1 s, back to 10 ms after a
/// success.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures in the current streak.
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Notes a failure; returns how long to wait and whether it starts a streak (the one to log).
    fn failed(&mut self) -> (Duration, bool) {
        self.failures += 1;
        let wait = Self::FIRST.saturating_mul(1 << (self.failures - 1).min(16)).min(Self::MAX);
        (wait, self.failures == 1)
    }

    /// Notes a success; returns the length of the streak it ends (0 if none).
    fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

/// The last reason a connection was refused, so that a burst of refused connections is reported once.
#[derive(Debug, Default)]
struct Said {
    last: Option<String>,
}

impl Said {
    /// Notes a refusal; true when it should be reported (the first, or a different reason).
    fn refused(&mut self, msg: &str) -> bool {
        if self.last.as_deref() == Some(msg) {
            return false;
        }
        self.last = Some(msg.to_string());
        true
    }

    /// A connection got through: the next refusal is news again.
    fn connected(&mut self) {
        self.last = None;
    }
}

/// Serves connections on `listener` until cancelled, each forwarded to a Ready pod's `remote` port.
/// `pods` is the namespace's one pod watch.
pub async fn serve(listener: TcpListener, t: Target, deployment: String, remote: u16, pods: Arc<Reflector>, say: Say, cancel: CancellationToken) {
    let picker = Arc::new(Picker { t: t.clone(), deployment: deployment.clone(), pods, selector: Default::default() });
    // A browser opens many connections at once and retries: say why a connection was refused once, not per
    // connection, until it changes or a connection gets through.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Said::default()));
    let mut backoff = AcceptBackoff::default();
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            c = listener.accept() => c,
        };
        let mut conn = match conn {
            Ok((conn, _)) => {
                let streak = backoff.succeeded();
                if streak > 0 {
                    tracing::info!("port-forward to {deployment}: accepting again after {streak} failed attempt(s)");
                }
                conn
            }
            Err(e) => {
                let (wait, first) = backoff.failed();
                if first {
                    say(&format!("port-forward: cannot accept a connection ({e}); retrying with backoff"));
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let _ = conn.set_nodelay(true);
        let (t, say, cancel, picker, said) =
            (t.clone(), say.clone(), cancel.clone(), picker.clone(), said.clone());
        tokio::spawn(async move {
            let refused = |msg: String| {
                if said.lock().expect("not poisoned").refused(&msg) {
                    say(&format!("{msg}; connections are closed until then"));
                }
            };
            let pod = match picker.pick().await {
                Ok(p) => p,
                Err(e) => return refused(format!("port-forward: {e}")),
            };
            let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
            let mut pf = match pods.portforward(&pod, &[remote]).await {
                Ok(pf) => pf,
                Err(e) => return refused(format!("port-forward to pod {}/{pod}: {e}", t.namespace)),
            };
            said.lock().expect("not poisoned").connected();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_reported_once_until_it_changes_or_a_connection_gets_through() {
        let mut s = Said::default();
        let gone = "port-forward: deployment ns/hello does not exist yet";
        assert!(s.refused(gone));
        assert!(!s.refused(gone), "the same reason twice in a row is said once");
        assert!(s.refused("port-forward: no Ready pod of deployment ns/hello"), "a new reason is news");
        assert!(!s.refused("port-forward: no Ready pod of deployment ns/hello"));
        s.connected();
        assert!(s.refused("port-forward: no Ready pod of deployment ns/hello"), "after a success it is news again");
    }

    #[test]
    fn accept_errors_back_off_from_10ms_doubling_to_1s_and_a_success_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<(u64, bool)> = (0..10).map(|_| b.failed()).map(|(d, first)| (d.as_millis() as u64, first)).collect();
        assert_eq!(
            waits,
            [(10, true), (20, false), (40, false), (80, false), (160, false), (320, false), (640, false), (1000, false), (1000, false), (1000, false)]
        );
        for _ in 0..100 {
            b.failed();
        }
        assert_eq!(b.failed().0, Duration::from_secs(1), "no overflow in a long streak");
        assert_eq!(b.succeeded(), 111);
        assert_eq!(b.succeeded(), 0);
        assert_eq!(b.failed(), (Duration::from_millis(10), true), "a new streak starts over and is logged again");
    }
}
