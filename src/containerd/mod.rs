//! Importing built images into a node's containerd, for clusters that have no registry (k3s, Rancher
//! Desktop, the local stack): BuildKit's `oci` exporter writes the image's blobs through a content store we
//! serve on the build session ([`proxy`]), which passes only the blobs containerd lacks on to it; then
//! [`image`] labels them for containerd's garbage collector, unpacks the layers into the snapshotter the
//! kubelet's runtime uses and names the image so CRI finds it by `name:tag@digest`; [`prune`] removes the
//! older ones.
//!
//! The gRPC code in [`api`] is generated from containerd's .proto files by `scripts/gen-containerd-api`.

pub mod image;
pub mod import;
pub mod proxy;
pub mod prune;

#[allow(clippy::all, missing_docs, rustdoc::all, unreachable_pub, dead_code)]
#[rustfmt::skip]
pub mod api;

pub use import::Import;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use api::containerd::services::containers::v1::containers_client::ContainersClient;
use api::containerd::services::content::v1::content_client::ContentClient;
use api::containerd::services::diff::v1::diff_client::DiffClient;
use api::containerd::services::images::v1::images_client::ImagesClient;
use api::containerd::services::leases::v1::leases_client::LeasesClient;
use api::containerd::services::leases::v1::{AddResourceRequest, CreateRequest, DeleteRequest, ListRequest, Resource};
use api::containerd::services::snapshots::v1::snapshots_client::SnapshotsClient;

/// containerd's default gRPC message limit (a content write carries at most half of it).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Errors talking to containerd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answered at the socket.
    #[error(
        "containerd is unreachable at {socket}: {reason}\n  set [registry] containerd-socket \
         (registry.containerd-socket) to the node's containerd socket (k3s: /run/k3s/containerd/containerd.sock; \
         the local stack: /var/lib/devloop-stack/run/containerd.sock)"
    )]
    Unreachable { socket: PathBuf, reason: String },
    /// A call failed.
    #[error("containerd at {socket}: {what}: {message}")]
    Call { socket: PathBuf, what: String, message: String, code: tonic::Code },
    /// An image's manifest, index or config is not what it should be.
    #[error("image {digest}: {reason}")]
    Image { digest: String, reason: String },
}

/// A connection to containerd, scoped to one namespace.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    /// The socket, for messages.
    pub socket: PathBuf,
    /// The namespace every call is made in (`containerd-namespace` header).
    pub namespace: String,
}

impl Containerd {
    /// Connects to the socket and checks that containerd answers there.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Containerd, Error> {
        let unreachable = |reason: String| Error::Unreachable { socket: socket.to_path_buf(), reason };
        if !socket.exists() {
            return Err(unreachable("no such socket".into()));
        }
        let path = socket.to_path_buf();
        // The URI is required but unused: every connection goes to the socket.
        let channel = Endpoint::from_static("http://containerd")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| unreachable(crate::util::error_chain(&e)))?;
        let c = Containerd { channel, socket: socket.to_path_buf(), namespace: namespace.to_string() };
        // One cheap call, so a socket that is not containerd's gRPC one is reported here, with its path.
        let mut leases = c.leases();
        let probe = leases.list(c.req(ListRequest { filters: vec!["id==devloop-probe".into()] }, None));
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(_)) => Ok(c),
            Ok(Err(s)) => Err(unreachable(format!("it rejected the first call: {}", s.message()))),
            Err(_) => Err(unreachable("no answer to the first call within 10s".into())),
        }
    }

    /// A request in our namespace, and under `lease` (which keeps what it creates from containerd's garbage
    /// collector until the image names it).
    pub fn req<T>(&self, msg: T, lease: Option<&str>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(ns) = self.namespace.parse() {
            r.metadata_mut().insert("containerd-namespace", ns);
        }
        if let Some(l) = lease.and_then(|l| l.parse().ok()) {
            r.metadata_mut().insert("containerd-lease", l);
        }
        r
    }

    /// The error for a failed call.
    pub fn fail(&self, what: impl Into<String>, s: tonic::Status) -> Error {
        Error::Call { socket: self.socket.clone(), what: what.into(), message: s.message().to_string(), code: s.code() }
    }

    /// The content store.
    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE)
    }
    /// The image records.
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    /// Containers (CRI's, in `k8s.io`: which images run).
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    /// Leases.
    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    /// Snapshotters.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    /// The differ, which applies layers to snapshots.
    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    /// A lease that expires by itself after `ttl` should devloop die before deleting it.
    pub async fn lease(&self, ttl: Duration) -> Result<String, Error> {
        let id = format!("devloop-{}", crate::util::random_id());
        let expire = humantime::format_rfc3339_seconds(SystemTime::now() + ttl).to_string();
        let labels = [("containerd.io/gc.expire".to_string(), expire)].into();
        self.leases().create(self.req(CreateRequest { id: id.clone(), labels }, None)).await.map_err(|s| self.fail("create a lease", s))?;
        Ok(id)
    }

    /// Puts something that already exists (`content` by digest, `snapshots/<snapshotter>` by key) under `lease`,
    /// so the collector cannot take it before the image references it.
    pub async fn hold(&self, lease: &str, kind: &str, id: &str) -> Result<(), Error> {
        let resource = Resource { id: id.into(), r#type: kind.into() };
        let req = AddResourceRequest { id: lease.into(), resource: Some(resource) };
        self.leases().add_resource(self.req(req, None)).await.map_err(|s| self.fail(format!("hold {id}"), s))?;
        Ok(())
    }

    /// Ends a lease: what it held is kept only if something else (an image) references it.
    pub async fn release(&self, lease: &str) {
        if let Err(s) = self.leases().delete(self.req(DeleteRequest { id: lease.to_string(), sync: false }, None)).await {
            tracing::debug!("deleting lease {lease}: {}", s.message());
        }
    }
}
