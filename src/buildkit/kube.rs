//! BuildKit inside the cluster, reached through the API server: `kube-pod://<pod>?namespace=<ns>`,
//! `kube-deployment://<name>?namespace=<ns>` and `kube-statefulset://<name>?namespace=<ns>` (optional
//! `&port=<n>`, default 1234). Like buildctl's
//! connection helpers, but in-process: every gRPC connection is a port-forward (kube-rs, WebSocket) to the
//! pod's BuildKit TCP port, so no Service, NodePort or load balancer is needed and the kube credentials are
//! the only ones used. For a Deployment a Ready pod is picked on every (re)connect, so a restarted pod is
//! found again; a dropped stream is simply dialled again by tonic through the same connector. Pods are
//! picked from one watch on BuildKit's namespace per connector ([`Reflector`]), not listed per connect. For a
//! StatefulSet (several replicas, each its own cache) the first connection goes to its lowest Ready replica
//! and [`Replicas`] gives each image the channel of the replica it builds on ([`super::replicas`]).

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

use super::replicas::{self, Placement, Replica};
use super::{Client, Error};
use crate::config;
use crate::cluster::pods::Reflector;
use crate::cluster::{self, KubeOptions};

pub use crate::config::addr::kube::{Kind, KubeAddr, DEFAULT_PORT};

/// The cluster a kube address is reached through: the same context (and allow-list) as deploying.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// `[kube]`.
    pub kube: &'a config::Kube,
    /// The command line's overrides.
    pub opts: &'a KubeOptions,
}

/// What the connector knows about its port-forwards, shared with the [`super::Client`].
#[derive(Debug, Default)]
pub struct Link {
    /// The pod the last connection went to (`pod ns/name`).
    pod: Mutex<Option<String>>,
    /// The last refusal the API server sent on a port-forward's error channel (nothing listening, …).
    refused: Mutex<Option<String>>,
    /// The address named a StatefulSet (or a Deployment's name turned out to be one): its name.
    statefulset: Mutex<Option<String>>,
}

impl Link {
    /// The pod the last connection went to.
    pub fn pod(&self) -> Option<String> {
        self.pod.lock().expect("not poisoned").clone()
    }
    /// The last port-forward refusal, if any.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("not poisoned").clone()
    }
}

/// Shared [`Link`].
pub type Via = Arc<Link>;

/// Opens a port-forward per connection.
#[derive(Clone)]
struct Dialer {
    addr: KubeAddr,
    namespace: String,
    client: kube::Client,
    /// The watch on BuildKit's namespace's pods, started with the connector and shared by its (re)connects.
    pods: Arc<Reflector>,
    /// The last dial failure, said in full: tonic reports a failed connector only as a transport error.
    last_error: Arc<Mutex<Option<String>>>,
    via: Via,
}

impl Dialer {
    /// The pod to forward to: the named one if it is Running, else the newest Ready pod of the Deployment (or
    /// the lowest Ready replica of the StatefulSet), both from the watch on BuildKit's namespace. The workload
    /// itself is read on every (re)connect: one GET for its selector (rarely changed, and a connection lives
    /// long), which also tells when it is gone. A `kube-deployment://` name with no Deployment but a
    /// StatefulSet (`devloop buildkit install --replicas N` replaces the one with the other) is the
    /// StatefulSet, so an existing config keeps working.
    async fn pod(&self) -> Result<String, String> {
        let ns = &self.namespace;
        let name = &self.addr.name;
        let set = match self.addr.kind {
            Kind::Pod => return running_pod(ns, name, &self.pods.listed().await?),
            Kind::Deployment => {
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                let dep = deployments.get_opt(name).await.map_err(|e| format!("reading deployment {ns}/{name}: {e}"))?;
                if let Some(dep) = dep {
                    return ready_pod_of_deployment(ns, name, &cluster::selector_labels(&dep), &self.pods.listed().await?);
                }
                statefulset(&self.client, ns, name).await?.ok_or_else(|| {
                    format!("no such deployment {ns}/{name}, nor statefulset (install one with `devloop buildkit install --namespace {ns} --name {name}`)")
                })?
            }
            Kind::StatefulSet => statefulset(&self.client, ns, name).await?.ok_or_else(|| {
                format!("no such statefulset {ns}/{name} (install one with `devloop buildkit install --namespace {ns} --name {name} --replicas N`)")
            })?,
        };
        *self.via.statefulset.lock().expect("not poisoned") = Some(name.clone());
        let replicas = replicas_of(name, &set, &self.pods.listed().await?);
        replicas.iter().find(|r| r.ready).map(|r| r.name.clone()).ok_or_else(|| no_ready_replica(ns, name, &replicas))
    }

