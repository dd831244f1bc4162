//! The registry side: does `<name>:<tag>` already exist (so the build can be skipped) — following Bearer
//! (token) and Basic challenges, trusting `[registry] ca` — and the credentials from Docker's config.json
//! ([`creds`]) that both this check and BuildKit's push use.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::Deserialize;

use crate::config;

pub mod creds;
pub mod discover;

pub use creds::{Credentials, DockerConfig};

/// Errors talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry did not answer.
    #[error("registry {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// It answered in plain HTTP where devloop spoke TLS: `[registry] insecure` is not set for it.
    #[error(
        "registry {host} answers in plain HTTP, not HTTPS: set `insecure = true` under [registry] to use it \
         over http (or serve it with TLS)"
    )]
    PlainHttp { host: String },
    /// It answered with something we cannot use.
    #[error("registry {host} answered {status} for {url}")]
    Unexpected { host: String, status: u16, url: String },
    /// A 200 for a manifest without its digest: there is nothing to pin a deployment to.
    #[error("registry {host} answered 200 for {url} without a Docker-Content-Digest header")]
    NoDigest { host: String, url: String },
    /// The registry wants credentials we do not have, or refused the ones we sent.
    #[error("registry {host} answered {status} for {url}: {why}")]
    Unauthorized { host: String, status: u16, url: String, why: String },
    /// Credentials could not be looked up (a credential helper failed).
    #[error(transparent)]
    Credentials(#[from] creds::Error),
    /// `[registry] ca` cannot be used.
    #[error("key `registry.ca`: {path}: {reason}")]
    Ca { path: String, reason: String },
}

/// Registry hosts that asked this process for credentials to read a manifest: the kubelet, which pulls
/// anonymously unless a pod has an imagePullSecret, will likely be asked too.
static ASKED_FOR_CREDENTIALS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether `host` asked for credentials when devloop read a manifest from it (in this process).
pub fn asked_for_credentials(host: &str) -> bool {
    ASKED_FOR_CREDENTIALS.lock().expect("not poisoned").contains(host)
}

/// The root certificates of `[registry] ca` (a PEM file with one or more certificates).
pub fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let bad = |reason: String| Error::Ca { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
    }
    Ok(certs)
}

/// The HTTP client for devloop's own calls to the registry: it trusts `[registry] ca` besides the usual roots.
pub fn http_client(reg: &config::Registry) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(ca) = &reg.ca {
        for c in ca_certificates(ca)? {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| Error::Unreachable { host: reg.host.clone(), reason: crate::util::error_chain(&e) })
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The digest of `<name>:<tag>` in the registry, or None when the registry does not have it. A 401 is
/// answered once with credentials from Docker's config: a Bearer challenge through its token realm, a Basic
/// one straight to the registry (both only where [`realm_may_get_credentials`] allows).
pub async fn manifest_digest(reg: &config::Registry, name: &str, tag: &str) -> Result<Option<String>, Error> {
    manifest_digest_with(reg, name, tag, &DockerConfig::load()).await
}

/// [`manifest_digest`] with credentials from `docker`.
pub async fn manifest_digest_with(reg: &config::Registry, name: &str, tag: &str, docker: &DockerConfig) -> Result<Option<String>, Error> {
    let scheme = if reg.insecure { "http" } else { "https" };
    let url = format!("{scheme}://{}/v2/{name}/manifests/{tag}", reg.host);
    let unreachable = |e: reqwest::Error| Error::Unreachable { host: reg.host.clone(), reason: crate::util::error_chain(&e) };
    let client = http_client(reg)?;
    let head = || client.head(&url).header("Accept", MANIFEST_TYPES);
    let mut resp = match head().send().await {
        Ok(r) => r,
        Err(e) if !reg.insecure && not_tls(&e) && answers_http(&client, &reg.host).await => {
            return Err(Error::PlainHttp { host: reg.host.clone() })
        }
        Err(e) => return Err(unreachable(e)),
    };
    let mut sent = false;
    if resp.status() == 401 {
        ASKED_FOR_CREDENTIALS.lock().expect("not poisoned").insert(reg.host.clone());
        let creds = docker.credentials(&reg.host).await?;
        let challenge = resp.headers().get("WWW-Authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if challenge.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")) {
            if let Some(c) = creds {
                // Basic credentials go to the registry URL itself: the same rule as for a realm there.
                match realm_may_get_credentials(reg, &url) {
                    Ok(()) => {
                        resp = head().basic_auth(c.username, Some(c.secret)).send().await.map_err(unreachable)?;
                        sent = true;
                    }
                    Err(why) => {
                        let why = format!("it asks for Basic credentials, which devloop does not send there: {why}");
                        return Err(Error::Unauthorized { host: reg.host.clone(), status: 401, url, why });
                    }
                }
            }
        } else {
            sent = creds.is_some();
            if let Some(token) = bearer_token(&client, &challenge, reg, creds).await {
                resp = head().bearer_auth(token).send().await.map_err(unreachable)?;
            }
        }
    }
    match resp.status().as_u16() {
        200 => match resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::trim) {
            Some(d) if !d.is_empty() => Ok(Some(d.to_string())),
            _ => Err(Error::NoDigest { host: reg.host.clone(), url }),
        },
        404 => Ok(None),
        status @ (401 | 403) => {
            let why = if sent {
                format!("it refused the credentials Docker's config has for {} (check them: `docker login {}`)", reg.host, reg.host)
            } else {
                format!(
                    "it requires credentials and Docker's config ($DOCKER_CONFIG/config.json or ~/.docker/config.json) has none \
                     for {}: run `docker login {}`, or configure a credential helper (credsStore, credHelpers)",
                    reg.host, reg.host
                )
            };
            Err(Error::Unauthorized { host: reg.host.clone(), status, url, why })
        }
        status => Err(Error::Unexpected { host: reg.host.clone(), status, url }),
    }
}

