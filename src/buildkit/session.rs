//! The BuildKit session: how the daemon reads our files and asks for registry credentials.
//!
//! `Control.Session` is a bidirectional stream of byte frames that carries an HTTP/2 connection in which
//! *we* are the gRPC server and the daemon the client. We bridge the frames to an in-memory pipe and serve
//! FileSync (DiffCopy), Auth and Health over it with tonic — and, when importing into containerd, a content
//! store (see [`crate::containerd::proxy`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse, HealthListRequest,
    HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::AuthServer;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_util::sync::CancellationToken;
use tonic::transport::{server::Connected, Channel};

use super::auth::DockerAuth;
use crate::containerd::api::containerd::services::content::v1::content_server::ContentServer;
use crate::containerd::proxy::ImportStore;
use super::connect::MAX_MESSAGE;
use super::filesync::{FileSync, SyncedDir, TransferStats};
use super::Error;

/// The gRPC methods we serve, announced to the daemon in the session headers.
const METHODS: &[&str] = &[
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/grpc.health.v1.Health/Check",
];

/// The content store methods, announced when we serve one (the `oci` exporter writing into containerd).
const CONTENT_METHODS: &[&str] = &[
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Status",
    "/containerd.services.content.v1.Content/Read",
    "/containerd.services.content.v1.Content/Write",
    "/containerd.services.content.v1.Content/Abort",
];

/// A running session; dropping it (or cancelling) closes it.
pub struct Session {
    /// The id passed as SolveRequest.session.
    pub id: String,
    /// Bytes and files the daemon pulled through DiffCopy.
    pub stats: Arc<TransferStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Cancels the session when it is dropped without `close` (an error path, Ctrl-C).
    _guard: tokio_util::sync::DropGuard,
}

impl Session {
    /// Opens a session exposing `dirs` (by DiffCopy `dir-name`), registry credentials and, when given, the
    /// content store an `oci` exporter with `tar=false` writes into.
    /// `shared_key` keys BuildKit's incremental copy of the context: keep it stable per context.
    pub async fn start(
        control: &mut ControlClient<Channel>,
        shared_key: &str,
        dirs: HashMap<String, SyncedDir>,
        content: Option<ContentServer<ImportStore>>,
    ) -> Result<Session, Error> {
        let id = crate::util::random_id();
        let stats = Arc::new(TransferStats::default());
        let cancel = CancellationToken::new();
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (their_read, mut their_write) = tokio::io::split(theirs);

        // Frames from our gRPC server to the daemon.
        let outbound = tokio_util::io::ReaderStream::new(their_read).filter_map(|chunk| async move {
            chunk.ok().map(|b| BytesMessage { data: b.to_vec() })
        });
        let mut req = tonic::Request::new(outbound);
        let md = req.metadata_mut();
        md.insert("x-docker-expose-session-uuid", id.parse().map_err(|_| Error::Session("bad id".into()))?);
        md.insert("x-docker-expose-session-name", "devloop".parse().expect("ascii"));
        md.insert(
            "x-docker-expose-session-sharedkey",
            shared_key.parse().map_err(|_| Error::Session("bad shared key".into()))?,
        );
        let content_methods = if content.is_some() { CONTENT_METHODS } else { &[] };
        for m in METHODS.iter().chain(content_methods) {
            md.append("x-docker-expose-session-grpc-method", m.parse().expect("ascii"));
        }
        let mut inbound = control
            .session(req)
            .await
            .map_err(|s| match std::error::Error::source(&s) {
                // The connection failed, not the session (a BuildKit pod gone or restarted): try again later.
                Some(e) => Error::Lost { reason: crate::util::error_chain(e) },
                None if s.code() == tonic::Code::Unavailable => Error::Lost { reason: s.message().to_string() },
                None => Error::Session(s.message().to_string()),
            })?
            .into_inner();

        let server = tonic::transport::Server::builder()
            .add_service(
                FileSyncServer::new(FileSync::new(dirs, stats.clone()))
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(AuthServer::new(DockerAuth::from_env()))
            .add_service(HealthServer::new(AlwaysServing))
            .add_optional_service(content);
        // One connection, then wait: an ended incoming stream would stop the server early.
        let incoming = futures::stream::once(async move { Ok::<_, std::io::Error>(Pipe(ours)) })
            .chain(futures::stream::pending());
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let serve = server.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
            // Frames from the daemon to our gRPC server.
            let pump_in = async {
                while let Some(Ok(msg)) = inbound.next().await {
                    if their_write.write_all(&msg.data).await.is_err() {
                        break;
                    }
                }
                let _ = their_write.shutdown().await;
            };
            tokio::select! {
                r = serve => if let Err(e) = r { tracing::debug!("session server ended: {e}") },
                _ = pump_in => tracing::debug!("session stream closed by the daemon"),
                _ = stop.cancelled() => {}
            }
        });
        Ok(Session { id, stats, _guard: cancel.clone().drop_guard(), cancel, task })
    }

    /// Closes the session and waits for its tasks.
    pub async fn close(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The in-memory pipe, made acceptable to tonic's server.
struct Pipe(DuplexStream);

impl Connected for Pipe {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Pipe {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Health/Check must answer SERVING, or the daemon closes the session.
struct AlwaysServing;

#[tonic::async_trait]
impl Health for AlwaysServing {
    async fn check(&self, _: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
    }
    async fn list(&self, _: tonic::Request<HealthListRequest>) -> Result<tonic::Response<HealthListResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("list"))
    }
    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;
    async fn watch(&self, _: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}