    async fn dial(&self) -> Result<Forwarded, String> {
        let pod = self.pod().await?;
        let port = self.addr.port;
        let ns = &self.namespace;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut pf = pods.portforward(&pod, &[port]).await.map_err(|e| match e {
            // WebSocket port-forwards are authorized as `get` (Kubernetes ≤ 1.34) or `create` (newer).
            kube::Error::Api(s) if s.code == 403 => format!(
                "port-forward to pod {ns}/{pod} forbidden: {} (a user needs `get` and `create` on pods/portforward in {ns})",
                s.message
            ),
            kube::Error::Api(s) => format!("port-forward to pod {ns}/{pod} port {port} refused by the API server: {}", s.message),
            other => format!("port-forward to pod {ns}/{pod} port {port} failed: {other}"),
        })?;
        let (Some(stream), Some(error)) = (pf.take_stream(port), pf.take_error(port)) else {
            return Err(format!("port-forward to pod {ns}/{pod}: no stream for port {port}"));
        };
        tracing::debug!("BuildKit connection through a port-forward to pod {ns}/{pod} port {port}");
        *self.via.pod.lock().expect("not poisoned") = Some(format!("pod {ns}/{pod}"));
        *self.via.refused.lock().expect("not poisoned") = None;
        let what = format!("port-forward to pod {ns}/{pod} port {port}");
        let link = self.via.clone();
        let said = what.clone();
        tokio::spawn(async move {
            if let Some(msg) = error.await {
                tracing::debug!("{said}: {msg}");
                *link.refused.lock().expect("not poisoned") = Some(format!("{said}: {msg}"));
            }
        });
        tokio::spawn(async move {
            if let Err(e) = pf.join().await {
                tracing::debug!("port-forward ended: {e}");
            }
        });
        Ok(Forwarded { inner: stream, link: self.via.clone() })
    }
}

/// StatefulSet `ns/name`, if there is one.
async fn statefulset(client: &kube::Client, ns: &str, name: &str) -> Result<Option<StatefulSet>, String> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.get_opt(name).await.map_err(|e| format!("reading statefulset {ns}/{name}: {e}"))
}

/// The replicas StatefulSet `name` wants (`name-0`…), each Ready or not as `pods` (BuildKit's namespace's) say.
fn replicas_of(name: &str, set: &StatefulSet, pods: &[Arc<Pod>]) -> Vec<Replica> {
    let count = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    super::replicas::names(name, count)
        .into_iter()
        .map(|n| match pods.iter().find(|p| p.metadata.name.as_deref() == Some(&n)) {
            Some(p) if p.metadata.deletion_timestamp.is_none() && is_ready(p) => Replica { name: n, ready: true, state: "Ready".into() },
            Some(p) => {
                let state = pod_state(p);
                let state = state.strip_prefix(&format!("{n}: ")).unwrap_or(&state).to_string();
                Replica { name: n, ready: false, state }
            }
            None => Replica { name: n, ready: false, state: "no pod".into() },
        })
        .collect()
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn no_ready_replica(ns: &str, name: &str, replicas: &[Replica]) -> String {
    let states: Vec<String> = replicas.iter().map(|r| format!("{}: {}", r.name, r.state)).collect();
    let states = if states.is_empty() { "no replicas".to_string() } else { states.join(", ") };
    format!("no Ready replica of statefulset {ns}/{name} ({states})")
}

/// The pod `name` among `pods` (BuildKit's namespace's) if it is Running and not being deleted.
fn running_pod(ns: &str, name: &str, pods: &[Arc<Pod>]) -> Result<String, String> {
    let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name)).ok_or_else(|| format!("no such pod {ns}/{name}"))?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase != "Running" || pod.metadata.deletion_timestamp.is_some() {
        let state = if pod.metadata.deletion_timestamp.is_some() { "being deleted".into() } else { format!("phase {phase}") };
        return Err(format!("pod {ns}/{name} is not running ({state})"));
    }
    Ok(name.to_string())
}

