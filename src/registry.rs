//! The registry side: does `<name>:<tag>` already exist (so the build can be skipped), and the credentials
//! from Docker's config.json that both this check and BuildKit's push use.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

use crate::config;

/// Errors talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry did not answer.
    #[error("registry {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// It answered with something we cannot use.
    #[error("registry {host} answered {status} for {url}")]
    Unexpected { host: String, status: u16, url: String },
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
        if let Some(token) = bearer_token(&client, &resp, DockerConfig::load().credentials(&reg.host)).await {
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
        200 => Ok(resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(Some(String::new()))),
        404 => Ok(None),
        status => Err(Error::Unexpected { host: reg.host.clone(), status, url }),
    }
}

/// Follows a `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge to a token.
async fn bearer_token(client: &reqwest::Client, resp: &reqwest::Response, creds: Option<Credentials>) -> Option<String> {
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
        req = req.basic_auth(c.username, Some(c.secret));
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

    #[test]
    fn debug_output_never_shows_the_secret() {
        let c = Credentials { username: "u".into(), secret: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
