//! Connecting to buildkitd: `unix://` sockets and `tcp://` with optional TLS, as buildctl's `--addr`,
//! `--tlscacert`, `--tlscert` and `--tlskey` do; or to Docker Engine's embedded BuildKit (`docker://`,
//! `docker-unix:///path`, `docker-tcp://host:port`) through the engine's API; or to a BuildKit in the
//! cluster through the API server (`kube-pod://`, `kube-deployment://`, `kube-statefulset://`: see
//! [`super::kube`]).

use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::ListWorkersRequest;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::Error;
use crate::config;
use crate::docker::{self, Engine};

/// BuildKit's own gRPC message limit; tonic's 4 MiB default is too small for large LLB definitions.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A connected BuildKit: its Control client, and the engine when it is Docker Engine's embedded one.
#[derive(Clone, Debug)]
pub struct Client {
    /// BuildKit's Control service.
    pub control: ControlClient<Channel>,
    /// The Docker Engine this BuildKit runs in, if any (then images are exported with its `moby` exporter).
    pub engine: Option<Engine>,
    /// For a BuildKit in the cluster: the pod the connection goes to (`pod ns/name`), kept up to date.
    pub via: Option<super::kube::Via>,
    /// For a StatefulSet of BuildKit replicas: each image builds on its own ([`Client::for_image`]).
    pub replicas: Option<std::sync::Arc<super::kube::Replicas>>,
}

impl Client {
    /// A client on `channel`, with BuildKit's message limits.
    pub(super) fn of(channel: Channel, engine: Option<Engine>, via: Option<super::kube::Via>) -> Client {
        let control = ControlClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
        Client { control, engine, via, replicas: None }
    }

    /// The client that builds `image`: this one, or for a StatefulSet the replica `image` builds on now and
    /// where that is ([`super::replicas`]). Err when no replica is Ready.
    pub async fn for_image(&self, image: &str) -> Result<(Client, Option<super::replicas::Placement>), Error> {
        match &self.replicas {
            None => Ok((self.clone(), None)),
            Some(r) => r.place(image).await.map(|(c, p)| (c, Some(p))),
        }
    }
}

/// A Control client connected to `cfg.addr`. Fails fast, naming the address, when nothing answers.
/// `cluster` is only used by kube addresses: the context (allow-listed) and namespace they are reached in.
pub async fn connect(cfg: &config::Buildkit, cluster: super::kube::Cluster<'_>) -> Result<Client, Error> {
    let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable { addr: cfg.addr.clone(), reason: e.to_string() };
    let mut engine = None;
    let mut via = None;
    let mut replicas = None;
    let channel = if let Some(addr) = super::kube::KubeAddr::parse(&cfg.addr) {
        let addr = addr.map_err(|m| unreachable(&m))?;
        let (channel, v, r) = super::kube::channel(&cfg.addr, &addr, cluster).await?;
        (via, replicas) = (Some(v), r);
        channel
    } else if let Some(addr) = docker::engine_of(cfg, &docker::Env::current()) {
        let addr = addr.map_err(|m| unreachable(&m))?;
        let e = Engine::connect(&addr).await.map_err(|e| match e {
            docker::Error::Unreachable { reason, .. } => unreachable(&format!("Docker Engine at {addr}: {reason}")),
            other => unreachable(&other),
        })?;
        tracing::debug!("BuildKit through {e:?}");
        let channel = docker::grpc::channel(&e.dialer).await.map_err(|e| unreachable(&crate::util::error_chain(&e)))?;
        engine = Some(e);
        channel
    } else if let Some(path) = cfg.addr.strip_prefix("unix://") {
        let path = path.to_string();
        // The URI is required by the API but unused: every connection goes to the socket.
        Endpoint::from_static("http://buildkitd")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| unreachable(&crate::util::error_chain(&e)))?
    } else if let Some(host_port) = cfg.addr.strip_prefix("tcp://") {
        let tls = !cfg.plain_tcp();
        if !tls {
            // config::load refuses this unless the user opted in; say it once per run, not per (re)connection.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: BuildKit at {} is plain TCP without TLS ([buildkit] insecure = true): registry \
                     credentials and the build context cross the network unencrypted",
                    cfg.addr
                )
            });
        }
        let scheme = if tls { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{host_port}"))
            .map_err(|e| unreachable(&e))?
            .connect_timeout(Duration::from_secs(5));
        if tls {
            ep = ep.tls_config(tls_config(cfg)?).map_err(|e| Error::Tls(format!("cannot use the certificates: {e:?}")))?;
        }
        ep.connect().await.map_err(|e| unreachable(&crate::util::error_chain(&e)))?
    } else {
        return Err(unreachable(
            &"unsupported address scheme (use unix://, tcp://, docker://, docker-unix://, docker-tcp://, kube-pod://, \
              kube-deployment:// or kube-statefulset://)",
        ));
    };
    let mut client = Client::of(channel, engine, via);
    client.replicas = replicas;
    // One cheap call now, so a daemon that rejects us (TLS without a client certificate, a proxy that is not
    // BuildKit) is reported here with its address, not later as a failed session.
    let probe = tokio::time::timeout(Duration::from_secs(10), client.control.list_workers(ListWorkersRequest::default()));
    match probe.await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(status)) => {
            // A transport failure says only "transport error"; the cause (e.g. a refused port-forward) is below.
            let mut cause = std::error::Error::source(&status).map(|e| format!(": {}", crate::util::error_chain(e))).unwrap_or_default();
            // Through a port-forward, the refusal arrives on its own channel, maybe after the stream broke.
            if let Some(link) = &client.via {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(refused) = link.refused() {
                    cause = format!(": {refused}");
                }
            }
            let mut reason = format!("it rejected the first call: {}{cause}", status.message());
            if cfg.addr.starts_with("tcp://") {
                reason.push_str(" (if it requires TLS client authentication, set tls-ca, tls-cert and tls-key)");
            }
            Err(unreachable(&reason))
        }
        Err(_) => Err(unreachable(&"no answer to the first call within 10s")),
    }
}

fn tls_config(cfg: &config::Buildkit) -> Result<ClientTlsConfig, Error> {
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| Error::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &cfg.tls_ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => return Err(Error::Tls("tls-cert and tls-key go together".into())),
    }
    if let Some(name) = &cfg.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}