/// The newest Ready pod among `pods` (BuildKit's namespace's) that Deployment `name`'s `selector` selects;
/// else an error saying what state its pods are in.
fn ready_pod_of_deployment(ns: &str, name: &str, selector: &BTreeMap<String, String>, pods: &[Arc<Pod>]) -> Result<String, String> {
    cluster::pods::newest_ready_selected(pods, selector).ok_or_else(|| {
        let states: Vec<String> = pods.iter().filter(|p| cluster::pods::selected(p, selector)).map(|p| pod_state(p)).collect();
        let pods = if states.is_empty() { "no pods".to_string() } else { states.join(", ") };
        format!("no Ready pod of deployment {ns}/{name} ({pods})")
    })
}

/// One line about a pod that is not Ready: its name, phase and the reason a container waits, if any.
fn pod_state(p: &Pod) -> String {
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "unknown".into());
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let deleting = if p.metadata.deletion_timestamp.is_some() { ", being deleted" } else { "" };
    match waiting {
        Some(w) => format!("{name}: {phase}, {w}{deleting}"),
        None => format!("{name}: {phase}, not Ready{deleting}"),
    }
}

/// The stream of one port-forward. The API server reports a refused connection inside the pod (nothing
/// listening on the port) on the port's error channel and then ends the data stream; the end (or a write
/// into the closed stream) is turned into an error carrying that message when it has arrived, so the cause
/// is not lost as a bare "broken pipe".
struct Forwarded {
    inner: DuplexStream,
    link: Via,
}

impl Forwarded {
    fn refused(&self) -> Option<io::Error> {
        self.link.refused().map(|m| io::Error::new(io::ErrorKind::ConnectionRefused, m))
    }
}

impl AsyncRead for Forwarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => Poll::Ready(self.refused().map_or(Ok(()), Err)),
            other => other,
        }
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.refused().unwrap_or(e))),
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connector of a channel: every connection a port-forward that `dialer` opens; a failure is kept in
/// full in its `last_error` (tonic says only "transport error").
fn connector(dialer: Dialer) -> impl tower::Service<Uri, Response = TokioIo<Forwarded>, Error = io::Error, Future = impl Send> + Clone + Send + 'static {
    tower::service_fn(move |_: Uri| {
        let d = dialer.clone();
        async move {
            match d.dial().await {
                Ok(s) => Ok(TokioIo::new(s)),
                Err(m) => {
                    *d.last_error.lock().expect("not poisoned") = Some(m.clone());
                    Err(io::Error::other(m))
                }
            }
        }
    })
}

/// The URI is required by the API but unused: every connection is a port-forward.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://buildkitd").connect_timeout(Duration::from_secs(15))
}