/// Whether `e` is the TLS handshake getting something that is not TLS back (rustls: InvalidContentType).
fn not_tls(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        // An io::Error's source() skips the error it wraps: step into that one instead.
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Whether `host` answers plain HTTP at all (any status): then it is no TLS server.
async fn answers_http(client: &reqwest::Client, host: &str) -> bool {
    client.get(format!("http://{host}/v2/")).send().await.is_ok()
}

/// Whether the registry's credentials may go to the token realm `realm` (Err says why not): only over
/// https, or over http to the registry's own host when `[registry] insecure = true`; and only to the
/// registry's own host or one listed in `[registry] auth-hosts`. A registry's challenge names any realm it
/// likes, so this is what keeps a password from following it elsewhere.
pub fn realm_may_get_credentials(reg: &config::Registry, realm: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(realm).map_err(|e| format!("the realm is not a URL: {e}"))?;
    let realm_host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
    let reg_host = reqwest::Url::parse(&format!("http://{}", reg.host))
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase()))
        .unwrap_or_default();
    let own = !realm_host.is_empty() && realm_host == reg_host;
    match url.scheme() {
        "https" => {}
        "http" if own && reg.insecure => {}
        "http" if own => return Err("the realm is plain http and [registry] insecure is not set".into()),
        "http" => return Err("the realm is plain http on another host than the registry's".into()),
        scheme => return Err(format!("the realm is {scheme}://, not https://")),
    }
    let authority = match url.port() {
        Some(p) => format!("{realm_host}:{p}"),
        None => realm_host.clone(),
    };
    let listed = reg.auth_hosts.iter().any(|h| {
        let h = h.trim_matches(['[', ']']).to_ascii_lowercase();
        h == realm_host || h == authority
    });
    if own || listed {
        Ok(())
    } else {
        Err(format!("{realm_host} is neither the registry's host nor listed in [registry] auth-hosts"))
    }
}

