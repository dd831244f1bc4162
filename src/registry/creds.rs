//! Registry credentials from Docker's client config, as the docker CLI finds them: a credential helper named
//! for the host in `credHelpers`, else the default store `credsStore`, else the `auths` entries. A helper is
//! run as `docker-credential-<name> get` with the server address on stdin and answers
//! `{"ServerURL", "Username", "Secret"}` on stdout.
//!
//! Secrets never reach a message: errors name the helper and the host only, and a helper's own output (which
//! may echo what it was given) is never quoted — only its stderr's first line, which helpers use for errors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// How long a helper may take: a keychain may ask the user to unlock it first.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A credential helper could not answer. Never carries a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// `docker-credential-<helper>` is not on PATH (or cannot be run).
    #[error("credential helper docker-credential-{helper} (for registry {host}, from {key} in {config}) cannot be run: {reason}")]
    NotRunnable { helper: String, host: String, key: &'static str, config: String, reason: String },
    /// It ran and failed.
    #[error("credential helper docker-credential-{helper} failed for registry {host} ({status}){detail}")]
    Failed { helper: String, host: String, status: String, detail: String },
    /// It answered something that is not its JSON.
    #[error("credential helper docker-credential-{helper} answered for registry {host} with something that is not {{\"Username\", \"Secret\"}} JSON")]
    Malformed { helper: String, host: String },
    /// It did not answer in time.
    #[error("credential helper docker-credential-{helper} did not answer for registry {host} within {}s", HELPER_TIMEOUT.as_secs())]
    Timeout { helper: String, host: String },
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

/// Docker's client config: `auths`, `credsStore`, `credHelpers`.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: String,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    /// The file it came from, for messages.
    #[serde(skip)]
    path: String,
    /// Where helpers are looked for instead of PATH (tests: no process-wide PATH change).
    #[serde(skip)]
    helper_dir: Option<PathBuf>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; missing or unreadable means empty.
    pub fn load() -> Self {
        let path = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .map(|d| d.join("config.json"));
        let Some(path) = path else { return Self::default() };
        let mut cfg = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), "ignoring unreadable Docker config: {e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        };
        cfg.path = path.display().to_string();
        cfg
    }

    /// Parses config.json text (`path` names it in messages).
    pub fn from_json(text: &str, path: &str) -> Result<Self, serde_json::Error> {
        let mut cfg: DockerConfig = serde_json::from_str(text)?;
        cfg.path = path.to_string();
        Ok(cfg)
    }

    /// Credentials for a registry host (`host[:port]`): from its `credHelpers` helper, else `credsStore`,
    /// else `auths`. Ok(None): nothing is configured for it (the helper said "not found"), so access is
    /// anonymous. Docker Hub's names map to its legacy key.
    pub async fn credentials(&self, host: &str) -> Result<Option<Credentials>, Error> {
        let hub = matches!(host, "docker.io" | "registry-1.docker.io" | "index.docker.io");
        // The address helpers are asked for: what `docker login` stored it under.
        let server = if hub { "https://index.docker.io/v1/" } else { host };
        if let Some(helper) = self.cred_helpers.get(host).or_else(|| hub.then(|| self.cred_helpers.get("docker.io")).flatten()) {
            return self.run_helper(helper, host, server, "credHelpers").await;
        }
        if !self.creds_store.is_empty() {
            return self.run_helper(&self.creds_store, host, server, "credsStore").await;
        }
        Ok(self.in_auths(host, hub))
    }

    fn in_auths(&self, host: &str, hub: bool) -> Option<Credentials> {
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

    /// Runs `docker-credential-<helper> get` for `server`.
    async fn run_helper(&self, helper: &str, host: &str, server: &str, key: &'static str) -> Result<Option<Credentials>, Error> {
        run_helper(helper, host, server, key, &self.path, self.helper_dir.as_deref()).await
    }
}