/// A gRPC channel to the BuildKit that `addr` names, every connection a port-forward through the API server
/// of the deploy context. The context allow-list is checked before any request is sent. For a StatefulSet,
/// also its [`Replicas`].
pub(super) async fn channel(raw: &str, addr: &KubeAddr, cluster: Cluster<'_>) -> Result<(Channel, Via, Option<Arc<Replicas>>), Error> {
    let target = cluster::connect(cluster.kube, cluster.opts).await.map_err(|e| match e {
        cluster::Error::NotAllowed(source) => Error::NotAllowed { addr: raw.to_string(), source },
        other => Error::Unreachable { addr: raw.to_string(), reason: other.to_string() },
    })?;
    let namespace = addr.namespace.clone().unwrap_or_else(|| target.namespace.clone());
    let last_error: Arc<Mutex<Option<String>>> = Default::default();
    let via: Via = Default::default();
    // Dropped with the channel (the connector owns it) and the replicas, which stops the watch.
    let pods = Reflector::watch(target.client.clone(), &namespace);
    let dialer = Dialer { addr: addr.clone(), namespace: namespace.clone(), client: target.client, pods, last_error: last_error.clone(), via: via.clone() };
    tracing::debug!("BuildKit at {} through context {}", addr.describe(&namespace), target.context);
    let base = dialer.clone();
    let channel = endpoint().connect_with_connector(connector(dialer)).await.map_err(|e| {
        let reason = last_error.lock().expect("not poisoned").take().unwrap_or_else(|| crate::util::error_chain(&e));
        Error::Unreachable { addr: raw.to_string(), reason: format!("{reason} (context {})", target.context) }
    })?;
    // The first dial found out whether the name is a StatefulSet.
    let sharded = via.statefulset.lock().expect("not poisoned").is_some();
    let replicas = sharded.then(|| Arc::new(Replicas { raw: raw.to_string(), base, channels: Default::default() }));
    Ok((channel, via, replicas))
}

/// The replicas of a StatefulSet BuildKit: a channel per replica (dialled when first used, again after a
/// break), so that each image builds on its own replica ([`replicas::choose`]).
pub struct Replicas {
    raw: String,
    /// The StatefulSet address's dialer; each replica's is a copy naming its pod.
    base: Dialer,
    channels: Mutex<BTreeMap<String, (Channel, Via)>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replicas({})", self.raw)
    }
}

impl Replicas {
    /// `statefulset ns/name`.
    pub fn describe(&self) -> String {
        format!("statefulset {}/{}", self.base.namespace, self.base.addr.name)
    }

    /// The replicas the StatefulSet wants (`name-0`…), each Ready or not, as the watch has them now.
    pub async fn list(&self) -> Result<Vec<Replica>, Error> {
        let (ns, name) = (&self.base.namespace, &self.base.addr.name);
        let lost = |reason: String| Error::Unreachable { addr: self.raw.clone(), reason };
        let set = statefulset(&self.base.client, ns, name).await.map_err(lost)?.ok_or_else(|| lost(format!("statefulset {ns}/{name} is gone")))?;
        Ok(replicas_of(name, &set, &self.base.pods.listed().await.map_err(lost)?))
    }

    /// A client of replica `pod`.
    pub fn client(&self, pod: &str) -> Client {
        let (channel, via) = self
            .channels
            .lock()
            .expect("not poisoned")
            .entry(pod.to_string())
            .or_insert_with(|| {
                let via: Via = Default::default();
                let addr = KubeAddr { kind: Kind::Pod, name: pod.to_string(), ..self.base.addr.clone() };
                let d = Dialer { addr, via: via.clone(), last_error: Default::default(), ..self.base.clone() };
                (endpoint().connect_with_connector_lazy(connector(d)), via)
            })
            .clone();
        Client::of(channel, None, Some(via))
    }

