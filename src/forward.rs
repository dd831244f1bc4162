//! Port-forwards that follow rollouts, in-process through the API server: a local listener on 127.0.0.1,
//! and for every connection a stream to the pod of the workload chosen at that moment from the namespace's
//! pod watch ([`choice`]). In `devloop up` a new pod takes the new connections as soon as its port answers
//! a probe ([`probe`]: tried from the moment it is scheduled, well before the kubelet reports it Ready), the old
//! one serving until then; a broken stream is simply re-opened by the next connection.
//! Also: following the logs of the pods that run a rollout's image ([`logs`]).

pub mod choice;
pub mod logs;
mod probe;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::pods::{selected, Reflector};
use crate::cluster::Target;
use crate::config::WorkloadKind;
use choice::{Answered, Candidate, Switch};

/// Where a forward or a log stream tells what happened to it: one line at a time, never waiting.
pub type Say = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Told the pod's name when a forward's connections start going to another pod (its first, or a new one
/// after a rollout).
pub type Picked = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Errors of a forward.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local port could not be bound.
    #[error("port-forward to {workload}: cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { workload: String, port: u16, source: std::io::Error },
}

/// Binds 127.0.0.1:`port` (0 picks a free port); `workload` names what it forwards to, for the error.
pub async fn bind(workload: &str, port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| Error::Bind { workload: workload.into(), port, source })
}

/// What a forward forwards to: a workload, by kind and name, whose pods its selector selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
}

impl Workload {
    /// How the status block and the page name it, as a rollout names what it rolled: a Deployment by its
    /// name, another kind as `kind/name` (so its forwarded URL shows on the row of the image that rolls it).
    pub fn shown(&self) -> String {
        match self.kind {
            WorkloadKind::Deployment => self.name.clone(),
            k => format!("{}/{}", k.noun(), self.name),
        }
    }
}

/// The pod selector (`matchLabels`) of a workload, asked of the API server. The typed apps/v1 kinds, read
/// here: the deployers sit above the forwards.
async fn workload_selector(t: &Target, w: &Workload) -> Result<BTreeMap<String, String>, String> {
    let (client, ns, name) = (t.client.clone(), t.namespace.as_str(), w.name.as_str());
    let got = match w.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, ns).get(name).await.map(|o| o.spec.map(|s| s.selector)),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns).get(name).await.map(|o| o.spec.map(|s| s.selector)),
        WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, ns).get(name).await.map(|o| o.spec.map(|s| s.selector)),
        WorkloadKind::Job => Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client, ns).get(name).await.map(|o| o.spec.and_then(|s| s.selector)),
        // A bare pod selects itself by its labels.
        WorkloadKind::Pod => Api::<Pod>::namespaced(client, ns).get(name).await.map(|o| {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector { match_labels: o.metadata.labels, ..Default::default() })
        }),
    };
    let noun = w.kind.noun();
    let sel = got.map_err(|e| match e {
        kube::Error::Api(ae) if ae.code == 404 => format!("{noun} {ns}/{name} does not exist yet (it will once the first rollout is done)"),
        e => format!("{noun} {ns}/{name}: {e}"),
    })?;
    Ok(sel.and_then(|s| s.match_labels).unwrap_or_default())
}

/// Chooses the pod for each new connection from the namespace's one pod watch (so a connection costs no API
/// round trip: a browser opens many), by the workload's selector and what the probes found. The selector is
/// read once, and again whenever no pod serves (the workload may have been deleted or replaced since).
struct Picker {
    t: Target,
    workload: Workload,
    pods: Arc<Reflector>,
    switch: Switch,
    selector: tokio::sync::Mutex<Option<BTreeMap<String, String>>>,
    /// The pods whose port answered a probe ([`probe`]), kept by [`Picker::tend`].
    answered: Mutex<Answered>,
    /// Told whenever a probe answers: a connection waiting for a pod to serve looks again.
    changed: tokio::sync::Notify,
}