async fn run_helper(
    helper: &str,
    host: &str,
    server: &str,
    key: &'static str,
    config: &str,
    dir: Option<&std::path::Path>,
) -> Result<Option<Credentials>, Error> {
    let program = format!("docker-credential-{helper}");
    let exe = dir.map_or_else(|| PathBuf::from(&program), |d| d.join(&program));
    let mut child = tokio::process::Command::new(&exe)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::NotRunnable {
            helper: helper.into(),
            host: host.into(),
            key,
            config: if config.is_empty() { "Docker's config".into() } else { config.into() },
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not on PATH (install it, or remove {key} from the config)")
            } else {
                e.to_string()
            },
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    // A helper that exits without reading its input is its own failure, reported from its status below.
    let _ = stdin.write_all(server.as_bytes()).await;
    drop(stdin);
    let output = match tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(Error::Failed { helper: helper.into(), host: host.into(), status: e.to_string(), detail: String::new() })
        }
        Err(_) => return Err(Error::Timeout { helper: helper.into(), host: host.into() }),
    };
    if !output.status.success() {
        // The helpers' protocol says "not found" on stdout; that means: no credentials, go anonymous.
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains("credentials not found") {
            tracing::debug!(helper, host, "credential helper has no credentials for the registry");
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
        let detail = if first.is_empty() { String::new() } else { format!(": {}", first.chars().take(200).collect::<String>()) };
        return Err(Error::Failed { helper: helper.into(), host: host.into(), status: output.status.to_string(), detail });
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        #[serde(default)]
        username: String,
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&output.stdout).map_err(|_| Error::Malformed { helper: helper.into(), host: host.into() })?;
    // Docker's convention: the user name `<token>` marks an identity token.
    let username = if a.username == "<token>" { String::new() } else { a.username };
    Ok(Some(Credentials { username, secret: a.secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_from_docker_config_forms() {
        let cfg = DockerConfig::from_json(
            r#"{"auths": {
                "reg.example:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
                "tok.example": {"identitytoken": "t0k"}
            }}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(
            cfg.credentials("reg.example:5000").await.unwrap(),
            Some(Credentials { username: "user".into(), secret: "pa:ss".into() })
        );
        assert_eq!(cfg.credentials("registry-1.docker.io").await.unwrap().unwrap().username, "hub");
        assert_eq!(cfg.credentials("tok.example").await.unwrap().unwrap().secret, "t0k");
        assert_eq!(cfg.credentials("other.example").await.unwrap(), None);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let c = Credentials { username: "u".into(), secret: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// Writes `docker-credential-<name>` scripts into a temp dir, where `with_helpers` configs look for them.
    fn helpers(scripts: &[(&str, &str)]) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in scripts {
            let p = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    fn with_helpers(json: &str, dir: &tempfile::TempDir) -> DockerConfig {
        let mut cfg = DockerConfig::from_json(json, "/cfg/config.json").unwrap();
        cfg.helper_dir = Some(dir.path().to_path_buf());
        cfg
    }

    #[tokio::test]
    async fn helpers_answer_per_host_and_the_default_store_covers_the_rest() {
        // The per-host helper echoes the address it was asked for into the user name, to prove what it got.
        let dir = helpers(&[
            ("dltest-host", r#"read addr; printf '{"ServerURL":"%s","Username":"for-%s","Secret":"s3cret"}' "$addr" "$addr""#),
            ("dltest-store", r#"read addr; case "$addr" in known.example) printf '{"Username":"<token>","Secret":"tok"}';; *) echo "credentials not found in native keychain"; exit 1;; esac"#),
        ]);
        let cfg = with_helpers(
            r#"{"credsStore": "dltest-store", "credHelpers": {"reg.example:5443": "dltest-host"},
                "auths": {"known.example": {"auth": "dTpw"}, "reg.example:5443": {}}}"#,
            &dir,
        );
        let c = cfg.credentials("reg.example:5443").await.unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("for-reg.example:5443", "s3cret"), "credHelpers wins over credsStore");
        let t = cfg.credentials("known.example").await.unwrap().unwrap();
        assert_eq!((t.username.as_str(), t.secret.as_str()), ("", "tok"), "<token> is an identity token; the store wins over auths");
        assert_eq!(cfg.credentials("unknown.example").await.unwrap(), None, "not found: anonymous");
    }

    #[tokio::test]
    async fn helper_failures_name_helper_and_host_and_never_the_secret() {
        let dir = helpers(&[
            ("dltest-broken", "echo 'leaked-password-xyz'; echo 'keychain is locked' >&2; exit 3"),
            ("dltest-garbage", "echo 'not json leaked-password-xyz'"),
        ]);
        let cfg = |store: &str| with_helpers(&format!(r#"{{"credsStore": "{store}"}}"#), &dir);
        let missing = cfg("dltest-missing").credentials("reg.example").await.unwrap_err();
        let msg = missing.to_string();
        assert!(msg.contains("docker-credential-dltest-missing") && msg.contains("reg.example"), "{msg}");
        assert!(msg.contains("not on PATH") && msg.contains("credsStore") && msg.contains("/cfg/config.json"), "{msg}");
        let broken = cfg("dltest-broken").credentials("reg.example").await.unwrap_err().to_string();
        assert!(broken.contains("docker-credential-dltest-broken") && broken.contains("reg.example"), "{broken}");
        assert!(broken.contains("keychain is locked") && broken.contains("exit status: 3"), "{broken}");
        let garbage = cfg("dltest-garbage").credentials("reg.example").await.unwrap_err().to_string();
        assert!(garbage.contains("docker-credential-dltest-garbage"), "{garbage}");
        for m in [&msg, &broken, &garbage] {
            assert!(!m.contains("leaked-password-xyz"), "{m}");
        }
    }
}