    /// The client of the replica `image` builds on now, and where that is.
    pub async fn place(&self, image: &str) -> Result<(Client, Placement), Error> {
        let all = self.list().await?;
        let p = replicas::choose(image, &all).ok_or_else(|| Error::Unreachable {
            addr: self.raw.clone(),
            reason: no_ready_replica(&self.base.namespace, &self.base.addr.name, &all),
        })?;
        Ok((self.client(&p.on), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_wrong() {
        let ok = |kind, name: &str, ns: Option<&str>, port| Ok(KubeAddr { kind, name: name.into(), namespace: ns.map(Into::into), port });
        // (address, parsed or a fragment of the error)
        let cases: Vec<(&str, Result<KubeAddr, &str>)> = vec![
            ("kube-pod://buildkitd-0?namespace=ci", ok(Kind::Pod, "buildkitd-0", Some("ci"), 1234)),
            ("kube-pod://bk", ok(Kind::Pod, "bk", None, 1234)),
            ("kube-deployment://buildkitd?namespace=build&port=2345", ok(Kind::Deployment, "buildkitd", Some("build"), 2345)),
            ("kube-deployment://buildkitd?port=1&namespace=a", ok(Kind::Deployment, "buildkitd", Some("a"), 1)),
            ("kube-deployment://bk.team?", ok(Kind::Deployment, "bk.team", None, 1234)),
            ("kube-statefulset://buildkitd?namespace=build", ok(Kind::StatefulSet, "buildkitd", Some("build"), 1234)),
            ("kube-statefulset://", Err("no statefulset name")),
            ("kube-deployment://?namespace=x", Err("no deployment name")),
            ("kube-pod://", Err("no pod name")),
            ("kube-pod://BuildKit", Err("not a valid pod name")),
            ("kube-pod://bk?namespace=Build_Ns", Err("not a valid namespace")),
            ("kube-pod://bk?namespace=", Err("not a valid namespace")),
            ("kube-pod://bk?port=0", Err("not a TCP port")),
            ("kube-pod://bk?port=70000", Err("not a TCP port")),
            ("kube-pod://bk?port=x", Err("not a TCP port")),
            ("kube-pod://bk?context=prod", Err("--kube-context")),
            ("kube-pod://bk?container=buildkitd", Err("unknown parameter `container`")),
        ];
        for (addr, want) in cases {
            let got = KubeAddr::parse(addr).unwrap_or_else(|| panic!("{addr} is a kube address"));
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{addr}"),
                Err(frag) => {
                    let e = got.expect_err(addr);
                    assert!(e.contains(frag) && e.contains(addr), "{addr}: {e}");
                }
            }
        }
        for other in ["tcp://a:1", "unix:///x", "kube://bk", "docker://", "kube-pods://x"] {
            assert!(KubeAddr::parse(other).is_none(), "{other}");
        }
    }

    #[test]
    fn descriptions_name_the_namespace_in_use() {
        let a = KubeAddr::parse("kube-deployment://bk").unwrap().unwrap();
        assert_eq!(a.describe("dev-alice"), "deployment dev-alice/bk");
        let a = KubeAddr::parse("kube-pod://p?namespace=ci").unwrap().unwrap();
        assert_eq!(a.describe("dev-alice"), "pod ci/p");
    }

    #[tokio::test]
    async fn a_refusal_on_the_error_channel_turns_the_end_of_stream_into_an_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let link = Via::default();
        *link.refused.lock().unwrap() = Some("port-forward to pod ns/p port 1234: connection refused".into());
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut f = Forwarded { inner: a, link: link.clone() };
        let e = f.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.to_string(), "port-forward to pod ns/p port 1234: connection refused");
        let e = f.write_all(b"PRI * HTTP/2.0").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // Without a refusal, an end is an end.
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut f = Forwarded { inner: a, link: Via::default() };
        assert_eq!(f.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert_eq!(f.write_all(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    /// A pod of BuildKit's namespace, as the watch has it: `status` is its status object.
    fn pod(name: &str, app: &str, created: u32, deleting: bool, status: serde_json::Value) -> Arc<Pod> {
        crate::test_util::labelled_pod(name, app, created, deleting, status)
    }

    fn ready() -> serde_json::Value {
        serde_json::json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    }

    fn waiting(reason: &str) -> serde_json::Value {
        serde_json::json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "buildkitd", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason}}}]})
    }

    #[test]
    fn a_deployment_connects_to_its_newest_ready_pod_or_says_what_state_its_pods_are_in() {
        let sel: BTreeMap<String, String> = [("app".to_string(), "buildkitd".to_string())].into();
        let old = pod("buildkitd-old", "buildkitd", 1, false, ready());
        let new = pod("buildkitd-new", "buildkitd", 3, false, ready());
        let leaving = pod("buildkitd-leaving", "buildkitd", 5, true, ready());
        let pulling = pod("buildkitd-pulling", "buildkitd", 7, false, waiting("ImagePullBackOff"));
        let stranger = pod("web-1", "web", 9, false, ready());
        let pick = |pods: &[&Arc<Pod>]| ready_pod_of_deployment("ci", "buildkitd", &sel, &pods.iter().map(|p| (*p).clone()).collect::<Vec<_>>());
        assert_eq!(pick(&[&old, &new, &leaving, &pulling, &stranger]), Ok("buildkitd-new".into()));
        assert_eq!(pick(&[&old, &stranger]), Ok("buildkitd-old".into()), "another workload's newer pod is not BuildKit");
        assert_eq!(
            pick(&[&pulling, &leaving, &stranger]),
            Err("no Ready pod of deployment ci/buildkitd (buildkitd-pulling: Pending, ImagePullBackOff, buildkitd-leaving: Running, not Ready, being deleted)".into()),
            "only the Deployment's own pods are described"
        );
        assert_eq!(pick(&[&stranger]), Err("no Ready pod of deployment ci/buildkitd (no pods)".into()));
    }

    #[test]
    fn a_named_pod_is_connected_to_only_while_it_runs() {
        let pods = vec![
            pod("bk", "buildkitd", 1, false, ready()),
            pod("bk-pending", "buildkitd", 2, false, waiting("ContainerCreating")),
            pod("bk-leaving", "buildkitd", 3, true, ready()),
        ];
        assert_eq!(running_pod("ci", "bk", &pods), Ok("bk".into()));
        assert_eq!(running_pod("ci", "bk-pending", &pods), Err("pod ci/bk-pending is not running (phase Pending)".into()));
        assert_eq!(running_pod("ci", "bk-leaving", &pods), Err("pod ci/bk-leaving is not running (being deleted)".into()));
        assert_eq!(running_pod("ci", "gone", &pods), Err("no such pod ci/gone".into()));
    }

    #[test]
    fn a_statefulsets_replicas_are_its_ordinal_names_each_ready_or_in_some_state() {
        let set: StatefulSet = serde_json::from_value(serde_json::json!({"metadata": {"name": "buildkitd"}, "spec": {"replicas": 3,
            "selector": {}, "serviceName": "buildkitd", "template": {}}}))
        .unwrap();
        let pods = vec![
            pod("buildkitd-0", "buildkitd", 1, false, ready()),
            pod("buildkitd-1", "buildkitd", 2, false, waiting("ContainerCreating")),
            pod("buildkitd-9", "buildkitd", 3, false, ready()),
        ];
        let all = replicas_of("buildkitd", &set, &pods);
        let seen: Vec<(&str, bool, &str)> = all.iter().map(|r| (r.name.as_str(), r.ready, r.state.as_str())).collect();
        assert_eq!(seen, [("buildkitd-0", true, "Ready"), ("buildkitd-1", false, "Pending, ContainerCreating"), ("buildkitd-2", false, "no pod")]);
        let leaving = vec![pod("buildkitd-0", "buildkitd", 1, true, ready())];
        assert_eq!(
            no_ready_replica("ci", "buildkitd", &replicas_of("buildkitd", &set, &leaving)),
            "no Ready replica of statefulset ci/buildkitd (buildkitd-0: Running, not Ready, being deleted, buildkitd-1: no pod, buildkitd-2: no pod)"
        );
    }
}