/// Follows a `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge to a token, sending `creds`
/// only where [`realm_may_get_credentials`] allows.
async fn bearer_token(client: &reqwest::Client, challenge: &str, reg: &config::Registry, creds: Option<Credentials>) -> Option<String> {
    let params = challenge.strip_prefix("Bearer ")?;
    let mut fields = HashMap::new();
    for part in params.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    let realm = fields.get("realm")?;
    let mut req = client.get(realm).query(
        &fields.iter().filter(|(k, _)| *k == "service" || *k == "scope").collect::<Vec<_>>(),
    );
    if let Some(c) = creds {
        match realm_may_get_credentials(reg, realm) {
            Ok(()) => req = req.basic_auth(c.username, Some(c.secret)),
            Err(why) => tracing::debug!("asking the token realm of {} anonymously: {why}", reg.host),
        }
    }
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let t: Token = req.send().await.ok()?.json().await.ok()?;
    Some(if t.token.is_empty() { t.access_token } else { t.token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(host: &str, insecure: bool, auth_hosts: &[&str]) -> config::Registry {
        config::Registry {
            host: host.into(),
            insecure,
            pull_host: None,
            auth_hosts: auth_hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_or_listed_token_hosts_over_https() {
        // (registry host, insecure, auth-hosts, realm, credentials sent?)
        let cases: &[(&str, bool, &[&str], &str, bool)] = &[
            ("reg.example.com", false, &[], "https://reg.example.com/token", true),
            ("reg.example.com:5000", false, &[], "https://reg.example.com/token", true),
            ("reg.example.com", false, &[], "https://REG.example.com:8443/token", true),
            ("reg.example.com", false, &[], "https://evil.example.net/token", false),
            ("reg.example.com", false, &[], "https://auth.example.com/token", false),
            ("reg.example.com", false, &["auth.example.com"], "https://auth.example.com/token", true),
            ("reg.example.com", false, &["auth.example.com:8443"], "https://auth.example.com:8443/token", true),
            ("reg.example.com", false, &["auth.example.com:8443"], "https://auth.example.com/token", false),
            ("127.0.0.1:5000", true, &[], "http://127.0.0.1:5001/token", true),
            ("127.0.0.1:5000", false, &[], "http://127.0.0.1:5001/token", false),
            ("127.0.0.1:5000", true, &[], "http://127.0.0.2/token", false),
            ("127.0.0.1:5000", true, &["auth.local"], "http://auth.local/token", false),
            ("[::1]:5000", true, &[], "http://[::1]:5001/token", true),
            ("reg.example.com", true, &[], "ftp://reg.example.com/token", false),
            ("reg.example.com", false, &[], "not a url", false),
        ];
        for (host, insecure, listed, realm, want) in cases {
            let got = realm_may_get_credentials(&registry(host, *insecure, listed), realm);
            assert_eq!(got.is_ok(), *want, "registry {host} (insecure {insecure}, auth-hosts {listed:?}), realm {realm}: {got:?}");
        }
    }

    /// A registry on 127.0.0.1 answering each request with what `respond` makes of its head (lower case);
    /// returns its `host:port`.
    async fn test_registry(respond: fn(&str) -> &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(respond(&String::from_utf8_lossy(&req).to_ascii_lowercase()).as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_manifest_without_its_digest_is_an_error_naming_host_and_url() {
        let no_digest: [fn(&str) -> &'static str; 2] = [
            |_| "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            |_| "HTTP/1.1 200 OK\r\nDocker-Content-Digest: \r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ];
        for respond in no_digest {
            let host = test_registry(respond).await;
            let err = manifest_digest(&registry(&host, true, &[]), "app", "t1").await.unwrap_err();
            assert!(matches!(err, Error::NoDigest { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&host) && msg.contains(&format!("http://{host}/v2/app/manifests/t1")), "{msg}");
        }
        let host =
            test_registry(|_| "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:abc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        assert_eq!(manifest_digest(&registry(&host, true, &[]), "app", "t1").await.unwrap().as_deref(), Some("sha256:abc"));
    }

    /// A registry on 127.0.0.1 requiring Basic auth `user:pw` (dXNlcjpwdw==) for every request.
    async fn basic_registry() -> String {
        test_registry(|head| {
            if head.contains("authorization: basic dxnlcjpwdw==") {
                "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:basic\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"registry\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
        })
        .await
    }

    #[tokio::test]
    async fn basic_auth_registries_get_the_configured_credentials_and_a_clear_error_without() {
        let host = basic_registry().await;
        let reg = registry(&host, true, &[]);
        let with = DockerConfig::from_json(&format!(r#"{{"auths": {{"{host}": {{"auth": "dXNlcjpwdw=="}}}}}}"#), "c.json").unwrap();
        assert_eq!(manifest_digest_with(&reg, "app", "t1", &with).await.unwrap().as_deref(), Some("sha256:basic"));
        assert!(asked_for_credentials(&host));

        let none = DockerConfig::from_json("{}", "c.json").unwrap();
        let msg = manifest_digest_with(&reg, "app", "t1", &none).await.unwrap_err().to_string();
        assert!(msg.contains(&host) && msg.contains("401") && msg.contains("docker login"), "{msg}");

        let wrong = DockerConfig::from_json(&format!(r#"{{"auths": {{"{host}": {{"username": "user", "password": "n0pe-secret"}}}}}}"#), "c.json").unwrap();
        let msg = manifest_digest_with(&reg, "app", "t1", &wrong).await.unwrap_err().to_string();
        assert!(msg.contains("refused the credentials") && !msg.contains("n0pe-secret"), "{msg}");

        // Plain http without `insecure`: Basic credentials are not sent there (https only).
        let plain = config::Registry { insecure: false, ..reg.clone() };
        assert!(realm_may_get_credentials(&plain, &format!("http://{host}/v2/app/manifests/t1")).is_err());
    }

    #[tokio::test]
    async fn a_plain_http_registry_without_insecure_is_said_to_answer_in_plain_http_not_to_be_unreachable() {
        // As Go's net/http (the registry's server) does: a 400 for whatever arrives, a TLS ClientHello included.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let _ = sock.read(&mut [0u8; 4096]).await;
                let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                let _ = sock.shutdown().await;
            }
        });
        let err = manifest_digest(&registry(&host, false, &[]), "app", "t1").await.unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("unreachable") && !msg.contains("InvalidContentType"), "{msg}");
        assert!(msg.contains(&format!("registry {host} answers in plain HTTP")) && msg.contains("insecure = true"), "{msg}");

        // Nothing listening is still unreachable.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let msg = manifest_digest(&registry(&closed, false, &[]), "app", "t1").await.unwrap_err().to_string();
        assert!(msg.contains("unreachable") && !msg.contains("plain HTTP"), "{msg}");
    }

    #[test]
    fn an_unreadable_or_empty_ca_names_the_key() {
        let d = tempfile::tempdir().unwrap();
        let missing = ca_certificates(&d.path().join("nope.pem")).unwrap_err().to_string();
        assert!(missing.starts_with("key `registry.ca`: ") && missing.contains("nope.pem"), "{missing}");
        std::fs::write(d.path().join("empty.pem"), "not a certificate\n").unwrap();
        let empty = ca_certificates(&d.path().join("empty.pem")).unwrap_err().to_string();
        assert!(empty.contains("registry.ca") && empty.contains("no PEM certificate"), "{empty}");
    }
}
