//! The registry side: does `<name>:<tag>` already exist (so the build can be skipped), and the credentials
//! from Docker's config.json that both this check and BuildKit's push use.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

use crate::config;

pub mod discover;

/// Errors talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry did not answer.
    #[error("registry {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// It answered with something we cannot use.
    #[error("registry {host} answered {status} for {url}")]
    Unexpected { host: String, status: u16, url: String },
    /// A 200 for a manifest without its digest: there is nothing to pin a deployment to.
    #[error("registry {host} answered 200 for {url} without a Docker-Content-Digest header")]
    NoDigest { host: String, url: String },
}

/// A user name and a secret (password or token). Debug output hides the secret.
#[derive(Clone, Default, PartialEq)]
pub struct Credentials {
    /// User name ("" with an identity token).
    pub username: String,
    /// Password or token.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ username: {:?}, secret: <redacted> }}", self.username)
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

/// Docker's client config (`auths` only; credential helpers are not run).
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; missing or unreadable means empty.
    pub fn load() -> Self {
        let path = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .map(|d| d.join("config.json"));
        let Some(path) = path else { return Self::default() };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), "ignoring unreadable Docker config: {e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Credentials for a registry host. Docker Hub's names map to its legacy key.
    pub fn credentials(&self, host: &str) -> Option<Credentials> {
        let hub = matches!(host, "docker.io" | "registry-1.docker.io" | "index.docker.io");
        let keys: Vec<String> = if hub {
            vec!["https://index.docker.io/v1/".into(), "docker.io".into(), host.into()]
        } else {
            vec![host.into(), format!("https://{host}"), format!("http://{host}")]
        };
        let e = keys.iter().find_map(|k| self.auths.get(k))?;
        if !e.identity_token.is_empty() {
            return Some(Credentials { username: String::new(), secret: e.identity_token.clone() });
        }
        if !e.username.is_empty() {
            return Some(Credentials { username: e.username.clone(), secret: e.password.clone() });
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(e.auth.trim()).ok()?;
        let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credentials { username: u.into(), secret: p.into() })
    }
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The digest of `<name>:<tag>` in the registry, or None when the registry does not have it.
pub async fn manifest_digest(reg: &config::Registry, name: &str, tag: &str) -> Result<Option<String>, Error> {
    let scheme = if reg.insecure { "http" } else { "https" };
    let url = format!("{scheme}://{}/v2/{name}/manifests/{tag}", reg.host);
    let unreachable = |e: reqwest::Error| Error::Unreachable { host: reg.host.clone(), reason: crate::buildkit::error_chain(&e) };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(unreachable)?;
    let mut resp = client.head(&url).header("Accept", MANIFEST_TYPES).send().await.map_err(unreachable)?;
    if resp.status() == 401 {
        // Token auth (distribution's Bearer challenge), with credentials when we have them.
        if let Some(token) = bearer_token(&client, &resp, reg, DockerConfig::load().credentials(&reg.host)).await {
            resp = client
                .head(&url)
                .header("Accept", MANIFEST_TYPES)
                .bearer_auth(token)
                .send()
                .await
                .map_err(unreachable)?;
        }
    }
    match resp.status().as_u16() {
        200 => match resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::trim) {
            Some(d) if !d.is_empty() => Ok(Some(d.to_string())),
            _ => Err(Error::NoDigest { host: reg.host.clone(), url }),
        },
        404 => Ok(None),
        status => Err(Error::Unexpected { host: reg.host.clone(), status, url }),
    }
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
async fn bearer_token(
    client: &reqwest::Client,
    resp: &reqwest::Response,
    reg: &config::Registry,
    creds: Option<Credentials>,
) -> Option<String> {
    let challenge = resp.headers().get("WWW-Authenticate")?.to_str().ok()?;
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

    #[test]
    fn credentials_from_docker_config_forms() {
        let cfg: DockerConfig = serde_json::from_str(
            r#"{"auths": {
                "reg.example:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
                "tok.example": {"identitytoken": "t0k"}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.credentials("reg.example:5000"),
            Some(Credentials { username: "user".into(), secret: "pa:ss".into() })
        );
        assert_eq!(cfg.credentials("registry-1.docker.io").unwrap().username, "hub");
        assert_eq!(cfg.credentials("tok.example").unwrap().secret, "t0k");
        assert_eq!(cfg.credentials("other.example"), None);
    }

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

    /// A registry on 127.0.0.1 answering every request with `response`; returns its `host:port`.
    async fn canned_registry(response: &'static str) -> String {
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
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_manifest_without_its_digest_is_an_error_naming_host_and_url() {
        for response in [
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nDocker-Content-Digest: \r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ] {
            let host = canned_registry(response).await;
            let err = manifest_digest(&registry(&host, true, &[]), "app", "t1").await.unwrap_err();
            assert!(matches!(err, Error::NoDigest { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&host) && msg.contains(&format!("http://{host}/v2/app/manifests/t1")), "{msg}");
        }
        let host = canned_registry(
            "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:abc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(manifest_digest(&registry(&host, true, &[]), "app", "t1").await.unwrap().as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let c = Credentials { username: "u".into(), secret: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
