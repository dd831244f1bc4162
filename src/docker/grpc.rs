//! BuildKit's gRPC through Docker Engine's API: `POST /grpc` upgraded to h2c on a connection to the engine
//! (unix socket, or TCP with TLS), then HTTP/2 gRPC on the upgraded connection, one upgrade per connection
//! tonic opens.

use std::time::Duration;

use hyper::body::Bytes;
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::transport::Dialer;

/// Sends `POST <path>` with `Upgrade: h2c` and `headers`, and returns the upgraded connection.
pub async fn upgrade(dialer: &Dialer, path: &str, headers: &[(&str, String)]) -> std::io::Result<Upgraded> {
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let stream = dialer.dial().await?;
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

/// A gRPC channel to the embedded BuildKit of the engine `dialer` reaches.
pub async fn channel(dialer: &Dialer) -> Result<Channel, tonic::transport::Error> {
    let dialer = dialer.clone();
    // The URI is required by the API but unused: every connection is an upgrade on a dialed connection.
    Endpoint::from_static("http://docker")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dialer = dialer.clone();
            async move { upgrade(&dialer, "/grpc", &[]).await }
        }))
        .await
}
