//! Connections to an engine: a unix socket, plain TCP, or TCP with mutual TLS (rustls with the ring provider,
//! the same stack tonic uses for buildkitd). The Engine API calls go through bollard over these connections
//! (a custom transport), BuildKit's `/grpc` upgrade through [`super::grpc`]: one TLS configuration for both.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Addr, TlsFiles};

/// A connected byte stream to the engine, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens connections to one engine; cheap to clone (the TLS configuration is shared).
#[derive(Clone)]
pub struct Dialer {
    /// The engine.
    pub addr: Addr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dialer {
    /// Reads the TLS files now, so that a missing or unreadable one is reported by path before any connection.
    pub fn new(addr: &Addr) -> Result<Dialer, String> {
        let tls = match addr {
            Addr::Tcp { tls: Some(files), .. } => Some(client_config(files)?),
            _ => None,
        };
        Ok(Dialer { addr: addr.clone(), tls })
    }

    /// A new connection (TLS handshake done).
    pub async fn dial(&self) -> std::io::Result<Box<dyn Io>> {
        match &self.addr {
            Addr::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
            Addr::Tcp { host, port, .. } => {
                let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), *port)))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no TCP connection within 5s"))??;
                let _ = tcp.set_nodelay(true);
                let Some(config) = &self.tls else { return Ok(Box::new(tcp)) };
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{host}`: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// An Engine API client over this dialer's connections.
    pub fn api(&self) -> Result<bollard::Docker, bollard::errors::Error> {
        let version = bollard::API_DEFAULT_VERSION;
        match &self.addr {
            Addr::Unix(path) => bollard::Docker::connect_with_unix(&path.to_string_lossy(), 120, version),
            Addr::Tcp { tls, .. } => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let base = format!("{scheme}://{}", self.addr.to_string().trim_start_matches("tcp://"));
                let dialer = self.clone();
                let transport = move |req| {
                    let dialer = dialer.clone();
                    async move { send(&dialer, req).await }
                };
                bollard::Docker::connect_with_custom_transport(transport, Some(base), 120, version)
            }
        }
    }
}

/// One request on a fresh connection. Few Engine calls are made (ping, version, inspect, push), so no pool.
async fn send<B>(dialer: &Dialer, mut req: http::Request<B>) -> Result<http::Response<Incoming>, bollard::errors::Error>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = dialer.dial().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("engine connection ended: {e}");
        }
    });
    // bollard hands over an absolute URI; on a direct connection the request line carries only the path.
    let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_else(|| "docker".into());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *req.uri_mut() = path.parse().map_err(|e: http::uri::InvalidUri| std::io::Error::other(e.to_string()))?;
    let host = authority.parse().map_err(|e: http::header::InvalidHeaderValue| std::io::Error::other(e.to_string()))?;
    req.headers_mut().insert(http::header::HOST, host);
    Ok(sender.send_request(req).await?)
}

/// Docker's TLS client rules: the server verified against ca.pem only (not the system roots), the client
/// authenticated with cert.pem and key.pem.
fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let pem = read(p)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not PEM: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", p.display()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(&files.ca)?);
    if added == 0 {
        return Err(format!("{} holds no usable CA certificate", files.ca.display()));
    }
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| format!("{} holds no private key: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("{} and {} do not make a client identity: {e}", files.cert.display(), files.key.display()))?;
    Ok(Arc::new(config))
}

/// A quick synchronous check that an engine is there: `GET /_ping` on a socket; for TCP only that it accepts
/// a connection (a TLS problem is then reported, with the certificate paths, when devloop connects).
pub fn answers(addr: &Addr) -> bool {
    use std::io::{Read, Write};
    let t = Duration::from_secs(2);
    match addr {
        Addr::Tcp { host, port, .. } => {
            use std::net::ToSocketAddrs;
            let Ok(mut found) = (host.as_str(), *port).to_socket_addrs() else { return false };
            found.next().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, t).is_ok())
        }
        Addr::Unix(socket) => {
            let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return false };
            let _ = s.set_read_timeout(Some(t));
            let _ = s.set_write_timeout(Some(t));
            if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200")
        }
    }
}
