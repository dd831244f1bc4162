//! BuildKit's gRPC through Docker Engine's API: `POST /grpc` upgraded to h2c on the engine's unix socket,
//! then HTTP/2 gRPC on the upgraded connection, one upgrade per connection tonic opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::body::Bytes;
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Sends `POST <path>` with `Upgrade: h2c` and `headers`, and returns the upgraded connection.
pub async fn upgrade(socket: &Path, path: &str, headers: &[(&str, String)]) -> std::io::Result<Upgraded> {
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| io(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("engine connection ended: {e}");
        }
    });
    let mut req = http::Request::post(path)
        .header(http::header::HOST, "docker")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| io(&e))?;
    let resp = send.send_request(req).await.map_err(|e| io(&e))?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(io(&format!("the engine answered {} to POST {path} instead of switching to h2c", resp.status())));
    }
    hyper::upgrade::on(resp).await.map_err(|e| io(&e))
}

/// A gRPC channel to the engine's embedded BuildKit at `socket`.
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    // The URI is required by the API but unused: every connection is an upgrade on the socket.
    Endpoint::from_static("http://docker")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { upgrade(&socket, "/grpc", &[]).await }
        }))
        .await
}