/// How long a connection waits, when no pod serves (a StatefulSet's pod replaced, a Deployment with the
/// Recreate strategy), before it is closed: long enough for a new pod to start and answer.
const HOLD: Duration = Duration::from_secs(10);

impl Picker {
    /// The candidates among `pods`: those `sel` selects.
    fn candidates(pods: &[Arc<Pod>], sel: &BTreeMap<String, String>) -> Vec<Candidate> {
        pods.iter().filter(|p| selected(p, sel)).filter_map(|p| Candidate::of(p)).collect()
    }

    /// The choice now, from the pods now (the answers forgotten that no longer hold).
    fn choose(&self, pods: &[Arc<Pod>], sel: &BTreeMap<String, String>) -> choice::Choice {
        let cands = Self::candidates(pods, sel);
        let mut answered = self.answered.lock().expect("not poisoned");
        choice::forget(&mut answered, &cands);
        choice::choose(&cands, &answered, self.switch)
    }

    /// The pod a new connection would go to now, without asking the API server (none while the workload's
    /// selector is not known yet).
    async fn current(&self) -> Option<String> {
        let sel = self.selector.lock().await.clone()?;
        self.choose(&self.pods.now(), &sel).pod
    }

    /// Tells `tell` where new connections go whenever that changes (the pods changed, a probe answered),
    /// through `last`, which the connections also update, until `cancel`.
    async fn follow(self: Arc<Self>, tell: Picked, last: Arc<Mutex<Option<String>>>, cancel: CancellationToken) {
        let mut changes = self.pods.subscribe();
        loop {
            let answered = self.changed.notified();
            if let Some(pod) = self.current().await {
                told(&tell, &last, pod);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = answered => {}
                c = changes.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = c { return },
            }
        }
    }

    /// The pod for a new connection, or why there is none (after holding it up to [`HOLD`] for one).
    async fn pick(&self) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + HOLD;
        let mut first = true;
        loop {
            // Registered before looking, so an answer in between is not missed.
            let answered = self.changed.notified();
            let choice = self.pick_once(first).await?;
            first = false;
            if let Some(pod) = choice.pod {
                return Ok(pod);
            }
            // Between two pods (a StatefulSet's replaced, the old one gone before the new one answers): hold
            // the connection rather than refuse it, looking again when a probe answers and every 100 ms (a
            // pod may turn Ready meanwhile). `check` has rolled out before it connects: it does not wait.
            if self.switch == Switch::Ready || tokio::time::Instant::now() >= deadline {
                let (noun, ns, name) = (self.workload.kind.noun(), &self.t.namespace, &self.workload.name);
                let what = if self.switch == Switch::Answering { "Ready or answering" } else { "Ready" };
                return Err(format!("no {what} pod of {noun} {ns}/{name}"));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), answered).await;
        }
    }

    /// The choice now; the selector read again first when the one known picks no pod and `refetch`.
    async fn pick_once(&self, refetch: bool) -> Result<choice::Choice, String> {
        let mut selector = self.selector.lock().await;
        if let Some(sel) = selector.as_ref() {
            let choice = self.choose(&self.pods.now(), sel);
            if choice.pod.is_some() || !refetch {
                return Ok(choice);
            }
        }
        let sel = workload_selector(&self.t, &self.workload).await?;
        // The watch may not have listed yet (a connection right after `up` started): wait for its listing.
        let pods = self.pods.listed().await?;
        let choice = self.choose(&pods, &sel);
        *selector = Some(sel);
        Ok(choice)
    }

    /// Keeps a probe running on every pod the choice says to probe, until it answers or is no longer one to
    /// probe (Ready, going away, superseded), looking again at every change of the namespace's pods.
    async fn tend(self: Arc<Self>, remote: u16, cancel: CancellationToken) {
        let mut changes = self.pods.subscribe();
        // A probe's end: (uid, its number, the restarts when it started, answered). The number tells a
        // cancelled probe's end from that of the one started after it on the same pod.
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<(String, u64, i32, bool)>();
        let mut probing: HashMap<String, (u64, CancellationToken)> = HashMap::new();
        let mut started = 0u64;
        let api: Api<Pod> = Api::namespaced(self.t.client.clone(), &self.t.namespace);
        let mut asked = None::<tokio::time::Instant>;
        let mut first = true;
        loop {
            // The first look is at once: a new pod may be there already.
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    c = changes.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = c { break },
                    Some((uid, n, restarts, ok)) = done.recv() => {
                        if probing.get(&uid).is_some_and(|(m, _)| *m == n) {
                            probing.remove(&uid);
                        }
                        if ok {
                            self.answered.lock().expect("not poisoned").insert(uid, restarts);
                            self.changed.notify_waiters();
                        }
                    }
                }
            }
            let sel = self.selector.lock().await.clone();
            let sel = match sel {
                Some(sel) => sel,
                // Not read yet (the workload not there before the first rollout): at most every 2 s, on changes.
                None if asked.is_none_or(|a| a.elapsed() > Duration::from_secs(2)) => {
                    asked = Some(tokio::time::Instant::now());
                    match workload_selector(&self.t, &self.workload).await {
                        Ok(sel) => self.selector.lock().await.insert(sel).clone(),
                        Err(_) => continue,
                    }
                }
                None => continue,
            };
            let pods = self.pods.now();
            let choice = self.choose(&pods, &sel);
            probing.retain(|uid, (_, stop)| {
                let keep = choice.probe.iter().any(|(u, _)| u == uid);
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for (uid, name) in choice.probe {
                if probing.contains_key(&uid) {
                    continue;
                }
                let restarts = Self::candidates(&pods, &sel).iter().find(|c| c.uid == uid).map_or(0, |c| c.restarts);
                let stop = cancel.child_token();
                started += 1;
                probing.insert(uid.clone(), (started, stop.clone()));
                let (api, done_tx, n) = (api.clone(), done_tx.clone(), started);
                tokio::spawn(async move {
                    let ok = probe::until_answers(api, name, remote, stop).await;
                    let _ = done_tx.send((uid, n, restarts, ok));
                });
            }
        }
        for (_, stop) in probing.values() {
            stop.cancel();
        }
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

/// Tells `tell` of `pod` unless it was the last one told.
fn told(tell: &Picked, last: &Mutex<Option<String>>, pod: String) {
    let news = last.lock().expect("not poisoned").replace(pod.clone()).as_ref() != Some(&pod);
    if news {
        tell(&pod);
    }
}

/// Serves connections on `listener` until cancelled, each forwarded to the `remote` port of the pod of
/// `workload` that [`choice::choose`] picks with `switch`. `pods` is the namespace's one pod watch; `picked`
/// hears when new connections go to another pod (as the pods change, and as a connection picks).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    t: Target,
    workload: Workload,
    remote: u16,
    switch: Switch,
    pods: Arc<Reflector>,
    say: Say,
    picked: Option<Picked>,
    cancel: CancellationToken,
) {
    let name = workload.name.clone();
    let picker = Arc::new(Picker {
        t: t.clone(),
        workload,
        pods,
        switch,
        selector: Default::default(),
        answered: Default::default(),
        changed: Default::default(),
    });
    if switch == Switch::Answering {
        tokio::spawn(picker.clone().tend(remote, cancel.child_token()));
    }
    // A browser opens many connections at once and retries: say why a connection was refused once, not per
    // connection, until it changes or a connection gets through.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Said::default()));
    let last_pick: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    if let Some(tell) = picked.clone() {
        tokio::spawn(picker.clone().follow(tell, last_pick.clone(), cancel.child_token()));
    }
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
                    tracing::info!("port-forward to {name}: accepting again after {streak} failed attempt(s)");
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
        let (picked, last_pick) = (picked.clone(), last_pick.clone());
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
            if let Some(tell) = &picked {
                told(tell, &last_pick, pod.clone());
            }
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
